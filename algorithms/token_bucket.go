package algorithms

// TokenBucket and GCRA share their math: a bucket of capacity C (Burst, or
// Rate when Burst is 0) whose used level drains at Rate per Period. A hit
// fits when the level after it is at most C. They differ in what they
// store: the token bucket its level and the instant of its last update,
// GCRA the theoretical arrival time TAT (the instant the level reaches 0),
// from which the level is (TAT - now) × Rate / Period. With calls at
// non-decreasing instants they give identical decisions (a fuzz test
// checks it).
//
// Integer math. Time runs on a grid of ticks of u µs (see ticks; u is 1 µs
// unless Rate × Period is very large) and a period is p ticks. Levels are
// kept in units of 1/p hit, so a hit is p units and one tick drains Rate
// units: every quantity is an exact integer and the largest (C × p, and
// sums of two such) stays below 2^52. Drain happens at tick boundaries
// (floor(now/u)); with u = 1 the bucket is exact.

// bucket is a TokenBucket or GCRA limit in integer units.
type bucket struct {
	rate, capacity int64 // hits per period, hits when full
	u, p           int64 // tick in µs, period in ticks
	capP           int64 // capacity × p: the level of an empty bucket
}

func newBucket(l Limit) bucket {
	rate := clampAmount(l.Rate)
	capacity := rate
	if l.Burst > 0 {
		capacity = clampAmount(l.Burst)
	}
	if rate == 0 { // the zero Limit admits nothing
		capacity = 0
	}
	u, p := ticks(max(rate, capacity), max(l.Period, 1))
	return bucket{rate: rate, capacity: capacity, u: u, p: p, capP: capacity * p}
}

// drain is the level left from level after e ticks (>= 0).
func (b bucket) drain(level, e int64) int64 {
	if level <= 0 || b.rate == 0 || e <= 0 {
		return max(level, 0)
	}
	if e >= ceilDiv(level, b.rate) {
		return 0
	}
	return level - e*b.rate
}

// decide applies hits to a bucket at level (0..capP) at now, tick n, and
// returns the decision and the level to store. Refused hits leave the
// bucket empty (level capP): a charging backend stores that, never a debt.
// Remaining, ResetAfter and RetryAfter of a refusal describe the bucket
// without the refused hits.
func (b bucket) decide(level, n, now, hits int64) (Decision, int64) {
	var d Decision
	after := level
	switch {
	case hits > b.capacity:
		d.RetryAfter = -1
		after = b.capP
	case hits >= 0:
		if level+hits*b.p <= b.capP {
			d.Allowed = true
			after = level + hits*b.p
		} else {
			// The level must first drain to capP - hits×p.
			k := ceilDiv(level-(b.capP-hits*b.p), b.rate)
			d.RetryAfter = (n+k)*b.u - now
			after = b.capP
		}
	default: // a refund: never below empty use
		d.Allowed = true
		if hits <= -ceilDiv(level, b.p) { // not -hits: MinInt64 has no negation
			after = 0
		} else {
			after = level + hits*b.p
		}
	}
	shown := level
	if d.Allowed {
		shown = after
		d.Remaining = (b.capP - after) / b.p
	}
	if shown > 0 {
		d.ResetAfter = (n+ceilDiv(shown, b.rate))*b.u - now
	}
	d.Count = ceilDiv(after, max(b.p, 1))
	return d, after
}

// tokenBucket implements TokenBucket. State: A the instant of the last
// update, B the level, C the scale p it is counted in. A call stamped
// before A (a late caller) drains nothing and keeps A.
func tokenBucket(l Limit, s State, now, hits int64) (Decision, State) {
	b := newBucket(l)
	n := floorDiv(now, b.u)
	level := b.tokenLevel(s, n)
	d, after := b.decide(level, n, now, hits)
	return d, State{A: max(now, s.A), B: after, C: b.p}
}

// tokenLevel is the level of s at tick n. A state counted in another scale
// (the limit changed) is converted in whole hits, rounded up.
func (b bucket) tokenLevel(s State, n int64) int64 {
	if s.B <= 0 || s.C <= 0 {
		return 0
	}
	level := s.B
	if s.C != b.p {
		level = min(ceilDiv(s.B, s.C), b.capacity) * b.p
	}
	return min(b.drain(level, n-floorDiv(s.A, b.u)), b.capP)
}

// tokenBucketExpiry is the instant the stored level drains to 0.
func tokenBucketExpiry(l Limit, s State) int64 {
	b := newBucket(l)
	if s.B <= 0 || s.C <= 0 {
		return s.A
	}
	if b.rate == 0 {
		return maxTime
	}
	level := b.tokenLevel(s, floorDiv(s.A, b.u))
	return (floorDiv(s.A, b.u) + ceilDiv(level, b.rate)) * b.u
}

// gcra implements GCRA. State: A the theoretical arrival time TAT rounded
// down to a tick, B the rest of it in units of 1/Rate tick (so TAT = A +
// B/Rate ticks and the level at tick n is (A/u - n) × Rate + B), C the
// scale. A TAT from another scale (the limit changed) is rounded up to a
// tick of the new one, its sub-tick part dropped.
func gcra(l Limit, s State, now, hits int64) (Decision, State) {
	b := newBucket(l)
	n := floorDiv(now, b.u)
	level := b.gcraLevel(s, n)
	d, after := b.decide(level, n, now, hits)
	ns := State{A: n * b.u, C: b.p}
	if after > 0 && b.rate > 0 {
		ns.A = (n + after/b.rate) * b.u
		ns.B = after % b.rate
	}
	return d, ns
}

// gcraLevel is the level of s at tick n.
func (b bucket) gcraLevel(s State, n int64) int64 {
	if s.C <= 0 || b.rate == 0 {
		return 0
	}
	tat, rest := floorDiv(s.A, b.u), min(max(s.B, 0), b.rate-1)
	if s.C != b.p {
		tat, rest = floorDiv(s.A+b.u-1, b.u), 0
	}
	d := tat - n
	switch {
	case d < 0:
		return 0
	case d > ceilDiv(b.capP, b.rate):
		return b.capP
	}
	return min(d*b.rate+rest, b.capP)
}

// gcraExpiry is the theoretical arrival time, rounded up to a tick.
func gcraExpiry(l Limit, s State) int64 {
	if s.B > 0 {
		return s.A + newBucket(l).u
	}
	return s.A
}
