package algorithms

// leaseSlots is the number K of past slots a Concurrency acquisition can
// live in: a lease is cut in K slots of ceil(lease/K) µs, and the state
// holds the newest slot and the K before it (K+1 = 7 counts, B..H).
const leaseSlots = 6

// concurrency implements Concurrency: at most Rate hits in flight.
//
// Envoy's release (is_negative_hits, sent when the stream ends) names no
// acquisition, so the state cannot hold one lease per acquisition. Time is
// cut in slots of s = ceil(lease/6) µs, epoch-aligned. An acquisition is
// counted in the slot containing now, and a slot's count expires when the
// slot ends 6 slots later; an acquisition thus expires between 6s and 7s
// after it was made: at least lease, at most lease·7/6 (plus up to 7 µs of
// rounding).
//
// A release takes back the oldest counted acquisitions first. That order
// never undercounts: as long as every request ends within its lease, the
// count is at least the number of requests in flight (releasing the newest
// first would leave old slots holding finished requests, and their expiry
// would then drop the count of requests still running). The price: a lost
// release cannot be told apart from a request still running, so its
// surplus count lives as long as the oldest count it is confused with;
// under continuous traffic it can move to newer slots, and it expires for
// sure only once no acquisition is counted that is older than the lease.
// A release never takes the count below 0, and is always allowed (so that
// every backend stores it); a refused acquisition is never held.
func concurrency(l Limit, s State, now, hits int64) (Decision, State) {
	rate := clampAmount(l.Rate)
	slot := ceilDiv(max(l.Period, 1), leaseSlots)
	cur := now - floorMod(now, slot)
	c := [leaseSlots + 1]int64{s.B, s.C, s.D, s.E, s.F, s.G, s.H}
	switch {
	case s.A == cur:
	case s.A > cur && s.A-cur <= slot: // a late caller: count in the newest slot
		cur = s.A
	case s.A < cur && (cur-s.A)/slot <= leaseSlots:
		k := (cur - s.A) / slot
		for i := leaseSlots; i >= 0; i-- {
			if i >= int(k) {
				c[i] = c[i-int(k)]
			} else {
				c[i] = 0
			}
		}
	default:
		c = [leaseSlots + 1]int64{}
	}
	inFlight := int64(0)
	for i := range c {
		c[i] = clampAmount(c[i])
		inFlight += c[i]
	}

	var d Decision
	switch {
	case hits > rate:
		d.RetryAfter = -1
	case hits >= 0:
		if inFlight+hits <= rate {
			d.Allowed = true
			c[0] += hits
			inFlight += hits
		} else {
			d.RetryAfter = concurrencyRetry(c, inFlight+hits-rate, cur, slot, now)
		}
	default: // a release, oldest acquisitions first
		d.Allowed = true
		r := (leaseSlots + 1) * MaxAmount
		if hits > -r {
			r = -hits
		}
		for i := leaseSlots; i >= 0 && r > 0; i-- {
			t := min(c[i], r)
			c[i] -= t
			r -= t
			inFlight -= t
		}
	}
	if d.Allowed {
		d.Remaining = max(rate-inFlight, 0)
	}
	d.Count = inFlight
	for i := range c {
		if c[i] > 0 {
			d.ResetAfter = cur - int64(i)*slot + (leaseSlots+1)*slot - now
			break
		}
	}
	return d, State{A: cur, B: c[0], C: c[1], D: c[2], E: c[3], F: c[4], G: c[5], H: c[6]}
}

// concurrencyRetry is the time until need counted acquisitions have
// expired, the oldest first.
func concurrencyRetry(c [leaseSlots + 1]int64, need, cur, slot, now int64) int64 {
	for i := leaseSlots; i >= 0; i-- {
		need -= c[i]
		if need <= 0 {
			return cur - int64(i)*slot + (leaseSlots+1)*slot - now
		}
	}
	return -1
}

// concurrencyExpiry is the end of the newest slot's lease.
func concurrencyExpiry(l Limit, s State) int64 {
	if s.B <= 0 && s.C <= 0 && s.D <= 0 && s.E <= 0 && s.F <= 0 && s.G <= 0 && s.H <= 0 {
		return s.A
	}
	return s.A + (leaseSlots+1)*ceilDiv(max(l.Period, 1), leaseSlots)
}
