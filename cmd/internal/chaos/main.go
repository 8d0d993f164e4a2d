// Command chaos runs ratelimitd on Redis under load while it kills Redis
// and swaps broken configs in, and checks that nothing crashes, that calls
// during an outage fail fast as documented, that the service comes back
// within -recovery-limit of Redis, and that no decision is lost or counted
// twice. It is `make chaos`.
//
// Everything runs on 127.0.0.1 on free ports: a redis-server with
// appendonly yes and appendfsync always (started by internal/redistest),
// so that a Redis killed with SIGKILL restarts with every write it
// acknowledged, and a ratelimitd with -backend redis and its defaults
// (-backend-timeout 10ms, a breaker probing every second,
// -on-backend-failure unavailable), the admin API on, and a config
// directory. Redis keeps its append-only file under -redis-dir, /dev/shm
// by default: a SIGKILLed process loses nothing it wrote to a file, on
// tmpfs or on disk (fsync only matters when the machine dies), and on a
// shared machine a disk fsync on every write takes milliseconds, which
// would turn into backend timeouts (10 ms) that say nothing of ratelimitd.
// The rule allows 1e9 calls per key and (365-day) year, so that
// every call Redis decides is OK and counts one; the load goes round
// -keys keys.
//
// The load is this program's own gRPC client (load.go): open loop at -rate
// calls per second, each call with a -deadline (20 ms: Envoy's default
// rate-limit timeout), every call classified by the phase it ran in. During
// the run (-duration):
//
//   - Redis is killed with SIGKILL every -kill-every (first at half of it)
//     and restarted on the same port -outage later;
//   - every -swap-every (first at half of it) a config that fails
//     validation is renamed over the good one, then the good one back; the
//     program checks on /metrics that the broken one was refused
//     (ratelimitd_config_last_load_successful 0, ratelimitd_config_info
//     still the good hash and version) and that the good one loaded again.
//
// Then it reads every key's count through the admin API (`ratelimitctl
// inspect`) and compares it with the OK answers the client saw. A call in
// flight at a kill, or one that timed out while Redis was up, may have been
// applied and still answered an error: the difference must be between 0
// and the number of such calls. Last, a second ratelimitd with
// -on-backend-failure -fallback (local) sees one more outage, whose calls
// must get the fallback's answer.
//
// It prints a markdown report (and writes it to -out) and exits 1 when a
// check fails, 2 on a usage error.
//
// Usage:
//
//	go run ./cmd/internal/chaos [-duration 3m] [-kill-every 1m] [-outage 5s] [-swap-every 10s] [-out docs/chaos.md]
//
// It builds ratelimitd and ratelimitctl into a temporary directory unless
// -ratelimitd and -ratelimitctl name them. Every process it starts is
// killed when it ends, also on failure and on Ctrl-C.
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
	prog := &redistest.Program{Name: "chaos"}
	code := run(ctx, prog, os.Args[1:], os.Stdout, os.Stderr)
	prog.Close()
	stop()
	os.Exit(code)
}

// options are chaos's settings, checked.
type options struct {
	ratelimitd, ratelimitctl string
	duration                 time.Duration
	killEvery, outage        time.Duration
	swapEvery                time.Duration
	rate                     float64
	deadline                 time.Duration
	keys, conns              int
	recoveryLimit            time.Duration
	maxDeadlineShare         float64
	fallback                 string // allow, deny, local or off
	redisDir                 string // parent of Redis's data directory; "" the temporary directory
	out                      string
	log                      io.Writer
}

// parseOptions parses args.
func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.ratelimitd, "ratelimitd", "", "ratelimitd `binary` (default: go build into a temporary directory)")
	fs.StringVar(&o.ratelimitctl, "ratelimitctl", "", "ratelimitctl `binary` (default: go build into a temporary directory)")
	fs.DurationVar(&o.duration, "duration", 3*time.Minute, "`time` under load")
	fs.DurationVar(&o.killEvery, "kill-every", time.Minute, "`interval` between Redis kills (the first at half of it)")
	fs.DurationVar(&o.outage, "outage", 5*time.Second, "`time` Redis stays dead")
	fs.DurationVar(&o.swapEvery, "swap-every", 10*time.Second, "`interval` between config swaps (the first at half of it)")
	fs.Float64Var(&o.rate, "rate", 500, "client load in `calls/s` (open loop)")
	fs.DurationVar(&o.deadline, "deadline", 20*time.Millisecond, "`deadline` of each call (Envoy's rate-limit timeout)")
	fs.IntVar(&o.keys, "keys", 32, "`number` of keys the calls go round")
	fs.IntVar(&o.conns, "conns", 2, "`number` of gRPC connections")
	fs.DurationVar(&o.recoveryLimit, "recovery-limit", 2*time.Second, "longest `time` from Redis answering PING again to the first OK answer")
	fs.Float64Var(&o.maxDeadlineShare, "max-deadline-share", 0.01, "largest `share` of outage calls that may end DEADLINE_EXCEEDED instead of the outage answer")
	fs.StringVar(&o.fallback, "fallback", "local", "`policy` of the second run's -on-backend-failure: allow, deny, local, or off (no second run)")
	fs.StringVar(&o.redisDir, "redis-dir", shmDefault(), "`directory` under which Redis keeps its append-only file (empty: the temporary directory, on disk)")
	fs.StringVar(&o.out, "out", "", "also write the report to `file`")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case o.duration <= 0 || o.killEvery <= 0 || o.outage <= 0 || o.swapEvery <= 0 || o.deadline <= 0:
		return o, errors.New("-duration, -kill-every, -outage, -swap-every and -deadline must be positive")
	case len(o.killTimes()) == 0:
		return o, errors.New("no kill fits: -kill-every/2 + -outage must be under -duration")
	case len(o.swapTimes()) == 0:
		return o, errors.New("no swap fits: -swap-every/2 must be under -duration")
	case o.rate <= 0 || o.keys < 1 || o.conns < 1:
		return o, errors.New("-rate, -keys and -conns must be positive")
	case o.recoveryLimit <= 0 || o.maxDeadlineShare < 0:
		return o, errors.New("-recovery-limit must be positive, -max-deadline-share not negative")
	case o.fallback != "allow" && o.fallback != "deny" && o.fallback != "local" && o.fallback != "off":
		return o, fmt.Errorf("-fallback %q: want allow, deny, local or off", o.fallback)
	}
	return o, nil
}

// killTimes are the offsets from the start of the load at which Redis is
// killed: half of -kill-every, then every -kill-every, while the outage
// ends within -duration.
func (o options) killTimes() []time.Duration {
	var out []time.Duration
	for at := o.killEvery / 2; at+o.outage < o.duration; at += o.killEvery {
		out = append(out, at)
	}
	return out
}

// swapTimes are the offsets at which configs are swapped: half of
// -swap-every, then every -swap-every, within -duration.
func (o options) swapTimes() []time.Duration {
	var out []time.Duration
	for at := o.swapEvery / 2; at < o.duration; at += o.swapEvery {
		out = append(out, at)
	}
	return out
}

// shmDefault is /dev/shm when it is a directory, else "".
func shmDefault() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return ""
}

// run is chaos with its inputs passed in; it returns the exit code.
func run(ctx context.Context, t redistest.T, args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 2
	}
	o.log = stderr
	rep, err := chaos(ctx, t, o, args)
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 1
	}
	md := rep.markdown()
	fmt.Fprint(stdout, md)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
			fmt.Fprintln(stderr, "chaos:", err)
			return 1
		}
	}
	if f := rep.failures(); len(f) > 0 {
		fmt.Fprintln(stderr, "chaos: FAIL:", strings.Join(f, "; "))
		return 1
	}
	return 0
}
