package algorithms

import (
	"math"
	"testing"
)

// FuzzFixedWindowDecide checks the invariants of one decision on any input.
func FuzzFixedWindowDecide(f *testing.F) {
	f.Add(int64(10), Minute, t0, int64(1), t0, int64(3))
	f.Add(int64(0), Second, int64(-1), int64(0), int64(0), int64(0))
	f.Add(int64(5), Hour, t4, int64(-7), t0, int64(9))
	f.Add(int64(5), Minute, t3, int64(1), t4, int64(2))
	f.Add(int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MinInt64), int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, rate, period, now, hits, a, b int64) {
		l := Limit{Algorithm: FixedWindow, Rate: rate, Period: period}
		s := State{A: a, B: b}
		d, ns := Decide(l, s, now, hits)
		if d2, ns2 := Decide(l, s, now, hits); d2 != d || ns2 != ns {
			t.Fatalf("not deterministic: %+v %+v then %+v %+v", d, ns, d2, ns2)
		}
		if d.Remaining < 0 || d.Remaining > max(rate, 0) {
			t.Errorf("Remaining %d outside [0, %d]", d.Remaining, rate)
		}
		if d.Count < 0 || ns.B != d.Count {
			t.Errorf("Count %d, state %+v", d.Count, ns)
		}
		if d.Allowed != (d.Count <= rate) {
			t.Errorf("Allowed %v with Count %d and Rate %d", d.Allowed, d.Count, rate)
		}
		p := max(period, 1)
		if d.ResetAfter <= 0 || d.ResetAfter > addSat(p, p) {
			t.Errorf("ResetAfter %d outside (0, 2*%d]", d.ResetAfter, p)
		}
		switch {
		case d.Allowed:
			if d.RetryAfter != 0 || d.Remaining != rate-d.Count {
				t.Errorf("allowed with %+v", d)
			}
		case hits > rate:
			if d.RetryAfter != -1 || d.Remaining != 0 {
				t.Errorf("hits %d > rate %d: %+v", hits, rate, d)
			}
		default:
			if d.RetryAfter != d.ResetAfter || d.Remaining != 0 {
				t.Errorf("refused with %+v", d)
			}
		}
		// The state lasts exactly until the window ends, and is worthless
		// from then on.
		e := Expiry(l, ns)
		if now > math.MinInt64+p && e != addSat(now, d.ResetAfter) {
			t.Errorf("Expiry %d, want now+ResetAfter = %d", e, addSat(now, d.ResetAfter))
		}
		if e < math.MaxInt64 {
			if d3, _ := Decide(l, ns, e, 0); d3.Count != 0 {
				t.Errorf("state %+v still counts %d at its expiry %d", ns, d3.Count, e)
			}
		}
	})
}

// FuzzFixedWindowSequence runs a sequence of calls at non-decreasing
// instants and checks that no window ever admits more than Rate, net of
// refunds, whether the caller stores only the states of allowed decisions
// (all-or-nothing) or every state (charge-always).
func FuzzFixedWindowSequence(f *testing.F) {
	f.Add(uint8(3), uint16(10), int64(0), false, []byte{0, 1, 0, 1, 0, 1, 0, 1, 5, 1, 5, 1})
	f.Add(uint8(1), uint16(7), int64(-100), true, []byte{0, 5, 0, 250, 1, 1, 0, 1, 9, 2})
	f.Add(uint8(0), uint16(1), t0, false, []byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, rate uint8, period uint16, start int64, chargeAlways bool, ops []byte) {
		if period == 0 || start > math.MaxInt64/2 || start < math.MinInt64/2 {
			return
		}
		l := Limit{Algorithm: FixedWindow, Rate: int64(rate), Period: int64(period)}
		var s State
		now := start
		window := int64(math.MinInt64)
		admitted := int64(0) // net hits allowed in window
		for i := 0; i+1 < len(ops); i += 2 {
			now += int64(ops[i]) // 0..255 µs later
			// hits in [-4, rate+4]
			hits := int64(int8(ops[i+1]))%(int64(rate)+9) - 4
			if w := now - floorMod(now, l.Period); w != window {
				window, admitted = w, 0
			}
			d, ns := Decide(l, s, now, hits)
			if d.Allowed {
				admitted += hits
				if admitted > l.Rate {
					t.Fatalf("op %d: window %d admitted %d > rate %d", i/2, window, admitted, l.Rate)
				}
			}
			if d.Allowed || chargeAlways {
				s = ns
			}
		}
	})
}
