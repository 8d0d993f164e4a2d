package main

// The connection to ratelimitd: address, bearer token, TLS, timeout, their
// environment fallbacks, and the mapping of gRPC errors to exit codes.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// envPrefix starts the environment fallback of the connection flags.
const envPrefix = "RATELIMITCTL_"

// envName is the environment variable that flag name falls back to.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// defaultAddr is ratelimitd's default -grpc-addr, where the admin API is
// served unless ratelimitd has -admin-addr.
const defaultAddr = "127.0.0.1:8081"

// connFlags are the flags of every command that talks to a server.
type connFlags struct {
	addr, token, tokenFile string
	tls                    bool
	ca, cert, key          string
	timeout                time.Duration
	admin                  bool // the admin API: a token is sent
}

// envFlags are the connection flags with an environment fallback.
var envFlags = []string{"addr", "token", "token-file", "tls", "ca", "cert", "key", "timeout"}

// addConn defines the connection flags on fs; admin adds the token flags.
func addConn(fs *flag.FlagSet, admin bool) *connFlags {
	cf := &connFlags{admin: admin}
	fs.StringVar(&cf.addr, "addr", defaultAddr, "`host:port` of ratelimitd's gRPC listener (its -grpc-addr, or -admin-addr when the admin API has its own)")
	if admin {
		fs.StringVar(&cf.token, "token", "", "bearer `token` of the admin API (prefer -token-file: a flag shows in the process list)")
		fs.StringVar(&cf.tokenFile, "token-file", "", "`file` holding the token, in ratelimitd's -admin-token-file format (\"name token\" or \"token\" per line, # comments): its first token is used; - reads standard input")
	}
	fs.BoolVar(&cf.tls, "tls", false, "connect over TLS (implied by -ca, -cert and -key)")
	fs.StringVar(&cf.ca, "ca", "", "PEM `file` of the CAs that sign the server's certificate (default: the system's)")
	fs.StringVar(&cf.cert, "cert", "", "PEM client certificate `file`, for mTLS (with -key)")
	fs.StringVar(&cf.key, "key", "", "PEM client key `file`, for mTLS (with -cert)")
	fs.DurationVar(&cf.timeout, "timeout", 5*time.Second, "deadline of each call")
	for _, n := range envFlags {
		if f := fs.Lookup(n); f != nil {
			f.Usage += " [$" + envName(n) + "]"
		}
	}
	return cf
}

// applyEnv sets the connection flags not given on the command line from
// the environment (an empty value counts as unset). The token comes from
// -token, else -token-file, else RATELIMITCTL_TOKEN, else
// RATELIMITCTL_TOKEN_FILE: a token flag on the command line makes both
// variables ignored.
func (c *cli) applyEnv(fs *flag.FlagSet, cf *connFlags) error {
	set := given(fs)
	if set["token"] && set["token-file"] {
		return errors.New("give -token or -token-file, not both")
	}
	tokenGiven := set["token"] || set["token-file"]
	for _, n := range envFlags {
		f := fs.Lookup(n)
		if f == nil || set[n] || (tokenGiven && (n == "token" || n == "token-file")) {
			continue
		}
		if n == "token-file" && cf.token != "" {
			continue // RATELIMITCTL_TOKEN wins over RATELIMITCTL_TOKEN_FILE
		}
		if v := c.getenv(envName(n)); v != "" {
			if err := fs.Set(n, v); err != nil {
				return fmt.Errorf("invalid value %q for %s: %v", v, envName(n), err)
			}
		}
	}
	if (cf.cert == "") != (cf.key == "") {
		return errors.New("-cert and -key go together")
	}
	if cf.timeout <= 0 {
		return errors.New("-timeout must be greater than 0")
	}
	if cf.addr == "" {
		return errors.New("-addr is empty")
	}
	return nil
}

// readToken returns the bearer token: -token, or the first token of
// -token-file, or "" when neither is set.
func (c *cli) readToken(cf *connFlags) (string, error) {
	if !cf.admin || cf.token != "" || cf.tokenFile == "" {
		return strings.TrimSpace(cf.token), nil
	}
	var data []byte
	var err error
	if cf.tokenFile == "-" {
		data, err = io.ReadAll(c.stdin)
	} else {
		data, err = os.ReadFile(cf.tokenFile)
	}
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	tok, err := firstToken(data)
	if err != nil {
		return "", fmt.Errorf("token file %s: %w", cf.tokenFile, err)
	}
	return tok, nil
}

// firstToken returns the first token of a file in ratelimitd's
// -admin-token-file format: one token per line, optionally preceded by a
// name and a space, blank lines and # comments ignored.
func firstToken(data []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		if len(f) > 2 {
			return "", fmt.Errorf("line %d: want a token, or a name and a token, separated by a space", line)
		}
		return f[len(f)-1], nil
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no token found: want one token per line")
}

// conn is an open client connection and what every call carries.
type conn struct {
	cc      *grpc.ClientConn
	token   string
	timeout time.Duration
}

// dial prepares the connection described by cf (gRPC connects on the
// first call). Errors are usage errors: a missing file, a bad PEM.
func (c *cli) dial(cf *connFlags) (*conn, error) {
	tok, err := c.readToken(cf)
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if cf.tls || cf.ca != "" || cf.cert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cf.ca != "" {
			pem, err := os.ReadFile(cf.ca)
			if err != nil {
				return nil, fmt.Errorf("-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("-ca: no PEM certificate in %s", cf.ca)
			}
			tc.RootCAs = pool
		}
		if cf.cert != "" {
			pair, err := tls.LoadX509KeyPair(cf.cert, cf.key)
			if err != nil {
				return nil, fmt.Errorf("-cert, -key: %w", err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		creds = credentials.NewTLS(tc)
	}
	cc, err := grpc.NewClient(cf.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("-addr %s: %w", cf.addr, err)
	}
	return &conn{cc: cc, token: tok, timeout: cf.timeout}, nil
}

// call returns the context of one call: the timeout, and the token.
func (cn *conn) call(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, cn.timeout)
	if cn.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+cn.token)
	}
	return ctx, cancel
}

func (cn *conn) close() { cn.cc.Close() }

// connect parses the connection settings and dials; on failure it
// reports a usage error and ok is false.
func (c *cli) connect(fs *flag.FlagSet, cf *connFlags) (cn *conn, code int, ok bool) {
	if err := c.applyEnv(fs, cf); err != nil {
		return nil, c.usagef("%v", err), false
	}
	cn, err := c.dial(cf)
	if err != nil {
		return nil, c.usagef("%v", err), false
	}
	return cn, exitOK, true
}

// rpcFail reports a failed call as "ratelimitctl: <command>: <code>:
// <message>" and returns its exit code: 5 for Unauthenticated,
// PermissionDenied and the admin API off (FailedPrecondition, whose
// message says how to turn it on), 3 for NotFound, 2 for InvalidArgument,
// 1 for anything else.
func (c *cli) rpcFail(cn *conn, err error) int {
	st, ok := status.FromError(err)
	if !ok {
		return c.failf(exitError, "%v", err)
	}
	code := exitError
	hint := ""
	switch st.Code() {
	case codes.Unauthenticated, codes.PermissionDenied:
		code = exitDenied
		if cn != nil && cn.token == "" {
			hint = "no token was sent: give -token-file or -token, or set " + envName("token-file") + " or " + envName("token")
		}
	case codes.FailedPrecondition:
		if strings.Contains(st.Message(), "admin API is off") {
			code = exitDenied
		}
	case codes.NotFound:
		code = exitNotFound
	case codes.InvalidArgument:
		code = exitUsage
	case codes.Unimplemented:
		hint = "the server does not serve this API: is -addr ratelimitd's gRPC address (the admin API is on -admin-addr when ratelimitd has one; check needs -grpc-addr)?"
	}
	fmt.Fprintf(c.stderr, "ratelimitctl: %s: %s: %s\n", c.name, st.Code(), st.Message())
	if hint != "" {
		fmt.Fprintf(c.stderr, "ratelimitctl: %s\n", hint)
	}
	return code
}
