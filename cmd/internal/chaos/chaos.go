package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ratelimitd/ratelimitd/internal/loadrig"
	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

// The rule under load: far above the load, over a window longer than any
// run, so that every call Redis decides is OK and adds one to its key.
const (
	chaosDomain = "chaos"
	chaosKey    = "client"
	chaosLimit  = "{requests_per_unit: 1000000000, unit: year, name: chaos_accounting}"
)

// goodConfig is the config served; brokenConfig fails validation (an
// unknown unit) and must be refused, keeping goodConfig in use.
const (
	goodConfig = "# Written by cmd/internal/chaos: the good config.\ndomain: " + chaosDomain +
		"\ndescriptors:\n  - key: " + chaosKey + "\n    rate_limit: " + chaosLimit + "\n"
	brokenConfig = "# Written by cmd/internal/chaos: a config that fails validation.\ndomain: " + chaosDomain +
		"\ndescriptors:\n  - key: " + chaosKey + "\n    rate_limit: {requests_per_unit: 10, unit: years}\n"
)

// adminToken is the admin API's bearer token (the accounting reads the
// counts through it).
const adminToken = "chaos-0123456789abcdef"

// recoveryPatience bounds the wait for the first OK answer after a
// restart; past it the recovery is recorded as missing.
const recoveryPatience = 30 * time.Second

// report is a whole chaos run.
type report struct {
	args     []string
	o        options
	started  time.Time
	took     time.Duration
	machine  []string
	redisDir string // Redis's data directory; "" under the temporary directory
	main     *phaseRun
	fallback *phaseRun // nil with -fallback off
}

// phaseRun is one ratelimitd under load and Redis kills.
type phaseRun struct {
	policy        string // -on-backend-failure
	duration      time.Duration
	summaries     []summary
	kills         []killEvent
	swaps         []swapEvent
	acct          *accounting
	serverOK      float64            // ratelimitd_requests_total{code="ok"}
	fallbacks     float64            // ratelimitd_fallback_calls_total{policy}
	backendErrors map[string]float64 // ratelimitd_backend_errors_total by kind
	breakerOpens  float64            // ratelimitd_backend_breaker_opens_total
	alive         bool               // when the load ended
	crash         string
	exit          int
	stopErr       error
	err           error // what ended the run early
}

// killEvent is one Redis kill and restart.
type killEvent struct {
	at        time.Duration // since the load started
	inflight  int64         // calls in flight when SIGKILL was sent
	outage    time.Duration // from the process reaped to its restart
	restart   time.Duration // from the restart to PING answered
	recovery  time.Duration // from PING answered to the first OK answer
	recovered bool
}

// swapEvent is one broken config swapped in and the good one back.
type swapEvent struct {
	at                    time.Duration
	refused, restored     bool
	refusedIn, restoredIn time.Duration
	version               int // ratelimitd_config_info's version after the good config is back
	problem               string
}

// keyCount is one key's count in Redis and in the client's eyes.
type keyCount struct {
	key      string
	used, ok int64
}

// accounting compares Redis's counts with the OK answers.
//
// Redis counts every call whose script ran; the client counts the OK
// answers. With appendfsync always no acknowledged write is lost, so Redis
// never counts less. It counts more by the calls that ran but were
// answered an error: those in flight when Redis died (the answer lost with
// the connection), those whose answer came after the client's deadline
// (DEADLINE_EXCEEDED, the outcome unknown to the client), and those the
// server gave up on after sending them (ratelimitd_backend_errors_total
// kinds timeout and canceled). Other errors cannot have run: a refused
// connection, the open breaker, Redis loading. The bound adds the three
// (they may overlap: it is an upper bound).
type accounting struct {
	keys     []keyCount
	used, ok int64
	diff     int64   // used - ok
	atKill   int64   // errors of calls in flight at a kill or restart
	deadline int64   // DEADLINE_EXCEEDED answers to calls started while Redis was up or restarting
	timeouts float64 // ratelimitd_backend_errors_total{kind="timeout"} + {kind="canceled"}
	inflight int64   // calls in flight at the kills (snapshots)
	badKeys  int     // keys whose count is below their OK answers
	err      error
}

// bound is the largest difference the errors allow.
func (a *accounting) bound() int64 { return a.atKill + a.deadline + int64(a.timeouts) }

// passed reports whether the counts match within what the errors allow.
func (a *accounting) passed() bool {
	return a.err == nil && a.badKeys == 0 && a.diff >= 0 && a.diff <= a.bound()
}

// chaos runs the main phase, then the fallback phase, and returns the
// report. An error means the run could not be made at all.
func chaos(ctx context.Context, t redistest.T, o options, args []string) (*report, error) {
	rep := &report{args: args, o: o, started: time.Now()}
	dir := t.TempDir()
	rlBin, ctlBin, err := loadrig.Binaries(dir, "chaos", o.ratelimitd, o.ratelimitctl)
	if err != nil {
		return nil, err
	}
	rep.machine = loadrig.Machine()
	logf := func(format string, args ...any) { fmt.Fprintf(o.log, "chaos: %s\n", fmt.Sprintf(format, args...)) }

	redisArgs := []string{"--appendonly", "yes", "--appendfsync", "always"}
	if o.redisDir != "" {
		data, err := os.MkdirTemp(o.redisDir, "chaos-redis-")
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { os.RemoveAll(data) })
		redisArgs = append(redisArgs, "--dir", data) // after the default --dir: it wins
		rep.redisDir = data
	}
	srv := redistest.StandaloneArgs(t, redisArgs...)
	logf("redis-server on %s, appendonly yes, appendfsync always, data in %s", srv.Addr, cmp.Or(rep.redisDir, "the temporary directory"))
	cfgDir, staging := filepath.Join(dir, "config"), filepath.Join(dir, "staging")
	for _, d := range []string{cfgDir, staging} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := install(staging, cfgDir, goodConfig); err != nil {
		return nil, err
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("chaos "+adminToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	env := &rig{o: o, dir: dir, rlBin: rlBin, ctlBin: ctlBin, srv: srv, cfgDir: cfgDir, staging: staging, tokens: tokens, logf: logf}

	rep.main = env.phase(ctx, t, "unavailable", o.duration, o.killTimes(), true)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("interrupted: %w", err)
	}
	if o.fallback != "off" {
		// One outage: a second of normal load, the outage, then load until
		// two seconds after the restart (or the recovery, if later).
		rep.fallback = env.phase(ctx, t, o.fallback, time.Second+o.outage+2*time.Second, []time.Duration{time.Second}, false)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("interrupted: %w", err)
		}
	}
	rep.took = time.Since(rep.started)
	rep.machine = append(rep.machine, "load average at the end: "+loadrig.LoadAvg())
	return rep, nil
}

// rig is what every phase shares.
type rig struct {
	o                       options
	dir, rlBin, ctlBin      string
	srv                     *redistest.Server
	cfgDir, staging, tokens string
	logf                    func(format string, args ...any)
}

// phase runs one ratelimitd with -on-backend-failure policy under load
// for duration, killing Redis at the offsets kills, swapping configs when
// swaps is set, and, with policy unavailable, checking the counts. Redis
// kills happen on this goroutine, since redistest's Restart may end the
// test (or the program) on failure.
func (r *rig) phase(ctx context.Context, t redistest.T, policy string, duration time.Duration, kills []time.Duration, swaps bool) *phaseRun {
	pr := &phaseRun{policy: policy, duration: duration, exit: -1}
	o := r.o
	d, err := loadrig.StartDaemon(t, "ratelimitd-"+policy, r.rlBin, r.dir, "-backend", "redis", "-redis-addr", r.srv.Addr,
		"-config", r.cfgDir, "-admin-token-file", r.tokens, "-on-backend-failure", policy)
	if err != nil {
		pr.err = err
		return pr
	}
	r.logf("%s: ratelimitd pid %d on %s (gRPC) and %s (HTTP), -on-backend-failure %s, log %s", policy, d.PID(), d.GRPCAddr, d.HTTPAddr, policy, d.LogPath)
	defer func() {
		pr.crash = d.Crashed()
		pr.exit, pr.stopErr = d.Stop()
	}()
	if err := loadrig.WaitFor(ctx, loadrig.Patience, func() error { return loadrig.Ready(d.HTTPAddr) }); err != nil {
		pr.err = fmt.Errorf("ratelimitd not ready: %w", err)
		return pr
	}
	m, err := loadrig.Scrape(d.HTTPAddr)
	if err != nil {
		pr.err = err
		return pr
	}
	goodHash, _, n := configInfo(m)
	if n != 1 {
		pr.err = fmt.Errorf("ratelimitd_config_info has %d series, want 1", n)
		return pr
	}

	ph := &phases{}
	l, err := newLoad(o, d.GRPCAddr, ph)
	if err != nil {
		pr.err = err
		return pr
	}
	defer l.close()
	if err := l.warm(ctx); err != nil {
		pr.err = fmt.Errorf("warm-up: %w", err)
		return pr
	}
	stopLoad, loadDone := make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		l.run(stopLoad)
		close(loadDone)
	}()
	stopSwaps, swapsDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(swapsDone)
		if swaps {
			pr.swaps = r.swapLoop(ctx, d, goodHash, start, stopSwaps)
		}
	}()

	sleepUntil := func(at time.Time) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Until(at)):
			return true
		}
	}
	for _, at := range kills {
		if !sleepUntil(start.Add(at)) {
			break
		}
		ev := r.kill(ph, l, start)
		r.logf("%s: kill at %v: %d calls in flight, restart took %v, recovered %v after PING", policy, ev.at.Round(time.Millisecond),
			ev.inflight, ev.restart.Round(time.Millisecond), ev.recovery.Round(time.Millisecond))
		pr.kills = append(pr.kills, ev)
	}
	sleepUntil(start.Add(duration))
	close(stopSwaps)
	<-swapsDone
	close(stopLoad)
	<-loadDone
	pr.alive = d.Alive()
	pr.summaries = l.summaries()
	if m, err := loadrig.Scrape(d.HTTPAddr); err == nil {
		pr.serverOK = m.Value("ratelimitd_requests_total", "code", "ok")
		pr.fallbacks = m.Value("ratelimitd_fallback_calls_total", "policy", policy)
		pr.breakerOpens = m.Value("ratelimitd_backend_breaker_opens_total")
		pr.backendErrors = map[string]float64{}
		for _, s := range m.All("ratelimitd_backend_errors_total") {
			pr.backendErrors[s.Labels["kind"]] += s.Value
		}
	} else if pr.alive {
		pr.err = errors.Join(pr.err, fmt.Errorf("metrics after the load: %w", err))
	}
	if !pr.alive {
		pr.err = errors.Join(pr.err, fmt.Errorf("ratelimitd exited during the run (%s); its log:\n%s", d.ProcessState(), d.LogTail()))
		return pr
	}
	if policy == "unavailable" {
		pr.acct = r.account(ctx, d, l, pr)
	}
	return pr
}

// kill kills Redis, waits -outage, restarts it on the same port, and
// waits for the first OK answer.
func (r *rig) kill(ph *phases, l *load, start time.Time) killEvent {
	ev := killEvent{at: time.Since(start)}
	ph.enter(phaseKilling)
	ev.inflight = l.inflight.Load()
	r.srv.Kill()
	ph.enter(phaseDown)
	killed := time.Now()
	time.Sleep(r.o.outage)
	ph.enter(phaseRestarting)
	restart := time.Now()
	ev.outage = restart.Sub(killed)
	r.srv.Restart()
	readyAt := time.Now()
	ev.restart = readyAt.Sub(restart)
	ph.ready(readyAt)
	for deadline := readyAt.Add(recoveryPatience); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if _, p := ph.load(); p == phaseNormal {
			break
		}
	}
	if at := ph.recoveredAt.Load(); at != 0 {
		ev.recovered, ev.recovery = true, time.Unix(0, at).Sub(readyAt)
	}
	return ev
}

// swapLoop swaps configs at -swap-every's times until stop is closed.
func (r *rig) swapLoop(ctx context.Context, d *loadrig.Daemon, goodHash string, start time.Time, stop <-chan struct{}) []swapEvent {
	var evs []swapEvent
	for _, at := range r.o.swapTimes() {
		select {
		case <-stop:
			return evs
		case <-ctx.Done():
			return evs
		case <-time.After(time.Until(start.Add(at))):
		}
		ev := r.swap(ctx, d, goodHash, start)
		if ev.problem != "" {
			r.logf("swap at %v: %s", ev.at.Round(time.Millisecond), ev.problem)
		}
		evs = append(evs, ev)
	}
	return evs
}

// swapPatience bounds the wait for a config swap to show on /metrics.
const swapPatience = 30 * time.Second

// swap installs the broken config, checks that it is refused, installs the
// good one again and checks that it is loaded.
//
// A load updates several metrics one after the other (a failed one: the
// error count, then last_load_successful; a good one: the success count,
// last_load_successful, then config_info's new series, then the old one's
// removal), so a scrape can fall between two of them: each wait is for
// every metric the load sets, then the rest is checked.
func (r *rig) swap(ctx context.Context, d *loadrig.Daemon, goodHash string, start time.Time) swapEvent {
	ev := swapEvent{at: time.Since(start)}
	m0, err := loadrig.Scrape(d.HTTPAddr)
	if err != nil {
		ev.problem = err.Error()
		return ev
	}
	errs0 := m0.Value("ratelimitd_config_loads_total", "result", "error")
	oks0 := m0.Value("ratelimitd_config_loads_total", "result", "success")
	hash0, ver0, n0 := configInfo(m0)
	if hash0 != goodHash || n0 != 1 {
		ev.problem = fmt.Sprintf("not on the good config before the swap: hash %s (%d series)", hash0, n0)
		return ev
	}

	t0 := time.Now()
	if err := install(r.staging, r.cfgDir, brokenConfig); err != nil {
		ev.problem = err.Error()
		return ev
	}
	m1, err := awaitMetrics(ctx, d, func(m loadrig.Metrics) error {
		if m.Value("ratelimitd_config_loads_total", "result", "error") <= errs0 {
			return errors.New(`the broken config was not loaded: ratelimitd_config_loads_total{result="error"} did not rise`)
		}
		if m.Value("ratelimitd_config_last_load_successful") != 0 {
			return errors.New("ratelimitd_config_last_load_successful is not 0 after the broken config")
		}
		return nil
	})
	ev.refusedIn = time.Since(t0)
	if err != nil {
		ev.problem = err.Error()
	} else {
		hash1, ver1, n := configInfo(m1)
		switch {
		case m1.Value("ratelimitd_config_loads_total", "result", "success") != oks0:
			ev.problem = "a successful load counted after the broken config"
		case n != 1 || hash1 != goodHash || ver1 != ver0:
			ev.problem = fmt.Sprintf("config in use after the broken config: hash %s version %d (%d series), want %s version %d", hash1, ver1, n, goodHash, ver0)
		default:
			ev.refused = true
		}
	}

	t1 := time.Now()
	if err := install(r.staging, r.cfgDir, goodConfig); err != nil {
		ev.problem = join(ev.problem, err.Error())
		return ev
	}
	m2, err := awaitMetrics(ctx, d, func(m loadrig.Metrics) error {
		_, ver, n := configInfo(m)
		switch {
		case m.Value("ratelimitd_config_loads_total", "result", "success") <= oks0:
			return errors.New(`the good config was not loaded back: ratelimitd_config_loads_total{result="success"} did not rise`)
		case m.Value("ratelimitd_config_last_load_successful") != 1:
			return errors.New("ratelimitd_config_last_load_successful is not 1 after the good config")
		case n != 1 || ver <= ver0:
			return fmt.Errorf("ratelimitd_config_info has %d series, version %d: want one, after version %d", n, ver, ver0)
		}
		return nil
	})
	ev.restoredIn = time.Since(t1)
	if err != nil {
		ev.problem = join(ev.problem, err.Error())
		return ev
	}
	hash2, ver2, _ := configInfo(m2)
	ev.version = ver2
	if hash2 != goodHash {
		ev.problem = join(ev.problem, fmt.Sprintf("config in use after the good config: hash %s, want %s", hash2, goodHash))
	} else {
		ev.restored = true
	}
	if !d.Alive() {
		ev.restored, ev.problem = false, join(ev.problem, "ratelimitd exited")
	}
	return ev
}

// awaitMetrics scrapes d until cond accepts a scrape, and returns it, or
// cond's last complaint after swapPatience.
func awaitMetrics(ctx context.Context, d *loadrig.Daemon, cond func(loadrig.Metrics) error) (loadrig.Metrics, error) {
	var got loadrig.Metrics
	err := loadrig.WaitFor(ctx, swapPatience, func() error {
		m, err := loadrig.Scrape(d.HTTPAddr)
		if err != nil {
			return err
		}
		if err := cond(m); err != nil {
			return err
		}
		got = m
		return nil
	})
	return got, err
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// install writes text to staging/config.yaml and renames it over
// dir/config.yaml: the watcher sees one atomic replace, never a partial
// file (staging is outside the watched directory, on the same file
// system).
func install(staging, dir, text string) error {
	tmp := filepath.Join(staging, "config.yaml")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "config.yaml"))
}

// configInfo returns the hash and version of ratelimitd_config_info and
// its number of series.
func configInfo(m loadrig.Metrics) (hash string, version, series int) {
	for _, s := range m.All("ratelimitd_config_info") {
		series++
		hash = s.Labels["hash"]
		version, _ = strconv.Atoi(s.Labels["version"])
	}
	return hash, version, series
}

// account reads every key's count through `ratelimitctl inspect` and
// compares it with the OK answers of l.
func (r *rig) account(ctx context.Context, d *loadrig.Daemon, l *load, pr *phaseRun) *accounting {
	a := &accounting{timeouts: pr.backendErrors["timeout"] + pr.backendErrors["canceled"]}
	for _, s := range pr.summaries {
		switch s.class {
		case phaseStraddle:
			a.atKill += s.total - s.outcomes[outcomeOK].n - s.outcomes[outcomeOverLimit].n
		case phaseDown:
			// Redis was dead from the call's start to its end: nothing
			// can have run.
		default:
			a.deadline += s.outcomes[deadlineExceeded].n
		}
	}
	for _, k := range pr.kills {
		a.inflight += k.inflight
	}
	for k := range r.o.keys {
		var doc struct {
			Matched bool `json:"matched"`
			Buckets []struct {
				Used string `json:"used"` // int64: a string in protojson
			} `json:"buckets"`
		}
		cmd := loadrig.Command(ctx, r.dir, r.ctlBin, "inspect", "-addr", d.GRPCAddr, "-token-file", r.tokens, "-domain", chaosDomain,
			"-o", "json", chaosKey+"="+keyValue(k))
		out, err := cmd.Output()
		if err == nil {
			err = json.Unmarshal(out, &doc)
		}
		if err == nil && (!doc.Matched || len(doc.Buckets) != 1) {
			err = fmt.Errorf("matched %v with %d buckets", doc.Matched, len(doc.Buckets))
		}
		var used int64
		if err == nil {
			used, err = strconv.ParseInt(doc.Buckets[0].Used, 10, 64)
		}
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
			}
			a.err = fmt.Errorf("ratelimitctl inspect %s=%s: %w", chaosKey, keyValue(k), err)
			return a
		}
		ok := l.okPerKey[k].Load()
		a.keys = append(a.keys, keyCount{key: keyValue(k), used: used, ok: ok})
		a.used += used
		a.ok += ok
		if used < ok {
			a.badKeys++
		}
	}
	a.diff = a.used - a.ok
	return a
}
