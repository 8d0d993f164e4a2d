package resilient

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
)

func TestFallbackPolicies(t *testing.T) {
	now := micros(t0) + 15*algorithms.Second
	reqs := []backends.Request{req("a", perMinute(10), 1), req("b", perMinute(0), 1)}
	for _, tt := range []struct {
		policy  Policy
		allowed bool
	}{
		{Allow, true},
		{Deny, false},
	} {
		t.Run(tt.policy.String(), func(t *testing.T) {
			in := &flaky{err: errDown}
			f, err := NewFallback(in, FallbackOptions{Policy: tt.policy})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			out, err := apply(t, f, now, backends.AllOrNothing, reqs...)
			if err != nil {
				t.Fatalf("store down: %v, want a fallback answer", err)
			}
			for i, d := range out {
				want := algorithms.Decision{Allowed: tt.allowed, ResetAfter: 45 * algorithms.Second}
				if tt.allowed {
					want.Remaining = reqs[i].Limit.Rate
				} else {
					want.RetryAfter = want.ResetAfter
				}
				if d != want {
					t.Errorf("request %d: %+v, want %+v", i, d, want)
				}
			}
			st := f.Stats()
			wantAllowed, wantRefused := int64(0), int64(2)
			if tt.allowed {
				wantAllowed, wantRefused = 2, 0
			}
			if st != (FallbackStats{Calls: 1, Allowed: wantAllowed, Refused: wantRefused}) {
				t.Errorf("stats %+v", st)
			}

			// When the store answers, the fallback stays out of the way.
			in.set(nil)
			if out, err := apply(t, f, now, backends.AllOrNothing, reqs[0]); err != nil || out[0].Remaining != 9 {
				t.Errorf("store up: %+v, %v; want the store's answer", out, err)
			}
			// An error that is not ErrUnavailable is not the fallback's to hide.
			bad := errors.New("test: bad")
			in.set(bad)
			if _, err := apply(t, f, now, backends.AllOrNothing, reqs[0]); !errors.Is(err, bad) {
				t.Errorf("other error: %v, want it passed through", err)
			}
			if f.Stats().Calls != 1 {
				t.Errorf("calls %d, want 1", f.Stats().Calls)
			}
		})
	}
}

func TestFallbackUnavailable(t *testing.T) {
	f, err := NewFallback(&flaky{err: errDown}, FallbackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := apply(t, f, 0, backends.AllOrNothing, req("a", perMinute(1), 1)); !errors.Is(err, errDown) {
		t.Errorf("policy unavailable: %v, want the store's error", err)
	}
	if f.Stats() != (FallbackStats{}) {
		t.Errorf("stats %+v, want none", f.Stats())
	}
	if _, err := NewFallback(&flaky{}, FallbackOptions{Policy: Local}); err == nil {
		t.Error("local without a local backend: no error")
	}
}

func TestFallbackLocal(t *testing.T) {
	in := &flaky{err: errDown}
	local := newMemory()
	f, err := NewFallback(in, FallbackOptions{Policy: Local, Local: local, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
		if !in.closed {
			t.Error("the backend was not closed")
		}
	}()
	now := micros(t0)
	// The caller's deadline is gone (it is what failed the store): the
	// local backend decides anyway.
	ctx, cancel := context.WithDeadline(context.Background(), t0)
	defer cancel()
	for _, tt := range []struct {
		rate, admitted int64
	}{
		{10, 4}, // 10/3 rounded up
		{9, 3},
		{2, 1},
		{1, 1}, // at least 1
		{0, 0}, // a blocked limit stays blocked
	} {
		l := perMinute(tt.rate)
		key := []byte{byte('a' + tt.rate)}
		var admitted int64
		for range tt.rate + 2 {
			out := make([]algorithms.Decision, 1)
			if err := f.Apply(ctx, now, backends.AllOrNothing, []backends.Request{{Key: key, Limit: l, Hits: 1}}, out); err != nil {
				t.Fatalf("rate %d: %v", tt.rate, err)
			}
			if out[0].Allowed {
				admitted++
			}
		}
		if admitted != tt.admitted {
			t.Errorf("rate %d over 3 replicas: %d admitted locally, want %d", tt.rate, admitted, tt.admitted)
		}
	}
	st := f.Stats()
	if st != (FallbackStats{Calls: 32, Allowed: 9, Refused: 23}) {
		t.Errorf("stats %+v, want 32 calls, 9 allowed, 23 refused", st)
	}
}

// TestFallbackLocalBurst: under Local, a token bucket's Burst is divided by
// the replicas like its Rate, so that the replicas together admit about the
// shared burst, not one each.
func TestFallbackLocalBurst(t *testing.T) {
	f, err := NewFallback(&flaky{err: errDown}, FallbackOptions{Policy: Local, Local: newMemory(), Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	now := micros(t0) // one instant: no refill, the burst alone admits
	for _, tt := range []struct {
		rate, burst, admitted int64
	}{
		{3, 10, 4},  // 10/3 rounded up
		{3, 9, 3},   // 9/3
		{30, 2, 1},  // at least 1
		{30, 0, 10}, // no Burst: the capacity is the Rate's share, 30/3
	} {
		l := algorithms.Limit{Algorithm: algorithms.TokenBucket, Rate: tt.rate, Period: algorithms.Minute, Burst: tt.burst}
		key := fmt.Appendf(nil, "tb-%d-%d", tt.rate, tt.burst)
		var admitted int64
		for range max(tt.burst, tt.rate) + 2 {
			out := make([]algorithms.Decision, 1)
			if err := f.Apply(context.Background(), now, backends.AllOrNothing, []backends.Request{{Key: key, Limit: l, Hits: 1}}, out); err != nil {
				t.Fatalf("rate %d, burst %d: %v", tt.rate, tt.burst, err)
			}
			if out[0].Allowed {
				admitted++
			}
		}
		if admitted != tt.admitted {
			t.Errorf("rate %d, burst %d over 3 replicas: %d admitted at one instant, want %d", tt.rate, tt.burst, admitted, tt.admitted)
		}
	}
}
