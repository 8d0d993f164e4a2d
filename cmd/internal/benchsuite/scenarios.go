package main

// The scenarios and the order they run in.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ratelimitd/ratelimitd/internal/loadrig"
	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

// Scenario names, as in the raw JSON.
const (
	scCeiling     = "ceiling"
	scDescriptors = "descriptors"
	scOpenLoop    = "open_loop"
	scLiveKeys    = "live_keys"
	scReplicas    = "replicas"
	scCluster     = "cluster"
)

// Backends, as in the raw JSON.
const (
	beNoopProcess   = "noop_process"
	beNoopInProcess = "noop_inprocess"
	beMemory        = "memory"
	beRedis         = "redis"
	beCluster       = "redis_cluster"
)

// descriptorCounts are the descriptors per request of the descriptor
// scenarios.
var descriptorCounts = []int{1, 4, 16}

// suite is one invocation: settings, processes and results.
type suite struct {
	s   settings
	t   redistest.T
	ctx context.Context
	log io.Writer

	root               string
	daemonBin, ctlBin  string
	configDir          string
	machine            machine
	started            time.Time
	elapsed            time.Duration
	loadBefore, loadAt string // /proc/loadavg at the start and the end

	ms        []*measurement
	byID      map[string]*measurement
	footprint footprint
	notes     []string // things a reader must know: errors in runs

	lastLoadToolCPU float64 // CPU seconds of the last bench process
}

// measurement is one scenario's runs (one per -repeat) and their medians.
type measurement struct {
	ID          string     `json:"id"`
	Scenario    string     `json:"scenario"`
	Label       string     `json:"label"`
	Backend     string     `json:"backend"`
	Descriptors int        `json:"descriptors"`
	Keys        int        `json:"keys"`
	Replicas    int        `json:"replicas,omitempty"`
	Rate        float64    `json:"rate,omitempty"`
	Args        []string   `json:"args"` // of the last run
	Runs        []benchDoc `json:"runs"`
	Median      figures    `json:"median"`
	Live        *liveInfo  `json:"live,omitempty"`
}

// figures are a measurement's medians (latencies in microseconds) and its
// totals over every run.
type figures struct {
	CallsPerSecond float64 `json:"calls_per_second"`
	P50            float64 `json:"p50_us"`
	P90            float64 `json:"p90_us"`
	P99            float64 `json:"p99_us"`
	P999           float64 `json:"p999_us"`
	Max            float64 `json:"max_us"`
	Count          int64   `json:"count"`
	OK             int64   `json:"ok"`
	OverLimit      int64   `json:"over_limit"`
	Errors         int64   `json:"errors"`
	// CPU is the median CPU time per call by process (nil when not read).
	CPU *cpuUse `json:"cpu_per_call,omitempty"`
}

// liveInfo is what a live-key scenario measured around its prefill.
type liveInfo struct {
	Buckets         int     `json:"buckets"`
	PrefillCalls    int64   `json:"prefill_calls"`
	PrefillSeconds  float64 `json:"prefill_seconds"`
	PrefillErrors   int64   `json:"prefill_errors"`
	PrefillP99      float64 `json:"prefill_p99_us"`
	PrefillMax      float64 `json:"prefill_max_us"`
	RSSBefore       int64   `json:"rss_before_bytes"`
	RSSAfter        int64   `json:"rss_after_prefill_bytes"`
	RedisUsedBefore int64   `json:"redis_used_memory_before_bytes,omitempty"`
	RedisUsedAfter  int64   `json:"redis_used_memory_after_prefill_bytes,omitempty"`
}

// median returns the median of vs (the mean of the middle two when even).
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(vs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// summarize sets m.Median from m.Runs, figure by figure.
func (m *measurement) summarize() {
	pick := func(f func(benchDoc) float64) float64 {
		vs := make([]float64, len(m.Runs))
		for i, r := range m.Runs {
			vs[i] = f(r)
		}
		return median(vs)
	}
	var f figures
	f.CallsPerSecond = pick(func(r benchDoc) float64 { return r.CallsPerSecond })
	f.P50 = pick(func(r benchDoc) float64 { return float64(r.Latency.P50) })
	f.P90 = pick(func(r benchDoc) float64 { return float64(r.Latency.P90) })
	f.P99 = pick(func(r benchDoc) float64 { return float64(r.Latency.P99) })
	f.P999 = pick(func(r benchDoc) float64 { return float64(r.Latency.P999) })
	f.Max = pick(func(r benchDoc) float64 { return float64(r.Latency.Max) })
	if !slices.ContainsFunc(m.Runs, func(r benchDoc) bool { return r.CPU == nil }) {
		f.CPU = &cpuUse{
			Server:   pick(func(r benchDoc) float64 { return r.CPU.Server }),
			Redis:    pick(func(r benchDoc) float64 { return r.CPU.Redis }),
			LoadTool: pick(func(r benchDoc) float64 { return r.CPU.LoadTool }),
		}
	}
	for _, r := range m.Runs {
		f.Count += r.Count
		f.OK += r.OK
		f.OverLimit += r.OverLimit
		f.Errors += r.Errors
	}
	m.Median = f
}

// add registers a measurement.
func (su *suite) add(m *measurement) *measurement {
	if su.byID == nil {
		su.byID = map[string]*measurement{}
	}
	su.ms = append(su.ms, m)
	su.byID[m.ID] = m
	return m
}

// get returns the measurement id, or nil when it was not run.
func (su *suite) get(id string) *measurement {
	m := su.byID[id]
	if m == nil || len(m.Runs) == 0 {
		return nil
	}
	return m
}

// logf writes a progress line.
func (su *suite) logf(format string, args ...any) {
	fmt.Fprintf(su.log, "benchsuite: %s %s\n", time.Since(su.started).Round(time.Second), fmt.Sprintf(format, args...))
}

// loadArgs are the bench flags every closed-loop run shares.
func (su *suite) loadArgs(descriptors, keys int) []string {
	return []string{
		"-duration", su.s.duration.String(),
		"-callers", strconv.Itoa(su.s.callers),
		"-conns", strconv.Itoa(su.s.conns),
		"-keys", strconv.Itoa(keys),
		"-descriptors", strconv.Itoa(descriptors),
		"-over-limit", strconv.FormatFloat(su.s.overLimit, 'g', -1, 64),
	}
}

// measure runs one bench with args and adds it to m, with the CPU time
// per call of the server processes, the Redis processes and the load tool.
func (su *suite) measure(m *measurement, st step) error {
	if err := su.ctx.Err(); err != nil {
		return err
	}
	args := st.args
	s0, err1 := cpuTotal(st.servers)
	r0, err2 := cpuTotal(st.redis)
	doc, err := su.bench(args, su.s.duration+2*time.Minute)
	if err != nil {
		return fmt.Errorf("%s: %w", m.Label, err)
	}
	s1, err3 := cpuTotal(st.servers)
	r1, err4 := cpuTotal(st.redis)
	if n := float64(doc.Count); n > 0 && err1 == nil && err2 == nil && err3 == nil && err4 == nil {
		doc.CPU = &cpuUse{Server: (s1 - s0) / n * 1e6, Redis: (r1 - r0) / n * 1e6, LoadTool: su.lastLoadToolCPU / n * 1e6}
	}
	m.Args = args
	m.Runs = append(m.Runs, doc)
	if doc.Errors > 0 {
		su.notes = append(su.notes, fmt.Sprintf("%s: %d of %d calls failed (%v)", m.Label, doc.Errors, doc.Count, doc.ErrorsByCode))
	}
	su.logf("%-44s %9.0f calls/s  p50 %s  p99 %s  p99.9 %s  errors %d", m.Label, doc.CallsPerSecond,
		fmtUS(float64(doc.Latency.P50)), fmtUS(float64(doc.Latency.P99)), fmtUS(float64(doc.Latency.P999)), doc.Errors)
	return nil
}

// step is one run of a round: its bench arguments, and the processes
// whose CPU time it counts.
type step struct {
	m       *measurement
	args    []string
	servers []int // ratelimitd or no-op server pids
	redis   []int // redis-server pids
}

// run runs the whole suite and writes its outputs.
func (su *suite) run() error {
	su.started = time.Now()
	su.loadBefore = loadrig.LoadAvg()
	root, err := moduleRoot(su.ctx)
	if err != nil {
		return err
	}
	su.root = root
	bin := su.s.bin
	if bin == "" {
		bin = su.t.TempDir()
		su.logf("building ratelimitd and ratelimitctl into %s", bin)
		if err := build(su.ctx, root, bin); err != nil {
			return err
		}
	}
	su.daemonBin, su.ctlBin = filepath.Join(bin, "ratelimitd"), filepath.Join(bin, "ratelimitctl")
	for _, b := range []string{su.daemonBin, su.ctlBin} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("-bin: %w (make build makes them)", err)
		}
	}
	su.configDir = su.t.TempDir()
	if err := os.WriteFile(filepath.Join(su.configDir, "bench.yaml"), []byte(benchConfig), 0o644); err != nil {
		return err
	}
	if su.s.redis {
		for _, b := range []string{"redis-server", "redis-cli"} {
			if _, err := exec.LookPath(b); err != nil && os.Getenv("CI") == "" {
				return fmt.Errorf("%s is not installed: install it (make ensure-deps), or run without the Redis scenarios (-redis=false)", b)
			}
		}
		redistest.Require(su.t, "redis-server", "redis-cli")
	}
	su.machine = readMachine(su.ctx, su.daemonBin, su.s.redis)
	su.machine.Revision = gitRevision(su.ctx, root)

	steps, err := su.setUp()
	if err != nil {
		return err
	}
	for r := range su.s.repeat {
		su.logf("round %d of %d: %d runs of %v", r+1, su.s.repeat, len(steps), su.s.duration)
		for _, st := range steps {
			if err := su.measure(st.m, st); err != nil {
				return err
			}
		}
	}
	if err := su.liveKeys(); err != nil {
		return err
	}
	su.footprint = su.runFootprint()
	su.loadAt = loadrig.LoadAvg()
	su.elapsed = time.Since(su.started)
	for _, m := range su.ms {
		m.summarize()
	}
	return su.write()
}

// setUp starts the processes of the rounds (the no-op server, a memory
// ratelimitd, and with Redis a standalone server, three ratelimitd
// replicas on it, a Cluster and a ratelimitd on it) and returns a round's
// runs, in order: the ceilings first.
func (su *suite) setUp() ([]step, error) {
	noop, err := su.startNoop()
	if err != nil {
		return nil, err
	}
	mem, err := su.startDaemon("ratelimitd (memory)")
	if err != nil {
		return nil, err
	}
	warm := []string{mem.addr}
	var replicas []*daemon
	var cluster *daemon
	var redisPids, clusterPids []int
	if su.s.redis {
		r := redistest.Standalone(su.t)
		pid, err := redisPID(su.ctx, r.Addr)
		if err != nil {
			return nil, err
		}
		redisPids = []int{pid}
		for i := range 3 {
			d, err := su.startDaemon(fmt.Sprintf("ratelimitd (redis, replica %d)", i+1), "-backend", "redis", "-redis-addr", r.Addr)
			if err != nil {
				return nil, err
			}
			replicas = append(replicas, d)
			warm = append(warm, d.addr)
		}
		c := redistest.Cluster(su.t)
		for _, a := range c.Addrs {
			pid, err := redisPID(su.ctx, a)
			if err != nil {
				return nil, err
			}
			clusterPids = append(clusterPids, pid)
		}
		cluster, err = su.startDaemon("ratelimitd (redis cluster)", "-backend", "redis", "-redis-topology", "cluster", "-redis-addr", strings.Join(c.Addrs, ","))
		if err != nil {
			return nil, err
		}
		warm = append(warm, cluster.addr)
	}
	// A few calls each: connections, Redis scripts loaded, buckets made.
	warmCalls := "2000"
	if su.s.quick {
		warmCalls = "200"
	}
	for _, addr := range warm {
		if _, err := su.bench([]string{"-addr", addr, "-requests", warmCalls, "-keys", strconv.Itoa(su.s.keys), "-descriptors", "16"}, 2*time.Minute); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}

	var steps []step
	closed := func(m *measurement, ds []*daemon, redis []int) {
		addrs := make([]string, len(ds))
		for i, d := range ds {
			addrs[i] = d.addr
		}
		args := append([]string{"-addr", strings.Join(addrs, ",")}, su.loadArgs(m.Descriptors, m.Keys)...)
		steps = append(steps, step{m: su.add(m), args: args, servers: pids(ds), redis: redis})
	}
	keys := su.s.keys
	closed(&measurement{ID: "noop-process", Scenario: scCeiling, Backend: beNoopProcess, Label: "no-op server, separate process", Descriptors: 1, Keys: keys}, []*daemon{noop}, nil)
	inproc := su.add(&measurement{ID: "noop-inprocess", Scenario: scCeiling, Backend: beNoopInProcess, Label: "no-op server, in the load tool", Descriptors: 1, Keys: keys})
	steps = append(steps, step{m: inproc, args: append([]string{"-noop-server"}, su.loadArgs(1, keys)...)})
	for _, d := range descriptorCounts {
		closed(&measurement{ID: fmt.Sprintf("memory-d%d", d), Scenario: scDescriptors, Backend: beMemory, Label: "memory, " + plural(d, "descriptor"), Descriptors: d, Keys: keys}, []*daemon{mem}, nil)
	}
	if su.s.redis {
		for _, d := range descriptorCounts {
			closed(&measurement{ID: fmt.Sprintf("redis-d%d", d), Scenario: scDescriptors, Backend: beRedis, Label: "Redis, " + plural(d, "descriptor"), Descriptors: d, Keys: keys}, replicas[:1], redisPids)
		}
	}
	open := func(id, backend, label string, d *daemon, redis []int) {
		m := su.add(&measurement{ID: id, Scenario: scOpenLoop, Backend: backend, Label: label, Descriptors: 1, Keys: keys, Rate: su.s.rate})
		args := append([]string{"-addr", d.addr, "-rate", strconv.FormatFloat(su.s.rate, 'g', -1, 64)}, su.loadArgs(1, keys)...)
		steps = append(steps, step{m: m, args: args, servers: pids([]*daemon{d}), redis: redis})
	}
	rate := fmtCount(su.s.rate)
	open("open-noop", beNoopProcess, "open loop "+rate+"/s, no-op (process)", noop, nil)
	open("open-memory", beMemory, "open loop "+rate+"/s, memory", mem, nil)
	if su.s.redis {
		open("open-redis", beRedis, "open loop "+rate+"/s, Redis", replicas[0], redisPids)
		for n := 1; n <= 3; n++ {
			label := fmt.Sprintf("%d ratelimitd on one Redis", n)
			closed(&measurement{ID: fmt.Sprintf("replicas-%d", n), Scenario: scReplicas, Backend: beRedis, Label: label, Descriptors: 1, Keys: keys, Replicas: n}, replicas[:n], redisPids)
		}
		for _, d := range []int{1, 16} {
			closed(&measurement{ID: fmt.Sprintf("cluster-d%d", d), Scenario: scCluster, Backend: beCluster, Label: "Redis Cluster, " + plural(d, "descriptor"), Descriptors: d, Keys: keys}, []*daemon{cluster}, clusterPids)
		}
	}
	return steps, nil
}

// liveKeys runs the live-key scenarios: for each count, a fresh
// ratelimitd (and Redis) prefilled with that many buckets by -dist seq,
// its memory read, then -repeat uniform runs over the same keys.
func (su *suite) liveKeys() error {
	type job struct {
		backend string
		n       int
	}
	var jobs []job
	for _, n := range su.s.memoryLive {
		jobs = append(jobs, job{beMemory, n})
	}
	if su.s.redis {
		for _, n := range su.s.redisLive {
			jobs = append(jobs, job{beRedis, n})
		}
	}
	for _, j := range jobs {
		if err := su.live(j.backend, j.n); err != nil {
			return err
		}
	}
	return nil
}

// plural writes "1 descriptor", "4 descriptors".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// live runs one live-key scenario.
func (su *suite) live(backend string, n int) error {
	name := "memory"
	if backend == beRedis {
		name = "Redis"
	}
	m := su.add(&measurement{ID: fmt.Sprintf("live-%s-%d", backend, n), Scenario: scLiveKeys, Backend: backend,
		Label: fmt.Sprintf("%s, %s live keys", name, fmtCount(float64(n))), Descriptors: 1, Keys: n, Live: &liveInfo{Buckets: n}})
	var d *daemon
	var redisAddr string
	var livePids []int
	var err error
	if backend == beRedis {
		r := redistest.Standalone(su.t)
		defer r.Kill() // frees its memory now; the suite's cleanup would too
		redisAddr = r.Addr
		pid, err := redisPID(su.ctx, r.Addr)
		if err != nil {
			return err
		}
		livePids = []int{pid}
		d, err = su.startDaemon("ratelimitd (redis, live keys)", "-backend", "redis", "-redis-addr", r.Addr)
	} else {
		// Room for every bucket, so that none is evicted.
		d, err = su.startDaemon("ratelimitd (memory, live keys)", "-memory-max-buckets", strconv.Itoa(n+n/10+10_000))
	}
	if err != nil {
		return err
	}
	defer d.kill()
	if m.Live.RSSBefore, err = d.rss(); err != nil {
		return err
	}
	if redisAddr != "" {
		if m.Live.RedisUsedBefore, err = redisUsedMemory(su.ctx, redisAddr); err != nil {
			return err
		}
	}
	descrs := su.s.prefillDescrs
	calls := (n + descrs - 1) / descrs
	su.logf("%-44s prefill: %d calls of %d descriptors", m.Label, calls, descrs)
	start := time.Now()
	doc, err := su.bench([]string{"-addr", d.addr, "-dist", "seq", "-keys", strconv.Itoa(n), "-descriptors", strconv.Itoa(descrs),
		"-requests", strconv.Itoa(calls), "-callers", strconv.Itoa(su.s.callers), "-conns", strconv.Itoa(su.s.conns),
		"-timeout", "1m"}, time.Hour) // a call may wait out a collection of a heap of millions of buckets
	if err != nil {
		return fmt.Errorf("%s: prefill: %w", m.Label, err)
	}
	m.Live.PrefillSeconds = time.Since(start).Seconds()
	m.Live.PrefillCalls, m.Live.PrefillErrors = doc.Count, doc.Errors
	m.Live.PrefillP99, m.Live.PrefillMax = float64(doc.Latency.P99), float64(doc.Latency.Max)
	if doc.Errors > 0 {
		su.notes = append(su.notes, fmt.Sprintf("%s: %d of %d prefill calls failed (%v), so fewer buckets are live", m.Label, doc.Errors, doc.Count, doc.ErrorsByCode))
	}
	if m.Live.RSSAfter, err = d.rss(); err != nil {
		return err
	}
	if redisAddr != "" {
		if m.Live.RedisUsedAfter, err = redisUsedMemory(su.ctx, redisAddr); err != nil {
			return err
		}
	}
	for range su.s.repeat {
		if err := su.measure(m, step{args: append([]string{"-addr", d.addr}, su.loadArgs(1, n)...), servers: pids([]*daemon{d}), redis: livePids}); err != nil {
			return err
		}
	}
	return nil
}

// footprint is the result of backends/memory's BenchmarkFootprint.
type footprint struct {
	Status  string          `json:"status"` // "ok", or why it was not measured
	Command string          `json:"command"`
	Lines   []footprintLine `json:"lines,omitempty"`
}

// footprintLine is one benchmark line's B/bucket metric.
type footprintLine struct {
	Name           string  `json:"name"`
	BytesPerBucket float64 `json:"bytes_per_bucket"`
}

// footprintCommand measures the memory backend's bytes per bucket; the
// benchmark asks for -benchtime=1x (each iteration fills a backend).
const footprintCommand = "go test -run='^$' -bench=Footprint -benchtime=1x -benchmem ./backends/memory/"

// runFootprint runs BenchmarkFootprint of backends/memory when it exists
// and reads its B/bucket metric.
func (su *suite) runFootprint() footprint {
	fp := footprint{Command: footprintCommand}
	if !su.s.footprint {
		fp.Status = "not run (-quick or -footprint=false)"
		return fp
	}
	files, _ := filepath.Glob(filepath.Join(su.root, "backends", "memory", "*_test.go"))
	found := false
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte("func BenchmarkFootprint")) {
			found = true
		}
	}
	if !found {
		fp.Status = "not measured: backends/memory has no BenchmarkFootprint yet"
		return fp
	}
	su.logf("running %s", footprintCommand)
	ctx, cancel := context.WithTimeout(su.ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-run=^$", "-bench=Footprint", "-benchtime=1x", "-benchmem", "./backends/memory/")
	cmd.Dir = su.root
	out, err := cmd.CombinedOutput()
	if err != nil {
		fp.Status = fmt.Sprintf("failed: %v", err)
		su.notes = append(su.notes, fmt.Sprintf("%s failed: %v\n%s", footprintCommand, err, out))
		return fp
	}
	fp.Lines = parseFootprint(out)
	fp.Status = "ok"
	if len(fp.Lines) == 0 {
		fp.Status = "not measured: BenchmarkFootprint reports no B/bucket metric"
	}
	return fp
}

// parseFootprint reads the B/bucket metric of each benchmark line of go
// test's output ("BenchmarkFootprint-2  1000  123 ns/op  96.00 B/bucket").
func parseFootprint(out []byte) []footprintLine {
	var lines []footprintLine
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		for i := 2; i+1 < len(f); i++ {
			if f[i+1] == "B/bucket" {
				if v, err := strconv.ParseFloat(f[i], 64); err == nil {
					lines = append(lines, footprintLine{Name: f[0], BytesPerBucket: v})
				}
			}
		}
	}
	return lines
}
