package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ratelimitd/ratelimitd/internal/loadrig"
	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

// soakRule is the one limit under load: one bucket per key and second, so
// that buckets expire a second after they were made and are swept (memory)
// or expire (Redis) all the time. Hot Zipf keys go over the limit, so both
// answers are exercised.
const soakRule = "{requests_per_unit: 100, unit: second, name: soak_per_key}"

// soakConfig is the config file.
const soakConfig = `# Written by cmd/internal/soak.
domain: soak
descriptors:
  - key: api_key
    rate_limit: ` + soakRule + "\n"

// benchConns is the number of gRPC connections of every bench run.
const benchConns = 4

// report is a whole soak run.
type report struct {
	args    []string
	o       options
	started time.Time
	took    time.Duration
	machine []string
	runs    []*backendRun
}

// backendRun is the soak of one backend.
type backendRun struct {
	backend string
	probe   *benchDoc // nil with -rate
	rate    float64
	load    *benchDoc
	points  []point
	checks  []check
	// backendErrors (ratelimitd_backend_errors_total by kind) and
	// breakerOpens (ratelimitd_backend_breaker_opens_total), at the end.
	backendErrors map[string]float64
	breakerOpens  float64
	crash         string // a panic or fatal error line from ratelimitd's log
	exit          int    // ratelimitd's exit code after SIGTERM
	stopErr       error  // it had exited before, or did not exit
	err           error  // what ended the run early
}

// point is one sample. A value that does not apply is -1.
type point struct {
	at              time.Duration // since the open-loop load started
	rss             float64       // bytes
	goroutines, fds float64
	requests        float64 // ratelimitd_requests_total, every code
	buckets         float64 // memory backend buckets, or Redis DBSIZE
	poolConns       float64 // ratelimitd_redis_pool_connections
	redisClients    float64 // Redis INFO connected_clients (this program's client included)
	redisMem        float64 // Redis INFO used_memory, bytes
}

// check is the flatness verdict on one measure.
type check struct {
	name          string
	scale         float64 // values are divided by it for display (MiB)
	first, last   float64
	max           float64
	early, late   float64 // medians of the first window after warm-up and of the last
	nEarly, nLate int
	limit         float64
	flat          bool
}

// benchDoc is the part of `ratelimitctl bench -o json` soak reads.
type benchDoc struct {
	Mode            string  `json:"mode"`
	Callers         int     `json:"callers"`
	Conns           int     `json:"conns"`
	Rate            float64 `json:"rate"`
	DurationSeconds float64 `json:"duration_seconds"`
	Count           int64   `json:"count"`
	CallsPerSecond  float64 `json:"calls_per_second"`
	Latency         struct {
		P50  int64 `json:"p50_us"`
		P99  int64 `json:"p99_us"`
		P999 int64 `json:"p999_us"`
		Max  int64 `json:"max_us"`
	} `json:"latency"`
	OK           int64            `json:"ok"`
	OverLimit    int64            `json:"over_limit"`
	Errors       int64            `json:"errors"`
	ErrorsByCode map[string]int64 `json:"errors_by_code"`
}

// answered is the rate of calls answered OK or OVER_LIMIT: errors are
// left out, since a failing backend answers them faster than it decides.
func (d *benchDoc) answered() float64 {
	if d.DurationSeconds <= 0 {
		return 0
	}
	return float64(d.OK+d.OverLimit) / d.DurationSeconds
}

// soak runs every backend of o in turn and returns the report. An error
// means the run could not be made at all (binaries, interruption).
func soak(ctx context.Context, t redistest.T, o options, args []string) (*report, error) {
	rep := &report{args: args, o: o, started: time.Now()}
	rlBin, ctlBin, err := loadrig.Binaries(t.TempDir(), "soak", o.ratelimitd, o.ratelimitctl)
	if err != nil {
		return nil, err
	}
	rep.machine = loadrig.Machine()
	for _, b := range o.backends {
		r := soakBackend(ctx, t, o, b, rlBin, ctlBin)
		rep.runs = append(rep.runs, r)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("interrupted: %w", err)
		}
	}
	rep.took = time.Since(rep.started)
	rep.machine = append(rep.machine, "load average at the end: "+loadrig.LoadAvg())
	return rep, nil
}

// soakBackend soaks one backend. Failures are recorded in the result.
func soakBackend(ctx context.Context, t redistest.T, o options, backend, rlBin, ctlBin string) *backendRun {
	r := &backendRun{backend: backend, exit: -1}
	logf := func(format string, args ...any) {
		fmt.Fprintf(o.log, "soak: %s: %s\n", backend, fmt.Sprintf(format, args...))
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if r.err = os.WriteFile(cfg, []byte(soakConfig), 0o644); r.err != nil {
		return r
	}
	args := []string{"-config", cfg, "-backend", backend, "-overrides-file", filepath.Join(dir, "overrides.json")}
	var rc *redis.Client
	if backend == "redis" {
		srv := redistest.Standalone(t)
		args = append(args, "-redis-addr", srv.Addr, "-redis-pool-size", strconv.Itoa(o.poolSize))
		rc = redis.NewClient(&redis.Options{Addr: srv.Addr, DisableIdentity: true, PoolSize: 1})
		defer rc.Close()
	}
	d, err := loadrig.StartDaemon(t, "ratelimitd-"+backend, rlBin, dir, args...)
	if err != nil {
		r.err = err
		return r
	}
	defer func() {
		r.crash = d.Crashed()
		r.exit, r.stopErr = d.Stop()
	}()
	logf("ratelimitd pid %d on %s (gRPC) and %s (HTTP), log %s", d.PID(), d.GRPCAddr, d.HTTPAddr, d.LogPath)
	if err := loadrig.WaitFor(ctx, loadrig.Patience, func() error { return loadrig.Ready(d.HTTPAddr) }); err != nil {
		r.err = fmt.Errorf("ratelimitd not ready: %w", err)
		return r
	}

	r.rate = o.rate
	if r.rate == 0 {
		logf("probing the maximum load: closed loop, 16 callers, %v", o.probe)
		r.probe, r.err = bench(ctx, ctlBin, dir, d.GRPCAddr, o, "-callers", "16", "-duration", o.probe.String())
		if r.err != nil {
			return r
		}
		r.rate = float64(int64(r.probe.answered() * o.fraction))
		if r.rate < 1 {
			r.err = fmt.Errorf("probe: %.1f answered calls/s: nothing to soak with", r.probe.answered())
			return r
		}
		logf("maximum %.0f answered calls/s; soaking at %.0f calls/s for %v", r.probe.answered(), r.rate, o.duration)
	}

	type result struct {
		doc *benchDoc
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		doc, err := bench(ctx, ctlBin, dir, d.GRPCAddr, o, "-rate", strconv.FormatFloat(r.rate, 'f', -1, 64),
			"-duration", o.duration.String(), "-max-inflight", "1000")
		done <- result{doc, err}
	}()
	take := func() {
		p, err := takePoint(ctx, d.HTTPAddr, rc, backend)
		if err != nil {
			logf("sample: %v", err)
			return
		}
		p.at = time.Since(start)
		r.points = append(r.points, p)
	}
	take()
	tick := time.NewTicker(o.sample)
	defer tick.Stop()
	row := rowEvery(o)
	nextLog := row
	var res result
loop:
	for {
		select {
		case res = <-done:
			break loop
		case <-tick.C:
			take()
			if n := len(r.points); n > 0 && r.points[n-1].at >= nextLog {
				p := r.points[n-1]
				logf("%v: rss %.1f MiB, %g goroutines, %g fds, %.0f calls so far", p.at.Round(o.sample), p.rss/(1<<20), p.goroutines, p.fds, p.requests)
				nextLog += row
			}
		}
	}
	r.load, r.err = res.doc, res.err
	if m, err := loadrig.Scrape(d.HTTPAddr); err == nil && backend == "redis" {
		r.breakerOpens = m.Value("ratelimitd_backend_breaker_opens_total")
		r.backendErrors = map[string]float64{}
		for _, s := range m.All("ratelimitd_backend_errors_total") {
			r.backendErrors[s.Labels["kind"]] += s.Value
		}
	}
	if !d.Alive() {
		r.err = errors.Join(r.err, fmt.Errorf("ratelimitd exited during the run (%s); its log:\n%s", d.ProcessState(), d.LogTail()))
	}
	r.checks = flatness(o, backend, r.points)
	return r
}

// bench runs `ratelimitctl bench` against addr with soak's key mix and
// extra flags, and returns its JSON report.
func bench(ctx context.Context, ctl, dir, addr string, o options, extra ...string) (*benchDoc, error) {
	args := append([]string{"bench", "-addr", addr, "-domain", "soak", "-entry-key", "api_key",
		"-keys", strconv.Itoa(o.keys), "-dist", o.dist, "-conns", strconv.Itoa(benchConns), "-q", "-o", "json"}, extra...)
	cmd := loadrig.Command(ctx, dir, ctl, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var ee *exec.ExitError
	if runErr != nil && !errors.As(runErr, &ee) {
		return nil, fmt.Errorf("ratelimitctl bench: %w", runErr)
	}
	var doc benchDoc
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		return nil, fmt.Errorf("ratelimitctl bench: %v; %v; stderr: %s", runErr, err, stderr.String())
	}
	if doc.Count == 0 {
		return &doc, fmt.Errorf("ratelimitctl bench made no call: %v; stderr: %s", runErr, stderr.String())
	}
	return &doc, nil
}

// takePoint scrapes ratelimitd and, when rc is not nil, Redis.
func takePoint(ctx context.Context, httpAddr string, rc *redis.Client, backend string) (point, error) {
	p := point{buckets: -1, poolConns: -1, redisClients: -1, redisMem: -1}
	m, err := loadrig.Scrape(httpAddr)
	if err != nil {
		return p, err
	}
	p.rss = m.Value("process_resident_memory_bytes")
	p.goroutines = m.Value("go_goroutines")
	p.fds = m.Value("process_open_fds")
	p.requests = m.Value("ratelimitd_requests_total")
	if backend == "memory" {
		p.buckets = m.Value("ratelimitd_memory_buckets")
		return p, nil
	}
	p.poolConns = m.Value("ratelimitd_redis_pool_connections")
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := rc.Info(ctx, "clients", "memory").Result()
	if err != nil {
		return p, fmt.Errorf("redis INFO: %w", err)
	}
	p.redisClients = infoField(info, "connected_clients")
	p.redisMem = infoField(info, "used_memory")
	n, err := rc.DBSize(ctx).Result()
	if err != nil {
		return p, fmt.Errorf("redis DBSIZE: %w", err)
	}
	p.buckets = float64(n)
	return p, nil
}

// infoField returns the numeric field of a Redis INFO reply, or -1.
func infoField(info, field string) float64 {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return f
			}
		}
	}
	return -1
}

// rowEvery is the time between rows of the table over time: a tenth of
// the run, at least one sample.
func rowEvery(o options) time.Duration {
	return max(o.duration/10, o.sample)
}

// Fixed slack added to the tolerance, for measures whose values are small
// counts.
const (
	slackRSS          = 16 << 20
	slackGoroutines   = 20
	slackFDs          = 10
	slackRedisClients = 5
)

// measure is one quantity judged for flatness.
type measure struct {
	name     string
	get      func(point) float64
	slack    float64 // added to the tolerance
	capacity float64 // growth up to it is allowed whatever the tolerance
	scale    float64 // display unit
}

// flatness judges every measure of points.
func flatness(o options, backend string, points []point) []check {
	measures := []measure{
		{"RSS (MiB)", func(p point) float64 { return p.rss }, slackRSS, 0, 1 << 20},
		{"goroutines", func(p point) float64 { return p.goroutines }, slackGoroutines, 0, 1},
		{"open fds", func(p point) float64 { return p.fds }, slackFDs, 0, 1},
	}
	if backend == "redis" {
		// The pool bounds the connections, plus this program's own client.
		measures = append(measures, measure{"Redis clients", func(p point) float64 { return p.redisClients }, slackRedisClients, float64(o.poolSize + 1), 1})
	}
	var checks []check
	for _, ms := range measures {
		checks = append(checks, judge(o, points, ms))
	}
	return checks
}

// judge compares the median of the first window after the warm-up with
// the median of the last window.
func judge(o options, points []point, ms measure) check {
	c := check{name: ms.name, scale: ms.scale, first: -1, last: -1, max: -1}
	if len(points) == 0 {
		return c
	}
	end := points[len(points)-1].at
	var early, late []float64
	for _, p := range points {
		v := ms.get(p)
		if v < 0 {
			continue
		}
		if c.first < 0 {
			c.first = v
		}
		c.last = v
		c.max = max(c.max, v)
		if p.at >= o.warmup && p.at < o.warmup+o.window {
			early = append(early, v)
		}
		if p.at >= end-o.window {
			late = append(late, v)
		}
	}
	c.nEarly, c.nLate = len(early), len(late)
	if len(early) == 0 || len(late) == 0 {
		return c // not enough samples: not flat
	}
	c.early, c.late = median(early), median(late)
	c.limit = max(c.early*(1+o.tolerance)+ms.slack, ms.capacity)
	c.flat = c.late <= c.limit
	return c
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// failures lists why the run failed; empty when it passed.
func (r *backendRun) failures(o options) []string {
	var out []string
	if r.err != nil {
		out = append(out, r.backend+": "+firstLine(r.err.Error()))
	}
	if r.crash != "" {
		out = append(out, r.backend+": ratelimitd crashed: "+r.crash)
	}
	if r.stopErr != nil {
		out = append(out, r.backend+": "+r.stopErr.Error())
	} else if r.exit != 0 {
		out = append(out, fmt.Sprintf("%s: ratelimitd exit code %d after SIGTERM", r.backend, r.exit))
	}
	for _, c := range r.checks {
		if !c.flat {
			out = append(out, fmt.Sprintf("%s: %s not flat (last window median %s > limit %s, or too few samples)", r.backend, c.name, c.fmt(c.late), c.fmt(c.limit)))
		}
	}
	if r.load != nil && r.load.Count > 0 {
		if share := float64(r.load.Errors) / float64(r.load.Count); share > o.maxErrorShare {
			out = append(out, fmt.Sprintf("%s: %.2f%% of calls failed (at most %.2f%%)", r.backend, 100*share, 100*o.maxErrorShare))
		}
	}
	return out
}

func (rep *report) failures() []string {
	var out []string
	for _, r := range rep.runs {
		out = append(out, r.failures(rep.o)...)
	}
	return out
}

func (rep *report) passed() bool { return len(rep.failures()) == 0 }

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
