package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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

func TestStandaloneArgsPersists(t *testing.T) {
	s := StandaloneArgs(t, "--appendonly", "yes", "--appendfsync", "always")
	c := s.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	s.Restart()
	// With an append-only log fsynced on every write, a SIGKILL loses
	// nothing that was answered.
	if err := poll(5*time.Second, func(ctx context.Context) error { return c.Ping(ctx).Err() }); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET k after restart = %q, %v; want v", v, err)
	}
}

func TestSentinelFailover(t *testing.T) {
	s := Sentinel(t)
	s.KillMaster()
	if got := s.WaitForPromotion(FailoverPatience); got != s.ReplicaAddr {
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

func TestClusterPause(t *testing.T) {
	c := Cluster(t)
	cc := c.Client(t)
	ctx := context.Background()
	n := c.NodeFor(t, "k")
	rc := redis.NewClient(&redis.Options{Addr: c.Addrs[n], DisableIdentity: true, MaxRetries: -1})
	defer rc.Close()
	if err := cc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// The key lives on the node NodeFor names.
	if v, err := rc.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET k on node %d = %q, %v", n, v, err)
	}
	c.Pause(n)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err := rc.Ping(short).Err()
	cancel()
	c.Resume(n)
	if err == nil {
		t.Fatal("paused node answered PING")
	}
	if err := poll(5*time.Second, func(ctx context.Context) error { return rc.Ping(ctx).Err() }); err != nil {
		t.Fatalf("node %d after Resume: %v", n, err)
	}
}

func TestTLSStandalone(t *testing.T) {
	s := TLSStandalone(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr, TLSConfig: s.Config(), DisableIdentity: true})
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING over TLS: %v", err)
	}
	plain := redis.NewClient(&redis.Options{Addr: s.Addr, DisableIdentity: true, MaxRetries: -1})
	defer plain.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Fatal("PING without TLS answered")
	}
}
