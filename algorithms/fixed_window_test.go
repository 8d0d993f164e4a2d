package algorithms

import (
	"math"
	"testing"
)

// Fixed instants, as in golang.org/x/time/rate's tests. t0 is the start of
// a minute window (epoch-aligned); the others step through it and the next.
var (
	t0 = int64(1_767_225_600) * Second // 2026-01-01T00:00:00Z
	t1 = t0 + 1*Second
	t2 = t0 + 30*Second
	t3 = t0 + Minute - Microsecond // last instant of the first window
	t4 = t0 + Minute               // first instant of the second window
	t5 = t0 + Minute + 59*Second
	t6 = t0 + 2*Minute + 1*Second // skips a window
)

var perMinute = func(rate int64) Limit { return Limit{Algorithm: FixedWindow, Rate: rate, Period: Minute} }

// step is one call: hits at t, and the decision it must give.
type step struct {
	t    int64
	hits int64
	want Decision
}

// ok and no build expected decisions.
func ok(remaining, resetAfter, count int64) Decision {
	return Decision{Allowed: true, Remaining: remaining, ResetAfter: resetAfter, Count: count}
}

func no(resetAfter, retryAfter, count int64) Decision {
	return Decision{ResetAfter: resetAfter, RetryAfter: retryAfter, Count: count}
}

// run applies steps in order. With store set to chargeAlways every returned
// state is kept (envoyproxy/ratelimit's behaviour); otherwise only states of
// allowed decisions are kept (ratelimitd's all-or-nothing).
func run(t *testing.T, l Limit, chargeAlways bool, steps []step) {
	t.Helper()
	var s State
	for i, st := range steps {
		d, ns := Decide(l, s, st.t, st.hits)
		if d != st.want {
			t.Errorf("step %d: Decide(%+v, %+v, t0%+d, %d) = %+v, want %+v", i, l, s, st.t-t0, st.hits, d, st.want)
		}
		if d.Allowed || chargeAlways {
			s = ns
		}
	}
}

func TestFixedWindowCounting(t *testing.T) {
	run(t, perMinute(3), false, []step{
		{t0, 1, ok(2, Minute, 1)},
		{t1, 1, ok(1, Minute-Second, 2)},
		{t2, 1, ok(0, 30*Second, 3)},             // exactly the limit
		{t2, 1, no(30*Second, 30*Second, 4)},     // one over
		{t3, 1, no(Microsecond, Microsecond, 4)}, // still the same window
	})
}

func TestFixedWindowRollover(t *testing.T) {
	run(t, perMinute(2), false, []step{
		{t3, 2, ok(0, Microsecond, 2)},
		{t3, 1, no(Microsecond, Microsecond, 3)},
		{t4, 1, ok(1, Minute, 1)}, // new window: the count starts over
		{t5, 1, ok(0, Second, 2)},
		{t5, 1, no(Second, Second, 3)},
		{t6, 2, ok(0, Minute-Second, 2)}, // a window later, nothing carries over
	})
}

func TestFixedWindowEpochAlignment(t *testing.T) {
	// The window is aligned on the epoch, not on the first hit: a bucket
	// first used 59 s into a minute resets 1 s later.
	l := perMinute(1)
	run(t, l, false, []step{
		{t0 + 59*Second, 1, ok(0, Second, 1)},
		{t0 + 59*Second + 999_999, 1, no(1, 1, 2)},
		{t4, 1, ok(0, Minute, 1)},
	})
	// Any period, also one that does not divide a day.
	l7 := Limit{Rate: 1, Period: 7 * Second}
	_, s := Decide(l7, State{}, 7*Second*1000+3*Second, 1)
	if want := (State{A: 7 * Second * 1000, B: 1}); s != want {
		t.Errorf("7 s window state = %+v, want %+v", s, want)
	}
	if got, want := Expiry(l7, s), 7*Second*1001; got != want {
		t.Errorf("Expiry = %d, want %d", got, want)
	}
}

func TestFixedWindowCheckOnly(t *testing.T) {
	run(t, perMinute(2), false, []step{
		{t0, 0, ok(2, Minute, 0)}, // a check consumes nothing
		{t0, 0, ok(2, Minute, 0)},
		{t1, 2, ok(0, Minute-Second, 2)},
		{t1, 0, ok(0, Minute-Second, 2)}, // full but not over: a check passes
		{t1, 1, no(Minute-Second, Minute-Second, 3)},
		{t2, 0, ok(0, 30*Second, 2)},
	})
	// Over the limit (charged over-limit hits), a check is refused, as the
	// reference reports OVER_LIMIT for hits_addend 0 then.
	run(t, perMinute(2), true, []step{
		{t0, 3, no(Minute, -1, 3)},
		{t1, 0, no(Minute-Second, Minute-Second, 3)},
		{t4, 0, ok(2, Minute, 0)},
	})
}

func TestFixedWindowRefund(t *testing.T) {
	run(t, perMinute(3), false, []step{
		{t0, 3, ok(0, Minute, 3)},
		{t0, 1, no(Minute, Minute, 4)},
		{t1, -2, ok(2, Minute-Second, 1)},
		{t1, -5, ok(3, Minute-Second, 0)}, // clamped at 0: never above the limit
		{t1, -1, ok(3, Minute-Second, 0)},
		{t2, 3, ok(0, 30*Second, 3)}, // the clamp did not create extra budget
		{t2, 1, no(30*Second, 30*Second, 4)},
		{t4, -1, ok(3, Minute, 0)}, // a refund in a new window gives nothing
		{t4, 4, no(Minute, -1, 4)},
	})
	// A refund that leaves the counter above the limit is still over.
	run(t, perMinute(2), true, []step{
		{t0, 5, no(Minute, -1, 5)},
		{t0, -1, no(Minute, Minute, 4)},
		{t0, -2, ok(0, Minute, 2)},
	})
}

func TestFixedWindowHitsAboveRate(t *testing.T) {
	run(t, perMinute(3), false, []step{
		{t0, 4, no(Minute, -1, 4)}, // can never pass: RetryAfter -1
		{t0, 3, ok(0, Minute, 3)},  // the refusal charged nothing
	})
	run(t, perMinute(3), true, []step{
		{t0, 4, no(Minute, -1, 4)},
		{t1, 1, no(Minute-Second, Minute-Second, 5)}, // charged: counters grow past the limit
		{t4, 3, ok(0, Minute, 3)},
	})
}

func TestFixedWindowRateZero(t *testing.T) {
	run(t, perMinute(0), true, []step{
		{t0, 1, no(Minute, -1, 1)},
		{t1, 1, no(Minute-Second, -1, 2)},
		{t4, 1, no(Minute, -1, 1)},
	})
	run(t, perMinute(0), false, []step{
		{t0, 0, ok(0, Minute, 0)}, // a check of nothing is not over
		{t0, 1, no(Minute, -1, 1)},
	})
	var zero Limit // "The zero Limit admits nothing."
	if d, _ := Decide(zero, State{}, t0, 1); d.Allowed {
		t.Errorf("zero Limit allowed a hit: %+v", d)
	}
}

func TestFixedWindowNegativeNow(t *testing.T) {
	// Before the epoch windows are still aligned (floor, not truncation).
	l := perMinute(2)
	run(t, l, false, []step{
		{-Minute - Second, 1, ok(1, Second, 1)}, // window [-120 s, -60 s)
		{-Minute, 1, ok(1, Minute, 1)},          // new window [-60 s, 0)
		{-Microsecond, 1, ok(0, Microsecond, 2)},
		{-Microsecond, 1, no(Microsecond, Microsecond, 3)},
		{0, 1, ok(1, Minute, 1)},
	})
	d, s := Decide(l, State{}, -1, 1)
	if s.A != -Minute {
		t.Errorf("window start for now=-1 is %d, want %d", s.A, -Minute)
	}
	if d.ResetAfter != 1 {
		t.Errorf("ResetAfter for now=-1 is %d, want 1", d.ResetAfter)
	}
	// Extreme instants do not overflow.
	for _, now := range []int64{math.MinInt64, math.MinInt64 + 1, math.MaxInt64, math.MaxInt64 - 1} {
		d, s := Decide(l, State{}, now, 1)
		if !d.Allowed || d.Remaining != 1 || d.ResetAfter <= 0 || d.ResetAfter > Minute {
			t.Errorf("now=%d: %+v", now, d)
		}
		if e := Expiry(l, s); e < now && now != math.MinInt64 {
			t.Errorf("now=%d: Expiry %d before now", now, e)
		}
	}
}

func TestFixedWindowOverflow(t *testing.T) {
	l := perMinute(10)
	// A counter plus huge hits must not wrap to a small count and pass.
	d, s := Decide(l, State{A: t0, B: 5}, t0, math.MaxInt64)
	if d.Allowed || s.B != math.MaxInt64 {
		t.Errorf("MaxInt64 hits on count 5: %+v, state %+v", d, s)
	}
	d, s = Decide(l, State{A: t0, B: 5}, t0, math.MinInt64)
	if !d.Allowed || s.B != 0 || d.Remaining != 10 {
		t.Errorf("MinInt64 hits on count 5: %+v, state %+v", d, s)
	}
	huge := Limit{Rate: 1, Period: math.MaxInt64}
	_, s = Decide(huge, State{}, t0, 1)
	if e := Expiry(huge, s); e != math.MaxInt64 {
		t.Errorf("Expiry with MaxInt64 period = %d, want MaxInt64", e)
	}
}

func TestFixedWindowPeriodNotPositive(t *testing.T) {
	// A bad Period behaves as 1 µs windows instead of dividing by zero.
	for _, p := range []int64{0, -Minute} {
		l := Limit{Rate: 1, Period: p}
		d, s := Decide(l, State{}, t0, 1)
		if !d.Allowed || d.ResetAfter != 1 || s.A != t0 {
			t.Errorf("Period %d: %+v %+v", p, d, s)
		}
		if e := Expiry(l, s); e != t0+1 {
			t.Errorf("Period %d: Expiry %d, want %d", p, e, t0+1)
		}
	}
}

func TestFixedWindowClockInversion(t *testing.T) {
	// A call stamped before the boundary arrives after one stamped after it
	// (callers read the clock before queueing for the bucket). It counts in
	// the newer window rather than resetting it.
	l := perMinute(2)
	_, s := Decide(l, State{}, t4, 2) // window [t4, t4+1m) full
	d, ns := Decide(l, s, t3, 1)
	if want := no(Minute+Microsecond, Minute+Microsecond, 3); d != want {
		t.Errorf("late call = %+v, want %+v", d, want)
	}
	d, ns = Decide(l, s, t3, 0)
	if want := ok(0, Minute+Microsecond, 2); d != want || ns != s {
		t.Errorf("late check = %+v %+v, want %+v %+v", d, ns, want, s)
	}
	// A state two windows ahead (a clock stepped back) is not honoured.
	_, far := Decide(l, State{}, t6, 2)
	if d, _ := Decide(l, far, t3, 1); !d.Allowed || d.Remaining != 1 {
		t.Errorf("state two windows ahead honoured: %+v", d)
	}
}

func TestFixedWindowLimitChange(t *testing.T) {
	// The state is the count; the limit is read at each call.
	_, s := Decide(perMinute(10), State{}, t0, 4)
	if d, _ := Decide(perMinute(5), s, t1, 1); d != ok(0, Minute-Second, 5) {
		t.Errorf("lowered limit: %+v", d)
	}
	if d, _ := Decide(perMinute(3), s, t1, 0); d != no(Minute-Second, Minute-Second, 4) {
		t.Errorf("lowered below the count: %+v", d)
	}
}

func TestAlgorithmString(t *testing.T) {
	if got := FixedWindow.String(); got != "fixed_window" {
		t.Errorf("FixedWindow.String() = %q", got)
	}
	if got := Algorithm(200).String(); got != "unknown" {
		t.Errorf("Algorithm(200).String() = %q", got)
	}
}
