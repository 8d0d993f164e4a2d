package resilient

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/backendtest"
	"github.com/ratelimitd/ratelimitd/backends/memory"
)

// TestBreakerConformance runs the suite through a Breaker around the memory
// backend: Reset and Memo reach it, and Apply decides as before. (The
// Cache and the Fallback answer some calls themselves, by design, so the
// suite's decisions do not hold through them.)
func TestBreakerConformance(t *testing.T) {
	backendtest.RunClocked(t, func(t *testing.T, c *backendtest.Clock) backends.Backend {
		return NewBreaker(memory.New(memory.Options{Now: c.Now}), BreakerOptions{})
	})
}

// store is a flaky backend with Reset and Memo that fail with its err, and
// otherwise count every key as existing and remember nothing.
type store struct {
	flaky
	extras int // Reset, Recall and Remember calls
}

func (s *store) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.extras++
	return s.err
}

func (s *store) extraCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.extras
}

func (s *store) Reset(ctx context.Context, keys [][]byte) (int, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	return len(keys), nil
}

func (s *store) Recall(ctx context.Context, key []byte) ([]byte, bool, error) {
	return nil, false, s.enter()
}

func (s *store) Remember(ctx context.Context, key, value []byte, ttl time.Duration) ([]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	return value, nil
}

// extras calls Reset, Recall and Remember on b and returns their errors.
func extras(ctx context.Context, b backends.Backend) []error {
	_, err1 := b.(backends.Resetter).Reset(ctx, [][]byte{[]byte("k")})
	_, _, err2 := b.(backends.Memo).Recall(ctx, []byte("k"))
	_, err3 := b.(backends.Memo).Remember(ctx, []byte("k"), []byte("v"), time.Minute)
	return []error{err1, err2, err3}
}

var extraNames = []string{"Reset", "Recall", "Remember"}

func TestExtrasUnsupported(t *testing.T) {
	stack := func(in backends.Backend) backends.Backend {
		f, err := NewFallback(NewCache(NewBreaker(in, BreakerOptions{Failures: 1}), CacheOptions{Size: 10}), FallbackOptions{Policy: Allow})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for name, wrap := range map[string]func(backends.Backend) backends.Backend{
		"Breaker": func(in backends.Backend) backends.Backend { return NewBreaker(in, BreakerOptions{Failures: 1}) },
		"Cache":   func(in backends.Backend) backends.Backend { return NewCache(in, CacheOptions{Size: 10}) },
		"Fallback": func(in backends.Backend) backends.Backend {
			f, _ := NewFallback(in, FallbackOptions{Policy: Allow})
			return f
		},
		"Stack": stack,
	} {
		in := &flaky{}
		b := wrap(in)
		for range 3 {
			for i, err := range extras(context.Background(), b) {
				if !errors.Is(err, errors.ErrUnsupported) || errors.Is(err, backends.ErrUnavailable) {
					t.Errorf("%s: %s on a backend without it: %v, want an error wrapping errors.ErrUnsupported only", name, extraNames[i], err)
				}
			}
		}
		// Not a failure of the store: the breaker stays closed.
		if br, ok := b.(*Breaker); ok {
			if st := br.Stats(); st.State != Closed || st.ConsecutiveFailures != 0 {
				t.Errorf("%s: after unsupported calls: %+v", name, st)
			}
		}
		if _, err := apply(t, b, micros(t0), backends.AllOrNothing, req("k", perMinute(1), 1)); err != nil {
			t.Errorf("%s: Apply after unsupported calls: %v", name, err)
		}
		b.Close()
	}
}

func TestBreakerExtras(t *testing.T) {
	in := &store{}
	clk := &clock{t: t0}
	b := NewBreaker(in, BreakerOptions{Failures: 3, ProbeInterval: time.Second, Now: clk.Now})
	defer b.Close()
	ctx := context.Background()
	for i, err := range extras(ctx, b) {
		if err != nil {
			t.Errorf("%s through a closed breaker: %v", extraNames[i], err)
		}
	}
	// Their failures count: three open the breaker.
	in.set(errDown)
	for i, err := range extras(ctx, b) {
		if !errors.Is(err, errDown) {
			t.Errorf("%s, store down: %v, want the store's error", extraNames[i], err)
		}
	}
	if st := b.Stats(); st.State != Open || st.Opens != 1 {
		t.Fatalf("after 3 failed calls: %+v, want open", st)
	}
	// Open: answered at once, without reaching the store.
	calls := in.extraCalls()
	for i, err := range extras(ctx, b) {
		if !errors.Is(err, ErrOpen) || !errors.Is(err, backends.ErrUnavailable) {
			t.Errorf("%s, breaker open: %v, want ErrOpen", extraNames[i], err)
		}
	}
	if in.extraCalls() != calls {
		t.Errorf("calls reached the store while the breaker was open")
	}
	// A Reset may be the probe (no Pinger): it succeeds and closes.
	in.set(nil)
	clk.set(t0.Add(time.Second))
	if n, err := b.Reset(ctx, [][]byte{[]byte("a"), []byte("b")}); err != nil || n != 2 {
		t.Errorf("Reset as the probe: %d, %v", n, err)
	}
	if st := b.Stats(); st.State != Closed || st.Probes != 1 {
		t.Errorf("after a successful probe: %+v, want closed", st)
	}
	// A success resets the run of failures; a cancelled caller does not count.
	in.set(errDown)
	b.Reset(ctx, nil)
	b.Recall(ctx, nil)
	in.set(nil)
	if _, err := b.Remember(ctx, nil, nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	in.set(errDown)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	extras(cctx, b)
	if st := b.Stats(); st.State != Closed || st.ConsecutiveFailures != 0 {
		t.Errorf("%+v, want closed with no failures", st)
	}
}

// TestCacheResetForgets: a Reset through the cache drops its facts about
// the keys, so the reset bucket's budget is usable at once.
func TestCacheResetForgets(t *testing.T) {
	c := NewCache(newMemory(), CacheOptions{Size: 100})
	defer c.Close()
	l := perMinute(1)
	now := micros(t0)
	for range 2 {
		apply(t, c, now, backends.AllOrNothing, req("k", l, 1), req("other", l, 1))
	}
	apply(t, c, now, backends.AllOrNothing, req("other", l, 1))
	if st := c.Stats(); st.Entries != 2 {
		t.Fatalf("cache stats %+v, want 2 facts", st)
	}
	n, err := c.Reset(context.Background(), [][]byte{[]byte("k")})
	if err != nil || n != 1 {
		t.Fatalf("Reset = %d, %v; want 1", n, err)
	}
	if st := c.Stats(); st.Entries != 1 {
		t.Errorf("cache stats %+v after Reset, want the other key's fact only", st)
	}
	out, err := apply(t, c, now, backends.AllOrNothing, req("k", l, 1))
	if err != nil || !out[0].Allowed {
		t.Errorf("after Reset: %+v, %v, want allowed", out[0], err)
	}
}

// TestFallbackResetLocal: under the Local policy, Reset resets the local
// backend too; memos are not answered locally.
func TestFallbackResetLocal(t *testing.T) {
	in := &store{}
	local := newMemory()
	f, err := NewFallback(in, FallbackOptions{Policy: Local, Local: local, Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	now := micros(t0)
	l := perMinute(1)
	in.set(errDown)
	if out, err := apply(t, f, now, backends.AllOrNothing, req("k", l, 1)); err != nil || !out[0].Allowed {
		t.Fatalf("local fallback: %+v, %v", out[0], err)
	}
	if out, _ := apply(t, f, now, backends.AllOrNothing, req("k", l, 1)); out[0].Allowed {
		t.Fatalf("local fallback allowed twice a limit of 1")
	}
	// The store is down: Reset fails with its error, the local bucket is reset anyway.
	if _, err := f.Reset(context.Background(), [][]byte{[]byte("k")}); !errors.Is(err, errDown) {
		t.Errorf("Reset with the store down: %v, want the store's error", err)
	}
	if out, _ := apply(t, f, now, backends.AllOrNothing, req("k", l, 1)); !out[0].Allowed {
		t.Errorf("the local bucket was not reset")
	}
	for i, err := range extras(context.Background(), f)[1:] {
		if !errors.Is(err, errDown) {
			t.Errorf("%s with the store down: %v, want the store's error", extraNames[i+1], err)
		}
	}
	if st := f.Stats(); st.Calls != 3 {
		t.Errorf("fallback stats %+v: memos were answered by the fallback", st)
	}
	in.set(nil)
	if n, err := f.Reset(context.Background(), [][]byte{[]byte("a"), []byte("b")}); err != nil || n != 2 {
		t.Errorf("Reset = %d, %v; want the store's 2", n, err)
	}
}
