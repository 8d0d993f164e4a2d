package redistest

import (
	"context"
	"testing"
	"time"
)

func TestStandaloneKillRestart(t *testing.T) {
	s := Standalone(t)
	c := s.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered after Kill")
	}
	s.Restart()
	// The client reconnects by itself; the restarted server is empty.
	if err := poll(5*time.Second, func(ctx context.Context) error { return c.Ping(ctx).Err() }); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS k after restart = %d, %v; want 0", n, err)
	}
}

func TestSentinelFailover(t *testing.T) {
	s := Sentinel(t)
	s.KillMaster()
	if got := s.WaitForPromotion(30 * time.Second); got != s.ReplicaAddr {
		t.Fatalf("promoted %s, want %s", got, s.ReplicaAddr)
	}
}

func TestCluster(t *testing.T) {
	c := Cluster(t)
	cc := c.Client(t)
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c", "d", "{x}1", "{x}2"} {
		if err := cc.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	if len(c.Addrs) != 3 {
		t.Fatalf("Addrs = %v", c.Addrs)
	}
}
