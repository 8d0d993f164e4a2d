package config

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/goleak"
)

// waitLimit bounds every wait for a callback. It is a deadline against
// hanging, not an expectation: nothing here asserts how long a change took.
const waitLimit = 20 * time.Second

// watchContent starts a watcher on path whose callback reports what read
// returns at that moment, and stops it at the end of the test.
func watchContent(t *testing.T, path string, read func() string) <-chan string {
	t.Helper()
	seen := make(chan string, 64)
	w, err := Watch(context.Background(), path, 10*time.Millisecond, func() {
		select {
		case seen <- read():
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return seen
}

// awaitContent waits until a callback saw want.
func awaitContent(t *testing.T, seen <-chan string, want string) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case got := <-seen:
			if got == want {
				return
			}
		case <-deadline:
			t.Fatalf("no callback saw %q", want)
		}
	}
}

func watchedContent(path string) func() string {
	return func() string {
		b, _ := os.ReadFile(path)
		return string(b)
	}
}

func writeWatched(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// watchTargets runs f once watching the directory and once watching the file.
func watchTargets(t *testing.T, f func(t *testing.T, dir, file, watched string)) {
	for _, name := range []string{"dir", "file"} {
		t.Run(name, func(t *testing.T) {
			// Registered first, so it runs after the watcher's Close.
			t.Cleanup(func() { goleak.VerifyNone(t) })
			dir := t.TempDir()
			file := filepath.Join(dir, "config.yaml")
			watched := dir
			if name == "file" {
				watched = file
			}
			f(t, dir, file, watched)
		})
	}
}

func TestWatchInPlaceWrite(t *testing.T) {
	watchTargets(t, func(t *testing.T, dir, file, watched string) {
		writeWatched(t, file, "v1")
		seen := watchContent(t, watched, watchedContent(file))
		writeWatched(t, file, "v2")
		awaitContent(t, seen, "v2")
		writeWatched(t, file, "v3")
		awaitContent(t, seen, "v3")
	})
}

func TestWatchAtomicRename(t *testing.T) {
	watchTargets(t, func(t *testing.T, dir, file, watched string) {
		writeWatched(t, file, "v1")
		seen := watchContent(t, watched, watchedContent(file))
		for _, v := range []string{"v2", "v3"} {
			tmp := filepath.Join(dir, ".config.yaml.tmp")
			writeWatched(t, tmp, v)
			if err := os.Rename(tmp, file); err != nil {
				t.Fatal(err)
			}
			awaitContent(t, seen, v)
		}
	})
}

// kubeConfigMap lays out dir as the kubelet does for a ConfigMap volume and
// returns a function that publishes new content the way the kubelet does:
// a new timestamped directory, a new ..data symlink renamed over the old.
func kubeConfigMap(t *testing.T, dir, content string) (publish func(content string)) {
	t.Helper()
	n := 0
	publish = func(content string) {
		t.Helper()
		n++
		ts := filepath.Join(dir, "..2026_01_02_03_04_05.00000000"+string(rune('0'+n)))
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		writeWatched(t, filepath.Join(ts, "config.yaml"), content)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish(content)
	if err := os.Symlink(filepath.Join("..data", "config.yaml"), filepath.Join(dir, "config.yaml")); err != nil {
		t.Fatal(err)
	}
	return publish
}

func TestWatchKubernetesSymlinkSwap(t *testing.T) {
	watchTargets(t, func(t *testing.T, dir, file, watched string) {
		publish := kubeConfigMap(t, dir, "v1")
		seen := watchContent(t, watched, watchedContent(file))
		publish("v2")
		awaitContent(t, seen, "v2")
		publish("v3")
		awaitContent(t, seen, "v3")
	})
}

func TestWatchStopsWithContext(t *testing.T) {
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := Watch(ctx, dir, time.Millisecond, func() {})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-w.done // the goroutine returns without Close
	if err := w.Close(); err != nil {
		t.Errorf("Close after cancel: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestWatchMissingPath(t *testing.T) {
	defer goleak.VerifyNone(t)
	_, err := Watch(context.Background(), filepath.Join(t.TempDir(), "nope"), time.Millisecond, func() {})
	if err == nil {
		t.Fatal("Watch of a missing path: no error")
	}
}

// TestWatchRelevant checks, without timing, which events count when the
// watched path is a file.
func TestWatchRelevant(t *testing.T) {
	dir := t.TempDir()
	publish := kubeConfigMap(t, dir, "v1")
	file := filepath.Join(dir, "config.yaml")
	w := &Watcher{dir: dir, file: file, target: resolveLinks(file)}

	other := fsnotify.Event{Name: filepath.Join(dir, "other.yaml"), Op: fsnotify.Write}
	if w.relevant(other) {
		t.Error("a write to another file of the directory counts")
	}
	if !w.relevant(fsnotify.Event{Name: file, Op: fsnotify.Chmod}) {
		t.Error("a chmod of the file does not count")
	}
	publish("v2")
	swap := fsnotify.Event{Name: filepath.Join(dir, "..data"), Op: fsnotify.Create}
	if !w.relevant(swap) {
		t.Error("a ..data swap does not count")
	}
	if w.relevant(swap) {
		t.Error("a second event without a new swap counts")
	}
	if !(&Watcher{}).relevant(other) {
		t.Error("watching a directory, an event does not count")
	}
}
