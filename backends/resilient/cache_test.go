package resilient

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
)

// counting wraps a backend and counts the calls and requests that reach it.
type counting struct {
	backends.Backend
	mu           sync.Mutex
	calls, sent  int
	lastRequests []string
}

func (c *counting) Apply(ctx context.Context, now int64, mode backends.Mode, reqs []backends.Request, out []algorithms.Decision) error {
	c.mu.Lock()
	c.calls++
	c.sent += len(reqs)
	c.lastRequests = c.lastRequests[:0]
	for _, r := range reqs {
		c.lastRequests = append(c.lastRequests, string(r.Key))
	}
	c.mu.Unlock()
	return c.Backend.Apply(ctx, now, mode, reqs, out)
}

func (c *counting) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

func newCached(size int) (*Cache, *counting) {
	in := &counting{Backend: newMemory()}
	return NewCache(in, CacheOptions{Size: size}), in
}

// remaining reads a bucket's budget straight from the store, charging nothing.
func remaining(t *testing.T, b backends.Backend, now int64, key string, l algorithms.Limit) int64 {
	t.Helper()
	out, err := apply(t, b, now, backends.AllOrNothing, req(key, l, 0))
	if err != nil {
		t.Fatal(err)
	}
	return out[0].Remaining
}

func TestCacheAnswersUntilRetry(t *testing.T) {
	c, in := newCached(100)
	defer c.Close()
	l := perMinute(3)
	start := micros(t0)
	type step struct {
		at      int64 // after start
		hits    int64
		allowed bool
		cached  bool // answered without the store
	}
	steps := []step{
		{0, 1, true, false},
		{1, 1, true, false},
		{2, 1, true, false},
		{3, 1, false, false}, // refused by the store: learnt until the window ends
		{4, 1, false, true},
		{4, 2, false, true}, // more hits: still covered
		{algorithms.Minute - 1, 1, false, true},
		{algorithms.Minute, 1, true, false}, // the new window: asked again
		{algorithms.Minute + 1, 3, false, false},
		{algorithms.Minute + 2, 1, true, false}, // fewer hits than the refused 3: asked, and allowed
		{algorithms.Minute + 3, 2, false, true}, // covered by the 3-hit refusal? no: 2 < 3, asked
	}
	steps[len(steps)-1].cached = false
	for i, s := range steps {
		before := in.count()
		out, err := apply(t, c, start+s.at, backends.AllOrNothing, req("k", l, s.hits))
		if err != nil {
			t.Fatal(err)
		}
		if out[0].Allowed != s.allowed {
			t.Errorf("step %d: allowed %v, want %v", i, out[0].Allowed, s.allowed)
		}
		if cached := in.count() == before; cached != s.cached {
			t.Errorf("step %d: from the cache %v, want %v", i, cached, s.cached)
		}
		if s.cached {
			want := algorithms.Decision{Allowed: false, ResetAfter: algorithms.Minute - s.at, RetryAfter: algorithms.Minute - s.at, Count: 3}
			if out[0] != want {
				t.Errorf("step %d: cached decision %+v, want %+v", i, out[0], want)
			}
		}
	}
	if st := c.Stats(); st.Hits != 3 || st.Calls != 3 || st.Entries != 1 {
		t.Errorf("stats %+v, want 3 hits in 3 calls, 1 entry", st)
	}
}

func TestCacheKeyedOnLimit(t *testing.T) {
	c, in := newCached(100)
	defer c.Close()
	now := micros(t0)
	apply(t, c, now, backends.AllOrNothing, req("k", perMinute(1), 1))
	apply(t, c, now, backends.AllOrNothing, req("k", perMinute(1), 1)) // learnt
	before := in.count()
	// The limit was raised by a reload: the fact no longer applies.
	out, _ := apply(t, c, now, backends.AllOrNothing, req("k", perMinute(5), 1))
	if in.count() == before || !out[0].Allowed {
		t.Errorf("new limit: %+v, asked the store %v; want allowed by the store", out[0], in.count() > before)
	}
}

func TestCacheSkips(t *testing.T) {
	c, in := newCached(100)
	defer c.Close()
	now := micros(t0)
	l := perMinute(1)
	apply(t, c, now, backends.AllOrNothing, req("k", l, 1))
	apply(t, c, now, backends.AllOrNothing, req("k", l, 1)) // learnt

	shadow := req("k", l, 1)
	shadow.Shadow = true
	for name, r := range map[string]backends.Request{"check": req("k", l, 0), "shadow": shadow} {
		before := in.count()
		apply(t, c, now, backends.AllOrNothing, r)
		if in.count() == before {
			t.Errorf("%s request answered from the cache", name)
		}
	}
	// A refund through this cache drops the fact.
	apply(t, c, now, backends.AllOrNothing, req("k", l, -1))
	before := in.count()
	out, _ := apply(t, c, now, backends.AllOrNothing, req("k", l, 1))
	if in.count() == before || !out[0].Allowed {
		t.Errorf("after a refund: %+v, store asked %v; want allowed by the store", out[0], in.count() > before)
	}
	// A shadow refusal teaches nothing.
	apply(t, c, now, backends.AllOrNothing, shadow)
	if c.Stats().Entries != 0 {
		t.Errorf("entries %d after a refund and a shadow refusal, want 0", c.Stats().Entries)
	}
}

func TestCacheAllOrNothing(t *testing.T) {
	for _, mode := range []backends.Mode{backends.AllOrNothing, backends.StopWhenOver} {
		t.Run(mode.String(), func(t *testing.T) {
			c, in := newCached(100)
			defer c.Close()
			now := micros(t0)
			over, other := perMinute(1), perMinute(10)
			apply(t, c, now, mode, req("over", over, 1))
			apply(t, c, now, mode, req("over", over, 1)) // learnt
			before := in.count()
			out, err := apply(t, c, now, mode, req("other", other, 2), req("over", over, 1))
			if err != nil {
				t.Fatal(err)
			}
			if in.count() != before {
				t.Error("a call with a cached refusal reached the store")
			}
			wantOther := algorithms.Decision{Allowed: true, Remaining: 10, ResetAfter: algorithms.Minute}
			if out[0] != wantOther || out[1].Allowed {
				t.Errorf("decisions %+v, want [%+v, refused]", out, wantOther)
			}
			if got := remaining(t, in, now, "other", other); got != 10 {
				t.Errorf("the other bucket has %d left, want 10: it was charged", got)
			}
		})
	}
}

func TestCacheChargeAlways(t *testing.T) {
	c, in := newCached(100)
	defer c.Close()
	now := micros(t0)
	over, other := perMinute(1), perMinute(10)
	apply(t, c, now, backends.ChargeAlways, req("over", over, 1))
	apply(t, c, now, backends.ChargeAlways, req("over", over, 1)) // learnt; count 2
	out, err := apply(t, c, now, backends.ChargeAlways, req("over", over, 1), req("other", other, 2), req("over", over, 1))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(in.lastRequests) != "[other]" {
		t.Errorf("sent %v to the store, want [other]", in.lastRequests)
	}
	if out[0].Allowed || !out[1].Allowed || out[1].Remaining != 8 || out[2].Allowed {
		t.Errorf("decisions %+v", out)
	}
	// The covered bucket was not charged, as envoyproxy/ratelimit's local cache.
	if got := c.Stats().Hits; got != 2 {
		t.Errorf("hits %d, want 2", got)
	}
	out, _ = apply(t, in, now, backends.AllOrNothing, req("over", over, 0))
	if out[0].Count != 2 {
		t.Errorf("over bucket count %d, want 2 (not charged while cached)", out[0].Count)
	}
	// All covered: the store is not called at all.
	before := in.count()
	apply(t, c, now, backends.ChargeAlways, req("over", over, 1))
	if in.count() != before {
		t.Error("a fully cached call reached the store")
	}
}

// Only the first request on a key in a call teaches: the second saw the
// first's tentative hits.
func TestCacheKeyTwice(t *testing.T) {
	c, in := newCached(100)
	defer c.Close()
	now := micros(t0)
	l := perMinute(2)
	apply(t, c, now, backends.AllOrNothing, req("k", l, 1))
	// 1 used: the first takes 1 (tentatively), the second is refused, so
	// the call is refused and charges nothing.
	out, _ := apply(t, c, now, backends.AllOrNothing, req("k", l, 1), req("k", l, 1))
	if !out[0].Allowed || out[1].Allowed {
		t.Fatalf("decisions %+v, want allowed then refused", out)
	}
	before := in.count()
	out, _ = apply(t, c, now, backends.AllOrNothing, req("k", l, 1))
	if in.count() == before || !out[0].Allowed {
		t.Errorf("one hit after a key-twice refusal: %+v, store asked %v; want allowed by the store", out[0], in.count() > before)
	}
}

func TestCacheBounded(t *testing.T) {
	c, _ := newCached(4)
	defer c.Close()
	now := micros(t0)
	l := perMinute(1)
	for i := range 20 {
		for range 2 { // allowed, then refused and learnt
			apply(t, c, now+int64(i), backends.AllOrNothing, req(fmt.Sprint("k", i), l, 1))
		}
	}
	st := c.Stats()
	if st.Entries > 4 || st.Entries < 1 || st.Evictions != 20-st.Entries {
		t.Errorf("stats %+v, want at most 4 entries and the rest evicted", st)
	}
	// Expired facts go first, without counting as evictions.
	later := now + 2*algorithms.Minute
	for range 2 {
		apply(t, c, later, backends.AllOrNothing, req("n", l, 1))
	}
	if st2 := c.Stats(); st2.Evictions != st.Evictions {
		t.Errorf("evictions %d, want %d: the old facts had expired", st2.Evictions, st.Evictions)
	}
}

func TestCacheConcurrent(t *testing.T) {
	c, in := newCached(64)
	defer c.Close()
	now := micros(t0)
	l := perMinute(100)
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				out := make([]algorithms.Decision, 2)
				reqs := []backends.Request{req("hot", l, 1), req(fmt.Sprint("cold", g, i%5), l, 1)}
				if err := c.Apply(context.Background(), now, backends.AllOrNothing, reqs, out); err != nil {
					t.Error(err)
					return
				}
				if out[0].Allowed && out[1].Allowed {
					mu.Lock()
					admitted++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if admitted != 100 {
		t.Errorf("%d admitted on a limit of 100", admitted)
	}
	if got := remaining(t, in, now, "hot", l); got != 0 {
		t.Errorf("hot bucket: %d left, want 0", got)
	}
}
