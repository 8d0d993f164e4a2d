package redis

import (
	"context"
	"sync"
	"time"
)

// batchInFlight is the most batches in flight at once.
const batchInFlight = 4

// batcher writes the invocations of concurrent Apply calls to Redis in
// shared pipelines. A goroutine (loop) takes the first waiting call and
// every call queued behind it (up to max); when a batch is already in
// flight it keeps collecting for up to window; it then waits for one of
// batchInFlight pipeline slots, collecting arrivals meanwhile, and hands the
// batch to a flush goroutine, which sends every invocation of the batch in
// one pipeline (in a Cluster go-redis splits it per node) and wakes the
// callers. An idle backend thus sends a call at once; a loaded one
// coalesces the calls that arrive while its pipelines are busy. Every call stays its own script
// invocation: batching saves system calls and round trips, and changes
// nothing about atomicity.
//
// A caller waits for its batch or its context, whichever ends first; a
// caller that gives up leaves its invocations in the batch (they may still
// run, as a timed-out command may have).
//
// loop is owned by the Backend: close stops it and waits for it and for the
// flushes in flight.
type batcher struct {
	b      *Backend
	in     chan *pending
	window time.Duration
	max    int
	sem    chan struct{} // one token per pipeline in flight
	stop   chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup // flushes in flight
}

// pending is one Apply call waiting in a batch.
type pending struct {
	invs     []*invocation
	deadline time.Time
	forever  bool // the caller's context has no deadline
	err      error
	done     chan struct{}
}

func newBatcher(b *Backend, window time.Duration, max, inFlight int) *batcher {
	q := &batcher{
		sem:    make(chan struct{}, inFlight),
		b:      b,
		in:     make(chan *pending),
		window: window,
		max:    max,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go q.loop()
	return q
}

// do sends invs in the next batch and waits for their replies or ctx.
func (q *batcher) do(ctx context.Context, invs []*invocation) error {
	p := &pending{invs: invs, done: make(chan struct{})}
	var ok bool
	p.deadline, ok = ctx.Deadline()
	p.forever = !ok
	select {
	case q.in <- p:
	case <-ctx.Done():
		return unavailable(ctx.Err())
	case <-q.stop:
		return errClosed
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return unavailable(ctx.Err())
	}
}

func (q *batcher) loop() {
	defer close(q.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var batch []*pending
		select {
		case p := <-q.in:
			batch = append(batch, p)
		case <-q.stop:
			return
		}
		// Whatever is queued already.
	drain:
		for len(batch) < q.max {
			select {
			case p := <-q.in:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		// Under load (a pipeline in flight), wait up to the window for
		// more; idle, send at once.
		if q.window > 0 && len(batch) < q.max && len(q.sem) > 0 {
			timer.Reset(q.window)
		collect:
			for len(batch) < q.max {
				select {
				case p := <-q.in:
					batch = append(batch, p)
				case <-timer.C:
					break collect
				case <-q.stop:
					break collect
				}
			}
			timer.Stop()
		}
		// Wait for a free pipeline, collecting arrivals meanwhile.
	acquire:
		for {
			if len(batch) >= q.max {
				q.sem <- struct{}{}
				break
			}
			select {
			case q.sem <- struct{}{}:
				break acquire
			case p := <-q.in:
				batch = append(batch, p)
			}
		}
		q.wg.Add(1)
		go q.flush(batch)
	}
}

// flush sends one batch and wakes its callers. The pipeline's deadline is
// the latest of the callers' (none if one of them has none: the client's
// read and write timeouts still apply).
func (q *batcher) flush(batch []*pending) {
	defer q.wg.Done()
	defer func() { <-q.sem }()
	ctx := context.Background()
	var latest time.Time
	forever := false
	n := 0
	for _, p := range batch {
		forever = forever || p.forever
		if p.deadline.After(latest) {
			latest = p.deadline
		}
		n += len(p.invs)
	}
	if !forever {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, latest)
		defer cancel()
	}
	invs := make([]*invocation, 0, n)
	for _, p := range batch {
		invs = append(invs, p.invs...)
	}
	q.b.batches.Add(1)
	err := q.b.exec(ctx, invs)
	for _, p := range batch {
		if err != nil {
			p.err = unavailable(err)
		}
		close(p.done)
	}
}

// close stops the loop, flushing what it had collected, and waits for every
// flush in flight.
func (q *batcher) close() {
	close(q.stop)
	<-q.done
	q.wg.Wait()
}
