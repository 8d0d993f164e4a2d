package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// readiness answers /readyz for a remote backend: it runs check (a Redis
// PING) under timeout and keeps the outcome for ttl, so that frequent
// probes, from several kubelets or from /metrics, cost one PING per ttl. It
// logs when the outcome changes. Calls are serialised: a probe that arrives
// while a check runs waits for it and shares its outcome.
type readiness struct {
	what    string // "redis"
	check   func(context.Context) error
	ttl     time.Duration
	timeout time.Duration
	now     func() time.Time
	log     *slog.Logger

	mu      sync.Mutex
	checked time.Time // zero: never
	err     error
}

// Ready returns nil when the last check, at most ttl old, succeeded, and
// otherwise an error naming what is unreachable.
func (r *readiness) Ready(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.checked.IsZero() && r.now().Sub(r.checked) < r.ttl {
		return r.err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
	err := r.check(cctx)
	cancel()
	if err != nil {
		err = fmt.Errorf("%s unreachable: %w", r.what, err)
	}
	switch {
	case err != nil && (r.err == nil || r.checked.IsZero()):
		r.log.Warn("backend not ready", "backend", r.what, "error", err)
	case err == nil && r.err != nil:
		r.log.Info("backend ready", "backend", r.what)
	}
	r.checked, r.err = r.now(), err
	return err
}

// up is 1 when Ready succeeds, else 0: the ratelimitd_redis_up gauge.
func (r *readiness) up() float64 {
	if r.Ready(context.Background()) != nil {
		return 0
	}
	return 1
}
