package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ratelimitd/ratelimitd/backends"
)

// Scenarios of the optional capabilities: backends.Resetter and
// backends.Memo.

// scenarioFunc is a scenario, named where the parameter h hides the type.
type scenarioFunc = func(*h)

// resetter returns the backend as a Resetter, or skips the test.
func (h *h) resetter() backends.Resetter {
	h.t.Helper()
	r, ok := h.b.(backends.Resetter)
	if !ok {
		h.t.Skipf("%T does not implement backends.Resetter", h.b)
	}
	return r
}

// memoOf returns the backend as a Memo, or skips the test.
func (h *h) memoOf() backends.Memo {
	h.t.Helper()
	m, ok := h.b.(backends.Memo)
	if !ok {
		h.t.Skipf("%T does not implement backends.Memo", h.b)
	}
	return m
}

// sub returns a harness on h's backend whose keys are apart from h's.
func (h *h) sub(name string) *h {
	c := *h
	c.prefix += name + "/"
	return &c
}

// reset calls Reset with names' keys, fails the test on error, and checks
// the count.
func (h *h) reset(want int, names ...string) {
	h.t.Helper()
	keys := make([][]byte, len(names))
	for i, n := range names {
		keys[i] = h.key(n)
	}
	n, err := h.resetter().Reset(context.Background(), keys)
	if err != nil {
		h.t.Fatalf("Reset(%q): %v", names, err)
	}
	if n != want {
		h.t.Errorf("Reset(%q) = %d, want %d", names, n, want)
	}
}

// recall calls Recall and fails the test on error.
func (h *h) recall(name string) ([]byte, bool) {
	h.t.Helper()
	v, ok, err := h.memoOf().Recall(context.Background(), h.key(name))
	if err != nil {
		h.t.Fatalf("Recall(%q): %v", name, err)
	}
	return v, ok
}

// expectRecall checks that name holds want, or nothing when want is nil.
func (h *h) expectRecall(name string, want []byte) {
	h.t.Helper()
	v, ok := h.recall(name)
	switch {
	case want == nil && ok:
		h.t.Errorf("Recall(%q) = %q, want none", name, v)
	case want != nil && !ok:
		h.t.Errorf("Recall(%q): none, want %q", name, want)
	case want != nil && !bytes.Equal(v, want):
		h.t.Errorf("Recall(%q) = %q, want %q", name, v, want)
	}
}

// remember calls Remember, fails the test on error, and checks the value
// stored after the call.
func (h *h) remember(name string, value []byte, ttl time.Duration, want []byte) {
	h.t.Helper()
	got, err := h.memoOf().Remember(context.Background(), h.key(name), value, ttl)
	if err != nil {
		h.t.Fatalf("Remember(%q, %q, %v): %v", name, value, ttl, err)
	}
	if !bytes.Equal(got, want) {
		h.t.Errorf("Remember(%q, %q, %v) = %q, want %q", name, value, ttl, got, want)
	}
}

func reset(h *h) {
	h.resetter()
	l := perMinute(3)
	h.expect(Base, aon, rs(h.req("a", l, 2), h.req("b", l, 1), h.req("c", l, 3)), ok(1, minute, 2), ok(2, minute, 1), ok(0, minute, 3))
	// Two existing keys, a missing one, and a key named twice (counted once).
	h.reset(2, "a", "missing", "c", "c")
	// The reset buckets start fresh; the other keeps its count.
	h.expect(Base+sec, aon, rs(h.req("a", l, 0), h.req("b", l, 0), h.req("c", l, 3)), ok(3, minute-sec, 0), ok(2, minute-sec, 1), ok(0, minute-sec, 3))
	h.expect(Base+sec, aon, rs(h.req("c", l, 1)), no(minute-sec, minute-sec, 3))
	// Missing keys only, a key reset twice, and no keys at all.
	h.reset(0, "missing", "other")
	h.reset(0, "a")
	h.reset(0)
	h.reset(1, "b")
	h.expect(Base+sec, aon, rs(h.req("b", l, 3)), ok(0, minute-sec, 3))
	// Every algorithm's state is dropped, not only fixed windows'.
	for _, c := range []struct {
		name string
		run  scenarioFunc
	}{{"sliding", slidingWindow}, {"token", tokenBucket}, {"gcra", gcra}, {"concurrency", concurrency}} {
		sub := h.sub(c.name)
		c.run(sub)
		// Whether a bucket emptied by its own releases is still stored
		// differs between backends: the count is not checked here.
		if _, err := h.resetter().Reset(context.Background(), [][]byte{sub.key("a"), sub.key("b"), sub.key("c")}); err != nil {
			h.t.Fatalf("Reset: %v", err)
		}
		c.run(sub) // the same decisions again: every bucket starts fresh
	}
}

func resetKeys(h *h) {
	h.resetter()
	long := strings.Repeat("k", 4096)
	names := []string{"", "a", "A", "a\x00", "a\x00b", "a\x00c", "\x00", "\xff\xfe", "{tag}a", "{tag}b", "{}x", long + "a", long}
	l := perMinute(1)
	var reqs []backends.Request
	for _, n := range names {
		reqs = append(reqs, h.req(n, l, 1))
	}
	h.apply(Base, aon, reqs...)
	// Reset half of them: only those start fresh, byte for byte.
	var half []string
	for i, n := range names {
		if i%2 == 0 {
			half = append(half, n)
		}
	}
	h.reset(len(half), half...)
	for i, n := range names {
		want := no(minute, minute, 1)
		if i%2 == 0 {
			want = ok(0, minute, 1)
		}
		h.expect(Base, aon, rs(h.req(n, l, 1)), want)
	}
	h.reset(len(names), names...)
}

func resetCancelled(h *h) {
	r := h.resetter()
	l := perMinute(5)
	h.apply(Base, aon, h.req("a", l, 1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Reset(ctx, [][]byte{h.key("a")}); !errors.Is(err, backends.ErrUnavailable) {
		h.t.Errorf("Reset with a cancelled context: %v, want an error wrapping %v", err, backends.ErrUnavailable)
	}
	ctx, cancel = context.WithTimeout(context.Background(), -1)
	defer cancel()
	if _, err := r.Reset(ctx, [][]byte{h.key("a")}); !errors.Is(err, backends.ErrUnavailable) {
		h.t.Errorf("Reset past its deadline: %v, want an error wrapping %v", err, backends.ErrUnavailable)
	}
	h.expect(Base, aon, rs(h.req("a", l, 0)), ok(4, minute, 1))
}

func memo(h *h) {
	m := h.memoOf()
	const hour = time.Hour
	first, second := []byte("first answer"), []byte("second answer")
	h.expectRecall("m", nil)
	h.remember("m", first, hour, first)
	h.expectRecall("m", first)
	// A second Remember gets the first value and changes nothing.
	h.remember("m", second, hour, first)
	h.expectRecall("m", first)
	// The values returned are the caller's to modify.
	v, _ := h.recall("m")
	clear(v)
	got, err := m.Remember(context.Background(), h.key("m"), second, hour)
	if err != nil {
		h.t.Fatal(err)
	}
	clear(got)
	h.expectRecall("m", first)
	// The backend copies key and value: the caller may reuse its buffers.
	key, value := h.key("buf"), []byte("buffered")
	if _, err := m.Remember(context.Background(), key, value, hour); err != nil {
		h.t.Fatal(err)
	}
	clear(key)
	clear(value)
	h.expectRecall("buf", []byte("buffered"))
	// An empty value is a value.
	h.remember("empty", []byte{}, hour, []byte{})
	h.expectRecall("empty", []byte{})
	h.remember("empty", first, hour, []byte{})
	// Memos and buckets are apart, even under one key.
	h.expect(Base, aon, rs(h.req("m", perMinute(2), 1)), ok(1, minute, 1))
	h.expectRecall("m", first)
	if _, ok := h.b.(backends.Resetter); ok {
		h.reset(1, "m")
		h.expectRecall("m", first)
		h.reset(0, "buf") // a memo is no bucket
		h.expectRecall("buf", []byte("buffered"))
	}
	// A TTL that is not positive is refused, as the caller's mistake.
	for _, ttl := range []time.Duration{0, -time.Second} {
		_, err := m.Remember(context.Background(), h.key("bad"), first, ttl)
		if err == nil || errors.Is(err, backends.ErrUnavailable) {
			h.t.Errorf("Remember with ttl %v: %v, want an error not wrapping %v", ttl, err, backends.ErrUnavailable)
		}
	}
	h.expectRecall("bad", nil)
}

func memoExpiry(h *h) {
	h.memoOf()
	a, b, long := []byte("a"), []byte("b"), []byte("long")
	h.remember("long", long, time.Hour, long)
	if h.clock != nil {
		// At exact instants on the suite's clock.
		h.remember("m", a, time.Minute, a)
		h.clock.Advance(time.Minute - time.Millisecond)
		h.expectRecall("m", a)
		h.remember("m", b, time.Minute, a)
		h.clock.Advance(time.Millisecond)
		h.expectRecall("m", nil)
	} else {
		// On the real clock: a short TTL, and a generous bound for it to
		// pass on a slow machine.
		h.remember("m", a, 50*time.Millisecond, a)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, ok := h.recall("m"); !ok {
				break
			}
			if time.Now().After(deadline) {
				h.t.Fatalf("a memo stored for 50ms still there after 10s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// An expired value counts as none: a new one is stored.
	h.remember("m", b, time.Hour, b)
	h.expectRecall("m", b)
	h.expectRecall("long", long)
}

func memoKeys(h *h) {
	h.memoOf()
	long := strings.Repeat("k", 4096)
	names := []string{"", "a", "A", "a\x00", "a\x00b", "a\x00c", "\x00", "\x00\x00", "\xff\xfe", "{tag}a", "{}x", "memo:a", long + "a", long + "b", long}
	value := func(i int) []byte { return []byte(fmt.Sprintf("v%d\x00\xff", i)) }
	for i, n := range names {
		h.remember(n, value(i), time.Hour, value(i))
	}
	// Every key holds its own value.
	for i, n := range names {
		h.expectRecall(n, value(i))
		h.remember(n, []byte("again"), time.Hour, value(i))
	}
	// Binary values, large ones too.
	big := bytes.Repeat([]byte("\x00\xffvalue"), 64<<10)
	h.remember("big", big, time.Hour, big)
	h.expectRecall("big", big)
}

// memoConcurrent has goroutines Remember different values under one key:
// one value wins, and every goroutine gets it.
func memoConcurrent(h *h) {
	m := h.memoOf()
	const goroutines = 16
	got := make([][]byte, goroutines)
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range goroutines {
		wg.Go(func() {
			<-start
			got[g], errs[g] = m.Remember(context.Background(), h.key("race"), []byte(fmt.Sprint("from ", g)), time.Hour)
		})
	}
	close(start)
	wg.Wait()
	for g := range goroutines {
		if errs[g] != nil {
			h.t.Fatalf("Remember in goroutine %d: %v", g, errs[g])
		}
		if !bytes.Equal(got[g], got[0]) {
			h.t.Errorf("goroutine %d got %q, goroutine 0 got %q", g, got[g], got[0])
		}
	}
	if !bytes.HasPrefix(got[0], []byte("from ")) {
		h.t.Errorf("stored %q, not one of the values", got[0])
	}
	h.expectRecall("race", got[0])
}

func memoCancelled(h *h) {
	m := h.memoOf()
	h.remember("m", []byte("v"), time.Hour, []byte("v"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := m.Recall(ctx, h.key("m")); !errors.Is(err, backends.ErrUnavailable) {
		h.t.Errorf("Recall with a cancelled context: %v, want an error wrapping %v", err, backends.ErrUnavailable)
	}
	if _, err := m.Remember(ctx, h.key("n"), []byte("v"), time.Hour); !errors.Is(err, backends.ErrUnavailable) {
		h.t.Errorf("Remember with a cancelled context: %v, want an error wrapping %v", err, backends.ErrUnavailable)
	}
	ctx, cancel = context.WithTimeout(context.Background(), -1)
	defer cancel()
	if _, err := m.Remember(ctx, h.key("n"), []byte("v"), time.Hour); !errors.Is(err, backends.ErrUnavailable) {
		h.t.Errorf("Remember past its deadline: %v, want an error wrapping %v", err, backends.ErrUnavailable)
	}
	h.expectRecall("n", nil)
}
