// Package resilient wraps any backends.Backend with the behaviour a remote
// store needs when it fails or is slow: a circuit breaker (Breaker), a
// fallback decision (Fallback) and a local cache of buckets known to be over
// their limit (Cache). Each wrapper is itself a backends.Backend, so they
// compose; cmd/ratelimitd stacks them as
//
//	Fallback( Cache( Breaker( redis ) ) )
//
// The order matters. The cache sits outside the breaker so that a bucket
// known to be refused is still refused exactly while Redis is down, and
// inside the fallback so that a made-up fallback refusal (deny) is never
// learnt as a real one. The breaker sits next to the store so that it sees
// only the store's own failures.
//
// Every wrapper also implements backends.Resetter and backends.Memo by
// forwarding them to the backend it wraps (through the breaker, like
// Apply), or failing with an error wrapping errors.ErrUnsupported when that
// backend lacks them; see extras.go.
//
// Every wrapper is safe for concurrent use. Close closes the wrapped
// backend (and anything else the wrapper owns, such as Fallback's local
// backend) and stops the wrapper's goroutines.
package resilient

import (
	"context"
	"errors"

	"github.com/ratelimitd/ratelimitd/backends"
)

// Pinger is implemented by backends that can check that their store answers
// without deciding anything (the Redis backend's PING). The Breaker probes
// with it when the wrapped backend has it.
type Pinger interface {
	// Ping returns nil when the store answered within ctx.
	Ping(ctx context.Context) error
}

// isFailure reports whether err, returned by a call made under ctx, says
// that the backend could not decide: an error wrapping
// backends.ErrUnavailable, unless the caller itself gave up (a cancelled
// ctx is the caller's doing, not the backend's).
func isFailure(ctx context.Context, err error) bool {
	return err != nil && errors.Is(err, backends.ErrUnavailable) && !errors.Is(ctx.Err(), context.Canceled)
}
