// Package backendtest is the conformance suite that every backends.Backend
// passes: memory, Redis standalone, Sentinel and Cluster run the very same
// scenarios, so they give the very same decisions.
//
// Every scenario calls Apply at fixed instants passed explicitly (no clock,
// no sleeping) and compares whole decisions, so a backend that computes
// differently from algorithms.Decide fails.
//
// The optional capabilities backends.Resetter and backends.Memo have
// scenarios of their own (extras.go), skipped with a message for a backend
// that does not implement them. Memos expire on the backend's clock, not
// at Apply's now: under RunClocked the suite sets that clock and checks
// expiry at exact instants; under Run it waits for a short TTL to pass on
// the real clock.
package backendtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
)

// Base is the instant (microseconds since the Unix epoch) the scenarios
// start from: 2100-01-01T00:00:00Z, aligned on every window from a second to
// a day, far enough in the future that no real clock (such as a backend's
// sweeper) finds the scenarios' buckets expired, and small enough to be
// exact as a double (under 2^53).
const Base = int64(4_102_444_800) * algorithms.Second

// Run runs the suite as subtests of t. newBackend is called once per
// subtest and returns a fresh backend, or one whose other keys do not
// matter: every key the suite uses starts with a prefix unique to the run
// and the subtest. Run closes each backend at the end of its subtest and
// fails if Close returns an error; newBackend must not close it.
//
// The backend's memo store, if any, must run on the real clock (see
// RunClocked for one whose clock can be set).
func Run(t *testing.T, newBackend func(t *testing.T) backends.Backend) {
	run(t, func(t *testing.T, c *Clock) backends.Backend { return newBackend(t) }, false)
}

// RunClocked is Run for a backend whose clock (the one its memos expire by;
// the memory backend's Options.Now) the suite sets: newBackend gets a
// Clock, new for each subtest, starting at Base, and must make the backend
// read it. The memo scenarios then check expiry at exact instants.
func RunClocked(t *testing.T, newBackend func(t *testing.T, c *Clock) backends.Backend) {
	run(t, newBackend, true)
}

func run(t *testing.T, newBackend func(t *testing.T, c *Clock) backends.Backend, clocked bool) {
	var nonce [8]byte
	rand.Read(nonce[:])
	prefix := "backendtest/" + hex.EncodeToString(nonce[:]) + "/"
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			var c *Clock
			if clocked {
				c = &Clock{}
				c.ns.Store(time.UnixMicro(Base).UnixNano())
			}
			b := newBackend(t, c)
			t.Cleanup(func() {
				if err := b.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			sc.run(&h{t: t, b: b, prefix: prefix + t.Name() + "\x00", clock: c})
		})
	}
}

// Clock is a clock the suite sets (see RunClocked). Its methods are safe
// for concurrent use.
type Clock struct {
	ns atomic.Int64
}

// Now returns the clock's instant.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Advance moves the clock d forward.
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

var scenarios = []struct {
	name string
	run  func(*h)
}{
	{"FixedWindow", fixedWindow},
	{"Rollover", rollover},
	{"CheckOnly", checkOnly},
	{"Refund", refund},
	{"KeyTwice", keyTwice},
	{"AllOrNothing", allOrNothing},
	{"Shadow", shadow},
	{"ChargeAlways", chargeAlways},
	{"StopWhenOver", stopWhenOver},
	{"LimitChange", limitChange},
	{"DistinctKeys", distinctKeys},
	{"KeyBufferReuse", keyBufferReuse},
	{"ManyRequests", manyRequests},
	{"Empty", empty},
	{"CancelledContext", cancelledContext},
	{"ConcurrentHotKey", concurrentHotKey},
	{"ConcurrentCalls", concurrentCalls},
	{"SlidingWindow", slidingWindow},
	{"TokenBucket", tokenBucket},
	{"GCRA", gcra},
	{"Concurrency", concurrency},
	{"CalendarWindows", calendarWindows},
	{"MixedAlgorithms", mixedAlgorithms},
	{"Reset", reset},
	{"ResetKeys", resetKeys},
	{"ResetCancelled", resetCancelled},
	{"Memo", memo},
	{"MemoExpiry", memoExpiry},
	{"MemoKeys", memoKeys},
	{"MemoConcurrent", memoConcurrent},
	{"MemoCancelled", memoCancelled},
}

// h is one subtest's harness.
type h struct {
	t      *testing.T
	b      backends.Backend
	prefix string
	clock  *Clock // nil: the backend runs on the real clock
}

// key returns the bucket key for name, unique to the run and subtest.
func (h *h) key(name string) []byte { return []byte(h.prefix + name) }

// perMinute is a fixed window of rate hits per minute.
func perMinute(rate int64) algorithms.Limit {
	return algorithms.Limit{Algorithm: algorithms.FixedWindow, Rate: rate, Period: algorithms.Minute}
}

// req and shadowReq build requests for name.
func (h *h) req(name string, l algorithms.Limit, hits int64) backends.Request {
	return backends.Request{Key: h.key(name), Limit: l, Hits: hits}
}

func (h *h) shadowReq(name string, l algorithms.Limit, hits int64) backends.Request {
	return backends.Request{Key: h.key(name), Limit: l, Hits: hits, Shadow: true}
}

// ok and no build expected decisions.
func ok(remaining, resetAfter, count int64) algorithms.Decision {
	return algorithms.Decision{Allowed: true, Remaining: remaining, ResetAfter: resetAfter, Count: count}
}

func no(resetAfter, retryAfter, count int64) algorithms.Decision {
	return algorithms.Decision{ResetAfter: resetAfter, RetryAfter: retryAfter, Count: count}
}

// apply calls Apply and fails the test on error.
func (h *h) apply(now int64, mode backends.Mode, reqs ...backends.Request) []algorithms.Decision {
	h.t.Helper()
	out := make([]algorithms.Decision, len(reqs))
	if err := h.b.Apply(context.Background(), now, mode, reqs, out); err != nil {
		h.t.Fatalf("Apply(%s, %s): %v", at(now), mode, err)
	}
	return out
}

// expect calls Apply and compares every decision with want.
func (h *h) expect(now int64, mode backends.Mode, reqs []backends.Request, want ...algorithms.Decision) {
	h.t.Helper()
	if len(reqs) != len(want) {
		h.t.Fatalf("bad test: %d requests, %d decisions", len(reqs), len(want))
	}
	got := h.apply(now, mode, reqs...)
	for i := range want {
		if got[i] != want[i] {
			h.t.Errorf("Apply(%s, %s) request %d (key %.40q hits %d shadow %v):\n got %+v\nwant %+v",
				at(now), mode, i, bytes.TrimPrefix(reqs[i].Key, []byte(h.prefix)), reqs[i].Hits, reqs[i].Shadow, got[i], want[i])
		}
	}
}

// rs is shorthand for a request list.
func rs(r ...backends.Request) []backends.Request { return r }

// at formats an instant relative to Base.
func at(now int64) string { return fmt.Sprintf("Base%+dµs", now-Base) }

const (
	sec    = algorithms.Second
	minute = algorithms.Minute
	aon    = backends.AllOrNothing
)

func fixedWindow(h *h) {
	l := perMinute(3)
	t := Base + 10*sec
	h.expect(t, aon, rs(h.req("a", l, 1)), ok(2, 50*sec, 1))
	h.expect(t, aon, rs(h.req("a", l, 1)), ok(1, 50*sec, 2))
	h.expect(t+sec, aon, rs(h.req("a", l, 1)), ok(0, 49*sec, 3)) // exactly the limit
	h.expect(t+sec, aon, rs(h.req("a", l, 1)), no(49*sec, 49*sec, 3))
	h.expect(Base+minute-1, aon, rs(h.req("a", l, 1)), no(1, 1, 3)) // last µs of the window
	// Several hits at once, and more hits than the limit ever allows.
	h.expect(t, aon, rs(h.req("b", l, 2)), ok(1, 50*sec, 2))
	h.expect(t, aon, rs(h.req("b", l, 2)), no(50*sec, 50*sec, 2))
	h.expect(t, aon, rs(h.req("b", l, 1)), ok(0, 50*sec, 3))
	h.expect(t, aon, rs(h.req("c", l, 4)), no(50*sec, -1, 0))
	h.expect(t, aon, rs(h.req("c", l, 3)), ok(0, 50*sec, 3))
	// Rate 0 admits nothing.
	h.expect(t, aon, rs(h.req("d", perMinute(0), 1)), no(50*sec, -1, 0))
}

func rollover(h *h) {
	l := perMinute(2)
	h.expect(Base+59*sec, aon, rs(h.req("a", l, 2)), ok(0, sec, 2))
	h.expect(Base+minute-1, aon, rs(h.req("a", l, 1)), no(1, 1, 2))
	h.expect(Base+minute, aon, rs(h.req("a", l, 1)), ok(1, minute, 1)) // the window is epoch-aligned
	h.expect(Base+minute+sec, aon, rs(h.req("a", l, 1)), ok(0, minute-sec, 2))
	h.expect(Base+3*minute+30*sec, aon, rs(h.req("a", l, 0)), ok(2, 30*sec, 0)) // windows later
	// Other periods.
	hour := algorithms.Limit{Rate: 1, Period: algorithms.Hour}
	h.expect(Base+algorithms.Hour-sec, aon, rs(h.req("h", hour, 1)), ok(0, sec, 1))
	h.expect(Base+algorithms.Hour, aon, rs(h.req("h", hour, 1)), ok(0, algorithms.Hour, 1))
}

func checkOnly(h *h) {
	l := perMinute(3)
	t := Base
	h.expect(t, aon, rs(h.req("a", l, 0)), ok(3, minute, 0))
	h.expect(t, aon, rs(h.req("a", l, 0)), ok(3, minute, 0)) // the first check consumed nothing
	h.expect(t, aon, rs(h.req("a", l, 2)), ok(1, minute, 2))
	h.expect(t, aon, rs(h.req("a", l, 0)), ok(1, minute, 2))
	h.expect(t, aon, rs(h.req("a", l, 0)), ok(1, minute, 2))
	h.expect(t, aon, rs(h.req("a", l, 1)), ok(0, minute, 3))
	h.expect(t, aon, rs(h.req("a", l, 0)), ok(0, minute, 3)) // full is not over
	h.expect(t, aon, rs(h.req("a", l, 1)), no(minute, minute, 3))
	h.expect(t, aon, rs(h.req("a", l, 0)), ok(0, minute, 3))
}

func refund(h *h) {
	l := perMinute(3)
	t := Base + sec
	h.expect(t, aon, rs(h.req("a", l, 3)), ok(0, minute-sec, 3))
	h.expect(t, aon, rs(h.req("a", l, -2)), ok(2, minute-sec, 1))
	h.expect(t, aon, rs(h.req("a", l, -5)), ok(3, minute-sec, 0)) // never above the limit
	h.expect(t, aon, rs(h.req("a", l, 3)), ok(0, minute-sec, 3))  // the clamp made no extra budget
	h.expect(t, aon, rs(h.req("a", l, 1)), no(minute-sec, minute-sec, 3))
	// A refund on a bucket never used gives nothing.
	h.expect(t, aon, rs(h.req("b", l, -1)), ok(3, minute-sec, 0))
	h.expect(t, aon, rs(h.req("b", l, 4)), no(minute-sec, -1, 0))
}

func keyTwice(h *h) {
	l := perMinute(3)
	t := Base
	// The second request sees the first's hits.
	h.expect(t, aon, rs(h.req("a", l, 1), h.req("a", l, 1)), ok(2, minute, 1), ok(1, minute, 2))
	h.expect(t, aon, rs(h.req("a", l, 0)), ok(1, minute, 2))
	// The second is over: nothing is charged and the first reports the
	// budget as it stands.
	h.expect(t, aon, rs(h.req("a", l, 1), h.req("a", l, 1)), ok(1, minute, 2), no(minute, minute, 2))
	h.expect(t, aon, rs(h.req("a", l, 0)), ok(1, minute, 2))
	// Charged anyway under ChargeAlways, past the limit.
	h.expect(t, backends.ChargeAlways, rs(h.req("b", l, 2), h.req("b", l, 2)), ok(1, minute, 2), no(minute, minute, 4))
	h.expect(t, aon, rs(h.req("b", l, 0)), no(minute, minute, 4))
	// A key named three times with a refund between.
	h.expect(t, aon, rs(h.req("c", l, 3), h.req("c", l, -1), h.req("c", l, 1)), ok(0, minute, 3), ok(1, minute, 2), ok(0, minute, 3))
	h.expect(t, aon, rs(h.req("c", l, 0)), ok(0, minute, 3))
}

func allOrNothing(h *h) {
	one, five := perMinute(1), perMinute(5)
	t := Base
	h.expect(t, aon, rs(h.req("full", one, 1)), ok(0, minute, 1))
	// One enforcing bucket over: the others are not charged and report
	// their budget unchanged, before or after it in the call.
	h.expect(t, aon, rs(h.req("b", five, 1), h.req("full", one, 1), h.req("c", five, 2)),
		ok(5, minute, 0), no(minute, minute, 1), ok(5, minute, 0))
	h.expect(t, aon, rs(h.req("b", five, 0), h.req("c", five, 0)), ok(5, minute, 0), ok(5, minute, 0))
	// All within their limits: all charged.
	h.expect(t, aon, rs(h.req("b", five, 1), h.req("c", five, 2)), ok(4, minute, 1), ok(3, minute, 2))
	h.expect(t, aon, rs(h.req("b", five, 1), h.req("c", five, 4)), ok(4, minute, 1), no(minute, minute, 2))
	h.expect(t, aon, rs(h.req("b", five, 0), h.req("c", five, 0)), ok(4, minute, 1), ok(3, minute, 2))
	// A refund in a vetoed call is not made either.
	h.expect(t, aon, rs(h.req("b", five, -1), h.req("full", one, 1)), ok(4, minute, 1), no(minute, minute, 1))
	h.expect(t, aon, rs(h.req("b", five, 0)), ok(4, minute, 1))
}

func shadow(h *h) {
	one, five := perMinute(1), perMinute(5)
	t := Base
	h.expect(t, aon, rs(h.shadowReq("s", one, 1)), ok(0, minute, 1))
	// A shadow bucket over its limit does not veto the call.
	h.expect(t, aon, rs(h.shadowReq("s", one, 1), h.req("e", five, 1)), no(minute, minute, 1), ok(4, minute, 1))
	h.expect(t, aon, rs(h.req("e", five, 0)), ok(4, minute, 1))
	// Its own refused hits are not charged, as if it were enforcing.
	h.expect(t, aon, rs(h.shadowReq("s", one, 0)), ok(0, minute, 1))
	// A call vetoed by an enforcing bucket charges it no more than the rest.
	h.expect(t, aon, rs(h.req("full", one, 1)), ok(0, minute, 1))
	h.expect(t, aon, rs(h.req("full", one, 1), h.shadowReq("s2", five, 2), h.req("e", five, 1)),
		no(minute, minute, 1), ok(5, minute, 0), ok(4, minute, 1))
	h.expect(t, aon, rs(h.shadowReq("s2", five, 0), h.req("e", five, 0)), ok(5, minute, 0), ok(4, minute, 1))
}

func chargeAlways(h *h) {
	one, five := perMinute(1), perMinute(5)
	t := Base
	ca := backends.ChargeAlways
	h.expect(t, ca, rs(h.req("a", one, 1)), ok(0, minute, 1))
	// Everything is charged, over-limit hits included.
	h.expect(t, ca, rs(h.req("a", one, 1), h.req("b", five, 1)), no(minute, minute, 2), ok(4, minute, 1))
	h.expect(t, ca, rs(h.req("a", one, 0), h.req("b", five, 0)), no(minute, minute, 2), ok(4, minute, 1))
	h.expect(t, ca, rs(h.req("c", perMinute(2), 3)), no(minute, -1, 3))
	h.expect(t, ca, rs(h.req("c", perMinute(2), 0)), no(minute, minute, 3))
	// Shadow makes no difference.
	h.expect(t, ca, rs(h.shadowReq("a", one, 1), h.req("b", five, 1)), no(minute, minute, 3), ok(3, minute, 2))
	h.expect(t+minute, ca, rs(h.req("a", one, 0)), ok(1, minute, 0)) // and the next window starts over
}

func stopWhenOver(h *h) {
	one, five := perMinute(1), perMinute(5)
	t := Base
	sw := backends.StopWhenOver
	h.expect(t, sw, rs(h.shadowReq("s", one, 1), h.req("b", five, 1)), ok(0, minute, 1), ok(4, minute, 1))
	// A shadow bucket over its limit vetoes the call.
	h.expect(t, sw, rs(h.shadowReq("s", one, 1), h.req("b", five, 1)), no(minute, minute, 1), ok(4, minute, 1))
	h.expect(t, sw, rs(h.req("b", five, 0)), ok(4, minute, 1))
	// So does an enforcing one, shadow buckets included in the veto.
	h.expect(t, sw, rs(h.req("full", one, 1)), ok(0, minute, 1))
	h.expect(t, sw, rs(h.shadowReq("s2", five, 1), h.req("full", one, 1), h.req("b", five, 1)),
		ok(5, minute, 0), no(minute, minute, 1), ok(4, minute, 1))
	h.expect(t, sw, rs(h.shadowReq("s2", five, 0), h.req("b", five, 0)), ok(5, minute, 0), ok(4, minute, 1))
}

func limitChange(h *h) {
	t := Base
	h.expect(t, aon, rs(h.req("a", perMinute(5), 3)), ok(2, minute, 3))
	h.expect(t, aon, rs(h.req("a", perMinute(10), 0)), ok(7, minute, 3)) // raised: the count is kept
	h.expect(t, aon, rs(h.req("a", perMinute(10), 1)), ok(6, minute, 4))
	h.expect(t, aon, rs(h.req("a", perMinute(2), 0)), no(minute, minute, 4)) // lowered below the count
	h.expect(t, aon, rs(h.req("a", perMinute(2), -2)), ok(0, minute, 2))
	h.expect(t, aon, rs(h.req("a", perMinute(5), 0)), ok(3, minute, 2))
}

func distinctKeys(h *h) {
	long := strings.Repeat("k", 4096)
	names := []string{"", "a", "A", "a\x00", "a\x00b", "a\x00c", "\x00", "\x00\x00", "a_b", "\xff\xfe", long + "a", long + "b", long}
	var reqs []backends.Request
	var want []algorithms.Decision
	l := perMinute(1)
	for _, n := range names {
		reqs = append(reqs, h.req(n, l, 1))
		want = append(want, ok(0, minute, 1))
	}
	// Every key is its own bucket: one hit each fits a limit of 1.
	h.expect(Base, aon, reqs, want...)
	for i := range reqs {
		reqs[i].Hits = 0
	}
	h.expect(Base, aon, reqs, want...)
	// Equal bytes in different slices are the same bucket.
	h.expect(Base, aon, rs(backends.Request{Key: []byte(h.prefix + "a\x00b"), Limit: l, Hits: 1}), no(minute, minute, 1))
	h.expect(Base, aon, rs(h.req(long+"c", l, 1), h.req(long+"c", l, 1)), ok(1, minute, 0), no(minute, minute, 0))
}

func keyBufferReuse(h *h) {
	l := perMinute(5)
	buf := h.key("reuse-1")
	h.expect(Base, aon, rs(backends.Request{Key: buf, Limit: l, Hits: 1}), ok(4, minute, 1))
	buf[len(buf)-1] = '2' // the caller reuses its buffer
	h.expect(Base, aon, rs(backends.Request{Key: buf, Limit: l, Hits: 2}), ok(3, minute, 2))
	for i := range buf {
		buf[i] = 'x'
	}
	h.expect(Base, aon, rs(h.req("reuse-1", l, 0), h.req("reuse-2", l, 0)), ok(4, minute, 1), ok(3, minute, 2))
	// Also within one call: two keys overlapping in the caller's memory.
	shared := h.key("s-12")
	one := backends.Request{Key: shared[:len(shared)-1], Limit: l, Hits: 1}
	two := backends.Request{Key: shared, Limit: l, Hits: 2}
	h.expect(Base, aon, rs(one, two), ok(4, minute, 1), ok(3, minute, 2))
	clear(shared)
	h.expect(Base, aon, rs(h.req("s-1", l, 0), h.req("s-12", l, 0)), ok(4, minute, 1), ok(3, minute, 2))
}

func manyRequests(h *h) {
	const n = 40 // more than a backend may decide on a fixed-size scratch
	l := perMinute(2)
	reqs := make([]backends.Request, n)
	want := make([]algorithms.Decision, n)
	for i := range reqs {
		reqs[i] = h.req(fmt.Sprint("k", i), l, 1)
		want[i] = ok(1, minute, 1)
	}
	h.expect(Base, aon, reqs, want...)
	reqs[n-1].Hits = 5
	want[n-1] = no(minute, -1, 1)
	h.expect(Base, aon, reqs, want...) // the last one vetoes all
	for i := range reqs {
		reqs[i].Hits = 0
	}
	want[n-1] = ok(1, minute, 1)
	h.expect(Base, aon, reqs, want...)
}

func empty(h *h) {
	if err := h.b.Apply(context.Background(), Base, aon, nil, nil); err != nil {
		h.t.Errorf("Apply with no requests: %v", err)
	}
}

func cancelledContext(h *h) {
	l := perMinute(5)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := make([]algorithms.Decision, 1)
	err := h.b.Apply(ctx, Base, aon, rs(h.req("a", l, 1)), out)
	if !errors.Is(err, backends.ErrUnavailable) {
		h.t.Errorf("Apply with a cancelled context: %v, want an error wrapping %v", err, backends.ErrUnavailable)
	}
	ctx, cancel = context.WithTimeout(context.Background(), -1)
	defer cancel()
	err = h.b.Apply(ctx, Base, aon, rs(h.req("a", l, 1)), out)
	if !errors.Is(err, backends.ErrUnavailable) {
		h.t.Errorf("Apply past its deadline: %v, want an error wrapping %v", err, backends.ErrUnavailable)
	}
	// Nothing was charged.
	h.expect(Base, aon, rs(h.req("a", l, 0)), ok(5, minute, 0))
}

// concurrentHotKey has goroutines hammer one key: exactly the limit is
// allowed, whatever the interleaving.
func concurrentHotKey(h *h) {
	const goroutines, calls, limit = 16, 200, 1000
	l := perMinute(limit)
	other := perMinute(1 << 40)
	var (
		mu      sync.Mutex
		allowed int
		wg      sync.WaitGroup
	)
	errs := make(chan error, goroutines)
	start := make(chan struct{}) // release every goroutine at once
	for range goroutines {
		wg.Go(func() {
			<-start
			n := 0
			out := make([]algorithms.Decision, 2)
			for range calls {
				// Each call also charges "other": all or nothing means it
				// is charged exactly when "hot" is.
				reqs := rs(h.req("hot", l, 1), h.req("other", other, 1))
				if err := h.b.Apply(context.Background(), Base, aon, reqs, out); err != nil {
					errs <- err
					return
				}
				if !out[1].Allowed {
					errs <- fmt.Errorf("other refused: %+v", out[1])
					return
				}
				if out[0].Allowed {
					n++
				}
			}
			mu.Lock()
			allowed += n
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		h.t.Fatal(err)
	}
	if allowed != limit {
		h.t.Errorf("%d goroutines × %d calls on a limit of %d: %d allowed", goroutines, calls, limit, allowed)
	}
	h.expect(Base, aon, rs(h.req("hot", l, 0), h.req("other", other, 0)), ok(0, minute, limit), ok(1<<40-limit, minute, limit))
}

// concurrentCalls has goroutines call with several keys, shared and their
// own, named in different orders: no deadlock, and every key counts exactly.
func concurrentCalls(h *h) {
	const goroutines, calls = 16, 200
	l := perMinute(1 << 40)
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	start := make(chan struct{}) // release every goroutine at once
	for g := range goroutines {
		wg.Go(func() {
			<-start
			out := make([]algorithms.Decision, 4)
			for i := range calls {
				reqs := rs(h.req(fmt.Sprint("own", g), l, 1), h.req("x", l, 1), h.req("y", l, 1), h.req("z", l, 1))
				if (g+i)%2 == 1 { // reverse the shared keys' order
					reqs[1], reqs[3] = reqs[3], reqs[1]
				}
				if err := h.b.Apply(context.Background(), Base, aon, reqs, out); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		h.t.Fatal(err)
	}
	total := int64(goroutines * calls)
	h.expect(Base, aon, rs(h.req("x", l, 0), h.req("y", l, 0), h.req("z", l, 0), h.req("own3", l, 0)),
		ok(1<<40-total, minute, total), ok(1<<40-total, minute, total), ok(1<<40-total, minute, total), ok(1<<40-calls, minute, calls))
}

const (
	ms  = algorithms.Millisecond
	day = algorithms.Day
)

func slidingWindow(h *h) {
	l := algorithms.Limit{Algorithm: algorithms.SlidingWindow, Rate: 10, Period: minute}
	h.expect(Base+30*sec, aon, rs(h.req("a", l, 10)), ok(0, 90*sec, 10))
	h.expect(Base+30*sec, aon, rs(h.req("a", l, 1)), no(90*sec, 36*sec, 10))
	// The next window: the previous 10 weigh 10 × (60 s - x) / 60 s.
	h.expect(Base+minute, aon, rs(h.req("a", l, 1)), no(minute, 6*sec, 10))
	h.expect(Base+minute+6*sec, aon, rs(h.req("a", l, 1)), ok(0, 2*minute-6*sec, 10))
	h.expect(Base+minute+30*sec, aon, rs(h.req("a", l, 4)), ok(0, 90*sec, 10))
	h.expect(Base+minute+45*sec, aon, rs(h.req("a", l, -3)), ok(5, 75*sec, 5)) // ceil(2.5) + 5 - 3
	// Charged over-limit hits count, but weigh at most the rate next window.
	ca := backends.ChargeAlways
	h.expect(Base, ca, rs(h.req("b", l, 25)), no(0, -1, 25))
	h.expect(Base+minute+30*sec, aon, rs(h.req("b", l, 0)), ok(5, 30*sec, 5))
}

func tokenBucket(h *h) {
	// 100 a second with a burst of 300 (burst_multiplier 3).
	l := algorithms.Limit{Algorithm: algorithms.TokenBucket, Rate: 100, Period: sec, Burst: 300}
	h.expect(Base, aon, rs(h.req("a", l, 0)), ok(300, 0, 0))
	h.expect(Base, aon, rs(h.req("a", l, 300)), ok(0, 3*sec, 300))
	h.expect(Base, aon, rs(h.req("a", l, 1)), no(3*sec, 10*ms, 300))
	h.expect(Base+5*ms, aon, rs(h.req("a", l, 1)), no(3*sec-5*ms, 5*ms, 300))
	h.expect(Base+sec, aon, rs(h.req("a", l, 100)), ok(0, 3*sec, 300))
	h.expect(Base+sec, aon, rs(h.req("a", l, 301)), no(3*sec, -1, 300))
	h.expect(Base+sec+15*ms, aon, rs(h.req("a", l, -2)), ok(3, 2965*ms, 297))
	h.expect(Base+10*sec, aon, rs(h.req("a", l, 0)), ok(300, 0, 0))
	// A charged refusal empties the bucket; an uncharged one leaves it.
	ten := algorithms.Limit{Algorithm: algorithms.TokenBucket, Rate: 10, Period: sec}
	h.expect(Base, aon, rs(h.req("b", ten, 8)), ok(2, 800*ms, 8))
	h.expect(Base, aon, rs(h.req("b", ten, 5)), no(800*ms, 300*ms, 8))
	h.expect(Base, aon, rs(h.req("b", ten, 0)), ok(2, 800*ms, 8))
	h.expect(Base, backends.ChargeAlways, rs(h.req("b", ten, 5)), no(800*ms, 300*ms, 10))
	h.expect(Base, aon, rs(h.req("b", ten, 0)), ok(0, sec, 10))
}

func gcra(h *h) {
	// 500 a minute with a burst of 50: 50 at once, then one every 120 ms.
	l := algorithms.Limit{Algorithm: algorithms.GCRA, Rate: 500, Period: minute, Burst: 50}
	h.expect(Base, aon, rs(h.req("a", l, 49)), ok(1, 5880*ms, 49))
	h.expect(Base, aon, rs(h.req("a", l, 1), h.req("a", l, 0)), ok(0, 6*sec, 50), ok(0, 6*sec, 50))
	h.expect(Base, aon, rs(h.req("a", l, 1)), no(6*sec, 120*ms, 50))
	h.expect(Base+120*ms-1, aon, rs(h.req("a", l, 1)), no(6*sec-120*ms+1, 1, 50))
	h.expect(Base+120*ms, aon, rs(h.req("a", l, 1)), ok(0, 6*sec, 50))
	h.expect(Base+200*ms, aon, rs(h.req("a", l, 1)), no(6*sec-80*ms, 40*ms, 50))
	h.expect(Base+240*ms, aon, rs(h.req("a", l, 1)), ok(0, 6*sec, 50))
	h.expect(Base+340*ms, aon, rs(h.req("a", l, 1)), no(6*sec-100*ms, 20*ms, 50))
	h.expect(Base+440*ms, aon, rs(h.req("a", l, 1)), ok(0, 6*sec-80*ms, 50))
	h.expect(Base+440*ms, aon, rs(h.req("a", l, 51)), no(6*sec-80*ms, -1, 50))
	h.expect(Base+minute, aon, rs(h.req("a", l, -1)), ok(50, 0, 0))
}

func concurrency(h *h) {
	// Two in flight, a lease of a minute (slots of 10 s: an acquisition
	// lives until its slot's end + 60 s).
	l := algorithms.Limit{Algorithm: algorithms.Concurrency, Rate: 2, Period: minute}
	h.expect(Base, aon, rs(h.req("a", l, 1)), ok(1, 70*sec, 1))
	h.expect(Base+5*sec, aon, rs(h.req("a", l, 1)), ok(0, 65*sec, 2))
	h.expect(Base+5*sec, aon, rs(h.req("a", l, 1)), no(65*sec, 65*sec, 2))
	h.expect(Base+20*sec, aon, rs(h.req("a", l, -1)), ok(1, 50*sec, 1)) // a release
	h.expect(Base+20*sec, aon, rs(h.req("a", l, 1)), ok(0, 70*sec, 2))
	h.expect(Base+25*sec, aon, rs(h.req("a", l, -5)), ok(2, 0, 0)) // never below 0
	h.expect(Base+25*sec, aon, rs(h.req("a", l, 0)), ok(2, 0, 0))
	// A lost release heals when its lease ends.
	h.expect(Base+3*sec, aon, rs(h.req("b", l, 2)), ok(0, 67*sec, 2))
	h.expect(Base+69*sec, aon, rs(h.req("b", l, 1)), no(sec, sec, 2))
	h.expect(Base+70*sec, aon, rs(h.req("b", l, 1)), ok(1, 70*sec, 1))
	// A refused acquisition is never held, whatever the mode.
	h.expect(Base, backends.ChargeAlways, rs(h.req("c", l, 2), h.req("c", l, 1)), ok(0, 70*sec, 2), no(70*sec, 70*sec, 2))
	h.expect(Base+sec, aon, rs(h.req("c", l, -1), h.req("c", l, 1)), ok(1, 69*sec, 1), ok(0, 69*sec, 2))
}

func calendarWindows(h *h) {
	// The caller's calendar windows: February 2100 has 28 days (Base is
	// January 1st, 2100, UTC), March 31.
	feb := Base + 31*day
	mar := feb + 28*day
	fw := algorithms.Limit{Rate: 2, Period: 30 * day, WindowStart: feb, WindowEnd: mar}
	h.expect(feb+day, aon, rs(h.req("f", fw, 2)), ok(0, 27*day, 2))
	h.expect(mar-1, aon, rs(h.req("f", fw, 1)), no(1, 1, 2))
	fw.WindowStart, fw.WindowEnd = mar, mar+31*day
	h.expect(mar, aon, rs(h.req("f", fw, 1)), ok(1, 31*day, 1))
	// A sliding window weighs February by the share of March still to come.
	sw := algorithms.Limit{Algorithm: algorithms.SlidingWindow, Rate: 28, Period: 30 * day, WindowStart: feb, WindowEnd: mar}
	h.expect(feb, aon, rs(h.req("s", sw, 28)), ok(0, 56*day, 28))
	sw.WindowStart, sw.WindowEnd = mar, mar+31*day
	h.expect(mar+10*day, aon, rs(h.req("s", sw, 0)), ok(9, 21*day, 19)) // ceil(28 × 21/31) = 19
}

func mixedAlgorithms(h *h) {
	// One call over buckets of every algorithm: all or nothing holds.
	fw := perMinute(5)
	tb := algorithms.Limit{Algorithm: algorithms.TokenBucket, Rate: 1, Period: minute}
	cc := algorithms.Limit{Algorithm: algorithms.Concurrency, Rate: 3, Period: minute}
	sw := algorithms.Limit{Algorithm: algorithms.SlidingWindow, Rate: 5, Period: minute}
	g := algorithms.Limit{Algorithm: algorithms.GCRA, Rate: 5, Period: minute}
	h.expect(Base, aon, rs(h.req("fw", fw, 1), h.req("tb", tb, 1), h.req("cc", cc, 1), h.req("sw", sw, 1), h.req("g", g, 1)),
		ok(4, minute, 1), ok(0, minute, 1), ok(2, 70*sec, 1), ok(4, 2*minute, 1), ok(4, 12*sec, 1))
	// The token bucket is empty: nothing else is charged.
	h.expect(Base+sec, aon, rs(h.req("fw", fw, 1), h.req("tb", tb, 1), h.req("cc", cc, 1), h.req("sw", sw, 1), h.req("g", g, 1)),
		ok(4, minute-sec, 1), no(minute-sec, minute-sec, 1), ok(2, 69*sec, 1), ok(4, 2*minute-sec, 1), ok(4, 11*sec, 1))
}
