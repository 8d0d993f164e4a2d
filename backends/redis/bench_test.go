package redis_test

import (
	"context"
	"fmt"
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

func benchTopos() []string {
	if testing.Short() {
		return []string{"tcp"}
	}
	return []string{"tcp", "unix"}
}
