package algorithms

// fixedWindow implements FixedWindow: a counter per epoch-aligned window.
// Hits are allowed when the counter after them stays at or under Rate,
// exactly as envoyproxy/ratelimit compares the INCRBY result with the limit.
func fixedWindow(l Limit, s State, now, hits int64) (Decision, State) {
	period := l.Period
	if period <= 0 {
		period = 1
	}
	start := now - floorMod(now, period)
	count := s.B
	if s.A != start {
		count = 0
	}
	after := count + hits
	if after < 0 {
		after = 0
	}
	d := Decision{ResetAfter: start + period - now, Count: after}
	if after <= l.Rate {
		d.Allowed = true
		d.Remaining = l.Rate - after
	} else {
		d.RetryAfter = d.ResetAfter
		if hits > l.Rate {
			// Never admitted in any window; retrying cannot help.
			d.RetryAfter = -1
		}
	}
	if d.Remaining < 0 {
		d.Remaining = 0
	}
	return d, State{A: start, B: after}
}

// floorMod is a mod b for b > 0, in [0, b) also for negative a.
func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
