package redis_test

import (
	"testing"
	"time"

	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/backendtest"
	"github.com/ratelimitd/ratelimitd/backends/redis"
	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

// newBackend returns a Backend on o, closed when the test ends.
func newBackend(t testing.TB, o redis.Options) *redis.Backend {
	t.Helper()
	b, err := redis.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// conformance runs backendtest.Run with backends on o, under ClientTime
// (the suite decides at fixed instants). The suite closes each backend.
func conformance(t *testing.T, o redis.Options) {
	o.ClientTime = true
	backendtest.Run(t, func(t *testing.T) backends.Backend {
		b, err := redis.New(o)
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

// batchings are the batch windows the suite runs under: off, and 100µs.
var batchings = []struct {
	name   string
	window time.Duration
}{{"unbatched", 0}, {"batched", 100 * time.Microsecond}}

func TestConformanceStandalone(t *testing.T) {
	s := redistest.Standalone(t)
	for _, batch := range batchings {
		t.Run(batch.name, func(t *testing.T) {
			conformance(t, redis.Options{Addrs: []string{s.Addr}, BatchWindow: batch.window})
		})
	}
}

func TestConformanceSentinel(t *testing.T) {
	s := redistest.Sentinel(t)
	conformance(t, redis.Options{Topology: redis.Sentinel, Addrs: s.SentinelAddrs, MasterName: s.MasterName})
}

func TestConformanceCluster(t *testing.T) {
	c := redistest.Cluster(t)
	for _, batch := range batchings {
		t.Run(batch.name, func(t *testing.T) {
			conformance(t, redis.Options{Topology: redis.Cluster, Addrs: c.Addrs, BatchWindow: batch.window})
		})
	}
}
