package redis_test

// A hung Cluster node, against the charge: go-redis must not retry a script
// (it may have run), and a call that fails on one slot must give back what
// the other slots charged.

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/backendtest"
	"github.com/ratelimitd/ratelimitd/backends/redis"
	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

// keysOnEveryNode returns one key per node of c, prefixed with prefix, in
// node order.
func keysOnEveryNode(t *testing.T, c *redistest.ClusterSet, prefix string) []string {
	t.Helper()
	keys := make([]string, len(c.Addrs))
	found := 0
	for i := 0; found < len(keys); i++ {
		if i > 1000 {
			t.Fatalf("no key found for every node: %q", keys)
		}
		k := fmt.Sprintf("%s%d", prefix, i)
		if n := c.NodeFor(t, k); keys[n] == "" {
			keys[n] = k
			found++
		}
	}
	return keys
}

// count returns key's stored count (a check with 0 hits charges nothing).
func count(t *testing.T, b backends.Backend, key string) int64 {
	t.Helper()
	return apply(t, b, backendtest.Base, aon, req(key, perMinute(100), 0))[0].Count
}

// TestClusterNoRetry pauses the node holding a key while a call is in
// flight, past the read timeout, with a caller's deadline long enough for
// go-redis to retry. A retried script would run twice (charging twice) once
// the node continues. Either the call fails or it charged once; never
// twice, on one slot or across three.
func TestClusterNoRetry(t *testing.T) {
	c := redistest.Cluster(t)
	checker := newBackend(t, redis.Options{Topology: redis.Cluster, Addrs: c.Addrs, ClientTime: true})
	for _, tc := range []struct {
		name string
		keys []string // keys[0] is on the paused node
	}{
		{"one slot", keysOnEveryNode(t, c, "noretry1-")[:1]},
		{"three slots", keysOnEveryNode(t, c, "noretry3-")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			paused := c.NodeFor(t, tc.keys[0])
			b := newBackend(t, redis.Options{Topology: redis.Cluster, Addrs: c.Addrs, ClientTime: true, ReadTimeout: 100 * time.Millisecond})
			var reqs []backends.Request
			for _, k := range tc.keys {
				reqs = append(reqs, req(k, perMinute(100), 1))
			}
			apply(t, b, backendtest.Base, aon, reqs...) // connections to every node, each count 1
			before := make([]int64, len(tc.keys))
			for n, k := range tc.keys {
				before[n] = count(t, checker, k)
			}

			c.Pause(paused)
			errc := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				errc <- b.Apply(ctx, backendtest.Base, aon, reqs, make([]algorithms.Decision, len(reqs)))
			}()
			time.Sleep(350 * time.Millisecond) // past the read timeout, well under the node timeout
			c.Resume(paused)
			err := <-errc
			if err != nil && !errors.Is(err, backends.ErrUnavailable) {
				t.Fatalf("Apply: %v, want nil or ErrUnavailable", err)
			}
			b.Close() // waits for refunds

			// The paused node runs what it had queued once it continues:
			// read the counts more than once, so that a late second run
			// shows.
			for range 3 {
				time.Sleep(100 * time.Millisecond)
				for n, k := range tc.keys {
					got := count(t, checker, k)
					switch {
					case err == nil && got != before[n]+1:
						t.Errorf("%s: count %d after a call that succeeded, want %d", k, got, before[n]+1)
					case err != nil && n == 0 && got != before[n] && got != before[n]+1:
						t.Errorf("%s (paused node): count %d after a failed call, want %d or %d (never charged twice)", k, got, before[n], before[n]+1)
					case err != nil && n > 0 && got != before[n]:
						t.Errorf("%s: count %d after a failed call, want %d (refunded)", k, got, before[n])
					}
				}
				if t.Failed() {
					break
				}
			}
		})
	}
}

// TestClusterSlotErrorRefunds makes one slot of a call fail (its node
// paused past the caller's deadline): the call fails with ErrUnavailable,
// and the slot that answered and charged is refunded.
func TestClusterSlotErrorRefunds(t *testing.T) {
	c := redistest.Cluster(t)
	checker := newBackend(t, redis.Options{Topology: redis.Cluster, Addrs: c.Addrs, ClientTime: true})
	keys := keysOnEveryNode(t, c, "sloterr")
	hung, ok := keys[0], keys[1]
	b := newBackend(t, redis.Options{Topology: redis.Cluster, Addrs: c.Addrs, ClientTime: true})
	reqs := []backends.Request{req(hung, perMinute(100), 1), req(ok, perMinute(100), 3)}
	apply(t, b, backendtest.Base, aon, reqs...)
	before := count(t, checker, ok)
	if before != 3 {
		t.Fatalf("%s: count %d, want 3", ok, before)
	}

	paused := c.NodeFor(t, hung)
	c.Pause(paused)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err := b.Apply(ctx, backendtest.Base, aon, reqs, make([]algorithms.Decision, len(reqs)))
	cancel()
	c.Resume(paused)
	if !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("Apply with a slot's node paused: %v, want ErrUnavailable", err)
	}
	b.Close() // waits for the refund
	if got := count(t, checker, ok); got != before {
		t.Errorf("%s: count %d after a call failed on another slot, want %d (refunded)", ok, got, before)
	}
	if st := b.Stats(); st.Refunds != 1 || st.RefundErrors != 0 {
		t.Errorf("Refunds %d, RefundErrors %d; want 1, 0", st.Refunds, st.RefundErrors)
	}
}
