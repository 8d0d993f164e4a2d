package memory

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/backendtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const base = backendtest.Base

func perMinute(rate int64) algorithms.Limit {
	return algorithms.Limit{Algorithm: algorithms.FixedWindow, Rate: rate, Period: algorithms.Minute}
}

func TestConformance(t *testing.T) {
	for _, opts := range []Options{
		{},                                // defaults
		{Shards: 1, MaxBuckets: 1 << 13},  // every key in one shard: one lock for the call
		{Shards: 1024},                    // keys of a call spread over many shards
		{MaxBuckets: 1 << 10},             // a bound the suite stays under
		{SweepInterval: time.Millisecond}, // a busy sweeper with the real clock
	} {
		t.Run(fmt.Sprintf("%+v", opts), func(t *testing.T) {
			if opts.SweepInterval != 0 {
				backendtest.Run(t, func(t *testing.T) backends.Backend { return New(opts) })
				return
			}
			// The suite's clock, for memo expiry at exact instants.
			backendtest.RunClocked(t, func(t *testing.T, c *backendtest.Clock) backends.Backend {
				o := opts
				o.Now = c.Now
				return New(o)
			})
		})
	}
}

func TestNewOptions(t *testing.T) {
	for _, c := range []struct {
		opts             Options
		shards, perShard int
	}{
		{Options{}, 128, (1 << 20) / 128},
		{Options{Shards: -3, MaxBuckets: -1}, 128, (1 << 20) / 128},
		{Options{Shards: 5, MaxBuckets: 1000}, 8, 125},
		{Options{Shards: 1 << 30}, 1 << 16, 16},
		{Options{Shards: 64, MaxBuckets: 10}, 8, 1}, // never more than MaxBuckets in total
		{Options{Shards: 64, MaxBuckets: 1}, 1, 1},
		{Options{Shards: 1}, 128, 1 << 13},                     // raised: at most 8192 a shard
		{Options{Shards: 4, MaxBuckets: 1 << 17}, 16, 1 << 13}, // likewise
		{Options{Shards: 1, MaxBuckets: 1 << 40}, 1 << 16, 1 << 24},
	} {
		b := New(c.opts)
		if len(b.shards) != c.shards || b.perShard != c.perShard || b.mask != uint64(c.shards-1) {
			t.Errorf("New(%+v): %d shards of %d, mask %x; want %d of %d", c.opts, len(b.shards), b.perShard, b.mask, c.shards, c.perShard)
		}
		b.Close()
	}
}

func apply(t *testing.T, b *Backend, now int64, mode backends.Mode, reqs ...backends.Request) []algorithms.Decision {
	t.Helper()
	out := make([]algorithms.Decision, len(reqs))
	if err := b.Apply(context.Background(), now, mode, reqs, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func req(key string, l algorithms.Limit, hits int64) backends.Request {
	return backends.Request{Key: []byte(key), Limit: l, Hits: hits}
}

func TestApplyErrors(t *testing.T) {
	b := New(Options{})
	r := []backends.Request{req("a", perMinute(1), 1), req("b", perMinute(1), 1)}
	if err := b.Apply(context.Background(), base, backends.AllOrNothing, r, make([]algorithms.Decision, 1)); err == nil {
		t.Error("Apply with a short out: no error")
	}
	if err := b.Apply(context.Background(), base, backends.Mode(9), r, make([]algorithms.Decision, 2)); err == nil {
		t.Error("Apply with an unknown mode: no error")
	}
	if s := b.Stats(); s.Buckets != 0 {
		t.Errorf("failed calls stored %d buckets", s.Buckets)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	err := b.Apply(context.Background(), base, backends.AllOrNothing, r, make([]algorithms.Decision, 2))
	if !errors.Is(err, backends.ErrUnavailable) {
		t.Errorf("Apply after Close: %v, want an error wrapping ErrUnavailable", err)
	}
}

func TestCloseStopsSweeper(t *testing.T) {
	defer goleak.VerifyNone(t)
	b := New(Options{SweepInterval: time.Microsecond})
	apply(t, b, base, backends.AllOrNothing, req("a", perMinute(1), 1))
	time.Sleep(time.Millisecond) // let it sweep a few times
	b.Close()
}

func TestCheckOnlyStoresNothing(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	apply(t, b, base, backends.AllOrNothing, req("a", perMinute(1), 0))
	apply(t, b, base, backends.AllOrNothing, req("b", perMinute(1), 5)) // refused
	if s := b.Stats(); s.Buckets != 0 {
		t.Errorf("checks and refusals of new keys stored %d buckets", s.Buckets)
	}
	apply(t, b, base, backends.ChargeAlways, req("b", perMinute(1), 5))
	if s := b.Stats(); s.Buckets != 1 {
		t.Errorf("charged refusal stored %d buckets, want 1", s.Buckets)
	}
}

func TestSweep(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	hour := algorithms.Limit{Rate: 5, Period: algorithms.Hour}
	apply(t, b, base, backends.AllOrNothing, req("minute", perMinute(5), 1), req("hour", hour, 1))
	if n := b.sweep(base + algorithms.Minute - 1); n != 0 {
		t.Errorf("sweep before any expiry removed %d", n)
	}
	if n := b.sweep(base + algorithms.Minute); n != 1 {
		t.Errorf("sweep at the minute's end removed %d, want 1", n)
	}
	if d := apply(t, b, base+algorithms.Minute, backends.AllOrNothing, req("hour", hour, 0)); d[0].Count != 1 {
		t.Errorf("the hour bucket lost its count: %+v", d[0])
	}
	if s := b.Stats(); s.Buckets != 1 {
		t.Errorf("%d buckets left, want 1", s.Buckets)
	}
}

func TestSweeperUsesNow(t *testing.T) {
	var clock atomic.Int64
	clock.Store(base)
	b := New(Options{SweepInterval: time.Millisecond, Now: func() time.Time { return time.UnixMicro(clock.Load()) }})
	defer b.Close()
	apply(t, b, base, backends.AllOrNothing, req("a", perMinute(5), 1), req("b", perMinute(5), 1))
	time.Sleep(20 * time.Millisecond)
	if s := b.Stats(); s.Buckets != 2 {
		t.Fatalf("sweeper removed live buckets: %+v", s)
	}
	clock.Store(base + algorithms.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for b.Stats().Buckets != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("expired buckets still there after 10s: %+v", b.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBoundEvictsEarliestExpiry(t *testing.T) {
	b := New(Options{Shards: 1, MaxBuckets: 4})
	defer b.Close()
	hour := algorithms.Limit{Rate: 5, Period: algorithms.Hour}
	apply(t, b, base, backends.AllOrNothing, req("h1", hour, 1), req("m", perMinute(5), 1), req("h2", hour, 1), req("h3", hour, 1))
	if s := b.Stats(); s != (Stats{Buckets: 4}) {
		t.Fatalf("Stats = %+v, want 4 buckets", s)
	}
	apply(t, b, base, backends.AllOrNothing, req("new", hour, 1))
	if s := b.Stats(); s != (Stats{Buckets: 4, Evictions: 1}) {
		t.Errorf("Stats = %+v, want 4 buckets and 1 eviction", s)
	}
	// The whole shard is within the sample: the bucket expiring first
	// went, and restarts from empty.
	d := apply(t, b, base, backends.AllOrNothing, req("m", perMinute(5), 0), req("h1", hour, 0), req("h2", hour, 0), req("h3", hour, 0), req("new", hour, 0))
	for i, want := range []int64{0, 1, 1, 1, 1} {
		if d[i].Count != want {
			t.Errorf("request %d: count %d, want %d", i, d[i].Count, want)
		}
	}
}

func TestBoundPrefersExpired(t *testing.T) {
	b := New(Options{Shards: 1, MaxBuckets: 2})
	defer b.Close()
	apply(t, b, base, backends.AllOrNothing, req("a", perMinute(5), 1), req("b", perMinute(5), 1))
	later := base + algorithms.Minute
	apply(t, b, later, backends.AllOrNothing, req("c", perMinute(5), 1))
	if s := b.Stats(); s != (Stats{Buckets: 1}) {
		t.Errorf("Stats = %+v, want the expired buckets removed without an eviction", s)
	}
}

func TestBoundHolds(t *testing.T) {
	const maxBuckets, keys = 100, 5000
	b := New(Options{Shards: 4, MaxBuckets: maxBuckets})
	defer b.Close()
	for i := range keys {
		apply(t, b, base, backends.AllOrNothing, req(fmt.Sprint("k", i), perMinute(5), 1))
		if s := b.Stats(); s.Buckets > maxBuckets {
			t.Fatalf("after %d keys: %d buckets > %d", i+1, s.Buckets, maxBuckets)
		}
	}
	// No bucket expired, so every new key past a full shard evicted one.
	if s := b.Stats(); s.Buckets+s.Evictions != keys || s.Buckets < maxBuckets*9/10 {
		t.Errorf("Stats = %+v after %d keys", s, keys)
	}
}

func TestZeroAllocs(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	ctx := context.Background()
	big := perMinute(1 << 62)
	for _, n := range []int{1, 4, stackReqs} {
		reqs := make([]backends.Request, n)
		for i := range reqs {
			reqs[i] = req(fmt.Sprintf("alloc-%d-%d", n, i), big, 1)
		}
		reqs[n-1].Key = reqs[0].Key // a key named twice too
		out := make([]algorithms.Decision, n)
		for _, mode := range []backends.Mode{backends.AllOrNothing, backends.ChargeAlways, backends.StopWhenOver} {
			if err := b.Apply(ctx, base, mode, reqs, out); err != nil { // create the keys
				t.Fatal(err)
			}
			if a := testing.AllocsPerRun(100, func() { b.Apply(ctx, base, mode, reqs, out) }); a != 0 {
				t.Errorf("%d requests, %s: %v allocs per Apply, want 0", n, mode, a)
			}
		}
		// A vetoed call (the second pass) allocates nothing either.
		reqs[0].Limit = perMinute(0)
		if a := testing.AllocsPerRun(100, func() { b.Apply(ctx, base, backends.AllOrNothing, reqs, out) }); a != 0 {
			t.Errorf("%d requests, vetoed: %v allocs per Apply, want 0", n, a)
		}
		if out[0].Allowed {
			t.Errorf("%d requests: the veto did not happen", n)
		}
	}
}

// TestNewKeyZeroAllocs: a new key allocates nothing either once its
// shard's table has grown to the size its bound needs, whether it fills a
// free slot or evicts a bucket; nor does a concurrency bucket moving to
// the full-state table and back once that table has grown.
func TestNewKeyZeroAllocs(t *testing.T) {
	b := New(Options{Shards: 1, MaxBuckets: 64})
	defer b.Close()
	ctx := context.Background()
	reqs := []backends.Request{req("", perMinute(5), 1)}
	out := make([]algorithms.Decision, 1)
	key := make([]byte, 0, 32)
	i := 0
	newKey := func() {
		key = strconv.AppendInt(append(key[:0], "new-"...), int64(i), 10)
		reqs[0].Key = key
		i++
		if err := b.Apply(ctx, base, backends.AllOrNothing, reqs, out); err != nil {
			t.Fatal(err)
		}
	}
	for range 64 {
		newKey()
	}
	if a := testing.AllocsPerRun(1000, newKey); a != 0 {
		t.Errorf("%v allocs per new key in a full shard, want 0", a)
	}
	b.Reset(ctx, [][]byte{[]byte("new-1"), []byte("new-2")}) // two free slots
	if a := testing.AllocsPerRun(1, newKey); a != 0 {
		t.Errorf("%v allocs for a new key in a free slot, want 0", a)
	}

	lease := algorithms.Limit{Algorithm: algorithms.Concurrency, Rate: 10, Period: algorithms.Minute}
	c := []backends.Request{req("lease", lease, 1)}
	// Acquisitions 30s (3 lease slots) apart need E: full state; 70s
	// apart the first has expired: small state again.
	now, gap := base, 30*algorithms.Second
	acquire := func() {
		if err := b.Apply(ctx, now, backends.AllOrNothing, c, out); err != nil {
			t.Fatal(err)
		}
		now, gap = now+gap, 100*algorithms.Second-gap
	}
	acquire() // a new key, small
	for i := range 3 {
		acquire() // to the full-state table (which grows the first time), and back
		if n := b.shards[0].full.n; n != 1-i%2 {
			t.Fatalf("acquisition %d: %d buckets in the full-state table, want %d", i+2, n, 1-i%2)
		}
	}
	if a := testing.AllocsPerRun(10, acquire); a != 0 {
		t.Errorf("%v allocs per move between tables, want 0", a)
	}
}

func benchReqs(prefix string, n int) []backends.Request {
	reqs := make([]backends.Request, n)
	for i := range reqs {
		reqs[i] = req(fmt.Sprintf("%s-%d", prefix, i), perMinute(1<<62), 1)
	}
	return reqs
}

func benchApply(b *testing.B, n int) {
	be := New(Options{})
	defer be.Close()
	reqs := benchReqs("bench", n)
	out := make([]algorithms.Decision, n)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := be.Apply(ctx, base, backends.AllOrNothing, reqs, out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkApply1(b *testing.B)  { benchApply(b, 1) }
func BenchmarkApply16(b *testing.B) { benchApply(b, 16) }

func BenchmarkApplyParallelHotKey(b *testing.B) {
	be := New(Options{})
	defer be.Close()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		reqs := benchReqs("hot", 1)
		out := make([]algorithms.Decision, 1)
		for pb.Next() {
			if err := be.Apply(ctx, base, backends.AllOrNothing, reqs, out); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkApplyParallelUniqueKeys(b *testing.B) {
	be := New(Options{})
	defer be.Close()
	ctx := context.Background()
	var g atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		// Each goroutine cycles over its own 1024 keys.
		reqs := benchReqs(fmt.Sprint("unique", g.Add(1)), 1024)
		out := make([]algorithms.Decision, 1)
		i := 0
		for pb.Next() {
			if err := be.Apply(ctx, base, backends.AllOrNothing, reqs[i:i+1], out); err != nil {
				b.Error(err)
				return
			}
			i = (i + 1) % len(reqs)
		}
	})
}

func BenchmarkApplyNewKeys(b *testing.B) {
	be := New(Options{MaxBuckets: 1 << 16})
	defer be.Close()
	ctx := context.Background()
	reqs := benchReqs("new", 1)
	out := make([]algorithms.Decision, 1)
	key := make([]byte, 0, 32)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		key = strconv.AppendInt(append(key[:0], "new-"...), int64(i), 10)
		reqs[0].Key = key
		if err := be.Apply(ctx, base, backends.AllOrNothing, reqs, out); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// TestLockOrder has calls lock the same two shards, naming their keys in
// both orders: shards are always locked in ascending order, so no call waits
// for another that waits for it.
func TestLockOrder(t *testing.T) {
	b := New(Options{Shards: 2, MaxBuckets: 1 << 10})
	defer b.Close()
	var keys [2]string // one key in each shard
	for i := 0; keys[0] == "" || keys[1] == ""; i++ {
		k := fmt.Sprint("k", i)
		keys[b.hash([]byte(k)).shard&b.mask] = k
	}
	l := perMinute(1 << 40)
	const goroutines, calls = 8, 5000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			out := make([]algorithms.Decision, 2)
			for i := range calls {
				x, y := keys[(g+i)%2], keys[(g+i+1)%2]
				b.Apply(context.Background(), base, backends.AllOrNothing, []backends.Request{req(x, l, 1), req(y, l, 1)}, out)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("calls on two shards deadlocked")
	}
	d := apply(t, b, base, backends.AllOrNothing, req(keys[0], l, 0), req(keys[1], l, 0))
	if d[0].Count != goroutines*calls || d[1].Count != goroutines*calls {
		t.Errorf("counts %d and %d, want %d", d[0].Count, d[1].Count, goroutines*calls)
	}
}
