package redis_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/backendtest"
	"github.com/ratelimitd/ratelimitd/backends/redis"
	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

// TestMemoLayout checks the memo's Redis key and its TTL (PX, rounded up
// to the millisecond, never extended by a later Remember) through the raw
// client.
func TestMemoLayout(t *testing.T) {
	s := redistest.Standalone(t)
	b := newBackend(t, redis.Options{Addrs: []string{s.Addr}})
	rc := s.Client(t)
	ctx := context.Background()
	pttl := func(key string) time.Duration {
		t.Helper()
		d, err := rc.PTTL(ctx, redis.MemoPrefix+key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	if v, err := b.Remember(ctx, []byte("k\x00"), []byte("first"), 90*time.Second); err != nil || string(v) != "first" {
		t.Fatalf("Remember = %q, %v", v, err)
	}
	if v := rc.Get(ctx, redis.MemoPrefix+"k\x00").Val(); v != "first" {
		t.Errorf("raw key holds %q, want first", v)
	}
	if d := pttl("k\x00"); d <= 80*time.Second || d > 90*time.Second {
		t.Errorf("PTTL %v, want about 90s", d)
	}
	if v, err := b.Remember(ctx, []byte("k\x00"), []byte("second"), time.Hour); err != nil || string(v) != "first" {
		t.Fatalf("second Remember = %q, %v; want first", v, err)
	}
	if d := pttl("k\x00"); d > 90*time.Second {
		t.Errorf("a second Remember extended the TTL to %v", d)
	}
	// Below a millisecond rounds up, never down to no expiry.
	if _, err := b.Remember(ctx, []byte("r"), []byte("v"), 10*time.Second+time.Microsecond); err != nil {
		t.Fatal(err)
	}
	if d := pttl("r"); d <= 9*time.Second || d > 10*time.Second+time.Millisecond {
		t.Errorf("PTTL %v, want about 10.001s", d)
	}
	if _, err := b.Remember(ctx, []byte("huge"), []byte("v"), 1<<62); err != nil {
		t.Fatal(err)
	}
	if d := pttl("huge"); d <= 0 || d > 10*365*24*time.Hour {
		t.Errorf("PTTL %v, want at most ten years", d)
	}
	// Bucket keys are not memos.
	apply(t, b, backendtest.Base, aon, req("k\x00", perMinute(5), 1))
	if n, err := b.Reset(ctx, [][]byte{[]byte("k\x00")}); err != nil || n != 1 {
		t.Errorf("Reset = %d, %v; want 1", n, err)
	}
	if v, ok, err := b.Recall(ctx, []byte("k\x00")); err != nil || !ok || string(v) != "first" {
		t.Errorf("Recall after Reset = %q, %v, %v; want first", v, ok, err)
	}
}

// TestExtrasDown: with Redis down, paused or the backend closed, Reset,
// Recall and Remember fail with ErrUnavailable within their deadline.
func TestExtrasDown(t *testing.T) {
	s := redistest.Standalone(t)
	b := newBackend(t, redis.Options{Addrs: []string{s.Addr}})
	calls := func(what string, deadline time.Duration) {
		t.Helper()
		for name, call := range map[string]func(ctx context.Context) error{
			"Reset": func(ctx context.Context) error {
				_, err := b.Reset(ctx, [][]byte{[]byte("a"), []byte("b")})
				return err
			},
			"Recall": func(ctx context.Context) error {
				_, _, err := b.Recall(ctx, []byte("a"))
				return err
			},
			"Remember": func(ctx context.Context) error {
				_, err := b.Remember(ctx, []byte("a"), []byte("v"), time.Minute)
				return err
			},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			start := time.Now()
			err := call(ctx)
			cancel()
			if !errors.Is(err, backends.ErrUnavailable) {
				t.Errorf("%s with Redis %s: %v, want ErrUnavailable", name, what, err)
			}
			// Generous: this detects hangs, not slowness.
			if d := time.Since(start); d > deadline+3*time.Second {
				t.Errorf("%s with Redis %s took %v with a %v deadline", name, what, d, deadline)
			}
		}
	}
	if _, err := b.Remember(context.Background(), []byte("a"), []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	s.Pause()
	calls("paused", 50*time.Millisecond)
	s.Resume()
	s.Kill()
	calls("down", time.Second)
	s.Restart()
	eventually(t, 10*time.Second, func() error {
		_, _, err := b.Recall(context.Background(), []byte("a"))
		return err
	})
	b.Close()
	calls("closed", time.Second)
}

// TestClusterResetPartial: when one slot's node does not answer, Reset
// fails with ErrUnavailable and counts the keys of the slots that did.
func TestClusterResetPartial(t *testing.T) {
	c := redistest.Cluster(t)
	b := newBackend(t, redis.Options{Topology: redis.Cluster, Addrs: c.Addrs, ClientTime: true})
	keys := keysOnEveryNode(t, c, "resetpart")
	var bkeys [][]byte
	for _, k := range keys {
		apply(t, b, backendtest.Base, aon, req(k, perMinute(5), 1))
		bkeys = append(bkeys, []byte(k))
	}
	if n, err := b.Reset(context.Background(), bkeys[:0]); err != nil || n != 0 {
		t.Fatalf("Reset of no keys = %d, %v", n, err)
	}
	paused := c.NodeFor(t, keys[0])
	c.Pause(paused)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	n, err := b.Reset(ctx, bkeys)
	cancel()
	c.Resume(paused)
	if !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("Reset with a node paused: %d, %v; want ErrUnavailable", n, err)
	}
	if n != len(keys)-1 {
		t.Errorf("Reset with a node paused counted %d, want %d (the nodes that answered)", n, len(keys)-1)
	}
	for _, k := range keys[1:] {
		if d := count(t, b, k); d != 0 {
			t.Errorf("%s: count %d after Reset, want 0", k, d)
		}
	}
}
