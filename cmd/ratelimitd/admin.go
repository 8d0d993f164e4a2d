package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

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
// key pair and the client CAs are reloaded from disk when the files change
// (see tls.go), so a renewed certificate applies to new connections.
func adminServer(s settings) (*grpc.Server, error) {
	if s.adminTLSCert == "" {
		return grpc.NewServer(), nil
	}
	certs, err := newCertReloader(s.adminTLSCert, s.adminTLSKey)
	if err != nil {
		return nil, fmt.Errorf("-admin-tls-cert, -admin-tls-key: %w", err)
	}
	c, err := serverTLS(certs, s.adminClientCA)
	if err != nil {
		return nil, fmt.Errorf("-admin-client-ca: %w", err)
	}
	return grpc.NewServer(grpc.Creds(credentials.NewTLS(c))), nil
}

// listenAdmin opens -admin-addr.
func listenAdmin(s settings) (net.Listener, error) {
	if s.adminAddr == "" {
		return nil, errors.New("no admin address")
	}
	return net.Listen("tcp", s.adminAddr)
}
