package redis_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/backendtest"
	"github.com/ratelimitd/ratelimitd/backends/memory"
	"github.com/ratelimitd/ratelimitd/backends/redis"
	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

// gen draws random limits, instants and hits for the property tests.
type gen struct {
	r   *rand.Rand
	now int64
}

var periods = []int64{13, 1000, algorithms.Second, 7 * algorithms.Second, algorithms.Minute, 90 * algorithms.Minute, algorithms.Hour, algorithms.Day}

// limit returns a random limit of a random algorithm.
func (g *gen) limit() algorithms.Limit {
	r := g.r
	l := algorithms.Limit{
		Algorithm: algorithms.Algorithm(r.IntN(5)),
		Rate:      int64(r.IntN(21)),
		Period:    periods[r.IntN(len(periods))],
	}
	switch r.IntN(10) {
	case 0:
		l.Rate = 0
	case 1:
		l.Rate = 1 + r.Int64N(1<<41) // past MaxAmount: clamped, coarse ticks
	case 2:
		l.Rate = 1000 + r.Int64N(1_000_000)
	}
	if l.Algorithm == algorithms.TokenBucket || l.Algorithm == algorithms.GCRA {
		if r.IntN(2) == 0 {
			l.Burst = l.Rate + r.Int64N(2*l.Rate+1)
		}
	}
	if l.Algorithm == algorithms.Concurrency {
		l.Rate = int64(r.IntN(6))
		l.Period = []int64{6 * algorithms.Second, algorithms.Minute, 7, 1000}[r.IntN(4)]
	}
	return l
}

// calendar sets l's window to the uneven "calendar" window containing now
// (lengths cycling through 28, 30 and 31 days from Base), as the config
// layer computes calendar windows, when cal is set.
func calendar(l algorithms.Limit, now int64, cal bool) algorithms.Limit {
	if !cal || (l.Algorithm != algorithms.FixedWindow && l.Algorithm != algorithms.SlidingWindow) {
		return l
	}
	start := backendtest.Base - 40*algorithms.Day
	for k := 0; ; k++ {
		end := start + []int64{28, 30, 31}[k%3]*algorithms.Day
		if now < end {
			l.WindowStart, l.WindowEnd = start, end
			return l
		}
		start = end
	}
}

// step moves now by a random amount: often not at all, mostly forward,
// sometimes a little back (a late caller) or far ahead.
func (g *gen) step(period int64) {
	r := g.r
	switch r.IntN(10) {
	case 0, 1, 2:
	case 3, 4, 5:
		g.now += r.Int64N(1000) + 1
	case 6, 7:
		g.now += r.Int64N(max(period, 1)) + 1
	case 8:
		g.now += r.Int64N(max(period, 1)*10) + 1
	case 9:
		g.now -= r.Int64N(max(period/10, 1) + 1)
	}
}

// hits returns random hits for l: check-only, refunds, within and beyond
// the limit.
func (g *gen) hits(l algorithms.Limit) int64 {
	r := g.r
	switch r.IntN(10) {
	case 0:
		return 0
	case 1:
		return -1 - r.Int64N(3)
	case 2:
		return l.Rate + r.Int64N(3)
	case 3:
		return r.Int64N(min(l.Rate, 1000) + 5)
	}
	return 1
}

// TestLuaTwins drives algorithms.Decide and the Lua twins through a real
// Redis with the same random sequences, and requires identical decisions
// and identical stored states.
func TestLuaTwins(t *testing.T) {
	s := redistest.Standalone(t)
	b := newBackend(t, redis.Options{Addrs: []string{s.Addr}, ClientTime: true})
	rc := s.Client(t)
	seeds, ops := 300, 60
	if testing.Short() {
		seeds = 50
	}
	for seed := range seeds {
		g := &gen{r: rand.New(rand.NewPCG(uint64(seed), 42)), now: backendtest.Base + rand.New(rand.NewPCG(uint64(seed), 1)).Int64N(algorithms.Day)}
		key := fmt.Sprintf("twin/%d", seed)
		l := g.limit()
		cal := g.r.IntN(4) == 0
		var st algorithms.State
		exists := false
		for op := range ops {
			if g.r.IntN(20) == 0 {
				l = g.limit() // a config reload: the state is kept
			}
			g.step(l.Period)
			lim := calendar(l, g.now, cal)
			hits := g.hits(lim)
			want, ns := algorithms.Decide(lim, st, g.now, hits)
			got := apply(t, b, g.now, backends.ChargeAlways, backends.Request{Key: []byte(key), Limit: lim, Hits: hits})[0]
			if got != want {
				t.Fatalf("seed %d op %d: Decide(%+v, %+v, %d, %d)\n got %+v (Lua)\nwant %+v (Go)", seed, op, lim, st, g.now, hits, got, want)
			}
			if exists || hits != 0 {
				st, exists = ns, true
			}
			stored, ok := readState(t, rc, key)
			if !ok {
				// Expired in Redis (its TTL runs on the real clock): by
				// Expiry's contract the state decides as the zero State.
				st, exists = algorithms.State{}, false
				continue
			}
			if stored != st {
				t.Fatalf("seed %d op %d: after Decide(%+v, _, %d, %d) Redis stores %+v, Go %+v", seed, op, lim, g.now, hits, stored, st)
			}
		}
	}
}

// readState reads a bucket's stored state.
func readState(t *testing.T, rc *goredis.Client, key string) (algorithms.State, bool) {
	t.Helper()
	v, err := rc.Get(context.Background(), key).Result()
	if err == goredis.Nil {
		return algorithms.State{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	var f [8]int64
	for i, p := range strings.Fields(v) {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || i >= len(f) {
			t.Fatalf("stored state %q", v)
		}
		f[i] = n
	}
	return algorithms.State{A: f[0], B: f[1], C: f[2], D: f[3], E: f[4], F: f[5], G: f[6], H: f[7]}, true
}

// TestAgainstMemory makes the same random calls (several keys, a key named
// twice, shadow buckets, every mode, every algorithm) on the memory backend
// and on Redis, standalone and Cluster, and requires identical decisions:
// the charging rules and, on the Cluster, the all-or-nothing composition
// across slots.
func TestAgainstMemory(t *testing.T) {
	type topo struct {
		name string
		// opts starts Redis and returns the options and a client to it.
		opts func(t *testing.T) (redis.Options, goredis.Cmdable)
	}
	for _, tp := range []topo{
		{"standalone", func(t *testing.T) (redis.Options, goredis.Cmdable) {
			s := redistest.Standalone(t)
			return redis.Options{Addrs: []string{s.Addr}}, s.Client(t)
		}},
		{"cluster", func(t *testing.T) (redis.Options, goredis.Cmdable) {
			c := redistest.Cluster(t)
			return redis.Options{Topology: redis.Cluster, Addrs: c.Addrs}, c.Client(t)
		}},
	} {
		t.Run(tp.name, func(t *testing.T) {
			o, rc := tp.opts(t)
			o.ClientTime = true
			rb := newBackend(t, o)
			mb := memory.New(memory.Options{})
			t.Cleanup(func() { mb.Close() })
			seeds := 100
			if testing.Short() {
				seeds = 20
			}
			for seed := range seeds {
				g := &gen{r: rand.New(rand.NewPCG(uint64(seed), 7)), now: backendtest.Base}
				keys := make([]string, 2+g.r.IntN(4))
				limits := make([]algorithms.Limit, len(keys))
				for i := range keys {
					keys[i] = fmt.Sprintf("mem/%s/%d/%d", tp.name, seed, i)
					limits[i] = g.limit()
				}
				for op := range 40 {
					g.step(algorithms.Second)
					mode := backends.Mode(g.r.IntN(3))
					n := 1 + g.r.IntN(4)
					reqs := make([]backends.Request, n)
					for i := range reqs {
						k := g.r.IntN(len(keys))
						reqs[i] = backends.Request{Key: []byte(keys[k]), Limit: limits[k], Hits: g.hits(limits[k]), Shadow: g.r.IntN(4) == 0}
					}
					want := apply(t, mb, g.now, mode, reqs...)
					got := apply(t, rb, g.now, mode, reqs...)
					for i := range reqs {
						if got[i] != want[i] {
							t.Fatalf("seed %d op %d (%s) request %d of %+v:\n got %+v (Redis)\nwant %+v (memory)", seed, op, mode, i, reqs, got[i], want[i])
						}
					}
					// The simulated clock runs slower than the real one
					// that expires Redis keys: keep them, as memory does.
					for _, k := range keys {
						rc.Persist(context.Background(), k)
					}
				}
			}
		})
	}
}
