package algorithms

import "math"

// fixedWindow implements FixedWindow: a counter per epoch-aligned window.
// Hits are allowed when the counter after them stays at or under Rate,
// exactly as envoyproxy/ratelimit compares the INCRBY result with the limit.
//
// The state's window is the one containing now, with one exception: a state
// from the window right after now's is honoured, and the call counts in that
// window. That happens when callers read their clocks before they queue for
// the bucket, so a call stamped just before a window boundary can arrive
// after one stamped just after it; resetting the newer window would lose its
// hits and admit more than Rate in it. A state further ahead than that (a
// clock stepped back) is treated as empty, as is a state from a past window
// and a later state with nothing counted (the zero State among them).
//
// Arithmetic saturates: no input overflows into a wrong decision.
func fixedWindow(l Limit, s State, now, hits int64) (Decision, State) {
	if inWindow(l, now) {
		return fixedCalendar(l, s, now, hits)
	}
	period := l.Period
	if period <= 0 {
		period = 1
	}
	into := floorMod(now, period)
	start := now - into
	if start > now { // now within a period of MinInt64: no aligned start exists
		start = math.MinInt64
	}
	resetAfter := period - into
	count := int64(0)
	switch {
	case s.A == start:
		count = s.B
	case s.B > 0 && start <= math.MaxInt64-period && s.A == start+period:
		start = s.A
		count = s.B
		resetAfter = addSat(resetAfter, period)
	}
	d, after := fixedDecide(l.Rate, count, hits, resetAfter)
	return d, State{A: start, B: after}
}

// fixedCalendar is fixedWindow in the caller's window [WindowStart,
// WindowEnd), which contains now. The state keeps the window's end in C.
// As with epoch windows, a state from the very next window (C its end) is
// honoured.
func fixedCalendar(l Limit, s State, now, hits int64) (Decision, State) {
	start, end := l.WindowStart, l.WindowEnd
	count := int64(0)
	switch {
	case s.A == start:
		count = s.B
	case s.B > 0 && s.A == end && s.C > end:
		start, end, count = s.A, s.C, s.B
	}
	d, after := fixedDecide(l.Rate, count, hits, end-now)
	return d, State{A: start, B: after, C: end}
}

// fixedDecide decides hits on a window holding count, resetAfter before
// its end, and returns the decision and the count after the hits.
func fixedDecide(rate, count, hits, resetAfter int64) (Decision, int64) {
	if count < 0 {
		count = 0
	}
	after := addSat(count, hits)
	if after < 0 {
		after = 0
	}
	d := Decision{ResetAfter: resetAfter, Count: after}
	if after <= rate {
		d.Allowed = true
		d.Remaining = rate - after
	} else {
		d.RetryAfter = d.ResetAfter
		if hits > rate {
			// Never admitted in any window; retrying cannot help.
			d.RetryAfter = -1
		}
	}
	if d.Remaining < 0 {
		d.Remaining = 0
	}
	return d, after
}

// inWindow reports whether l carries a caller-computed window containing
// now.
func inWindow(l Limit, now int64) bool {
	return l.WindowStart < l.WindowEnd && l.WindowStart <= now && now < l.WindowEnd
}

// fixedWindowExpiry is the end of the state's window.
func fixedWindowExpiry(l Limit, s State) int64 {
	if s.C > s.A {
		return s.C
	}
	period := l.Period
	if period <= 0 {
		period = 1
	}
	return addSat(s.A, period)
}

// floorMod is a mod b for b > 0, in [0, b) also for negative a.
func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// addSat is a + b, clamped to [math.MinInt64, math.MaxInt64].
func addSat(a, b int64) int64 {
	s := a + b
	if (s > a) != (b > 0) {
		if b > 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return s
}
