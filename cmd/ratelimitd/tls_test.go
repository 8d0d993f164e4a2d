package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// testCA is a certificate authority made up by a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// issue returns a PEM certificate and key signed by ca: a server
// certificate for 127.0.0.1, or a client certificate.
func (ca *testCA) issue(t *testing.T, serial int64, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.Subject.CommonName = "ratelimitd"
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func (ca *testCA) clientCert(t *testing.T, serial int64) tls.Certificate {
	t.Helper()
	c, k := ca.issue(t, serial, false)
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// replaceFile replaces path with data the way an agent rotating
// certificates does: a new file renamed over the old one.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// runServing is runInProcess returning the whole "serving" log line.
func runServing(t *testing.T, environ map[string]string) (serving map[string]any, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, nil, env(environ), io.Discard, pw)
		pw.Close()
	}()
	lines := newLogLines()
	go func() { // ends when run returns and closes pw
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines.add(sc.Text())
		}
		lines.end()
	}()
	serving, _ = lines.await(t, 0, `"serving"`, msgIs("serving"))
	return serving, func() int {
		cancel()
		select {
		case c := <-code:
			return c
		case <-time.After(patience):
			t.Fatal("run did not return after ctx was done")
			return -1
		}
	}
}

// tlsCall makes one ShouldRateLimit call over TLS, verifying the server
// against roots and presenting client (when not nil), on a new connection.
func tlsCall(addr string, roots *x509.CertPool, client *tls.Certificate) error {
	c := &tls.Config{RootCAs: roots}
	if client != nil {
		c.Certificates = []tls.Certificate{*client}
	}
	return callWith(addr, credentials.NewTLS(c))
}

func callWith(addr string, creds credentials.TransportCredentials) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	_, err = rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx,
		&rlsv3.RateLimitRequest{Domain: "e2e", Descriptors: []*ratelimitv3.RateLimitDescriptor{descriptor("version", "tls")}})
	return err
}

// servedSerial is the serial number of the certificate addr serves to a
// new TLS connection (ALPN h2, as gRPC clients ask), or -1 when the
// handshake fails.
func servedSerial(addr string, roots *x509.CertPool, client *tls.Certificate) int64 {
	c := &tls.Config{RootCAs: roots, NextProtos: []string{"h2"}}
	if client != nil {
		c.Certificates = []tls.Certificate{*client}
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: patience}, "tcp", addr, c)
	if err != nil {
		return -1
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestTLSListeners(t *testing.T) {
	dir := t.TempDir()
	cfgDir := configDir(t, e2eConfig(1))
	ca := newTestCA(t, "server and client CA")
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "client-ca.crt")
	cert, key := ca.issue(t, 100, true)
	replaceFile(t, certFile, cert)
	replaceFile(t, keyFile, key)
	replaceFile(t, caFile, ca.pem)

	serving, stop := runServing(t, map[string]string{
		"RATELIMITD_GRPC_ADDR":     "127.0.0.1:0",
		"RATELIMITD_HTTP_ADDR":     "127.0.0.1:0",
		"RATELIMITD_CONFIG":        cfgDir,
		"RATELIMITD_LOG_FORMAT":    "json",
		"RATELIMITD_TLS_CERT":      certFile,
		"RATELIMITD_TLS_KEY":       keyFile,
		"RATELIMITD_TLS_CLIENT_CA": caFile,
	})
	grpcAddr, _ := serving["grpc_addr"].(string)
	httpAddr, _ := serving["http_addr"].(string)
	if serving["tls"] != true || serving["mtls"] != true || serving["http_tls"] != true {
		t.Errorf("serving line %v, want tls, mtls and http_tls true", serving)
	}
	client := ca.clientCert(t, 7)

	t.Run("grpc needs a client certificate", func(t *testing.T) {
		if err := tlsCall(grpcAddr, ca.pool(), &client); err != nil {
			t.Errorf("with a client certificate: %v", err)
		}
		if err := tlsCall(grpcAddr, ca.pool(), nil); status.Code(err) != codes.Unavailable {
			t.Errorf("without a client certificate: %v, want UNAVAILABLE (handshake refused)", err)
		}
		other := newTestCA(t, "unknown CA").clientCert(t, 8)
		if err := tlsCall(grpcAddr, ca.pool(), &other); status.Code(err) != codes.Unavailable {
			t.Errorf("with a certificate of another CA: %v, want UNAVAILABLE", err)
		}
		if err := callWith(grpcAddr, insecure.NewCredentials()); status.Code(err) != codes.Unavailable {
			t.Errorf("plaintext: %v, want UNAVAILABLE", err)
		}
	})
	t.Run("http is TLS without client certificates", func(t *testing.T) {
		hc := &http.Client{Timeout: patience, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool()}}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get("https://" + httpAddr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.TLS == nil {
			t.Errorf("GET https /readyz: %d (tls %v)", resp.StatusCode, resp.TLS != nil)
		}
		if got := servedSerial(httpAddr, ca.pool(), nil); got != 100 {
			t.Errorf("http serves serial %d, want 100", got)
		}
	})
	t.Run("a new key pair on disk is served without a restart", func(t *testing.T) {
		if got := servedSerial(grpcAddr, ca.pool(), &client); got != 100 {
			t.Fatalf("grpc serves serial %d before the change, want 100", got)
		}
		cert, key := ca.issue(t, 200, true)
		replaceFile(t, keyFile, key) // key first: a pair that does not match keeps the old one
		replaceFile(t, certFile, cert)
		eventually(t, "grpc to serve serial 200", func() bool { return servedSerial(grpcAddr, ca.pool(), &client) == 200 })
		eventually(t, "http to serve serial 200", func() bool { return servedSerial(httpAddr, ca.pool(), nil) == 200 })
		if err := tlsCall(grpcAddr, ca.pool(), &client); err != nil {
			t.Errorf("call after the change: %v", err)
		}
	})
	t.Run("a new client CA on disk applies without a restart", func(t *testing.T) {
		ca2 := newTestCA(t, "next client CA")
		client2 := ca2.clientCert(t, 9)
		replaceFile(t, caFile, ca2.pem)
		eventually(t, "a client of the new CA to be let in", func() bool { return tlsCall(grpcAddr, ca.pool(), &client2) == nil })
		if err := tlsCall(grpcAddr, ca.pool(), &client); status.Code(err) != codes.Unavailable {
			t.Errorf("client of the replaced CA: %v, want UNAVAILABLE", err)
		}
	})
	if code := stop(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

func TestTLSPlainHTTP(t *testing.T) {
	dir := t.TempDir()
	cfgDir := configDir(t, e2eConfig(1))
	ca := newTestCA(t, "CA")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	cert, key := ca.issue(t, 100, true)
	replaceFile(t, certFile, cert)
	replaceFile(t, keyFile, key)
	serving, stop := runServing(t, map[string]string{
		"RATELIMITD_GRPC_ADDR":  "127.0.0.1:0",
		"RATELIMITD_HTTP_ADDR":  "127.0.0.1:0",
		"RATELIMITD_CONFIG":     cfgDir,
		"RATELIMITD_LOG_FORMAT": "json",
		"RATELIMITD_TLS_CERT":   certFile,
		"RATELIMITD_TLS_KEY":    keyFile,
		"RATELIMITD_HTTP_TLS":   "false",
	})
	grpcAddr, _ := serving["grpc_addr"].(string)
	httpAddr, _ := serving["http_addr"].(string)
	// No client CA: TLS without client certificates.
	if err := tlsCall(grpcAddr, ca.pool(), nil); err != nil {
		t.Errorf("grpc over TLS: %v", err)
	}
	if st, body := get(t, httpAddr, "/readyz"); st != http.StatusOK {
		t.Errorf("plain GET /readyz with -http-tls=false: %d %s", st, body)
	}
	if code := stop(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

func TestTLSSettings(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "CA")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	cert, key := ca.issue(t, 1, true)
	replaceFile(t, certFile, cert)
	replaceFile(t, keyFile, key)
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"cert without key", []string{"-tls-cert", certFile}, "-tls-cert and -tls-key go together"},
		{"client CA without cert", []string{"-tls-client-ca", certFile}, "-tls-client-ca needs -tls-cert"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			if code := run(context.Background(), tt.args, env(nil), io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tt.want)
			}
		})
	}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"missing key file", []string{"-tls-cert", certFile, "-tls-key", filepath.Join(dir, "nope")}, "-tls-cert, -tls-key"},
		{"cert and key do not match", []string{"-tls-cert", certFile, "-tls-key", writeKey(t, dir, ca)}, "-tls-cert, -tls-key"},
		{"client CA without PEM", []string{"-tls-cert", certFile, "-tls-key", keyFile, "-tls-client-ca", keyFile}, "-tls-client-ca: no PEM certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// A certificate that does not load fails the start (exit 1)
			// before any listener opens.
			var stderr strings.Builder
			args := append([]string{"-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-config", "../../examples/quickstart/config"}, tt.args...)
			if code := run(context.Background(), args, env(nil), io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr.String(), tt.want)
			}
		})
	}
}

// writeKey writes the key of a fresh pair (so matching no certificate of
// the test) and returns its path.
func writeKey(t *testing.T, dir string, ca *testCA) string {
	t.Helper()
	_, key := ca.issue(t, 2, true)
	path := filepath.Join(dir, "other.key")
	replaceFile(t, path, key)
	return path
}

// TestCertReloaderKeepsTheLastGoodPair: a pair that does not load (a key
// replaced before its certificate) keeps serving the previous one, and the
// complete new pair is picked up once it is there.
func TestCertReloaderKeepsTheLastGoodPair(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "CA")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	cert, key := ca.issue(t, 1, true)
	replaceFile(t, certFile, cert)
	replaceFile(t, keyFile, key)
	r, err := newCertReloader(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	serial := func() int64 { return r.get().Leaf.SerialNumber.Int64() }
	cert2, key2 := ca.issue(t, 2, true)
	replaceFile(t, keyFile, append(key2, '\n')) // the size changes: the stamp does
	if got := serial(); got != 1 {
		t.Errorf("serial %d with a key that does not match, want the last good 1", got)
	}
	replaceFile(t, certFile, cert2)
	if got := serial(); got != 2 {
		t.Errorf("serial %d once the new pair is complete, want 2", got)
	}
}
