package config

// How the watcher sees every way a config changes on disk.
//
// It watches the directory, never the file. A watch on a file follows the
// inode: an atomic rename (write a temporary file, rename it over the old
// one) leaves the watch on the unlinked old inode, and a Kubernetes
// ConfigMap update never touches the file at all. Kubernetes mounts a
// ConfigMap as dir/config.yaml -> ..data/config.yaml, ..data ->
// ..2026_01_02_03_04_05.123456789/, and updates it by writing a new
// timestamped directory, then renaming a new ..data symlink over the old
// one: the only events are Create and Rename of hidden names in dir. So
// every Create, Write, Remove, Rename and Chmod in the directory is a
// candidate change. When the watched path is a file, the events that count
// are those on the file's own name and any event after which the file
// resolves (through its symlinks) to another target than before. Bursts of
// events (an editor's write, chmod and rename; Kubernetes' four steps) are
// debounced into one callback, and the callback decides what changed by
// loading the config again: a reload of unchanged content is harmless.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watcher calls a function after the config at a path changed on disk:
// in-place writes, atomic renames and Kubernetes ConfigMap symlink swaps.
// Create one with Watch; it runs one goroutine until its context is done
// or Close is called.
type Watcher struct {
	fs       *fsnotify.Watcher
	dir      string // watched directory
	file     string // watched file's cleaned path; "" when path is a directory
	target   string // file's resolved path when last looked at
	debounce time.Duration
	onChange func()

	cancel context.CancelFunc
	done   chan struct{} // closed when loop has returned
	err    error         // fs.Close's result, set before done is closed
}

// Watch starts watching path, a config file or a directory of config
// files, and returns once the watch is in place: a change made after Watch
// returns is seen. After a change, and once no further event has come for
// debounce, it calls onChange from its own goroutine, never twice at once.
// A change during a callback leads to one more callback. An error of the
// event source (such as a queue overflow, where events were lost) is
// treated as a change. The watch is on the directory's inode: if the
// directory itself is removed or replaced, no further change is seen.
//
// The goroutine stops, and releases the event source, when ctx is done or
// Close is called; Close waits for it, and for a callback in progress, to
// return.
func Watch(ctx context.Context, path string, debounce time.Duration, onChange func()) (*Watcher, error) {
	path = filepath.Clean(path)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("config: watch: %w", err)
	}
	w := &Watcher{dir: path, debounce: debounce, onChange: onChange, done: make(chan struct{})}
	if !fi.IsDir() {
		w.dir, w.file = filepath.Dir(path), path
		w.target = resolveLinks(path)
	}
	w.fs, err = fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("config: watch: %w", err)
	}
	if err := w.fs.Add(w.dir); err != nil {
		w.fs.Close()
		return nil, fmt.Errorf("config: watch %s: %w", w.dir, err)
	}
	ctx, w.cancel = context.WithCancel(ctx)
	go w.loop(ctx)
	return w, nil
}

// Close stops the watcher and waits for its goroutine to return. It is safe
// to call more than once; it returns the event source's close error.
func (w *Watcher) Close() error {
	w.cancel()
	<-w.done
	return w.err
}

// loop owns the timer and the event source and calls onChange; it returns
// when ctx is done, closing the event source (and so its goroutine).
func (w *Watcher) loop(ctx context.Context) {
	defer func() {
		w.err = w.fs.Close()
		close(w.done)
	}()
	// Stopped before it can fire; since Go 1.23 Reset never delivers a
	// stale tick, so no draining is needed.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			if w.relevant(ev) {
				timer.Reset(w.debounce)
			}
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			if err != nil && !errors.Is(err, fsnotify.ErrClosed) {
				timer.Reset(w.debounce)
			}
		case <-timer.C:
			if ctx.Err() == nil {
				w.onChange()
			}
		}
	}
}

// relevant reports whether ev may have changed the watched config.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if w.file == "" {
		return true
	}
	if filepath.Clean(ev.Name) == w.file {
		w.target = resolveLinks(w.file)
		return true
	}
	// A swap of a symlink on the way to the file (Kubernetes' ..data).
	if t := resolveLinks(w.file); t != w.target {
		w.target = t
		return true
	}
	return false
}

// resolveLinks returns path with every symlink resolved, or "" when it does not
// resolve (missing, or a dangling link during a swap).
func resolveLinks(path string) string {
	t, err := filepath.EvalSymlinks(path)
	if err != nil {
		return ""
	}
	return t
}
