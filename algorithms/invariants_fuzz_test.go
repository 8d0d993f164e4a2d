package algorithms

import "testing"

// call is one admitted call in a fuzzed sequence.
type call struct{ t, hits int64 }

// seq drives a sequence of calls at non-decreasing instants from ops (two
// bytes a call: a time step and hits) and checks, on every decision, the
// invariants shared by every algorithm: determinism, Remaining within
// [0, capacity], RetryAfter 0 exactly when allowed, ResetAfter >= 0, and
// a state that is worthless from its Expiry on. check gets every decision
// for the algorithm's own invariant.
func seq(t *testing.T, l Limit, capacity, step int64, chargeAlways bool, ops []byte, check func(now, hits int64, d Decision, s State)) {
	t.Helper()
	var s State
	now := t0
	for i := 0; i+1 < len(ops); i += 2 {
		now += int64(ops[i]) * step
		hits := int64(int8(ops[i+1]))%(capacity+6) - 3 // [-capacity-8, capacity+5]
		d, ns := Decide(l, s, now, hits)
		if d2, ns2 := Decide(l, s, now, hits); d2 != d || ns2 != ns {
			t.Fatalf("op %d: not deterministic: %+v %+v then %+v %+v", i/2, d, ns, d2, ns2)
		}
		if d.Remaining < 0 || d.Remaining > capacity {
			t.Fatalf("op %d: Remaining %d outside [0, %d]", i/2, d.Remaining, capacity)
		}
		if d.Allowed != (d.RetryAfter == 0) || d.RetryAfter < -1 || d.ResetAfter < 0 {
			t.Fatalf("op %d: inconsistent %+v", i/2, d)
		}
		if !d.Allowed && d.Remaining != 0 {
			t.Fatalf("op %d: refused with Remaining %d", i/2, d.Remaining)
		}
		if d.RetryAfter == -1 && hits <= capacity && hits <= max(l.Rate, 0) {
			t.Fatalf("op %d: %d hits never pass: %+v", i/2, hits, d)
		}
		if d.RetryAfter > 0 {
			// Waiting RetryAfter lets the same hits through.
			if d2, _ := Decide(l, s, now+d.RetryAfter, hits); !d2.Allowed {
				t.Fatalf("op %d: refused %d hits again after RetryAfter %d: %+v", i/2, hits, d.RetryAfter, d2)
			}
			if d.RetryAfter > 1 {
				if d2, _ := Decide(l, s, now+d.RetryAfter-1, hits); d2.Allowed {
					t.Fatalf("op %d: %d hits pass before RetryAfter %d", i/2, hits, d.RetryAfter)
				}
			}
		}
		if d.Allowed || chargeAlways {
			if e := Expiry(l, ns); e >= now {
				zero, _ := Decide(l, State{}, e, 0)
				if got, _ := Decide(l, ns, e, 0); got != zero {
					t.Fatalf("op %d: state %+v at its expiry %d decides %+v, the zero state %+v", i/2, ns, e, got, zero)
				}
			}
		}
		check(now, hits, d, ns)
		if d.Allowed || chargeAlways {
			s = ns
		}
	}
}

// admittedIn sums the positive admitted hits in (from, to] and the
// refunds there.
func admittedIn(calls []call, from, to int64) (taken, refunded int64) {
	for _, c := range calls {
		if c.t > from && c.t <= to {
			if c.hits > 0 {
				taken += c.hits
			} else {
				refunded -= c.hits
			}
		}
	}
	return taken, refunded
}

// fuzzBucket checks TokenBucket and GCRA: over any span of one period, the
// admitted hits never exceed capacity + rate (plus what was refunded in
// it); and both algorithms give the very same decisions.
func fuzzBucket(t *testing.T, a Algorithm, rate, burst uint8, period uint16, chargeAlways bool, ops []byte) {
	if rate == 0 || period == 0 {
		return
	}
	l := Limit{Algorithm: a, Rate: int64(rate), Period: int64(period) * 100, Burst: int64(burst)}
	capacity := l.Rate
	if burst > 0 {
		capacity = l.Burst
	}
	twin := l
	twin.Algorithm = TokenBucket + GCRA - a
	var ts State
	var calls []call
	seq(t, l, capacity, 7, chargeAlways, ops, func(now, hits int64, d Decision, _ State) {
		td, tns := Decide(twin, ts, now, hits)
		if td != d {
			t.Fatalf("%v decided %+v, %v %+v", a, d, twin.Algorithm, td)
		}
		if d.Allowed || chargeAlways {
			ts = tns
		}
		if !d.Allowed {
			return
		}
		calls = append(calls, call{now, hits})
		if taken, refunded := admittedIn(calls, now-l.Period, now); taken > capacity+l.Rate+refunded {
			t.Fatalf("%d admitted in a period (capacity %d, rate %d, refunded %d)", taken, capacity, l.Rate, refunded)
		}
	})
}

func FuzzTokenBucket(f *testing.F) {
	f.Add(uint8(5), uint8(0), uint16(10), false, []byte{0, 5, 1, 1, 3, 1, 0, 2, 9, 5, 200, 5})
	f.Add(uint8(100), uint8(255), uint16(3), true, []byte{0, 255, 0, 1, 1, 1, 5, 7})
	f.Fuzz(func(t *testing.T, rate, burst uint8, period uint16, chargeAlways bool, ops []byte) {
		fuzzBucket(t, TokenBucket, rate, burst, period, chargeAlways, ops)
	})
}

func FuzzGCRA(f *testing.F) {
	f.Add(uint8(50), uint8(5), uint16(600), false, []byte{0, 5, 1, 1, 3, 1, 0, 2, 9, 5, 200, 5})
	f.Add(uint8(3), uint8(1), uint16(7), true, []byte{0, 1, 0, 1, 1, 1, 5, 250})
	f.Fuzz(func(t *testing.T, rate, burst uint8, period uint16, chargeAlways bool, ops []byte) {
		fuzzBucket(t, GCRA, rate, burst, period, chargeAlways, ops)
	})
}

// FuzzSlidingWindow checks the documented error bound: a span of one
// period reaching y into the current window admits at most
// Rate + floor(Rate × y / Period) hits, plus the refunds since the start of
// the previous window.
func FuzzSlidingWindow(f *testing.F) {
	f.Add(uint8(10), uint16(60), false, []byte{0, 5, 1, 5, 30, 3, 1, 7, 9, 2, 20, 9})
	f.Add(uint8(1), uint16(7), true, []byte{6, 1, 1, 1, 1, 1, 5, 1})
	f.Fuzz(func(t *testing.T, rate uint8, period uint16, chargeAlways bool, ops []byte) {
		if period == 0 {
			return
		}
		l := Limit{Algorithm: SlidingWindow, Rate: int64(rate), Period: int64(period)}
		var calls []call
		seq(t, l, l.Rate, 1, chargeAlways, ops, func(now, hits int64, d Decision, _ State) {
			if !d.Allowed {
				return
			}
			calls = append(calls, call{now, hits})
			y := floorMod(now, l.Period)
			taken, _ := admittedIn(calls, now-l.Period, now)
			_, refunded := admittedIn(calls, now-y-l.Period-1, now)
			if bound := l.Rate + l.Rate*y/l.Period + refunded; taken > bound {
				t.Fatalf("%d admitted in the period to %d (y=%d), bound %d", taken, now, y, bound)
			}
		})
	})
}

// FuzzConcurrency checks the count against two models that release the
// oldest acquisition first: one where acquisitions expire after exactly
// the lease (the count is never below it: no request still running within
// its lease is forgotten) and one where they expire after lease·7/6 + 7 µs
// (the count is never above it). The count stays within [0, Rate].
func FuzzConcurrency(f *testing.F) {
	f.Add(uint8(3), uint16(60), false, []byte{0, 1, 5, 1, 5, 1, 5, 255, 30, 2, 50, 1, 9, 254})
	f.Add(uint8(1), uint16(6), true, []byte{0, 1, 1, 1, 1, 255, 5, 1})
	f.Fuzz(func(t *testing.T, rate uint8, lease uint16, chargeAlways bool, ops []byte) {
		if lease == 0 {
			return
		}
		l := Limit{Algorithm: Concurrency, Rate: int64(rate), Period: int64(lease)}
		slot := ceilDiv(l.Period, leaseSlots)
		lo, hi := &fifo{life: l.Period}, &fifo{life: (leaseSlots + 1) * slot}
		seq(t, l, l.Rate, 1, chargeAlways, ops, func(now, hits int64, d Decision, _ State) {
			lo.expire(now)
			hi.expire(now)
			if d.Allowed {
				lo.apply(now, hits)
				hi.apply(now, hits)
			}
			if d.Count < lo.sum() || d.Count > hi.sum() || d.Count > max(l.Rate, 0) {
				t.Fatalf("count %d outside [%d, %d] (rate %d)", d.Count, lo.sum(), hi.sum(), l.Rate)
			}
		})
	})
}

// fifo is a model of leases: acquisitions in order, released oldest first,
// each expiring life after it was made.
type fifo struct {
	life int64
	q    []call
}

func (m *fifo) expire(now int64) {
	for len(m.q) > 0 && m.q[0].t+m.life <= now {
		m.q = m.q[1:]
	}
}

func (m *fifo) apply(now, hits int64) {
	if hits > 0 {
		m.q = append(m.q, call{now, hits})
		return
	}
	for r := -hits; r > 0 && len(m.q) > 0; {
		n := min(r, m.q[0].hits)
		m.q[0].hits -= n
		r -= n
		if m.q[0].hits == 0 {
			m.q = m.q[1:]
		}
	}
}

func (m *fifo) sum() int64 {
	n := int64(0)
	for _, c := range m.q {
		n += c.hits
	}
	return n
}
