package resilient

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
)

func TestBreakerApplyProbe(t *testing.T) {
	in := &flaky{}
	clk := &clock{t: t0}
	b := NewBreaker(in, BreakerOptions{Failures: 3, ProbeInterval: time.Second, Now: clk.Now})
	defer b.Close()
	r := req("k", perMinute(10), 1)
	now := micros(t0)

	// A success between failures resets the run.
	in.set(errDown)
	for range 2 {
		if _, err := apply(t, b, now, backends.AllOrNothing, r); !errors.Is(err, errDown) {
			t.Fatalf("closed, store down: %v, want the store's error", err)
		}
	}
	in.set(nil)
	if _, err := apply(t, b, now, backends.AllOrNothing, r); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.State != Closed || st.ConsecutiveFailures != 0 {
		t.Fatalf("after a success: %+v", st)
	}

	// Three failures in a row open it.
	in.set(errDown)
	for range 3 {
		apply(t, b, now, backends.AllOrNothing, r)
	}
	calls := in.calls()
	steps := []struct {
		at      time.Duration
		storeUp bool
		want    error // nil: the store's answer
		state   State // after the call
		reached bool  // the call reached the store
	}{
		{0, false, ErrOpen, Open, false},
		{999 * time.Millisecond, true, ErrOpen, Open, false}, // not yet time to probe
		{time.Second, false, errDown, Open, true},            // the probe fails: open again from here
		{time.Second + 500*time.Millisecond, true, ErrOpen, Open, false},
		{2*time.Second - time.Microsecond, true, ErrOpen, Open, false},
		{2 * time.Second, true, nil, Closed, true}, // the probe succeeds
		{2 * time.Second, true, nil, Closed, true},
	}
	for i, s := range steps {
		clk.set(t0.Add(s.at))
		if s.storeUp {
			in.set(nil)
		} else {
			in.set(errDown)
		}
		_, err := apply(t, b, now, backends.AllOrNothing, r)
		if s.want == nil && err != nil || s.want != nil && !errors.Is(err, s.want) {
			t.Errorf("step %d at +%v: error %v, want %v", i, s.at, err, s.want)
		}
		if s.want == ErrOpen && !errors.Is(err, backends.ErrUnavailable) {
			t.Errorf("step %d: ErrOpen does not wrap ErrUnavailable", i)
		}
		if got := b.Stats().State; got != s.state {
			t.Errorf("step %d at +%v: state %v, want %v", i, s.at, got, s.state)
		}
		reached := in.calls() > calls
		calls = in.calls()
		if reached != s.reached {
			t.Errorf("step %d at +%v: reached the store %v, want %v", i, s.at, reached, s.reached)
		}
	}
	st := b.Stats()
	if st.Opens != 1 || st.Probes != 2 || st.ProbeFailures != 1 || st.Rejected != 4 {
		t.Errorf("stats %+v, want 1 open, 2 probes (1 failed), 4 rejected", st)
	}
}

func TestBreakerOtherErrorsDoNotCount(t *testing.T) {
	in := &flaky{}
	b := NewBreaker(in, BreakerOptions{Failures: 1, Now: (&clock{t: t0}).Now})
	defer b.Close()
	in.set(errors.New("test: bad request")) // not ErrUnavailable
	for range 3 {
		apply(t, b, 0, backends.AllOrNothing, req("k", perMinute(1), 1))
	}
	if st := b.Stats(); st.State != Closed || st.ConsecutiveFailures != 0 {
		t.Errorf("after errors that are not ErrUnavailable: %+v, want closed", st)
	}
	// A call its caller cancelled does not count either.
	in.set(errDown)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.Apply(ctx, 0, backends.AllOrNothing, []backends.Request{req("k", perMinute(1), 1)}, make([]algorithms.Decision, 1))
	if st := b.Stats(); st.State != Closed {
		t.Errorf("after a cancelled call: %+v, want closed", st)
	}
}

func TestBreakerPingProbe(t *testing.T) {
	in := &pingable{}
	in.pingErr = errDown
	clk := &clock{t: t0}
	b := NewBreaker(in, BreakerOptions{Failures: 1, ProbeInterval: time.Second, Now: clk.Now})
	defer b.Close()
	r := req("k", perMinute(10), 1)
	in.set(errDown)
	apply(t, b, 0, backends.AllOrNothing, r)
	if b.Stats().State != Open {
		t.Fatal("not open after one failure")
	}
	in.set(nil) // the store is back, but the breaker does not know yet
	calls := in.calls()

	clk.set(t0.Add(time.Second))
	if _, err := apply(t, b, 0, backends.AllOrNothing, r); !errors.Is(err, ErrOpen) {
		t.Fatalf("the call that starts a Ping probe: %v, want ErrOpen", err)
	}
	b.wg.Wait() // the probe has run
	if st := b.Stats(); st.State != Open || st.ProbeFailures != 1 {
		t.Fatalf("after a failed Ping: %+v, want open", st)
	}
	in.pmu.Lock()
	in.pingErr = nil
	in.pmu.Unlock()
	clk.set(t0.Add(1500 * time.Millisecond)) // the failed probe restarted the interval at +1s
	apply(t, b, 0, backends.AllOrNothing, r)
	b.wg.Wait()
	if st := b.Stats(); st.State != Open || st.Probes != 1 {
		t.Fatalf("before the next interval: %+v, want open, one probe", st)
	}
	clk.set(t0.Add(2 * time.Second))
	apply(t, b, 0, backends.AllOrNothing, r)
	b.wg.Wait()
	if st := b.Stats(); st.State != Closed {
		t.Fatalf("after a good Ping: %+v, want closed", st)
	}
	if in.calls() != calls {
		t.Errorf("Apply reached the store %d times while open, want 0", in.calls()-calls)
	}
	if _, err := apply(t, b, 0, backends.AllOrNothing, r); err != nil {
		t.Errorf("closed again: %v", err)
	}
}

// While one Apply probe is in flight, every other call is answered open.
func TestBreakerSingleProbe(t *testing.T) {
	in := &flaky{}
	clk := &clock{t: t0}
	b := NewBreaker(in, BreakerOptions{Failures: 1, ProbeInterval: time.Second, Now: clk.Now})
	defer b.Close()
	r := req("k", perMinute(10), 1)
	in.set(errDown)
	apply(t, b, 0, backends.AllOrNothing, r)
	in.set(nil)
	block := make(chan struct{})
	in.mu.Lock()
	in.block = block
	in.mu.Unlock()
	clk.set(t0.Add(time.Second))

	probeDone := make(chan error)
	go func() {
		_, err := apply(t, b, 0, backends.AllOrNothing, r)
		probeDone <- err
	}()
	for b.Stats().State != HalfOpen {
		time.Sleep(time.Millisecond)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := apply(t, b, 0, backends.AllOrNothing, r); !errors.Is(err, ErrOpen) {
				t.Errorf("during the probe: %v, want ErrOpen", err)
			}
		}()
	}
	wg.Wait()
	close(block)
	if err := <-probeDone; err != nil {
		t.Errorf("probe: %v", err)
	}
	if st := b.Stats(); st.State != Closed || st.Probes != 1 || st.Rejected != 20 {
		t.Errorf("stats %+v, want closed after 1 probe, 20 rejected", st)
	}
}

// Close ends a Ping probe that hangs, and closes the wrapped backend.
func TestBreakerCloseStopsProbe(t *testing.T) {
	in := &pingable{hang: true}
	clk := &clock{t: t0}
	b := NewBreaker(in, BreakerOptions{Failures: 1, ProbeTimeout: time.Hour, Now: clk.Now})
	in.set(errDown)
	apply(t, b, 0, backends.AllOrNothing, req("k", perMinute(1), 1))
	clk.set(t0.Add(time.Hour))
	apply(t, b, 0, backends.AllOrNothing, req("k", perMinute(1), 1)) // starts the probe
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if !in.closed {
		t.Error("the wrapped backend was not closed")
	}
	// No probe starts after Close.
	clk.set(t0.Add(2 * time.Hour))
	apply(t, b, 0, backends.AllOrNothing, req("k", perMinute(1), 1))
	b.wg.Wait()
}
