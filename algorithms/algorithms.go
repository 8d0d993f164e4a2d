// Package algorithms holds the pure decision math of ratelimitd.
//
// Every algorithm is a function of (limit, state, now, hits) that returns a
// decision and the state after it. Nothing here does I/O, logs, keeps
// metrics or reads a clock: time is an argument, in integer microseconds
// since the Unix epoch, so that the same inputs always give the same output
// and so that the Lua twins in backends/redis can compute the very same
// numbers (Lua numbers are doubles: microseconds fit exactly, nanoseconds do
// not).
//
// This package imports nothing but the standard library.
package algorithms

// Microseconds per common unit, for callers that build limits.
const (
	Microsecond int64 = 1
	Millisecond       = 1000 * Microsecond
	Second            = 1000 * Millisecond
	Minute            = 60 * Second
	Hour              = 60 * Minute
	Day               = 24 * Hour
)

// Algorithm names a decision rule.
type Algorithm uint8

const (
	// FixedWindow counts hits in epoch-aligned windows of Limit.Period, as
	// envoyproxy/ratelimit does: the window containing now starts at
	// now - now%Period.
	FixedWindow Algorithm = iota
)

// String returns the algorithm's name as written in config files.
func (a Algorithm) String() string {
	switch a {
	case FixedWindow:
		return "fixed_window"
	}
	return "unknown"
}

// Limit is what one bucket allows. The zero Limit admits nothing.
type Limit struct {
	Algorithm Algorithm
	// Rate is the number of hits allowed per Period.
	Rate int64
	// Period is the window length in microseconds; it must be > 0.
	Period int64
}

// State is the persistent state of one bucket. Its meaning depends on the
// algorithm; the zero State is a bucket that has never been used.
//
// FixedWindow: A is the start of the window the count belongs to, B is the
// count of hits taken in it.
type State struct {
	A, B int64
}

// Decision is the outcome of one call.
type Decision struct {
	// Allowed reports whether the hits fit in the limit.
	Allowed bool
	// Remaining is what can still be spent now, after this call's hits;
	// 0 when the hits are refused (as envoyproxy/ratelimit reports
	// limit_remaining). It is never below 0 nor above the limit.
	Remaining int64
	// ResetAfter is the time in microseconds until the bucket is whole
	// again (for a fixed window: until the window ends); always > 0.
	ResetAfter int64
	// RetryAfter is the time in microseconds until a call with the same
	// hits could be allowed: 0 when Allowed, -1 when no call with these
	// hits can ever be allowed (hits > Rate).
	RetryAfter int64
	// Count is the amount used after this call (for fixed windows the
	// counter, which exceeds Rate when over-limit hits are charged).
	Count int64
}

// Decide applies hits to a bucket at now and returns the decision and the
// state with the hits taken. Hits > 0 consume, 0 only checks, < 0 give
// budget back (refunds never raise the budget above the limit).
//
// The returned state always includes the hits, also when the decision
// refuses them: a backend that charges over-limit hits (envoyproxy/ratelimit's
// behaviour) stores it, one that charges nothing on refusal keeps the old
// state. A state from a past window is treated as empty.
//
// Hits 0 and refunds are decisions too: they are refused when the count is
// above Rate (after over-limit hits were charged, or the limit was lowered),
// as envoyproxy/ratelimit reports OVER_LIMIT for them. With Rate 0 every
// call with hits > 0 is refused.
func Decide(l Limit, s State, now, hits int64) (Decision, State) {
	switch l.Algorithm {
	default: // FixedWindow
		return fixedWindow(l, s, now, hits)
	}
}

// Expiry returns the instant (microseconds) after which the state of a
// bucket with this limit is worthless and may be dropped: from then on
// Decide treats it as the zero State.
func Expiry(l Limit, s State) int64 {
	switch l.Algorithm {
	default: // FixedWindow
		return fixedWindowExpiry(l, s)
	}
}
