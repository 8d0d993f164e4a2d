package redis_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/backendtest"
	"github.com/ratelimitd/ratelimitd/backends/redis"
	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

// BenchmarkApply measures Apply with parallel callers (par × GOMAXPROCS
// goroutines), each call deciding two buckets of one hash tag, with
// batching off and on with several windows (1ns: coalesce only the calls
// already waiting). Results and the command are in docs/benchmarks.md:
//
//	go test -short -run '^$' -bench BenchmarkApply -benchtime 1s -count 4 ./backends/redis
func BenchmarkApply(b *testing.B) {
	s := redistest.Standalone(b)
	for _, topo := range benchTopos() {
		addr := s.Addr
		if topo == "unix" {
			addr = s.Socket
		}
		for _, par := range []int{1, 4, 16} {
			for _, window := range []time.Duration{0, time.Nanosecond, 50 * time.Microsecond, 200 * time.Microsecond} {
				name := fmt.Sprintf("%s/par=%dxCPU/window=%v", topo, par, window)
				if window == 0 {
					name = fmt.Sprintf("%s/par=%dxCPU/window=off", topo, par)
				}
				b.Run(name, func(b *testing.B) {
					benchApply(b, redis.Options{Addrs: []string{addr}, ClientTime: true, BatchWindow: window}, par)
				})
			}
		}
	}
}

// BenchmarkApplyCluster is BenchmarkApply on a three-master Cluster, each
// call deciding two buckets on one hash tag.
func BenchmarkApplyCluster(b *testing.B) {
	c := redistest.Cluster(b)
	for _, window := range []time.Duration{0, time.Nanosecond, 50 * time.Microsecond, 200 * time.Microsecond} {
		name := fmt.Sprintf("par=16xCPU/window=%v", window)
		if window == 0 {
			name = "par=16xCPU/window=off"
		}
		b.Run(name, func(b *testing.B) {
			benchApply(b, redis.Options{Topology: redis.Cluster, Addrs: c.Addrs, ClientTime: true, BatchWindow: window}, 16)
		})
	}
}

func benchApply(b *testing.B, o redis.Options, par int) {
	be, err := redis.New(o)
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	l := algorithms.Limit{Rate: 1 << 50, Period: algorithms.Hour}
	var id atomic.Int64
	b.SetParallelism(par)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		n := id.Add(1)
		reqs := []backends.Request{
			{Key: fmt.Appendf(nil, "{bench%d}a", n%64), Limit: l, Hits: 1},
			{Key: fmt.Appendf(nil, "{bench%d}b", n%64), Limit: l, Hits: 1},
		}
		out := make([]algorithms.Decision, 2)
		for pb.Next() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if err := be.Apply(ctx, backendtest.Base, backends.AllOrNothing, reqs, out); err != nil {
				b.Error(err)
			}
			cancel()
		}
	})
	b.StopTimer()
	st := be.Stats()
	if st.Batches > 0 {
		b.ReportMetric(float64(st.Calls)/float64(st.Batches), "calls/batch")
	}
}

// BenchmarkCallCost measures what one call costs Redis itself: the
// usec_per_call that INFO commandstats reports for FCALL (the library of
// functions) and for EVALSHA (Options.DisableFunctions), for the same calls,
// made alternately by one goroutine so that both meet the same load. Each
// call decides 1 or 2 fixed-window buckets (BenchmarkApply's mix: 2 on one
// hash tag). ns/op is the wall time of the pair of calls. Results in
// docs/benchmarks.md:
//
//	go test -run '^$' -bench BenchmarkCallCost -benchtime 20000x -count 5 ./backends/redis
func BenchmarkCallCost(b *testing.B) {
	s := redistest.Standalone(b)
	rc := s.Client(b)
	ctx := context.Background()
	l := algorithms.Limit{Rate: 1 << 50, Period: algorithms.Hour}
	for _, nkeys := range []int{1, 2} {
		b.Run(fmt.Sprintf("keys=%d", nkeys), func(b *testing.B) {
			fn := newBenchBackend(b, redis.Options{Addrs: []string{s.Addr}, ClientTime: true})
			sc := newBenchBackend(b, redis.Options{Addrs: []string{s.Addr}, ClientTime: true, DisableFunctions: true})
			keys := func(p string) []backends.Request {
				var reqs []backends.Request
				for k := range nkeys {
					reqs = append(reqs, backends.Request{Key: fmt.Appendf(nil, "{%s}%d", p, k), Limit: l, Hits: 1})
				}
				return reqs
			}
			fnReqs, scReqs := keys("fn"), keys("sc")
			out := make([]algorithms.Decision, nkeys)
			call := func(be *redis.Backend, reqs []backends.Request) {
				ctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				if err := be.Apply(ctx, backendtest.Base, backends.AllOrNothing, reqs, out); err != nil {
					b.Fatal(err)
				}
			}
			call(fn, fnReqs) // loads the library and the script
			call(sc, scReqs)
			if err := rc.ConfigResetStat(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				call(fn, fnReqs)
				call(sc, scReqs)
			}
			b.StopTimer()
			st := commandStats(b, rc)
			if st["fcall"][0] != float64(b.N) || st["evalsha"][0] != float64(b.N) {
				b.Fatalf("commandstats %v after %d calls each", st, b.N)
			}
			b.ReportMetric(st["fcall"][1], "fcall-µs/call")
			b.ReportMetric(st["evalsha"][1], "evalsha-µs/call")
		})
	}
}

func newBenchBackend(b *testing.B, o redis.Options) *redis.Backend {
	be, err := redis.New(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.Close() })
	return be
}

// commandStats returns INFO commandstats as command name → {calls,
// usec_per_call}.
func commandStats(b *testing.B, rc *goredisClient) map[string][2]float64 {
	info, err := rc.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	m := map[string][2]float64{}
	for _, line := range strings.Split(info, "\n") {
		name, fields, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var v [2]float64
		for _, f := range strings.Split(fields, ",") {
			k, x, _ := strings.Cut(f, "=")
			n, _ := strconv.ParseFloat(x, 64)
			switch k {
			case "calls":
				v[0] = n
			case "usec_per_call":
				v[1] = n
			}
		}
		m[strings.TrimPrefix(name, "cmdstat_")] = v
	}
	return m
}

func benchTopos() []string {
	if testing.Short() {
		return []string{"tcp"}
	}
	return []string{"tcp", "unix"}
}
