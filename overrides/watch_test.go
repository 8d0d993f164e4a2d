package overrides_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ratelimitd/ratelimitd/backends/redis"
	"github.com/ratelimitd/ratelimitd/internal/redistest"
	"github.com/ratelimitd/ratelimitd/overrides"
)

// failAfter bounds every wait of these tests: reached only when something
// is broken, never a speed requirement.
const failAfter = 30 * time.Second

// replica is one Watcher with an injected tick and its reports.
type replica struct {
	w       *overrides.Watcher
	tick    chan time.Time
	changed chan *overrides.Set

	mu   sync.Mutex
	errs []error
}

// watch starts a Watcher on st that polls only when the test ticks, and
// closes it when the test ends.
func watch(t *testing.T, st overrides.Store) *replica {
	t.Helper()
	r := &replica{tick: make(chan time.Time), changed: make(chan *overrides.Set, 100)}
	w, err := overrides.Watch(context.Background(), st, overrides.WatcherOptions{
		Tick:     r.tick,
		OnChange: func(s *overrides.Set) { r.changed <- s },
		OnError: func(err error) {
			r.mu.Lock()
			r.errs = append(r.errs, err)
			r.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	r.w = w
	<-r.changed // the first Set
	return r
}

// poll makes the Watcher poll once after this call and waits until that
// poll is done: the loop takes the second tick only once it has finished
// the poll of the first.
func (r *replica) poll() {
	r.tick <- time.Now()
	r.tick <- time.Now()
}

// waitChange waits for the next Set the Watcher installs.
func (r *replica) waitChange(t *testing.T) *overrides.Set {
	t.Helper()
	select {
	case s := <-r.changed:
		return s
	case <-time.After(failAfter):
		t.Fatal("no new Set")
		return nil
	}
}

// noChange checks that no Set was installed since the last wait.
func (r *replica) noChange(t *testing.T) {
	t.Helper()
	select {
	case s := <-r.changed:
		t.Fatalf("unexpected new Set of %d overrides", s.Len())
	default:
	}
}

func (r *replica) errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// testReplicas: a change written through replica A's store is in replica
// B's Set after B's next poll, one tick, and not before; a poll that finds
// no change installs nothing.
func testReplicas(t *testing.T, storeA, storeB overrides.Store) {
	a, b := watch(t, storeA), watch(t, storeB)
	o := limit(500, "api_key", "abc")
	req := e("api_key", "abc", "path", "/x")

	put(t, storeA, o)
	if err := a.w.Refresh(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if got := a.w.Current().Lookup("api", req); got == nil || got.RequestsPerUnit != 500 {
		t.Fatalf("A after its own write and Refresh: %+v", got)
	}
	a.waitChange(t)
	if got := b.w.Current().Lookup("api", req); got != nil {
		t.Fatalf("B has the override before polling: %+v", got)
	}

	b.tick <- time.Now() // one poll
	s := b.waitChange(t)
	if got := s.Lookup("api", req); got == nil || got.RequestsPerUnit != 500 || b.w.Current() != s {
		t.Fatalf("B after one poll: %+v", got)
	}

	b.poll() // nothing changed since
	b.noChange(t)

	// And back: a delete through B, seen by A at its next poll.
	if _, err := storeB.Delete(ctx(t), o.ID()); err != nil {
		t.Fatal(err)
	}
	a.tick <- time.Now()
	if s := a.waitChange(t); s.Len() != 0 || a.w.Current().Lookup("api", req) != nil {
		t.Fatalf("A after B's delete: %d overrides", s.Len())
	}
	for _, r := range []*replica{a, b} {
		if errs := r.errors(); len(errs) != 0 {
			t.Errorf("errors: %v", errs)
		}
	}
}

func TestWatcherReplicasRedis(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		s := redistest.Standalone(t)
		o := redis.Options{Addrs: []string{s.Addr}}
		testReplicas(t, redisStore(t, o), redisStore(t, o))
	})
	t.Run("cluster", func(t *testing.T) {
		c := redistest.Cluster(t)
		o := redis.Options{Topology: redis.Cluster, Addrs: c.Addrs}
		testReplicas(t, redisStore(t, o), redisStore(t, o))
	})
}

var _ overrides.Store = (*redis.OverrideStore)(nil)

// redisStore is the override store of a new Backend on o: one replica.
func redisStore(t *testing.T, o redis.Options) overrides.Store {
	t.Helper()
	b, err := redis.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.OverrideStore("")
}

func TestWatcherReplicasFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "overrides.json")
	testReplicas(t, overrides.NewFileStore(path), overrides.NewFileStore(path))
}

// TestWatcherDefaultInterval: by default a change is seen within a second.
func TestWatcherDefaultInterval(t *testing.T) {
	if overrides.DefaultInterval <= 0 || 2*overrides.DefaultInterval >= time.Second {
		t.Errorf("DefaultInterval %v: a poll and its reload must fit in a second", overrides.DefaultInterval)
	}
}

// TestWatcherTicker: without an injected tick the Watcher polls on its own
// ticker.
func TestWatcherTicker(t *testing.T) {
	st := overrides.NewFileStore(filepath.Join(t.TempDir(), "overrides.json"))
	changed := make(chan *overrides.Set, 100)
	w, err := overrides.Watch(context.Background(), st, overrides.WatcherOptions{
		Interval: time.Millisecond,
		OnChange: func(s *overrides.Set) { changed <- s },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	<-changed
	put(t, st, limit(1, "k", "v"))
	select {
	case s := <-changed:
		if s.Len() != 1 {
			t.Fatalf("%d overrides", s.Len())
		}
	case <-time.After(failAfter):
		t.Fatal("the ticker never polled")
	}
}

// TestWatcherCorruptFile: a broken file is reported once, the Watcher
// keeps its last good Set, and picks up the file once it is repaired.
func TestWatcherCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "overrides.json")
	st := overrides.NewFileStore(path)
	good := limit(500, "api_key", "abc")
	put(t, st, good)
	r := watch(t, st)

	if err := os.WriteFile(path, []byte(`{"format": 1, "overrides": {`), 0o600); err != nil {
		t.Fatal(err)
	}
	r.poll()
	r.poll()
	r.noChange(t)
	if got := r.w.Current().Get("api", good.Entries); got == nil {
		t.Fatal("the last good Set was dropped")
	}
	errs := r.errors()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), path) || !strings.Contains(errs[0].Error(), "invalid JSON") {
		t.Fatalf("errors %v, want one naming %s", errs, path)
	}
	if err := r.w.Refresh(ctx(t)); err == nil || !strings.Contains(err.Error(), "invalid JSON") {
		t.Errorf("Refresh = %v", err)
	}

	// Repaired, atomically (a poll may be under way: it must not see a
	// state in between): a good file renamed over the broken one.
	fixedPath := filepath.Join(t.TempDir(), "fixed.json")
	fixed := limit(7, "api_key", "def")
	put(t, overrides.NewFileStore(fixedPath), fixed)
	if err := os.Rename(fixedPath, path); err != nil {
		t.Fatal(err)
	}
	r.tick <- time.Now()
	s := r.waitChange(t)
	if s.Len() != 1 || s.Get("api", fixed.Entries) == nil {
		t.Fatalf("after the repair: %v", s.List(""))
	}
	if n := len(r.errors()); n != 1 {
		t.Errorf("%d errors, want still 1", n)
	}
}

// TestWatcherSkipsBadEntries: entries that do not decode, or are stored
// under another id, are skipped and reported; the others load.
func TestWatcherSkipsBadEntries(t *testing.T) {
	st := overrides.NewFileStore(filepath.Join(t.TempDir(), "overrides.json"))
	good := limit(500, "api_key", "abc")
	put(t, st, good)
	moved, _ := overrides.Marshal(limit(1, "api_key", "def"))
	c := ctx(t)
	if _, err := st.Put(c, "elsewhere", moved); err != nil {
		t.Fatal(err)
	}
	future := `{"version":2,"domain":"api","entries":[{"key":"api_key","value":"ghi"}],"kind":"quota"}`
	if _, err := st.Put(c, overrides.ID("api", e("api_key", "ghi")), []byte(future)); err != nil {
		t.Fatal(err)
	}

	r := watch(t, st)
	if s := r.w.Current(); s.Len() != 1 || s.Get("api", good.Entries) == nil {
		t.Fatalf("Set %v, want only the good override", s.List(""))
	}
	text := fmt.Sprint(r.errors())
	for _, want := range []string{`skipped "elsewhere"`, `its id is "3:api7:api_key3:def"`, `skipped "3:api7:api_key3:ghi"`, "format version 2 is not 1"} {
		if !strings.Contains(text, want) {
			t.Errorf("errors %s do not say %s", text, want)
		}
	}
}

// TestWatchLoadError: Watch returns the first load's error and starts
// nothing.
func TestWatchLoadError(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	path := filepath.Join(t.TempDir(), "overrides.json")
	if err := os.WriteFile(path, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := overrides.Watch(context.Background(), overrides.NewFileStore(path), overrides.WatcherOptions{})
	if err == nil || w != nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Watch = %v, %v; want an error naming %s", w, err, path)
	}
}

// TestWatcherStops: Close, or the end of Watch's context, stops the
// goroutine; Close waits for it and may be called again.
func TestWatcherStops(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	st := overrides.NewFileStore(filepath.Join(t.TempDir(), "overrides.json"))

	w, err := overrides.Watch(context.Background(), st, overrides.WatcherOptions{Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	c, cancel := context.WithCancel(context.Background())
	w, err = overrides.Watch(c, st, overrides.WatcherOptions{Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	w.Close() // returns once the goroutine has
	if w.Current() == nil {
		t.Fatal("Current is nil after Close")
	}
}

// TestWatchStartEmpty: with StartEmpty a failed first load gives an empty
// Watcher, reports the failure, and the first poll that can load does.
func TestWatchStartEmpty(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	path := filepath.Join(t.TempDir(), "overrides.json")
	if err := os.WriteFile(path, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	tick := make(chan time.Time)
	var mu sync.Mutex
	var errs []error
	w, err := overrides.Watch(context.Background(), overrides.NewFileStore(path), overrides.WatcherOptions{
		Tick: tick, StartEmpty: true,
		OnError: func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() },
	})
	if err != nil {
		t.Fatalf("Watch with StartEmpty: %v", err)
	}
	defer w.Close()
	mu.Lock()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), path) {
		t.Errorf("reported %v, want one error naming %s", errs, path)
	}
	mu.Unlock()
	if w.Current().Len() != 0 {
		t.Fatal("not empty")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	st := overrides.NewFileStore(path)
	put(t, st, limit(5, "api_key", "abc"))
	tick <- time.Now()
	tick <- time.Now() // returns once the first poll is done
	if w.Current().Len() != 1 {
		t.Errorf("after a poll that can load: %d overrides, want 1", w.Current().Len())
	}
}
