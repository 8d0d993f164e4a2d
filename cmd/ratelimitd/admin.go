package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ratelimitd/ratelimitd/overrides"
	"github.com/ratelimitd/ratelimitd/server"
)

// startOverrides starts the watcher of the override store: every replica
// polls it every -overrides-poll, so that a change made through any replica
// applies everywhere within that time. A store that cannot be read at start
// fails the start when it is the file (a corrupt file must not be served
// as "no overrides"), and only logs when it is Redis, which ratelimitd
// never waits for: the watcher then starts empty and retries at every poll.
func startOverrides(ctx context.Context, s settings, st overrides.Store, log *slog.Logger) (*overrides.Watcher, error) {
	o := overrides.WatcherOptions{
		Interval:   s.overridesPoll,
		OnError:    func(err error) { log.Warn("override store", "error", err.Error()) },
		StartEmpty: s.backend == "redis",
	}
	w, err := overrides.Watch(ctx, st, o)
	if err != nil {
		return nil, fmt.Errorf("overrides: %w", err)
	}
	return w, nil
}

// overrideStoreName describes where overrides are kept, for the log.
func overrideStoreName(s settings) string {
	if s.backend == "redis" {
		return "redis hash " + s.keyPrefix + s.overridesKey
	}
	if abs, err := filepath.Abs(s.overridesFile); err == nil {
		return "file " + abs
	}
	return "file " + s.overridesFile
}

// adminTokens reads -admin-token-file; nil when it is not set.
func adminTokens(s settings) ([]server.AdminToken, error) {
	if s.adminTokenFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(s.adminTokenFile)
	if err != nil {
		return nil, fmt.Errorf("-admin-token-file: %w", err)
	}
	toks, err := server.ParseAdminTokens(b)
	if err != nil {
		return nil, fmt.Errorf("-admin-token-file %s: %w", s.adminTokenFile, err)
	}
	return toks, nil
}

// adminServer returns the gRPC server of the admin API's own listener
// (-admin-addr), with TLS, and mTLS with -admin-client-ca, when set. The
// certificate is read at every handshake's need through
// GetCertificate, so a renewed certificate on disk applies to new
// connections (it is loaded again when the files change).
func adminServer(s settings) (*grpc.Server, error) {
	if s.adminTLSCert == "" {
		return grpc.NewServer(), nil
	}
	certs, err := newCertReloader(s.adminTLSCert, s.adminTLSKey)
	if err != nil {
		return nil, fmt.Errorf("-admin-tls-cert, -admin-tls-key: %w", err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get}
	if s.adminClientCA != "" {
		pem, err := os.ReadFile(s.adminClientCA)
		if err != nil {
			return nil, fmt.Errorf("-admin-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-admin-client-ca: no PEM certificate in %s", s.adminClientCA)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return grpc.NewServer(grpc.Creds(credentials.NewTLS(c))), nil
}

// certReloader serves a key pair from disk, loading it again when either
// file's modification time or size changed since the last load.
type certReloader struct {
	certFile, keyFile string
	state             atomic.Pointer[loadedCert]
}

type loadedCert struct {
	cert  *tls.Certificate
	stamp string
}

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) load() error {
	stamp, err := fileStamp(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.state.Store(&loadedCert{cert: &cert, stamp: stamp})
	return nil
}

// get is tls.Config.GetCertificate: the current pair, reloaded first when
// the files changed. A pair that fails to load keeps the last good one.
func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cur := r.state.Load()
	if stamp, err := fileStamp(r.certFile, r.keyFile); err == nil && stamp != cur.stamp {
		if r.load() == nil {
			cur = r.state.Load()
		}
	}
	return cur.cert, nil
}

// fileStamp summarizes the modification times and sizes of files.
func fileStamp(files ...string) (string, error) {
	stamp := ""
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return stamp, nil
}

// listenAdmin opens -admin-addr.
func listenAdmin(s settings) (net.Listener, error) {
	if s.adminAddr == "" {
		return nil, errors.New("no admin address")
	}
	return net.Listen("tcp", s.adminAddr)
}
