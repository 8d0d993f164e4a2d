package algorithms

import (
	"math"
	"testing"
)

const ms = Millisecond

func TestGCRAScenario(t *testing.T) {
	// 500 per minute with a burst of 50: a new key admits 50 at once, then
	// one every 120 ms, and a caller sending faster keeps being refused
	// for the excess.
	l := Limit{Algorithm: GCRA, Rate: 500, Period: Minute, Burst: 50}
	var steps []step
	for i := int64(1); i < 50; i++ {
		steps = append(steps, step{t0, 1, ok(50-i, i*120*ms, i)})
	}
	steps = append(steps,
		step{t0, 1, ok(0, 6*Second, 50)},
		step{t0, 1, no(6*Second, 120*ms, 50)},
		step{t0 + 120*ms - 1, 1, no(6*Second-120*ms+1, 1, 50)},
		step{t0 + 120*ms, 1, ok(0, 6*Second, 50)},
		step{t0 + 200*ms, 1, no(6*Second-80*ms, 40*ms, 50)},
		step{t0 + 240*ms, 1, ok(0, 6*Second, 50)},
		// Every 100 ms from now on: 5 calls out of 6 pass, one every 120 ms.
		step{t0 + 340*ms, 1, no(6*Second-100*ms, 20*ms, 50)},
		step{t0 + 440*ms, 1, ok(0, 6*Second-80*ms, 50)},
		step{t0 + 540*ms, 1, ok(0, 6*Second-60*ms, 50)},
		step{t0 + 640*ms, 1, ok(0, 6*Second-40*ms, 50)},
		step{t0 + 740*ms, 1, ok(0, 6*Second-20*ms, 50)},
		step{t0 + 840*ms, 1, ok(0, 6*Second, 50)},
		step{t0 + 940*ms, 1, no(6*Second-100*ms, 20*ms, 50)},
		step{t0 + 940*ms, 51, no(6*Second-100*ms, -1, 50)}, // above the burst: never
		step{t0 + 940*ms, 0, ok(0, 6*Second-100*ms, 50)},   // a check passes when empty
	)
	run(t, l, false, steps)

	// Over ten seconds, a caller sending every 10 ms gets exactly one call
	// per 120 ms through after the burst.
	var s State
	admitted := 0
	for now := t0; now < t0+10*Second; now += 10 * ms {
		d, ns := Decide(l, s, now, 1)
		if d.Allowed {
			admitted++
			s = ns
		}
	}
	if want := 50 + int(10*Second/(120*ms)); admitted != want { // 50 + 83 (the 84th would be at 10.08 s)
		t.Errorf("admitted %d in 10 s at 100/s, want %d", admitted, want)
	}
}

func TestTokenBucketBurstMultiplier(t *testing.T) {
	// 100 per second with burst_multiplier 3: 300 at once, then 100 a
	// second (one every 10 ms).
	l := Limit{Algorithm: TokenBucket, Rate: 100, Period: Second, Burst: 300}
	run(t, l, false, []step{
		{t0, 0, ok(300, 0, 0)},
		{t0, 299, ok(1, 2990*ms, 299)},
		{t0, 1, ok(0, 3*Second, 300)},
		{t0, 1, no(3*Second, 10*ms, 300)},
		{t0 + 5*ms, 1, no(3*Second-5*ms, 5*ms, 300)},
		{t0 + Second, 100, ok(0, 3*Second, 300)},
		{t0 + Second, 1, no(3*Second, 10*ms, 300)},
		{t0 + Second, 301, no(3*Second, -1, 300)},
		{t0 + Second + 15*ms, -2, ok(3, 2965*ms, 297)}, // refund: 1.5 tokens refilled + 2 back
		{t0 + 10*Second, -1, ok(300, 0, 0)},            // never above full
		{t0 + 10*Second, 300, ok(0, 3*Second, 300)},
	})
	// Without a burst the capacity is the rate.
	run(t, Limit{Algorithm: TokenBucket, Rate: 2, Period: Minute}, false, []step{
		{t0, 2, ok(0, Minute, 2)},
		{t0, 1, no(Minute, 30*Second, 2)},
		{t2, 1, ok(0, Minute, 2)},
	})
	// Charged refusals leave the bucket empty, never in debt.
	run(t, Limit{Algorithm: TokenBucket, Rate: 10, Period: Second}, true, []step{
		{t0, 8, ok(2, 800*ms, 8)},
		{t0, 5, no(800*ms, 300*ms, 10)},
		{t0 + 100*ms, 1, ok(0, Second, 10)},
	})
}

func TestTokenBucketRateZero(t *testing.T) {
	for _, a := range []Algorithm{TokenBucket, GCRA, SlidingWindow, Concurrency} {
		l := Limit{Algorithm: a, Period: Minute, Burst: 5}
		if d, _ := Decide(l, State{}, t0, 1); d.Allowed || d.RetryAfter != -1 {
			t.Errorf("%v with rate 0 allowed a hit: %+v", a, d)
		}
		if d, _ := Decide(l, State{}, t0, 0); !d.Allowed {
			t.Errorf("%v with rate 0 refused a check: %+v", a, d)
		}
	}
}

func TestTokenBucketLimitChange(t *testing.T) {
	// The level is kept across a change of limit, in whole hits rounded up.
	_, s := Decide(Limit{Algorithm: TokenBucket, Rate: 10, Period: Second}, State{}, t0, 7)
	l := Limit{Algorithm: TokenBucket, Rate: 10, Period: Minute}
	if d, _ := Decide(l, s, t0, 0); d.Remaining != 3 {
		t.Errorf("after the change: %+v, want 3 remaining", d)
	}
	_, s = Decide(Limit{Algorithm: GCRA, Rate: 10, Period: Second}, State{}, t0, 7)
	if d, _ := Decide(Limit{Algorithm: GCRA, Rate: 20, Period: Second}, s, t0, 0); d.Remaining != 6 {
		t.Errorf("GCRA after the change: %+v, want 6 remaining (700 ms to drain at 20/s = 14 hits of 20)", d)
	}
}

func TestTicks(t *testing.T) {
	for _, tc := range []struct{ amount, length, u, p int64 }{
		{500, Minute, 1, Minute},
		{1_000_000_000, Day, 100_000, Day / 100_000},
		{MaxAmount, 365 * Day, 100_000_000_000, 316},
		{0, Hour, 1, Hour},
		{3, 7, 1, 7},
	} {
		u, p := ticks(tc.amount, tc.length)
		if u != tc.u || p != tc.p || (tc.amount > 0 && tc.amount*p > budget) {
			t.Errorf("ticks(%d, %d) = %d, %d; want %d, %d", tc.amount, tc.length, u, p, tc.u, tc.p)
		}
	}
	// A coarse grid never refills faster: a billion a day, all spent, then
	// at most a billion in the next day.
	l := Limit{Algorithm: TokenBucket, Rate: 1_000_000_000, Period: Day}
	_, s := Decide(l, State{}, t0+7, 1_000_000_000)
	d, _ := Decide(l, s, t0+7+Day-1, 0)
	if d.Remaining > 1_000_000_000 {
		t.Errorf("refilled %d in a day", d.Remaining)
	}
}

func TestSlidingWindow(t *testing.T) {
	l := Limit{Algorithm: SlidingWindow, Rate: 10, Period: Minute}
	run(t, l, false, []step{
		{t0, 0, ok(10, 0, 0)},
		{t2, 10, ok(0, 90*Second, 10)},
		// Refused: this window is full; in the next one the 10 weigh
		// 10 × (60-x)/60 and one more fits at x = 6 s.
		{t2, 1, no(90*Second, 36*Second, 11)},
		{t4, 1, no(Minute, 6*Second, 11)},
		{t4 + 6*Second - 1, 1, no(Minute-6*Second+1, 1, 11)},
		{t4 + 6*Second, 1, ok(0, 2*Minute-6*Second, 10)},
		{t4 + 30*Second, 4, ok(0, 90*Second, 10)}, // 5 + 1 + 4
		{t4 + 30*Second, 0, ok(0, 90*Second, 10)},
		{t4 + 45*Second, 2, ok(0, 75*Second, 10)}, // ceil(2.5) + 5 + 2
		{t4 + 45*Second, -3, ok(3, 75*Second, 7)}, // a refund
		{t4 + 45*Second, 11, no(75*Second, -1, 18)},
		// The next window: the previous 4 weigh ceil(4 × 59/60) = 4.
		{t6, 6, ok(0, 2*Minute-Second, 10)},
		// Two windows later nothing carries over.
		{t0 + 4*Minute, 10, ok(0, 2*Minute, 10)},
	})
}

func TestSlidingWindowErrorBound(t *testing.T) {
	// The adversary: the previous window's 10 hits at its very end, then as
	// many as pass at y into the current window. The span (y - 60 s, y]
	// holds at most Rate + floor(Rate × y / 60 s), and this adversary gets
	// exactly that.
	l := Limit{Algorithm: SlidingWindow, Rate: 10, Period: Minute}
	for _, y := range []int64{0, Second, 6 * Second, 15 * Second, 30 * Second, 59 * Second, Minute - 1} {
		_, s := Decide(l, State{}, t4-1, 10)
		d, _ := Decide(l, s, t4+y, 0)
		got := 10 + d.Remaining
		bound := 10 + 10*y/Minute
		if got != bound {
			t.Errorf("y=%d: the span holds %d, bound %d", y, got, bound)
		}
	}
	// A fixed window admits 20 in two seconds at the boundary; the sliding
	// window 10.
	_, s := Decide(l, State{}, t4-Second, 10)
	if d, _ := Decide(l, s, t4+Second, 0); d.Remaining != 0 {
		t.Errorf("boundary burst: %d more admitted", d.Remaining)
	}
}

func TestCalendarWindows(t *testing.T) {
	// The caller computes calendar windows; the algorithms use them. A
	// 28-day February, then a 31-day March (UTC).
	feb := int64(1_769_904_000) * Second // 2026-02-01T00:00:00Z
	mar := feb + 28*Day
	apr := mar + 31*Day
	fw := Limit{Algorithm: FixedWindow, Rate: 2, Period: 30 * Day, WindowStart: feb, WindowEnd: mar}
	d, s := Decide(fw, State{}, feb+Day, 2)
	if want := ok(0, 27*Day, 2); d != want {
		t.Errorf("February: %+v, want %+v", d, want)
	}
	if e := Expiry(fw, s); e != mar {
		t.Errorf("February state expires at %d, want March 1st %d", e, mar)
	}
	if d, _ := Decide(fw, s, mar-1, 1); d.Allowed {
		t.Errorf("last instant of February allowed: %+v", d)
	}
	fw.WindowStart, fw.WindowEnd = mar, apr
	if d, _ := Decide(fw, s, mar, 1); d != ok(1, 31*Day, 1) {
		t.Errorf("March 1st: %+v", d)
	}
	// A late call stamped in February after March has begun counts in March.
	_, sm := Decide(fw, State{}, mar, 2)
	fw.WindowStart, fw.WindowEnd = feb, mar
	if d, _ := Decide(fw, sm, mar-1, 1); d.Allowed || d.ResetAfter != 31*Day+1 {
		t.Errorf("late call: %+v", d)
	}
	// A sliding window weighs February's count by the share of March left.
	sw := Limit{Algorithm: SlidingWindow, Rate: 31, Period: 30 * Day, WindowStart: feb, WindowEnd: mar}
	_, s = Decide(sw, State{}, feb, 31)
	sw.WindowStart, sw.WindowEnd = mar, apr
	if d, _ := Decide(sw, s, mar+10*Day, 0); d.Remaining != 10 {
		t.Errorf("10 days into March: %+v, want 10 remaining", d)
	}
	// Outside the given window, the epoch-aligned Period applies.
	if d, s := Decide(fw, State{}, apr, 1); !d.Allowed || s.C != 0 || d.ResetAfter != 30*Day-floorMod(apr, 30*Day) {
		t.Errorf("outside the window: %+v %+v", d, s)
	}
}

func TestConcurrency(t *testing.T) {
	// 2 in flight, a lease of a minute: slots of 10 s, an acquisition
	// lives until the end of its slot + 60 s.
	l := Limit{Algorithm: Concurrency, Rate: 2, Period: Minute}
	run(t, l, false, []step{
		{t0, 0, ok(2, 0, 0)},
		{t0, 1, ok(1, 70*Second, 1)},
		{t0 + 5*Second, 1, ok(0, 65*Second, 2)},
		{t0 + 5*Second, 1, no(65*Second, 65*Second, 2)},
		{t0 + 5*Second, 3, no(65*Second, -1, 2)},
		{t0 + 20*Second, -1, ok(1, 50*Second, 1)}, // release
		{t0 + 20*Second, 1, ok(0, 70*Second, 2)},
		{t0 + 25*Second, -5, ok(2, 0, 0)}, // never below 0
		{t0 + 25*Second, -1, ok(2, 0, 0)},
		{t0 + 25*Second, 2, ok(0, 65*Second, 2)},
	})
	// Lost releases heal when their lease expires.
	run(t, l, false, []step{
		{t0 + 3*Second, 2, ok(0, 67*Second, 2)},
		{t0 + 69*Second, 1, no(Second, Second, 2)},
		{t0 + 70*Second, 1, ok(1, 70*Second, 1)},
	})
	// Releases take the oldest acquisitions first.
	run(t, Limit{Algorithm: Concurrency, Rate: 3, Period: Minute}, false, []step{
		{t0, 1, ok(2, 70*Second, 1)},
		{t0 + 30*Second, 2, ok(0, 70*Second, 3)},
		{t0 + 40*Second, -1, ok(1, 60*Second, 2)},
		{t0 + 70*Second, 0, ok(1, 30*Second, 2)}, // t0's slot held nothing more
		{t0 + 100*Second, 0, ok(3, 0, 0)},
	})
}

func TestConcurrencyLeasePrecision(t *testing.T) {
	// An acquisition expires between lease and lease·7/6 after it was made.
	l := Limit{Algorithm: Concurrency, Rate: 1, Period: 30 * Minute}
	slot := ceilDiv(l.Period, leaseSlots)
	for _, at := range []int64{t0, t0 + 1, t0 + slot - 1, t0 + 7*Minute + 13} {
		_, s := Decide(l, State{}, at, 1)
		e := Expiry(l, s)
		if life := e - at; life < l.Period || life > l.Period+l.Period/leaseSlots+leaseSlots+1 {
			t.Errorf("acquired at t0%+d: lives %d µs", at-t0, life)
		}
		if d, _ := Decide(l, s, e-1, 1); d.Allowed {
			t.Errorf("acquired at t0%+d: gone before its expiry", at-t0)
		}
		if d, _ := Decide(l, s, e, 1); !d.Allowed {
			t.Errorf("acquired at t0%+d: still held at its expiry", at-t0)
		}
	}
}

func TestParseAlgorithm(t *testing.T) {
	for a := FixedWindow; a <= Concurrency; a++ {
		if got, ok := ParseAlgorithm(a.String()); !ok || got != a {
			t.Errorf("ParseAlgorithm(%q) = %v, %v", a.String(), got, ok)
		}
	}
	if _, ok := ParseAlgorithm("leaky"); ok {
		t.Error("ParseAlgorithm accepted leaky")
	}
	if SlidingWindow != 1 || TokenBucket != 2 || GCRA != 3 || Concurrency != 4 {
		t.Error("algorithm values changed: they are stored")
	}
}

// TestExtremeRefunds: a refund of MinInt64 hits (no negation exists) empties
// the bucket like any refund larger than its use, for every algorithm.
func TestExtremeRefunds(t *testing.T) {
	const now = 1_000 * Second
	for _, alg := range []Algorithm{FixedWindow, SlidingWindow, TokenBucket, GCRA, Concurrency} {
		l := Limit{Algorithm: alg, Rate: 10, Period: Minute, Burst: 10}
		_, s := Decide(l, State{}, now, 3)
		d, s := Decide(l, s, now, math.MinInt64)
		if !d.Allowed || d.Remaining != 10 {
			t.Errorf("%v: refund of MinInt64 = %+v, want allowed with remaining 10", alg, d)
		}
		if d, _ := Decide(l, s, now, 0); d.Remaining != 10 {
			t.Errorf("%v: after the refund remaining = %d, want 10", alg, d.Remaining)
		}
	}
}
