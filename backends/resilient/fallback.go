package resilient

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
)

// Policy says what a Fallback answers when its backend cannot decide.
type Policy uint8

const (
	// Unavailable passes the error on: the server answers gRPC UNAVAILABLE
	// and Envoy's failure_mode_deny decides. The default.
	Unavailable Policy = iota
	// Allow answers every bucket allowed (fail open).
	Allow
	// Deny answers every bucket refused (fail closed).
	Deny
	// Local decides from a local backend (the memory backend), each limit
	// (its Rate and its Burst) divided by the number of replicas.
	Local
)

// String returns the policy's setting name.
func (p Policy) String() string {
	switch p {
	case Unavailable:
		return "unavailable"
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	case Local:
		return "local"
	}
	return "unknown"
}

// ParsePolicy is the inverse of Policy.String.
func ParsePolicy(s string) (Policy, error) {
	for _, p := range []Policy{Unavailable, Allow, Deny, Local} {
		if p.String() == s {
			return p, nil
		}
	}
	return 0, errors.New("resilient: unknown fallback policy " + s + " (want unavailable, allow, deny or local)")
}

// FallbackOptions configure a Fallback.
type FallbackOptions struct {
	Policy Policy
	// Local decides under the Local policy; required with it, ignored
	// otherwise. The Fallback owns it: Close closes it.
	Local backends.Backend
	// Replicas divides every limit's Rate and Burst under the Local policy
	// (rounded up; a positive value stays at least 1, a zero one stays 0:
	// a zero Rate blocks, a zero Burst means Rate, already divided), so
	// that replicas deciding on their own admit about the shared limit in
	// total, in a burst as over time. Default 1.
	Replicas int
}

// FallbackStats counts the decisions a Fallback made in its backend's
// place, for metrics.
type FallbackStats struct {
	// Calls is the number of Apply calls answered by the fallback.
	Calls int64
	// Allowed and Refused count the bucket decisions of those calls.
	Allowed, Refused int64
}

// Fallback answers in place of its backend when the backend cannot decide
// (an error wrapping backends.ErrUnavailable, such as a Breaker's ErrOpen or
// a deadline), according to its Policy. Other errors, and every error under
// the Unavailable policy, pass through. Create it with NewFallback; it is
// safe for concurrent use.
type Fallback struct {
	inner    backends.Backend
	policy   Policy
	local    backends.Backend
	replicas int64

	calls, allowed, refused atomic.Int64
}

var _ backends.Backend = (*Fallback)(nil)

// NewFallback returns a Fallback around inner. It fails when the Local
// policy has no Local backend.
func NewFallback(inner backends.Backend, o FallbackOptions) (*Fallback, error) {
	if o.Policy > Local {
		return nil, fmt.Errorf("resilient: new fallback: unknown policy %d", o.Policy)
	}
	if o.Policy == Local && o.Local == nil {
		return nil, errors.New("resilient: new fallback: the local policy needs a local backend")
	}
	if o.Policy != Local {
		o.Local = nil
	}
	return &Fallback{inner: inner, policy: o.Policy, local: o.Local, replicas: int64(max(o.Replicas, 1))}, nil
}

// Apply calls the backend and, when it cannot decide, decides by the policy.
func (f *Fallback) Apply(ctx context.Context, now int64, mode backends.Mode, reqs []backends.Request, out []algorithms.Decision) error {
	err := f.inner.Apply(ctx, now, mode, reqs, out)
	if err == nil || f.policy == Unavailable || !errors.Is(err, backends.ErrUnavailable) {
		return err
	}
	switch f.policy {
	case Allow, Deny:
		for i, r := range reqs {
			d, _ := algorithms.Decide(r.Limit, algorithms.State{}, now, 0) // a fresh bucket's timing
			d.Count, d.RetryAfter = 0, 0
			d.Allowed = f.policy == Allow
			if !d.Allowed {
				d.Remaining, d.RetryAfter = 0, d.ResetAfter
			}
			out[i] = d
		}
	case Local:
		var stack [16]backends.Request
		local := append(stack[:0], reqs...)
		for i := range local {
			local[i].Limit.Rate = f.share(local[i].Limit.Rate)
			local[i].Limit.Burst = f.share(local[i].Limit.Burst)
		}
		// The caller's deadline may be what failed the backend: the local
		// backend does no I/O and needs none.
		if lerr := f.local.Apply(context.WithoutCancel(ctx), now, mode, local, out); lerr != nil {
			return fmt.Errorf("resilient: local fallback: %w (after %w)", lerr, err)
		}
	}
	f.calls.Add(1)
	for i := range reqs {
		if out[i].Allowed {
			f.allowed.Add(1)
		} else {
			f.refused.Add(1)
		}
	}
	return nil
}

// share is one replica's part of n (a Rate or a Burst): n/replicas rounded
// up, at least 1 when n is positive.
func (f *Fallback) share(n int64) int64 {
	if n <= 0 {
		return n
	}
	q := n / f.replicas
	if n%f.replicas != 0 {
		q++
	}
	return q
}

// Stats returns the fallback's counters.
func (f *Fallback) Stats() FallbackStats {
	return FallbackStats{Calls: f.calls.Load(), Allowed: f.allowed.Load(), Refused: f.refused.Load()}
}

// Policy returns the fallback's policy.
func (f *Fallback) Policy() Policy { return f.policy }

// Close closes the backend and the local backend.
func (f *Fallback) Close() error {
	err := f.inner.Close()
	if f.local != nil {
		err = errors.Join(err, f.local.Close())
	}
	return err
}
