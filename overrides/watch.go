package overrides

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often a Watcher polls its store's version by
// default: four times a second, so that a change made through any replica
// is seen by every other within one second, the poll and its reload
// included.
const DefaultInterval = 250 * time.Millisecond

// DefaultTimeout bounds each poll and reload of a Watcher by default.
const DefaultTimeout = 5 * time.Second

// WatcherOptions configure a Watcher. The zero value polls every
// DefaultInterval and reports nothing.
type WatcherOptions struct {
	// Interval between polls of the store's version; 0 is
	// DefaultInterval.
	Interval time.Duration
	// Tick, when not nil, replaces the ticker: the Watcher polls once per
	// value received (tests inject ticks), and no more once it is closed.
	// Interval is then unused.
	Tick <-chan time.Time
	// Timeout bounds each poll and its reload; 0 is DefaultTimeout.
	Timeout time.Duration
	// OnError, when not nil, is called with every failed poll or reload
	// of the Watcher's goroutine (the Watcher keeps its current Set and
	// tries again at the next poll; Watch and Refresh return their errors
	// instead), and every stored entry skipped because it does not decode
	// or validate, or is stored under another id than its own. A failure
	// that repeats the previous one word for word is reported once, until
	// a poll succeeds. It is called from the goroutine that loaded (the
	// Watcher's, Watch's or Refresh's caller), never concurrently.
	OnError func(error)
	// OnChange, when not nil, is called with every Set the Watcher
	// installs, the first (before Watch returns) included, from the
	// goroutine that loaded it, never concurrently, and in the order the
	// sets were installed. It must not call Refresh.
	OnChange func(*Set)
	// StartEmpty makes Watch succeed when its first load fails: the
	// Watcher starts with an empty Set, reports the failure through
	// OnError and loads again at every poll until the store answers. For
	// a store the process must not wait for at start (Redis); without it
	// Watch returns the error (a corrupt file must not be served as "no
	// overrides").
	StartEmpty bool
}

// Watcher keeps the current Set of a Store: it loads the store once in
// Watch, then polls the store's version every Interval and loads it again
// when the version changed. Overrides that fail to decode are skipped and
// reported (OnError); a failed load keeps the current Set. Create one with
// Watch; it runs one goroutine until its context is done or Close is
// called. It is safe for concurrent use.
type Watcher struct {
	st  Store
	o   WatcherOptions
	cur atomic.Pointer[Set]

	mu      sync.Mutex // serializes loads: a later load installs a later Set
	version int64      // of the installed Set; guarded by mu
	lastErr string     // text of the last failure reported; guarded by mu

	cancel context.CancelFunc
	done   chan struct{} // closed when loop has returned
}

// Watch loads st and starts polling it. It returns the load's error, and
// then starts nothing. The goroutine stops when ctx is done or Close is
// called.
func Watch(ctx context.Context, st Store, o WatcherOptions) (*Watcher, error) {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	w := &Watcher{st: st, o: o, done: make(chan struct{})}
	w.cur.Store(NewSet(nil))
	lctx, cancel := context.WithTimeout(ctx, o.Timeout)
	err := w.reload(lctx)
	cancel()
	if err != nil {
		if !o.StartEmpty {
			return nil, err
		}
		if o.OnError != nil {
			o.OnError(err)
		}
		w.mu.Lock()
		w.version = -1 << 63 // no version yet: the first poll that answers loads
		w.lastErr = err.Error()
		w.mu.Unlock()
	}
	ctx, w.cancel = context.WithCancel(ctx)
	go w.loop(ctx)
	return w, nil
}

// Current returns the current Set, never nil.
func (w *Watcher) Current() *Set { return w.cur.Load() }

// Refresh loads the store now, whatever its version, and installs the
// result: the admin API calls it after its own write so that the writing
// replica answers from the new Set at once. On error the current Set
// stays.
func (w *Watcher) Refresh(ctx context.Context) error {
	return w.reload(ctx)
}

// Close stops the Watcher and waits for its goroutine to return. It is
// safe to call more than once, and returns nil.
func (w *Watcher) Close() error {
	w.cancel()
	<-w.done
	return nil
}

// loop polls at every tick until ctx is done.
func (w *Watcher) loop(ctx context.Context) {
	defer close(w.done)
	tick := w.o.Tick
	if tick == nil {
		t := time.NewTicker(w.o.Interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-tick:
			if !ok {
				tick = nil // a closed Tick: no more polls, until Close
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
			w.poll(pctx)
			cancel()
		}
	}
}

// poll reloads the store when its version differs from the installed
// Set's, and reports failures.
func (w *Watcher) poll(ctx context.Context) {
	v, err := w.st.Version(ctx)
	if err == nil {
		w.mu.Lock()
		same := v == w.version
		if same {
			w.lastErr = ""
		}
		w.mu.Unlock()
		if same {
			return
		}
		err = w.reload(ctx)
	} else {
		err = fmt.Errorf("overrides: poll: %w", err)
	}
	if err == nil || errors.Is(ctx.Err(), context.Canceled) { // Close
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err.Error() != w.lastErr {
		w.lastErr = err.Error()
		if w.o.OnError != nil {
			w.o.OnError(err)
		}
	}
}

// reload loads the store and installs its Set. It reports skipped
// entries, not its error.
func (w *Watcher) reload(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	m, v, err := w.st.Load(ctx)
	if err != nil {
		return fmt.Errorf("overrides: reload: %w", err)
	}
	w.lastErr = ""
	list := make([]*Override, 0, len(m))
	for id, b := range m {
		o, err := Unmarshal(b)
		if err == nil && o.ID() != id {
			err = fmt.Errorf("overrides: stored under id %q, but its id is %q", id, o.ID())
		}
		if err != nil {
			if w.o.OnError != nil {
				w.o.OnError(fmt.Errorf("overrides: skipped %q: %w", id, err))
			}
			continue
		}
		list = append(list, o)
	}
	s := NewSet(list)
	w.cur.Store(s)
	w.version = v
	if w.o.OnChange != nil {
		w.o.OnChange(s)
	}
	return nil
}
