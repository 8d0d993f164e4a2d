package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestReadinessCachesTheCheck(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	now := t0
	checks := 0
	var fail error
	r := &readiness{
		what:    "redis",
		check:   func(context.Context) error { checks++; return fail },
		ttl:     time.Second,
		timeout: time.Second,
		now:     func() time.Time { return now },
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	ctx := context.Background()
	steps := []struct {
		at     time.Duration
		down   bool
		ready  bool
		checks int
	}{
		{0, true, false, 1},
		{999 * time.Millisecond, false, false, 1}, // still the cached failure
		{time.Second, false, true, 2},
		{1500 * time.Millisecond, true, true, 2}, // still the cached success
		{2 * time.Second, true, false, 3},
	}
	for i, s := range steps {
		now = t0.Add(s.at)
		fail = nil
		if s.down {
			fail = errors.New("dial tcp: connection refused")
		}
		err := r.Ready(ctx)
		if (err == nil) != s.ready || checks != s.checks {
			t.Errorf("step %d at +%v: %v after %d checks; want ready %v after %d", i, s.at, err, checks, s.ready, s.checks)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "redis unreachable: ") {
			t.Errorf("step %d: error %q does not say what is unreachable", i, err)
		}
	}
	if r.up() != 0 {
		t.Error("up() = 1 while the cached check failed")
	}
}
