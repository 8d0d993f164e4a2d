package resilient

// Design. The breaker has three states. Closed: every call goes to the
// wrapped backend, and consecutive failures (errors wrapping
// backends.ErrUnavailable; a success resets the count) are counted. At
// BreakerOptions.Failures of them it opens: from then on every call is
// answered at once with ErrOpen, so that callers do not queue on a store
// that is down (each would otherwise spend its whole deadline waiting).
// Once ProbeInterval has passed since it opened, the first call to arrive
// turns it half-open and starts a single probe; while the probe runs, every
// other call is still answered with ErrOpen. A probe that succeeds closes
// the breaker; one that fails opens it again for another ProbeInterval.
//
// The probe is the wrapped backend's Ping when it has one (Pinger), run in
// a goroutine the breaker owns, under ProbeTimeout rather than the caller's
// deadline: after a restart, reconnecting (a TCP and maybe a TLS handshake)
// can take longer than the few milliseconds a rate-limit call may wait, and
// a probe that could never succeed would keep the breaker open forever. The
// connection it opens stays in the client's pool for the calls after it.
// Without Pinger, the probe is the caller's own Apply. Probes need traffic:
// an idle open breaker stays open until the next call, which is harmless,
// since nobody is waiting on it (readiness pings the store on its own).

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
)

// Breaker defaults, for the zero BreakerOptions.
const (
	DefaultBreakerFailures = 5
	DefaultProbeInterval   = time.Second
	DefaultProbeTimeout    = time.Second
)

// ErrOpen is returned by Breaker.Apply while the breaker is open: the call
// was not sent to the backend. It wraps backends.ErrUnavailable, so the
// server answers UNAVAILABLE and a Fallback decides in its place.
var ErrOpen = fmt.Errorf("resilient: circuit breaker open: %w", backends.ErrUnavailable)

// State is a Breaker's state.
type State uint8

const (
	// Closed lets every call through.
	Closed State = iota
	// Open answers every call with ErrOpen.
	Open
	// HalfOpen lets one probe through and answers the other calls with
	// ErrOpen.
	HalfOpen
)

// String returns "closed", "open" or "half_open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half_open"
	}
	return "unknown"
}

// BreakerOptions configure a Breaker. The zero value takes every default.
type BreakerOptions struct {
	// Failures is the number of consecutive failed calls that opens the
	// breaker; default DefaultBreakerFailures.
	Failures int
	// ProbeInterval is how long the breaker stays open before it probes;
	// default DefaultProbeInterval.
	ProbeInterval time.Duration
	// ProbeTimeout bounds a Ping probe; default DefaultProbeTimeout. An
	// Apply probe keeps its caller's deadline.
	ProbeTimeout time.Duration
	// Now is the breaker's clock; default time.Now. Decisions still use
	// Apply's now: this clock only times the open state.
	Now func() time.Time
}

// BreakerStats is a snapshot of a Breaker, for metrics.
type BreakerStats struct {
	State State
	// ConsecutiveFailures is the current run of failed calls.
	ConsecutiveFailures int64
	// Opens counts the times the breaker opened from closed.
	Opens int64
	// Rejected counts the calls answered with ErrOpen.
	Rejected int64
	// Probes counts the probes started; ProbeFailures those that failed.
	Probes, ProbeFailures int64
}

// Breaker is a circuit breaker around a backend. Create it with
// NewBreaker. It is safe for concurrent use.
type Breaker struct {
	inner  backends.Backend
	pinger Pinger // inner's, or nil
	o      BreakerOptions

	mu       sync.Mutex
	state    State
	fails    int64
	openedAt time.Time // when the breaker last opened or a probe failed
	closed   bool      // Close was called: start no more probes

	opens, rejected, probes, probeFailures atomic.Int64

	ctx    context.Context // cancelled by Close, ends a running Ping probe
	cancel context.CancelFunc
	wg     sync.WaitGroup // the running Ping probe
}

var _ backends.Backend = (*Breaker)(nil)

// NewBreaker returns a closed Breaker around inner. Options out of range
// (<= 0) take their defaults.
func NewBreaker(inner backends.Backend, o BreakerOptions) *Breaker {
	if o.Failures <= 0 {
		o.Failures = DefaultBreakerFailures
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = DefaultProbeInterval
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = DefaultProbeTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	b := &Breaker{inner: inner, o: o}
	b.pinger, _ = inner.(Pinger)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b
}

// Apply calls the wrapped backend, or answers ErrOpen at once while the
// breaker is open.
func (b *Breaker) Apply(ctx context.Context, now int64, mode backends.Mode, reqs []backends.Request, out []algorithms.Decision) error {
	probe, err := b.admit()
	if err != nil {
		return err
	}
	err = b.inner.Apply(ctx, now, mode, reqs, out)
	b.record(ctx, probe, err)
	return err
}

// admit decides whether a call goes through, and whether it is the probe.
func (b *Breaker) admit() (probe bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case Closed:
		return false, nil
	case Open:
		if b.o.Now().Sub(b.openedAt) >= b.o.ProbeInterval && !b.closed {
			b.state = HalfOpen
			b.probes.Add(1)
			if b.pinger == nil {
				return true, nil
			}
			b.wg.Add(1)
			go b.ping()
		}
	}
	b.rejected.Add(1)
	return false, ErrOpen
}

// ping is the Ping probe, run in its own goroutine.
func (b *Breaker) ping() {
	defer b.wg.Done()
	ctx, cancel := context.WithTimeout(b.ctx, b.o.ProbeTimeout)
	err := b.pinger.Ping(ctx)
	cancel()
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.probeFailures.Add(1)
		b.state = Open
		b.openedAt = b.o.Now()
		return
	}
	b.state = Closed
	b.fails = 0
}

// record accounts for the outcome of a call that went through.
func (b *Breaker) record(ctx context.Context, probe bool, err error) {
	failed := isFailure(ctx, err)
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case probe && failed:
		b.probeFailures.Add(1)
		b.state = Open
		b.openedAt = b.o.Now()
	case probe && err != nil && errors.Is(ctx.Err(), context.Canceled):
		// The caller went away: nothing learnt. Probe again at the next call.
		b.state = Open
	case probe:
		// The backend answered (an error that is not ErrUnavailable is
		// still an answer): close.
		b.state = Closed
		b.fails = 0
	case failed:
		if b.state != Closed {
			return // a call admitted before the breaker opened
		}
		b.fails++
		if b.fails >= int64(b.o.Failures) {
			b.state = Open
			b.openedAt = b.o.Now()
			b.opens.Add(1)
		}
	case err == nil:
		b.fails = 0
	}
}

// Stats returns a snapshot of the breaker's state and counters.
func (b *Breaker) Stats() BreakerStats {
	b.mu.Lock()
	st := BreakerStats{State: b.state, ConsecutiveFailures: b.fails}
	b.mu.Unlock()
	st.Opens = b.opens.Load()
	st.Rejected = b.rejected.Load()
	st.Probes = b.probes.Load()
	st.ProbeFailures = b.probeFailures.Load()
	return st
}

// Close stops a running probe, waits for it, and closes the wrapped backend.
func (b *Breaker) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	return b.inner.Close()
}
