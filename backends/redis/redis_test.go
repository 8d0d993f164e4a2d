package redis_test

import (
	"testing"

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

func TestConformanceStandalone(t *testing.T) {
	s := redistest.Standalone(t)
	for _, batch := range []struct {
		name   string
		window int64
	}{{"unbatched", 0}, {"batched", 100_000}} {
		t.Run(batch.name, func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) backends.Backend {
				b, err := redis.New(redis.Options{Addrs: []string{s.Addr}, ClientTime: true, BatchWindow: timeDuration(batch.window)})
				if err != nil {
					t.Fatal(err)
				}
				return b
			})
		})
	}
}

func TestConformanceSentinel(t *testing.T) {
	s := redistest.Sentinel(t)
	backendtest.Run(t, func(t *testing.T) backends.Backend {
		b, err := redis.New(redis.Options{Topology: redis.Sentinel, Addrs: s.SentinelAddrs, MasterName: s.MasterName, ClientTime: true})
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

func TestConformanceCluster(t *testing.T) {
	c := redistest.Cluster(t)
	for _, batch := range []struct {
		name   string
		window int64
	}{{"unbatched", 0}, {"batched", 100_000}} {
		t.Run(batch.name, func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) backends.Backend {
				b, err := redis.New(redis.Options{Topology: redis.Cluster, Addrs: c.Addrs, ClientTime: true, BatchWindow: timeDuration(batch.window)})
				if err != nil {
					t.Fatal(err)
				}
				return b
			})
		})
	}
}
