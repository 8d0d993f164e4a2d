package redis_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/backendtest"
	"github.com/ratelimitd/ratelimitd/backends/redis"
	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

const (
	sec    = algorithms.Second
	minute = algorithms.Minute
	aon    = backends.AllOrNothing
)

func perMinute(rate int64) algorithms.Limit {
	return algorithms.Limit{Algorithm: algorithms.FixedWindow, Rate: rate, Period: minute}
}

func req(key string, l algorithms.Limit, hits int64) backends.Request {
	return backends.Request{Key: []byte(key), Limit: l, Hits: hits}
}

// apply calls Apply with a generous deadline and fails the test on error.
func apply(t testing.TB, b backends.Backend, now int64, mode backends.Mode, reqs ...backends.Request) []algorithms.Decision {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := make([]algorithms.Decision, len(reqs))
	if err := b.Apply(ctx, now, mode, reqs, out); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return out
}

// eventually calls f until it returns nil, failing the test after timeout.
func eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestUnixSocket(t *testing.T) {
	s := redistest.Standalone(t)
	b := newBackend(t, redis.Options{Addrs: []string{s.Socket}, ClientTime: true})
	d := apply(t, b, backendtest.Base, aon, req("unix", perMinute(2), 1))
	if !d[0].Allowed || d[0].Remaining != 1 {
		t.Fatalf("over a unix socket: %+v", d[0])
	}
}

// TestRedisTime decides at Redis's clock: the now passed to Apply is
// ignored, and the window is the real one.
func TestRedisTime(t *testing.T) {
	s := redistest.Standalone(t)
	b := newBackend(t, redis.Options{Addrs: []string{s.Addr}})
	l := algorithms.Limit{Rate: 2, Period: algorithms.Hour}
	key := fmt.Sprintf("time-%d", rand.Int64())
	var ds []algorithms.Decision
	for range 3 {
		ds = append(ds, apply(t, b, 0, aon, req(key, l, 1))[0]) // now 0 would be 1970
	}
	if !ds[0].Allowed || !ds[1].Allowed || ds[2].Allowed || ds[1].Remaining != 0 || ds[2].Count != 2 {
		t.Fatalf("decisions %+v, want two allowed then one refused", ds)
	}
	// The window ends on an hour boundary of the real clock (Redis and the
	// test run on the same machine; allow a minute of slack).
	end := time.Now().UnixMicro() + ds[0].ResetAfter
	if off := end % algorithms.Hour; off > minute && off < algorithms.Hour-minute {
		t.Errorf("window ends %v past an hour boundary: not Redis's real clock (ResetAfter %d)", time.Duration(off)*time.Microsecond, ds[0].ResetAfter)
	}
	// The key lives until the window ends, plus the margin.
	ttl, err := s.Client(t).PTTL(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if max := time.Duration(ds[0].ResetAfter)*time.Microsecond + redis.TTLMargin*time.Millisecond + time.Millisecond; ttl <= 0 || ttl > max {
		t.Errorf("PTTL %v, want in (0, %v]", ttl, max)
	}
}

// TestExpiry checks that a key's TTL is the rest of its window plus the
// margin (ClientTime's, as the test passes the time), measured from the
// decision's instant.
func TestExpiry(t *testing.T) {
	s := redistest.Standalone(t)
	b := newBackend(t, redis.Options{Addrs: []string{s.Addr}, ClientTime: true})
	now := time.Now().UnixMicro()
	now -= now % minute // start of a window: the key lives one window
	apply(t, b, now, aon, req("exp", perMinute(5), 1))
	ttl, err := s.Client(t).PTTL(context.Background(), "exp").Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Minute + redis.ClientTimeTTLMargin*time.Millisecond + time.Millisecond; ttl <= want-10*time.Second || ttl > want {
		t.Errorf("PTTL %v, want about %v", ttl, want)
	}
	// A check on a new key leaves no trace.
	apply(t, b, now, aon, req("exp-check", perMinute(5), 0))
	if n := s.Client(t).Exists(context.Background(), "exp-check").Val(); n != 0 {
		t.Errorf("a check created its key")
	}
}

// TestNoscript flushes the script cache with Functions off: the next call
// loads the script again.
func TestNoscript(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		s := redistest.Standalone(t)
		for _, window := range []time.Duration{0, 100 * time.Microsecond} {
			b := newBackend(t, redis.Options{Addrs: []string{s.Addr}, ClientTime: true, BatchWindow: window, DisableFunctions: true})
			key := fmt.Sprint("ns", window)
			apply(t, b, backendtest.Base, aon, req(key, perMinute(5), 1))
			reloads := b.Stats().NoscriptReloads
			if err := s.Client(t).ScriptFlush(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
			d := apply(t, b, backendtest.Base, aon, req(key, perMinute(5), 1))
			if d[0].Count != 2 {
				t.Errorf("after SCRIPT FLUSH: %+v, want count 2", d[0])
			}
			if st := b.Stats(); st.NoscriptReloads != reloads+1 {
				t.Errorf("NoscriptReloads = %d, want %d", st.NoscriptReloads, reloads+1)
			}
		}
	})
	t.Run("cluster", func(t *testing.T) {
		c := redistest.Cluster(t)
		b := newBackend(t, redis.Options{Topology: redis.Cluster, Addrs: c.Addrs, ClientTime: true, DisableFunctions: true})
		reqs := []backends.Request{req("a", perMinute(5), 1), req("b", perMinute(5), 1), req("c", perMinute(5), 1)}
		apply(t, b, backendtest.Base, aon, reqs...)
		reloads := b.Stats().NoscriptReloads
		cc := c.Client(t)
		if err := cc.ForEachMaster(context.Background(), func(ctx context.Context, c *goredisClient) error {
			return c.ScriptFlush(ctx).Err()
		}); err != nil {
			t.Fatal(err)
		}
		for i, d := range apply(t, b, backendtest.Base, aon, reqs...) {
			if d.Count != 2 {
				t.Errorf("request %d after SCRIPT FLUSH: %+v, want count 2", i, d)
			}
		}
		if st := b.Stats(); st.NoscriptReloads <= reloads {
			t.Errorf("NoscriptReloads = %d, want more than %d", st.NoscriptReloads, reloads)
		}
	})
}

// TestClusterAllOrNothing checks, by reading the counters in Redis, that a
// call spanning slots charges nothing when one slot is over, and that keys
// sharing a hash tag share a slot and need no refund.
func TestClusterAllOrNothing(t *testing.T) {
	c := redistest.Cluster(t)
	cc := c.Client(t)
	b := newBackend(t, redis.Options{Topology: redis.Cluster, Addrs: c.Addrs, ClientTime: true})
	ctx := context.Background()
	// Keys on every node.
	keys := []string{"a", "b", "c", "d", "e", "f"}
	slots := map[int]bool{}
	for _, k := range keys {
		slots[redis.Slot(k)] = true
	}
	if len(slots) < 3 {
		t.Fatalf("test keys on %d slots", len(slots))
	}
	counter := func(k string) string {
		v, err := cc.Get(ctx, k).Result()
		if err != nil {
			return err.Error()
		}
		return v
	}
	now := backendtest.Base
	apply(t, b, now, aon, req("full", perMinute(1), 1))
	var reqs []backends.Request
	for _, k := range keys {
		reqs = append(reqs, req(k, perMinute(10), 2))
	}
	reqs = append(reqs, req("full", perMinute(1), 1))
	out := apply(t, b, now, aon, reqs...)
	for i, k := range keys {
		if want := (algorithms.Decision{Allowed: true, Remaining: 10, ResetAfter: minute}); out[i] != want {
			t.Errorf("%s: %+v, want %+v", k, out[i], want)
		}
		if v := counter(k); v != "redis: nil" {
			t.Errorf("%s holds %q after a vetoed call, want nothing", k, v)
		}
	}
	if st := b.Stats(); st.Refunds != 1 || st.RefundErrors != 0 {
		t.Errorf("Refunds %d, RefundErrors %d; want 1, 0", st.Refunds, st.RefundErrors)
	}
	// Charged, then vetoed: the counters are back where they were.
	apply(t, b, now, aon, reqs[:len(keys)]...)
	before := map[string]string{}
	for _, k := range keys {
		before[k] = counter(k)
	}
	apply(t, b, now, aon, reqs...)
	for _, k := range keys {
		if v := counter(k); v != before[k] {
			t.Errorf("%s = %q after a vetoed call, want %q", k, v, before[k])
		}
	}
	// Not vetoed: every slot charged.
	for i, d := range apply(t, b, now, aon, reqs[:len(keys)]...) {
		if !d.Allowed || d.Count != 4 {
			t.Errorf("%s: %+v, want allowed with count 4", keys[i], d)
		}
	}

	// Hash tags: one slot, one invocation, no refund needed.
	tagged := []string{"{org1}a", "{org1}b", "{org1}c"}
	for _, k := range tagged[1:] {
		if redis.Slot(k) != redis.Slot(tagged[0]) {
			t.Fatalf("%s and %s on different slots", k, tagged[0])
		}
	}
	refunds := b.Stats().Refunds
	apply(t, b, now, aon, req("{org1}full", perMinute(0), 0))
	apply(t, b, now, aon, req(tagged[0], perMinute(5), 1), req(tagged[1], perMinute(5), 1), req("{org1}full", perMinute(0), 1))
	for _, k := range tagged[:2] {
		if v := counter(k); v != "redis: nil" {
			t.Errorf("%s holds %q after a vetoed call", k, v)
		}
	}
	if st := b.Stats(); st.Refunds != refunds {
		t.Errorf("a call on one hash tag needed a refund")
	}
}

// TestSlot checks Slot against CLUSTER KEYSLOT.
func TestSlot(t *testing.T) {
	c := redistest.Cluster(t)
	cc := c.Client(t)
	keys := []string{"", "a", "foo", "{user1000}.following", "{user1000}.followers", "foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}", "{}x", "x{", "\xff\x00"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		b := make([]byte, r.IntN(20))
		for i := range b {
			b[i] = "ab{}x\x00\xff"[r.IntN(7)]
		}
		keys = append(keys, string(b))
	}
	for _, k := range keys {
		want, err := cc.ClusterKeySlot(context.Background(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := redis.Slot(k); int64(got) != want {
			t.Errorf("Slot(%q) = %d, CLUSTER KEYSLOT says %d", k, got, want)
		}
	}
}

// TestKillRestart kills Redis under load: calls fail with ErrUnavailable
// within their deadline, and succeed again once Redis is back, on the same
// Backend.
func TestKillRestart(t *testing.T) {
	s := redistest.Standalone(t)
	for _, window := range []time.Duration{0, 100 * time.Microsecond} {
		t.Run(fmt.Sprint("window=", window), func(t *testing.T) {
			b := newBackend(t, redis.Options{Addrs: []string{s.Addr}, ClientTime: true, BatchWindow: window})
			const deadline = 100 * time.Millisecond
			var (
				stop              atomic.Bool
				ok, failed, wrong atomic.Int64
				slowest           atomic.Int64
				wg                sync.WaitGroup
			)
			for g := range 8 {
				wg.Go(func() {
					out := make([]algorithms.Decision, 2)
					for i := 0; !stop.Load(); i++ {
						ctx, cancel := context.WithTimeout(context.Background(), deadline)
						start := time.Now()
						err := b.Apply(ctx, backendtest.Base, aon, []backends.Request{
							req("load"+strconv.Itoa(g), perMinute(1<<40), 1), req("shared", perMinute(1<<40), 1)}, out)
						cancel()
						if took := int64(time.Since(start)); took > slowest.Load() {
							slowest.Store(took)
						}
						switch {
						case err == nil:
							ok.Add(1)
						case errors.Is(err, backends.ErrUnavailable):
							failed.Add(1)
						default:
							wrong.Add(1)
							t.Errorf("error not wrapping ErrUnavailable: %v", err)
						}
					}
				})
			}
			eventually(t, 10*time.Second, func() error {
				if ok.Load() < 100 {
					return errors.New("no load yet")
				}
				return nil
			})
			s.Kill()
			okAtKill := ok.Load()
			eventually(t, 10*time.Second, func() error {
				if failed.Load() < 50 {
					return fmt.Errorf("%d failures after kill", failed.Load())
				}
				return nil
			})
			s.Restart()
			eventually(t, 15*time.Second, func() error {
				if ok.Load() < okAtKill+100 {
					return errors.New("no successes after restart")
				}
				return nil
			})
			stop.Store(true)
			wg.Wait()
			// A hang would show as a call far past its deadline (generous
			// bound: this detects hangs, not slowness).
			if d := time.Duration(slowest.Load()); d > deadline+3*time.Second {
				t.Errorf("slowest call took %v with a %v deadline", d, deadline)
			}
			if wrong.Load() > 0 {
				t.Errorf("%d errors did not wrap ErrUnavailable", wrong.Load())
			}
		})
	}
}

// TestPaused stops Redis with SIGSTOP (a hung Redis): calls return at their
// deadline with ErrUnavailable, and work again once it continues.
func TestPaused(t *testing.T) {
	s := redistest.Standalone(t)
	for _, window := range []time.Duration{0, 100 * time.Microsecond} {
		b := newBackend(t, redis.Options{Addrs: []string{s.Addr}, ClientTime: true, BatchWindow: window})
		apply(t, b, backendtest.Base, aon, req("p", perMinute(100), 1))
		s.Pause()
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				start := time.Now()
				err := b.Apply(ctx, backendtest.Base, aon, []backends.Request{req("p", perMinute(100), 1)}, make([]algorithms.Decision, 1))
				if !errors.Is(err, backends.ErrUnavailable) {
					t.Errorf("Apply on a paused Redis: %v, want ErrUnavailable", err)
				}
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("Apply on a paused Redis took %v with a 50ms deadline", d)
				}
			})
		}
		wg.Wait()
		s.Resume()
		eventually(t, 10*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return b.Apply(ctx, backendtest.Base, aon, []backends.Request{req("p", perMinute(100), 0)}, make([]algorithms.Decision, 1))
		})
	}
}

// TestDownAtStart: New does not need Redis; Apply and Ping fail until it
// is up.
func TestDownAtStart(t *testing.T) {
	s := redistest.Standalone(t)
	s.Kill()
	b := newBackend(t, redis.Options{Addrs: []string{s.Addr}, ClientTime: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := b.Ping(ctx); !errors.Is(err, backends.ErrUnavailable) {
		t.Errorf("Ping with Redis down: %v", err)
	}
	if err := b.Apply(ctx, backendtest.Base, aon, []backends.Request{req("x", perMinute(1), 1)}, make([]algorithms.Decision, 1)); !errors.Is(err, backends.ErrUnavailable) {
		t.Errorf("Apply with Redis down: %v", err)
	}
	s.Restart()
	eventually(t, 10*time.Second, func() error { return b.Ping(context.Background()) })
	apply(t, b, backendtest.Base, aon, req("x", perMinute(1), 1))
}

// TestSentinelFailover kills the master: the backend follows the promoted
// replica by itself.
func TestSentinelFailover(t *testing.T) {
	s := redistest.Sentinel(t)
	b := newBackend(t, redis.Options{Topology: redis.Sentinel, Addrs: s.SentinelAddrs, MasterName: s.MasterName, ClientTime: true})
	apply(t, b, backendtest.Base, aon, req("f", perMinute(100), 1))
	s.KillMaster()
	s.WaitForPromotion(redistest.FailoverPatience)
	eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return b.Apply(ctx, backendtest.Base, aon, []backends.Request{req("f", perMinute(100), 1)}, make([]algorithms.Decision, 1))
	})
	if err := b.Ping(context.Background()); err != nil {
		t.Errorf("Ping after failover: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	for _, o := range []redis.Options{
		{},
		{Addrs: []string{"a:1", "b:1"}},
		{Topology: redis.Sentinel, Addrs: []string{"a:1"}},
		{Topology: "ring", Addrs: []string{"a:1"}},
	} {
		if b, err := redis.New(o); err == nil {
			b.Close()
			t.Errorf("New(%+v) did not fail", o)
		}
	}
}
