// Command benchsuite runs the standard benchmark scenarios against the
// real binaries and writes the results into docs/benchmarks.md, with PNG
// charts in docs/img/. `make bench` runs it.
//
// It starts everything itself on free 127.0.0.1 ports: Redis through
// internal/redistest (a standalone server, and a Cluster of three masters),
// ratelimitd processes with a generated config (domain bench: api_key with
// a huge daily limit, and the value "over" with a limit of 1 per hour),
// and `ratelimitctl noop-server`. Each measurement is one `ratelimitctl
// bench -o json -q` process, whose JSON is kept as it is.
//
// The order of the runs is part of the method. The machine is shared and
// its speed drifts, so every figure is compared with a ceiling measured
// in the same invocation: a round runs the two no-op ceilings first, then
// every closed-loop and open-loop scenario; -repeat N runs N rounds and
// takes each figure's median. The live-key scenarios come last, each on a
// fresh ratelimitd (and a fresh Redis) that is prefilled once and then
// loaded N times, because a prefill of ten million buckets is too slow to
// repeat. Only the part of the document between the markers
// <!-- benchsuite:begin --> and <!-- benchsuite:end --> is rewritten.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	p := &redistest.Program{Name: "benchsuite"}
	code := run(ctx, p, os.Args[1:], os.Stderr)
	p.Close() // kills every process the suite started
	stop()
	os.Exit(code)
}

// settings are the suite's flags, checked.
type settings struct {
	bin           string // directory holding ratelimitd and ratelimitctl; "": build them
	doc, img      string
	jsonOut       string
	duration      time.Duration
	repeat        int
	callers       int
	conns         int
	keys          int
	rate          float64
	overLimit     float64
	redis         bool
	redis10M      bool
	quick         bool
	footprint     bool
	daemonFlags   []string
	memoryLive    []int // live-key counts, memory backend
	redisLive     []int // live-key counts, Redis
	prefillDescrs int   // descriptors per prefill call
	args          []string
}

// parseSettings parses the command line.
func parseSettings(args []string, stderr io.Writer) (settings, error) {
	var s settings
	fs := flag.NewFlagSet("benchsuite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: go run ./cmd/internal/benchsuite [flags]

Runs the standard benchmark scenarios (make bench) and rewrites the part of
-doc between <!-- benchsuite:begin --> and <!-- benchsuite:end -->, with
charts in -img. Needs redis-server and redis-cli unless -redis=false.

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&s.bin, "bin", "", "`directory` holding ratelimitd and ratelimitctl (make build's bin); empty: build them into a temporary directory")
	fs.StringVar(&s.doc, "doc", "docs/benchmarks.md", "the Markdown `file` whose generated section is rewritten")
	fs.StringVar(&s.img, "img", "docs/img", "`directory` the PNG charts are written to")
	fs.StringVar(&s.jsonOut, "json", "", "also write every raw result to this JSON `file`")
	fs.DurationVar(&s.duration, "run-duration", 10*time.Second, "length of each closed- or open-loop run (2s with -quick)")
	fs.IntVar(&s.repeat, "repeat", 1, "run every scenario this `number` of times and report the medians")
	fs.IntVar(&s.callers, "callers", 24, "closed loop: callers of every run")
	fs.IntVar(&s.conns, "conns", 6, "gRPC connections of every run (a multiple of 1, 2 and 3 spreads evenly over the replicas)")
	fs.IntVar(&s.keys, "keys", 1000, "distinct api_key values of every run but the live-key ones")
	fs.Float64Var(&s.rate, "rate", 10000, "open loop: calls per second")
	fs.Float64Var(&s.overLimit, "over-limit", 0, "`fraction` of requests with the value \"over\" (refused), in every run")
	fs.BoolVar(&s.redis, "redis", true, "run the Redis scenarios (standalone, replicas, Cluster)")
	fs.BoolVar(&s.redis10M, "redis-10m", false, "add 10M live keys on Redis (the prefill takes minutes)")
	fs.BoolVar(&s.quick, "quick", false, "a smoke run: 2s runs, small key counts, no 10M, no footprint benchmark")
	fs.BoolVar(&s.footprint, "footprint", true, "run backends/memory's BenchmarkFootprint, when it exists, for the bytes-per-bucket target")
	daemonFlags := fs.String("ratelimitd-flags", "", "extra `flags` for every ratelimitd, space-separated (e.g. \"-redis-batch-window 1ns\")")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	s.daemonFlags = strings.Fields(*daemonFlags)
	s.args = args
	s.prefillDescrs = 64
	s.memoryLive = []int{1_000, 100_000, 1_000_000, 10_000_000}
	s.redisLive = []int{1_000, 100_000, 1_000_000}
	if s.redis10M {
		s.redisLive = append(s.redisLive, 10_000_000)
	}
	if s.quick {
		if !set["run-duration"] {
			s.duration = 2 * time.Second
		}
		s.memoryLive = []int{1_000, 10_000}
		s.redisLive = []int{1_000, 10_000}
		s.footprint = false
	}
	switch {
	case s.duration <= 0:
		return s, errors.New("-run-duration must be greater than 0")
	case s.repeat < 1:
		return s, errors.New("-repeat must be at least 1")
	case s.callers < 1 || s.conns < 3:
		return s, errors.New("-callers must be at least 1 and -conns at least 3 (one per replica)")
	case s.keys < 1:
		return s, errors.New("-keys must be at least 1")
	case s.rate <= 0:
		return s, errors.New("-rate must be greater than 0")
	case !(s.overLimit >= 0 && s.overLimit <= 1):
		return s, errors.New("-over-limit must be between 0 and 1")
	case s.doc == "" || s.img == "":
		return s, errors.New("-doc and -img must not be empty")
	}
	return s, nil
}

// run is the suite with its inputs passed in; t owns every process and
// temporary directory (a redistest.Program, or a test). It returns the
// exit code: 0 done, 1 failed, 2 usage error.
func run(ctx context.Context, t redistest.T, args []string, stderr io.Writer) int {
	s, err := parseSettings(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "benchsuite: %v\n", err)
		return 2
	}
	su := &suite{s: s, t: t, ctx: ctx, log: stderr}
	if err := su.run(); err != nil {
		fmt.Fprintf(stderr, "benchsuite: %v\n", err)
		return 1
	}
	return 0
}
