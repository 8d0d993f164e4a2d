package redis_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/backendtest"
	"github.com/ratelimitd/ratelimitd/backends/redis"
	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

// TestTLS connects to a TLS-only Redis that requires a client certificate:
// with the CA and the client certificate the backend works; without the
// certificate, or verifying another server name, every call fails with
// ErrUnavailable.
func TestTLS(t *testing.T) {
	s := redistest.TLSStandalone(t)
	b := newBackend(t, redis.Options{Addrs: []string{s.Addr}, TLS: s.Config(), ClientTime: true})
	if d := apply(t, b, backendtest.Base, aon, req("tls", perMinute(2), 1)); !d[0].Allowed || d[0].Count != 1 {
		t.Fatalf("over TLS: %+v", d[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Ping(ctx); err != nil {
		t.Errorf("Ping over TLS: %v", err)
	}

	noCert := s.Config()
	noCert.Certificates = nil
	wrongName := s.Config()
	wrongName.ServerName = "redis.example.com"
	for _, tc := range []struct {
		name string
		o    redis.Options
	}{
		{"no client certificate", redis.Options{TLS: noCert}},
		{"wrong server name", redis.Options{TLS: wrongName}},
		{"plain TCP", redis.Options{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Addrs, tc.o.ClientTime = []string{s.Addr}, true
			b := newBackend(t, tc.o)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := b.Apply(ctx, backendtest.Base, aon, []backends.Request{req("tls", perMinute(2), 1)}, make([]algorithms.Decision, 1))
			if !errors.Is(err, backends.ErrUnavailable) {
				t.Errorf("Apply: %v, want ErrUnavailable", err)
			}
			if err := b.Ping(ctx); !errors.Is(err, backends.ErrUnavailable) {
				t.Errorf("Ping: %v, want ErrUnavailable", err)
			}
		})
	}
	// The failed attempts charged nothing.
	if d := apply(t, b, backendtest.Base, aon, req("tls", perMinute(2), 0)); d[0].Count != 1 {
		t.Errorf("after the failed attempts: count %d, want 1", d[0].Count)
	}
}
