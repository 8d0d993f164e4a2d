package overrides

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestWatchDefaults: zero options poll every DefaultInterval, under a
// second.
func TestWatchDefaults(t *testing.T) {
	w, err := Watch(context.Background(), NewFileStore(filepath.Join(t.TempDir(), "o.json")), WatcherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.o.Interval != DefaultInterval || w.o.Interval >= time.Second {
		t.Errorf("default interval %v, want DefaultInterval (%v), under a second", w.o.Interval, DefaultInterval)
	}
	if w.o.Timeout != DefaultTimeout {
		t.Errorf("default timeout %v, want %v", w.o.Timeout, DefaultTimeout)
	}
}
