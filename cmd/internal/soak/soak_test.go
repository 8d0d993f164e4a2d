package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ratelimitd/ratelimitd/internal/loadrig"
	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

// logWriter writes each line to t.Log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestSoakShort soaks each backend for 5 s. Whether a measure is flat
// after 5 s says nothing, and how many calls fail depends on the machine,
// so it asserts only what does not: the load ran and was answered,
// samples were taken, ratelimitd did not crash and exited 0 on SIGTERM,
// and the report renders.
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes for about 20 s")
	}
	rl, ctl, err := loadrig.Binaries(t.TempDir(), "soak", "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			if backend == "redis" {
				redistest.Require(t)
			}
			args := []string{"-backends", backend, "-duration", "5s", "-probe", "1s", "-sample", "250ms", "-keys", "1000",
				"-ratelimitd", rl, "-ratelimitctl", ctl}
			o, err := parseOptions(args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			o.log = logWriter{t}
			rep, err := soak(context.Background(), t, o, args)
			if err != nil {
				t.Fatal(err)
			}
			md := rep.markdown()
			if len(rep.runs) != 1 {
				t.Fatalf("%d runs, want 1", len(rep.runs))
			}
			r := rep.runs[0]
			if r.err != nil {
				t.Errorf("run: %v", r.err)
			}
			if r.crash != "" || r.stopErr != nil || r.exit != 0 {
				t.Errorf("ratelimitd: crash %q, exit %d, %v", r.crash, r.exit, r.stopErr)
			}
			if r.probe == nil || r.rate <= 0 || r.load == nil || r.load.OK+r.load.OverLimit == 0 {
				t.Errorf("probe %+v, rate %g, load %+v: want answered calls", r.probe, r.rate, r.load)
			}
			if len(r.points) < 2 {
				t.Errorf("%d samples", len(r.points))
			}
			for _, p := range r.points {
				if p.rss <= 0 || p.goroutines <= 0 || p.fds <= 0 || (backend == "redis" && p.redisClients <= 0) {
					t.Errorf("sample at %v lacks a value: %+v", p.at, p)
				}
			}
			want := 3
			if backend == "redis" {
				want = 4
			}
			if len(r.checks) != want {
				t.Errorf("%d checks, want %d", len(r.checks), want)
			}
			for _, s := range []string{"# Soak", "| t | RSS (MiB) |", "| measure | first | last |", "exit status 0 after SIGTERM"} {
				if !strings.Contains(md, s) {
					t.Errorf("report lacks %q", s)
				}
			}
			if t.Failed() {
				t.Logf("report:\n%s", md)
			}
		})
	}
}

func TestJudge(t *testing.T) {
	o := options{duration: 10, warmup: 2, window: 2, tolerance: 0.25}
	pts := func(vals ...float64) []point {
		var ps []point
		for i, v := range vals {
			ps = append(ps, point{at: time.Duration(i), rss: v})
		}
		return ps
	}
	ms := measure{name: "x", get: func(p point) float64 { return p.rss }, slack: 1, scale: 1}
	// Samples at 0..10: the first window is [2, 4), the last [8, 10].
	flat := judge(o, pts(50, 20, 10, 10, 11, 11, 12, 12, 12, 12, 13), ms)
	if !flat.flat || flat.early != 10 || flat.late != 12 || flat.limit != 13.5 || flat.first != 50 || flat.max != 50 {
		t.Errorf("flat series judged %+v", flat)
	}
	leak := judge(o, pts(10, 10, 10, 10, 12, 14, 16, 18, 20, 22, 24), ms)
	if leak.flat {
		t.Errorf("growing series judged flat: %+v", leak)
	}
	if c := judge(o, nil, ms); c.flat {
		t.Errorf("no samples judged flat")
	}
	ms.capacity = 30
	if c := judge(o, pts(10, 10, 10, 10, 12, 14, 16, 18, 20, 22, 24), ms); !c.flat {
		t.Errorf("growth within the capacity judged not flat: %+v", c)
	}
}
