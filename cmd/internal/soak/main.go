// Command soak runs ratelimitd for a long time at half of its maximum load
// and checks that what it holds stays flat: resident memory, goroutines,
// open file descriptors and connections to Redis. It is `make soak`.
//
// For each backend (-backends, default memory then Redis standalone) it
// starts a ratelimitd on free loopback ports (and, for Redis, a
// redis-server through internal/redistest), finds the maximum load with a
// short closed-loop `ratelimitctl bench` (-probe), then runs an open-loop
// bench at -fraction of it (0.5) for -duration, over many keys picked by a
// Zipf distribution (-keys 100000) and a one-second window, so that buckets
// are created and expire all the time. Every -sample it scrapes ratelimitd's
// /metrics (process_resident_memory_bytes, go_goroutines,
// process_open_fds, ratelimitd_requests_total, the memory backend's
// buckets, the Redis pool's connections) and Redis's INFO (connected_clients,
// used_memory) and DBSIZE.
//
// Flat means: after a warm-up (-warmup, default a fifth of the run), the
// median of the last -window (a fifth) is at most the median of the first
// -window after the warm-up times 1 + -tolerance (0.25), plus a fixed
// slack for small counts (16 MiB, 20 goroutines, 10 descriptors, 5 Redis
// clients); Redis clients may also grow up to the pool size given to
// ratelimitd (-redis-pool-size), which bounds them whatever the load does.
// Only growth fails: a leak grows.
//
// It prints a markdown report (and writes it to -out) and exits 1 when a
// backend is not flat, or ratelimitd crashed or did not exit 0 on SIGTERM;
// 2 on a usage error. Failed calls are reported (with ratelimitd's backend
// errors and breaker openings), not judged: on a shared machine a backend
// timeout of 10 ms fails calls whenever Redis or ratelimitd waits for a
// CPU, which says nothing about leaks. -max-error-share judges them too.
//
// Usage:
//
//	go run ./cmd/internal/soak [-duration 10m] [-backends memory,redis] [-out docs/soak.md]
//
// It builds bin/ratelimitd and bin/ratelimitctl into a temporary directory
// unless -ratelimitd and -ratelimitctl name them. Every process it starts
// is killed when it ends, also on failure and on Ctrl-C.
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
	prog := &redistest.Program{Name: "soak"}
	code := run(ctx, prog, os.Args[1:], os.Stdout, os.Stderr)
	prog.Close()
	stop()
	os.Exit(code)
}

// options are soak's settings, checked.
type options struct {
	ratelimitd, ratelimitctl string
	backends                 []string
	duration                 time.Duration // of the open-loop run, per backend
	probe                    time.Duration // of the closed-loop run that finds the maximum
	rate                     float64       // fixed open-loop rate; 0: fraction of the probe's
	fraction                 float64
	sample                   time.Duration
	warmup, window           time.Duration // 0: duration/5
	keys                     int
	dist                     string
	tolerance                float64
	maxErrorShare            float64
	poolSize                 int
	out                      string
	log                      io.Writer // progress lines
}

// parseOptions parses args.
func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.ratelimitd, "ratelimitd", "", "ratelimitd `binary` (default: go build into a temporary directory)")
	fs.StringVar(&o.ratelimitctl, "ratelimitctl", "", "ratelimitctl `binary` (default: go build into a temporary directory)")
	backends := fs.String("backends", "memory,redis", "comma-separated `backends` to soak, in order: memory, redis")
	fs.DurationVar(&o.duration, "duration", 10*time.Minute, "open-loop load `time` per backend")
	fs.DurationVar(&o.probe, "probe", 10*time.Second, "closed-loop `time` that finds the maximum load")
	fs.Float64Var(&o.rate, "rate", 0, "open-loop `calls/s` (skips the probe); 0: -fraction of the maximum")
	fs.Float64Var(&o.fraction, "fraction", 0.5, "open-loop load as a `share` of the maximum")
	fs.DurationVar(&o.sample, "sample", 5*time.Second, "`interval` between samples")
	fs.DurationVar(&o.warmup, "warmup", 0, "`time` before the first window (default: a fifth of -duration)")
	fs.DurationVar(&o.window, "window", 0, "`length` of the first and last windows compared (default: a fifth of -duration)")
	fs.IntVar(&o.keys, "keys", 100000, "`number` of distinct keys")
	fs.StringVar(&o.dist, "dist", "zipf", "key `distribution`: zipf or uniform")
	fs.Float64Var(&o.tolerance, "tolerance", 0.25, "allowed growth from the first to the last window, as a `share`")
	fs.Float64Var(&o.maxErrorShare, "max-error-share", 1, "largest `share` of calls that may fail (1: any, failures are only reported)")
	fs.IntVar(&o.poolSize, "redis-pool-size", 20, "ratelimitd's -redis-pool-size: `connections`")
	fs.StringVar(&o.out, "out", "", "also write the report to `file`")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, b := range strings.Split(*backends, ",") {
		if b != "memory" && b != "redis" {
			return o, fmt.Errorf("-backends: %q is not memory or redis", b)
		}
		o.backends = append(o.backends, b)
	}
	if o.warmup == 0 {
		o.warmup = o.duration / 5
	}
	if o.window == 0 {
		o.window = o.duration / 5
	}
	switch {
	case o.duration <= 0 || o.probe <= 0 || o.sample <= 0:
		return o, errors.New("-duration, -probe and -sample must be positive")
	case o.warmup < 0 || o.window <= 0 || o.warmup+2*o.window > o.duration:
		return o, errors.New("-warmup plus twice -window must fit in -duration")
	case o.rate < 0 || o.fraction <= 0 || o.fraction > 1:
		return o, errors.New("-rate must not be negative, -fraction must be in (0, 1]")
	case o.keys < 1 || (o.dist != "zipf" && o.dist != "uniform"):
		return o, errors.New("-keys must be positive, -dist zipf or uniform")
	case o.tolerance < 0 || o.maxErrorShare < 0 || o.poolSize < 1:
		return o, errors.New("-tolerance and -max-error-share must not be negative, -redis-pool-size positive")
	}
	return o, nil
}

// run is soak with its inputs passed in; it returns the exit code.
func run(ctx context.Context, t redistest.T, args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "soak:", err)
		return 2
	}
	o.log = stderr
	rep, err := soak(ctx, t, o, args)
	if err != nil {
		fmt.Fprintln(stderr, "soak:", err)
		return 1
	}
	md := rep.markdown()
	fmt.Fprint(stdout, md)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
			fmt.Fprintln(stderr, "soak:", err)
			return 1
		}
	}
	if !rep.passed() {
		fmt.Fprintln(stderr, "soak: FAIL:", strings.Join(rep.failures(), "; "))
		return 1
	}
	return 0
}
