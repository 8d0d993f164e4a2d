package memory

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
)

// fixedClock is a settable Options.Now.
type fixedClock struct{ ns atomic.Int64 }

func newClock() *fixedClock {
	c := &fixedClock{}
	c.ns.Store(time.UnixMicro(base).UnixNano())
	return c
}

func (c *fixedClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fixedClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func remember(t *testing.T, b *Backend, key, value string, ttl time.Duration) string {
	t.Helper()
	v, err := b.Remember(context.Background(), []byte(key), []byte(value), ttl)
	if err != nil {
		t.Fatal(err)
	}
	return string(v)
}

func recalled(t *testing.T, b *Backend, key string) bool {
	t.Helper()
	_, ok, err := b.Recall(context.Background(), []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestMemoOptions(t *testing.T) {
	for _, c := range []struct {
		max, shards, perShard int
	}{
		{0, 16, DefaultMemoMaxEntries / 16},
		{-1, 16, DefaultMemoMaxEntries / 16},
		{1, 1, 1},
		{127, 1, 127},
		{128, 2, 64},
		{1000, 8, 125},
	} {
		b := New(Options{MemoMaxEntries: c.max})
		if len(b.memos.shards) != c.shards || b.memos.perShard != c.perShard {
			t.Errorf("MemoMaxEntries %d: %d shards of %d; want %d of %d", c.max, len(b.memos.shards), b.memos.perShard, c.shards, c.perShard)
		}
		b.Close()
	}
}

func TestMemoBoundEvictsEarliestExpiry(t *testing.T) {
	c := newClock()
	b := New(Options{MemoMaxEntries: 4, Now: c.Now})
	defer b.Close()
	remember(t, b, "h1", "1", time.Hour)
	remember(t, b, "m", "2", time.Minute)
	remember(t, b, "h2", "3", 2*time.Hour)
	remember(t, b, "h3", "4", 3*time.Hour)
	remember(t, b, "new", "5", time.Hour)
	if s := b.Stats(); s.Memos != 4 || s.MemoEvictions != 1 {
		t.Errorf("Stats = %+v, want 4 memos and 1 eviction", s)
	}
	for _, k := range []string{"h1", "h2", "h3", "new"} {
		if !recalled(t, b, k) {
			t.Errorf("%s was evicted", k)
		}
	}
	if recalled(t, b, "m") {
		t.Errorf("the memo expiring first was kept")
	}
	// Replacing an expired memo takes no room.
	c.advance(time.Hour)
	if v := remember(t, b, "h1", "again", time.Hour); v != "again" {
		t.Errorf("Remember on an expired memo = %q", v)
	}
	if s := b.Stats(); s.Memos != 4 || s.MemoEvictions != 1 {
		t.Errorf("Stats = %+v, want 4 memos and 1 eviction", s)
	}
}

func TestMemoBoundPrefersExpired(t *testing.T) {
	c := newClock()
	b := New(Options{MemoMaxEntries: 2, Now: c.Now})
	defer b.Close()
	remember(t, b, "a", "1", time.Minute)
	remember(t, b, "b", "2", time.Minute)
	c.advance(time.Minute)
	remember(t, b, "c", "3", time.Minute)
	if s := b.Stats(); s.Memos != 1 || s.MemoEvictions != 0 {
		t.Errorf("Stats = %+v, want the expired memos removed without an eviction", s)
	}
}

func TestMemoBoundHolds(t *testing.T) {
	const maxMemos, keys = 200, 5000
	b := New(Options{MemoMaxEntries: maxMemos})
	defer b.Close()
	for i := range keys {
		remember(t, b, fmt.Sprint("k", i), "v", time.Hour)
		if s := b.Stats(); s.Memos > maxMemos {
			t.Fatalf("after %d keys: %d memos > %d", i+1, s.Memos, maxMemos)
		}
	}
	if s := b.Stats(); s.Memos+s.MemoEvictions != keys || s.Memos < maxMemos*9/10 {
		t.Errorf("Stats = %+v after %d keys", s, keys)
	}
}

func TestSweeperSweepsMemos(t *testing.T) {
	c := newClock()
	b := New(Options{SweepInterval: time.Millisecond, Now: c.Now})
	defer b.Close()
	remember(t, b, "short", "1", time.Minute)
	remember(t, b, "long", "2", time.Hour)
	time.Sleep(20 * time.Millisecond)
	if s := b.Stats(); s.Memos != 2 {
		t.Fatalf("sweeper removed live memos: %+v", s)
	}
	c.advance(time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for b.Stats().Memos != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("expired memo still there after 10s: %+v", b.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if !recalled(t, b, "long") {
		t.Errorf("the live memo went")
	}
}

// TestResetCountsLive: a bucket past its expiry on the Now clock is removed
// but not counted, as the sweeper would have removed it.
func TestResetCountsLive(t *testing.T) {
	c := newClock()
	b := New(Options{Now: c.Now})
	defer b.Close()
	hour := algorithms.Limit{Rate: 5, Period: algorithms.Hour}
	apply(t, b, base, backends.AllOrNothing, req("minute", perMinute(5), 1), req("hour", hour, 1))
	c.advance(time.Minute)
	n, err := b.Reset(context.Background(), [][]byte{[]byte("minute"), []byte("hour")})
	if err != nil || n != 1 {
		t.Errorf("Reset = %d, %v; want 1", n, err)
	}
	if s := b.Stats(); s.Buckets != 0 {
		t.Errorf("%d buckets left after Reset", s.Buckets)
	}
}

func TestExtrasAfterClose(t *testing.T) {
	b := New(Options{})
	b.Close()
	ctx := context.Background()
	if _, err := b.Reset(ctx, [][]byte{[]byte("a")}); !errors.Is(err, backends.ErrUnavailable) {
		t.Errorf("Reset after Close: %v", err)
	}
	if _, _, err := b.Recall(ctx, []byte("a")); !errors.Is(err, backends.ErrUnavailable) {
		t.Errorf("Recall after Close: %v", err)
	}
	if _, err := b.Remember(ctx, []byte("a"), []byte("v"), time.Minute); !errors.Is(err, backends.ErrUnavailable) {
		t.Errorf("Remember after Close: %v", err)
	}
}

func TestRememberHugeTTL(t *testing.T) {
	c := newClock()
	b := New(Options{Now: c.Now})
	defer b.Close()
	remember(t, b, "k", "v", time.Duration(1<<63-1))
	c.advance(100 * 365 * 24 * time.Hour)
	if !recalled(t, b, "k") {
		t.Errorf("a memo with the longest ttl expired")
	}
}
