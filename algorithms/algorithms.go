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

// MaxAmount bounds the rates, capacities and hits that the sliding window,
// token bucket, GCRA and concurrency algorithms compute with: larger values
// are treated as MaxAmount (2^40, about 1.1e12). With it every intermediate
// value of their math stays below 2^53, so the Lua twins, whose numbers are
// doubles, compute the very same integers. FixedWindow has no such bound.
const MaxAmount int64 = 1 << 40

// budget bounds the products of an amount and a number of ticks (see
// ticks): sums of two such products stay below 2^52.
const budget int64 = 1 << 50

// maxTime is the instant of a state that never expires by itself.
const maxTime int64 = 1<<63 - 1

// Algorithm names a decision rule. The numeric values are stable: they are
// stored (Redis) and must not be reordered.
type Algorithm uint8

const (
	// FixedWindow counts hits in epoch-aligned windows of Limit.Period, as
	// envoyproxy/ratelimit does: the window containing now starts at
	// now - now%Period. With Limit.WindowEnd set, the window is the
	// caller's [WindowStart, WindowEnd) instead (calendar alignment).
	FixedWindow Algorithm = iota
	// SlidingWindow is a weighted two-window counter: the count of the
	// current window plus the previous window's count weighted by the share
	// of the previous window still inside a sliding window of one period.
	// See slidingWindow for its error bound.
	SlidingWindow
	// TokenBucket holds Limit.Burst tokens (Rate when Burst is 0) and
	// refills Rate tokens per Period, continuously; a hit takes a token.
	TokenBucket
	// GCRA is the generic cell rate algorithm: one hit every Period/Rate,
	// with a tolerance of Burst hits (Rate when Burst is 0). It decides
	// exactly as TokenBucket does; its state is a theoretical arrival time.
	GCRA
	// Concurrency allows at most Rate hits in flight: positive hits
	// acquire, negative hits release, and every acquisition expires after
	// a lease of Period (between Period and Period·7/6, see concurrency)
	// so that a lost release heals.
	Concurrency
)

// algorithmNames are the names used in config files, by Algorithm value.
var algorithmNames = [...]string{"fixed_window", "sliding_window", "token_bucket", "gcra", "concurrency"}

// String returns the algorithm's name as written in config files.
func (a Algorithm) String() string {
	if int(a) < len(algorithmNames) {
		return algorithmNames[a]
	}
	return "unknown"
}

// ParseAlgorithm returns the algorithm named name (as String writes it).
func ParseAlgorithm(name string) (Algorithm, bool) {
	for i, n := range algorithmNames {
		if n == name {
			return Algorithm(i), true
		}
	}
	return 0, false
}

// Limit is what one bucket allows. The zero Limit admits nothing.
type Limit struct {
	Algorithm Algorithm
	// Rate is the number of hits allowed per Period; for Concurrency the
	// number of hits allowed in flight.
	Rate int64
	// Period is the window length in microseconds; it must be > 0. For
	// TokenBucket and GCRA, the time in which Rate tokens are refilled; for
	// Concurrency, the lease after which an acquisition expires.
	Period int64
	// Burst is the capacity of a TokenBucket or GCRA bucket: the hits a
	// full bucket admits at once. 0 means Rate. Other algorithms ignore it.
	Burst int64
	// WindowStart and WindowEnd, when WindowStart <= now < WindowEnd, are
	// the window containing now for FixedWindow and SlidingWindow, in
	// microseconds, instead of the epoch-aligned one: the caller computes
	// calendar windows (local midnight, Monday, the first of the month in
	// a time zone) at request time, as the algorithms (and their Lua
	// twins) know no time zones. Zero values, or a window that does not
	// contain now, mean epoch alignment on Period. Other algorithms ignore
	// them.
	WindowStart, WindowEnd int64
}

// State is the persistent state of one bucket: a fixed-size value, stored
// by the Redis backend as a list of 8 integers. Its meaning depends on the
// algorithm; the zero State is a bucket that has never been used.
//
// FixedWindow: A is the start of the window the count belongs to, B is the
// count of hits taken in it, C the end of a calendar window (0 when
// epoch-aligned).
//
// SlidingWindow: A is the start of the current window, B its count, C the
// previous window's count, D the end of the current window.
//
// TokenBucket: A is the instant of the last update, B the level used, in
// units of 1/C hits, C the scale (ticks per period, see ticks).
//
// GCRA: A is the theoretical arrival time (a multiple of the tick), B its
// sub-tick part in units of 1/Rate tick, C the scale.
//
// Concurrency: A is the start of the newest lease slot, B..H the
// acquisitions held in it and in the six slots before it (B newest).
type State struct {
	A, B, C, D, E, F, G, H int64
}

// Decision is the outcome of one call.
type Decision struct {
	// Allowed reports whether the hits fit in the limit.
	Allowed bool
	// Remaining is what can still be spent now, after this call's hits;
	// 0 when the hits are refused (as envoyproxy/ratelimit reports
	// limit_remaining). It is never below 0 nor above the limit (the
	// capacity, Burst, for TokenBucket and GCRA).
	Remaining int64
	// ResetAfter is the time in microseconds until the bucket is whole
	// again: for a fixed window until the window ends (always > 0); for
	// the other algorithms until nothing taken so far counts any more (0
	// when the bucket is whole now).
	ResetAfter int64
	// RetryAfter is the time in microseconds until a call with the same
	// hits could be allowed, if no other call comes: 0 when Allowed, -1
	// when no call with these hits can ever be allowed (hits above Rate,
	// or above the capacity for TokenBucket and GCRA).
	RetryAfter int64
	// Count is the amount used after this call: for fixed windows the
	// counter (which exceeds Rate when over-limit hits are charged), for a
	// sliding window the weighted estimate, for TokenBucket and GCRA the
	// tokens missing from a full bucket (rounded up), for Concurrency the
	// hits in flight.
	Count int64
}

// Decide applies hits to a bucket at now and returns the decision and the
// state with the hits taken. Hits > 0 consume, 0 only checks, < 0 give
// budget back (refunds never raise the budget above the limit).
//
// The returned state includes the hits also when the decision refuses
// them, as far as the algorithm can hold them: a backend that charges
// over-limit hits (envoyproxy/ratelimit's behaviour) stores it, one that
// charges nothing on refusal keeps the old state. FixedWindow and
// SlidingWindow count refused hits; TokenBucket and GCRA are left empty by
// them (never in debt); Concurrency never holds a refused acquisition. A
// state from a past window (or lease) is treated as empty.
//
// Hits 0 and refunds are decisions too: they are refused when the usage is
// above the limit after them (after over-limit hits were charged, or the
// limit was lowered), as envoyproxy/ratelimit reports OVER_LIMIT for them.
// Concurrency releases are the exception: always allowed, so that every
// backend stores them. With Rate 0 every call with hits > 0 is refused.
//
// The same inputs always give the same outputs.
func Decide(l Limit, s State, now, hits int64) (Decision, State) {
	switch l.Algorithm {
	case SlidingWindow:
		return slidingWindow(l, s, now, hits)
	case TokenBucket:
		return tokenBucket(l, s, now, hits)
	case GCRA:
		return gcra(l, s, now, hits)
	case Concurrency:
		return concurrency(l, s, now, hits)
	default: // FixedWindow
		return fixedWindow(l, s, now, hits)
	}
}

// Expiry returns the instant (microseconds) after which the state of a
// bucket with this limit is worthless and may be dropped: from then on
// Decide treats it as the zero State (or as one that gives the same
// decisions). Backends use it as the state's time to live.
func Expiry(l Limit, s State) int64 {
	switch l.Algorithm {
	case SlidingWindow:
		return slidingWindowExpiry(l, s)
	case TokenBucket:
		return tokenBucketExpiry(l, s)
	case GCRA:
		return gcraExpiry(l, s)
	case Concurrency:
		return concurrencyExpiry(l, s)
	default: // FixedWindow
		return fixedWindowExpiry(l, s)
	}
}
