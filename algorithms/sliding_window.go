package algorithms

// slidingWindow implements SlidingWindow, the weighted two-window counter
// (Cloudflare's): windows are fixed (epoch-aligned on Period, or the
// caller's calendar window), and a call at elapsed time e into a window of
// length L sees the estimate
//
//	cur + ceil(min(prev, Rate) × (L - e) / L)
//
// where cur and prev are the hits counted in the current and the previous
// window. Hits are allowed when the estimate after them is at most Rate.
//
// Error bound. The estimate assumes the previous window's hits were spread
// evenly. In the worst case (all of them at its very end) a sliding span
// of length L that reaches y into the current window holds at most
//
//	Rate + floor(Rate × y / L)
//
// admitted hits (net of refunds): the previous window contributes at most
// prev, and the current one at most Rate - prev × (L - y)/L. So a burst
// right after a boundary is held to about Rate (a fixed window admits
// 2 × Rate there), and the overshoot grows to at most 2 × Rate only for a
// span that ends just before the next boundary. The weight is rounded up,
// and on a coarse tick grid (see ticks; u = 1 µs unless Rate × L is very
// large) the elapsed time is rounded down, so rounding never admits more.
//
// min(prev, Rate): hits charged over the limit (ChargeAlways) in the
// previous window weigh no more than a full window.
//
// State: A is the start of the current window, B its count, C the
// previous window's, D the current window's end. A state from the next
// window (a call stamped before a boundary arriving after one stamped
// after it) is honoured with the previous window weighing in full. For a
// calendar window the next window's length is taken to be the current
// one's in ResetAfter and RetryAfter (a month boundary may make them a few
// days off).
func slidingWindow(l Limit, s State, now, hits int64) (Decision, State) {
	rate := clampAmount(l.Rate)
	var start, end int64
	if inWindow(l, now) {
		start, end = l.WindowStart, l.WindowEnd
	} else {
		period := max(l.Period, 1)
		start = now - floorMod(now, period)
		end = start + period
	}
	elapsed := now - start
	cur, prev := int64(0), int64(0)
	switch {
	case s.A == start && s.D == end:
		cur, prev = s.B, s.C
	case s.D == start:
		prev = s.B
	case s.B > 0 && s.A == end && s.D > end:
		start, end, cur, prev, elapsed = s.A, s.D, s.B, s.C, 0
	}
	cur, prev = min(max(cur, 0), budget), min(max(prev, 0), budget)
	length := end - start
	u, pt := ticks(rate, length)
	pw := min(prev, rate)
	weighted := ceilDiv(pw*(pt-elapsed/u), pt)

	newCur := min(max(addSat(cur, hits), 0), budget)
	var d Decision
	if hits <= rate && newCur+weighted <= rate {
		d.Allowed = true
		d.Remaining = rate - newCur - weighted
	} else if hits > rate {
		d.RetryAfter = -1
	} else {
		d.RetryAfter = slidingRetry(rate, cur, pw, hits, start, end, now, u, pt)
	}
	d.Count = newCur + weighted
	shownCur, shownW := cur, weighted
	if d.Allowed {
		shownCur = newCur
	}
	switch {
	case shownCur > 0:
		d.ResetAfter = end + length - now
	case shownW > 0:
		d.ResetAfter = end - now
	}
	return d, State{A: start, B: newCur, C: prev, D: end}
}

// slidingRetry is the time until hits could pass after a refusal, the
// bucket holding cur and a previous window weighing pw (<= rate), if no
// other call comes.
func slidingRetry(rate, cur, pw, hits, start, end, now, u, pt int64) int64 {
	// In this window: the first tick x at which
	// ceil(pw × (pt - x) / pt) <= room.
	if room := rate - max(cur+hits, 0); room >= 0 && pw > 0 {
		x := pt - room*pt/pw
		if t := start + x*u; t < end {
			return t - now
		}
	}
	// In the next window, where cur becomes the previous count.
	x := int64(0)
	if p2 := min(cur, rate); p2 > 0 {
		x = max(pt-(rate-max(hits, 0))*pt/p2, 0)
	}
	return end + x*u - now
}

// slidingWindowExpiry is the end of the window after the state's (the end
// of the state's window when it counts nothing itself). A calendar window
// may be followed by a longer one: it keeps the state for two more
// lengths.
func slidingWindowExpiry(l Limit, s State) int64 {
	if s.B <= 0 {
		return s.D
	}
	if l.WindowStart < l.WindowEnd {
		return s.D + 2*(s.D-s.A)
	}
	return s.D + (s.D - s.A)
}
