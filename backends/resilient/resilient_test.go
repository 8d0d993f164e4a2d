package resilient

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is the tests' first instant: aligned on a day.
var t0 = time.Unix(4_102_444_800, 0)

var errDown = fmt.Errorf("test: store down: %w", backends.ErrUnavailable)

// flaky is a backend that fails with its err when set and otherwise allows
// every request (Remaining = Rate - Hits, nothing stored). It counts calls.
type flaky struct {
	mu      sync.Mutex
	err     error
	applies int
	block   chan struct{} // when set, Apply waits for it to be closed
	closed  bool
}

func (f *flaky) set(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *flaky) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applies
}

func (f *flaky) Apply(ctx context.Context, now int64, mode backends.Mode, reqs []backends.Request, out []algorithms.Decision) error {
	f.mu.Lock()
	f.applies++
	err, block := f.err, f.block
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	if err != nil {
		return err
	}
	for i, r := range reqs {
		out[i] = algorithms.Decision{Allowed: true, Remaining: r.Limit.Rate - r.Hits, ResetAfter: r.Limit.Period}
	}
	return nil
}

func (f *flaky) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return nil
}

// pingable is a flaky backend with a Ping that answers pingErr, or waits
// for its ctx when hang is set.
type pingable struct {
	flaky
	pmu     sync.Mutex
	pingErr error
	hang    bool
	pings   int
}

func (p *pingable) Ping(ctx context.Context) error {
	p.pmu.Lock()
	p.pings++
	err, hang := p.pingErr, p.hang
	p.pmu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func perMinute(rate int64) algorithms.Limit {
	return algorithms.Limit{Algorithm: algorithms.FixedWindow, Rate: rate, Period: algorithms.Minute}
}

func req(key string, l algorithms.Limit, hits int64) backends.Request {
	return backends.Request{Key: []byte(key), Limit: l, Hits: hits}
}

// apply calls b with reqs at now and returns the decisions.
func apply(t *testing.T, b backends.Backend, now int64, mode backends.Mode, reqs ...backends.Request) ([]algorithms.Decision, error) {
	t.Helper()
	out := make([]algorithms.Decision, len(reqs))
	err := b.Apply(context.Background(), now, mode, reqs, out)
	return out, err
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func TestParsePolicy(t *testing.T) {
	for _, p := range []Policy{Unavailable, Allow, Deny, Local} {
		got, err := ParsePolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParsePolicy(%q) = %v, %v", p.String(), got, err)
		}
	}
	if _, err := ParsePolicy("maybe"); err == nil {
		t.Error("ParsePolicy(maybe): no error")
	}
}

func newMemory() *memory.Backend { return memory.New(memory.Options{MaxBuckets: 1024, Shards: 4}) }
