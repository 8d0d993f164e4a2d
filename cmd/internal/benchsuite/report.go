package main

// The report: the generated section of docs/benchmarks.md, the targets,
// and the raw JSON.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The markers around the generated section.
const (
	beginMarker = "<!-- benchsuite:begin -->"
	endMarker   = "<!-- benchsuite:end -->"
)

// replaceSection returns doc with the text between the markers replaced
// by section. Each marker must appear once, begin before end.
func replaceSection(doc []byte, section string) ([]byte, error) {
	b, e := bytes.Index(doc, []byte(beginMarker)), bytes.Index(doc, []byte(endMarker))
	switch {
	case b < 0 || e < 0:
		return nil, fmt.Errorf("no %s ... %s markers: add them where the generated section goes", beginMarker, endMarker)
	case bytes.Count(doc, []byte(beginMarker)) > 1 || bytes.Count(doc, []byte(endMarker)) > 1:
		return nil, errors.New("the benchsuite markers appear more than once")
	case e < b:
		return nil, fmt.Errorf("%s comes before %s", endMarker, beginMarker)
	}
	var out bytes.Buffer
	out.Write(doc[:b+len(beginMarker)])
	out.WriteString("\n")
	out.WriteString(strings.TrimRight(section, "\n"))
	out.WriteString("\n")
	out.Write(doc[e:])
	return out.Bytes(), nil
}

// target is one row of the targets table.
type target struct {
	Name     string `json:"name"`
	Measured string `json:"measured"`
	Result   string `json:"result"` // PASS, FAIL, or — when not measured
}

// verdict is PASS or FAIL.
func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// notRun is the target row of something not measured.
func notRun(name, why string) target { return target{Name: name, Measured: why, Result: "—"} }

// targets evaluates the targets of issue 7.
func (su *suite) targets() []target {
	var ts []target
	ceiling, inproc := su.get("noop-process"), su.get("noop-inprocess")
	share := func(name, id string, min float64) {
		m := su.get(id)
		if m == nil || ceiling == nil {
			ts = append(ts, notRun(name, "not run"))
			return
		}
		r := m.Median.CallsPerSecond / ceiling.Median.CallsPerSecond
		measured := fmt.Sprintf("%s (%s vs %s calls/s); %s of the in-process no-op", pct(r), fmtCount(m.Median.CallsPerSecond), fmtCount(ceiling.Median.CallsPerSecond), pct(ratio(m.Median.CallsPerSecond, inproc)))
		ts = append(ts, target{Name: name, Measured: measured, Result: verdict(r >= min)})
	}
	share("memory backend, 1 descriptor: ≥ 100 % of the no-op ceiling", "memory-d1", 1)
	share("Redis standalone, 1 descriptor: ≥ 90 % of the no-op ceiling", "redis-d1", 0.9)
	for _, b := range []struct{ name, id string }{{"memory", "memory"}, {"Redis", "redis"}} {
		name := fmt.Sprintf("%s, 16 descriptors per request: at most 2× the cost of 1", b.name)
		one, sixteen := su.get(b.id+"-d1"), su.get(b.id+"-d16")
		if one == nil || sixteen == nil || sixteen.Median.CallsPerSecond == 0 {
			ts = append(ts, notRun(name, "not run"))
			continue
		}
		r := one.Median.CallsPerSecond / sixteen.Median.CallsPerSecond
		ts = append(ts, target{Name: name, Measured: fmt.Sprintf("%.2f× (%s vs %s calls/s)", r, fmtCount(sixteen.Median.CallsPerSecond), fmtCount(one.Median.CallsPerSecond)), Result: verdict(r <= 2)})
	}
	for _, q := range []struct {
		name string
		get  func(figures) float64
	}{{"p99", func(f figures) float64 { return f.P99 }}, {"p99.9", func(f figures) float64 { return f.P999 }}} {
		name := fmt.Sprintf("open loop at %s calls/s on Redis: %s ≤ 1.5× the no-op server's", fmtCount(su.s.rate), q.name)
		r, n := su.get("open-redis"), su.get("open-noop")
		if r == nil || n == nil || q.get(n.Median) == 0 {
			ts = append(ts, notRun(name, "not run"))
			continue
		}
		x := q.get(r.Median) / q.get(n.Median)
		ts = append(ts, target{Name: name, Measured: fmt.Sprintf("%.2f× (%s vs %s)", x, fmtUS(q.get(r.Median)), fmtUS(q.get(n.Median))), Result: verdict(x <= 1.5)})
	}
	// One row per line of BenchmarkFootprint (one per algorithm and size).
	if su.footprint.Status != "ok" {
		ts = append(ts, notRun("memory backend: ≤ 128 bytes per bucket (`BenchmarkFootprint`)", su.footprint.Status))
	}
	for _, l := range su.footprint.Lines {
		name := strings.TrimPrefix(l.Name, "BenchmarkFootprint/")
		if i := strings.LastIndexByte(name, '-'); i > 0 { // the -GOMAXPROCS suffix
			name = name[:i]
		}
		ts = append(ts, target{Name: fmt.Sprintf("memory backend, %s: ≤ 128 bytes per bucket (`BenchmarkFootprint`)", name),
			Measured: fmt.Sprintf("%.1f B/bucket", l.BytesPerBucket), Result: verdict(l.BytesPerBucket <= 128)})
	}
	return ts
}

// ratio returns v over m's calls/s, or NaN when m was not run.
func ratio(v float64, m *measurement) float64 {
	if m == nil || m.Median.CallsPerSecond == 0 {
		return math.NaN()
	}
	return v / m.Median.CallsPerSecond
}

// pct formats a ratio as a percentage; NaN is "—".
func pct(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "—"
	}
	return fmt.Sprintf("%.0f %%", r*100)
}

// times formats a ratio as a factor; NaN is "—".
func times(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "—"
	}
	return fmt.Sprintf("%.2f×", r)
}

// fmtCount formats v rounded, with thousands separators.
func fmtCount(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// fmtUS formats a latency in microseconds.
func fmtUS(us float64) string {
	switch {
	case us < 1000:
		return fmt.Sprintf("%.0f µs", us)
	case us < 1e6:
		return fmt.Sprintf("%.2f ms", us/1e3)
	}
	return fmt.Sprintf("%.2f s", us/1e6)
}

// fmtCPU writes a run's CPU time per call by process, "—" when unknown.
func fmtCPU(c *cpuUse) string {
	if c == nil {
		return "—"
	}
	return fmt.Sprintf("%.0f + %.0f + %.0f = %.0f", c.Server, c.Redis, c.LoadTool, c.Total())
}

// fmtBytes formats a size in MiB or GiB.
func fmtBytes(b int64) string {
	if b >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

// shellQuote quotes an argument for a shell when it needs it.
func shellQuote(a string) string {
	if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~!") {
		return a
	}
	return "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
}

// command is the go run line of this invocation.
func (su *suite) command() string {
	parts := []string{"go", "run", "./cmd/internal/benchsuite"}
	for _, a := range su.s.args {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

// closedTable writes the table of closed-loop measurements ms.
func (su *suite) closedTable(b *strings.Builder, ms []*measurement) {
	ceiling, inproc := su.get("noop-process"), su.get("noop-inprocess")
	b.WriteString("| run | calls/s | vs no-op (process) | vs no-op (in-process) | p50 | p99 | p99.9 | errors | CPU µs per call: server + Redis + load tool |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, m := range ms {
		f := m.Median
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %d | %s |\n", m.Label, fmtCount(f.CallsPerSecond),
			pct(ratio(f.CallsPerSecond, ceiling)), pct(ratio(f.CallsPerSecond, inproc)),
			fmtUS(f.P50), fmtUS(f.P99), fmtUS(f.P999), f.Errors, fmtCPU(f.CPU))
	}
}

// scenario returns the measurements of a scenario that ran, in order.
func (su *suite) scenario(name string, backends ...string) []*measurement {
	var out []*measurement
	for _, m := range su.ms {
		if m.Scenario == name && len(m.Runs) > 0 && (len(backends) == 0 || contains(backends, m.Backend)) {
			out = append(out, m)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// section returns the generated Markdown; charts maps a chart's name to
// its path relative to the document.
func (su *suite) section(charts map[string]string) string {
	var b strings.Builder
	s, mc := su.s, su.machine
	b.WriteString("<!-- Generated by cmd/internal/benchsuite (make bench): everything between the benchsuite markers is rewritten by the next run. -->\n\n")
	b.WriteString("## Standard scenarios (`make bench`)\n\n")
	b.WriteString("Command (`make bench` builds `bin/ratelimitd` and `bin/ratelimitctl`, then runs the suite):\n\n```\nmake bench\n")
	b.WriteString(su.command() + "\n```\n\n")
	fmt.Fprintf(&b, "Machine: nproc %d, `%s` (`/proc/cpuinfo` model name), %s memory, %s, %s", mc.NProc, mc.CPU, fmtBytes(mc.MemoryBytes), mc.Kernel, mc.Go)
	if mc.RedisVersion != "" {
		fmt.Fprintf(&b, ", redis-server %s", mc.RedisVersion)
	}
	fmt.Fprintf(&b, "; code at revision %s", mc.Revision)
	if s.bin != "" {
		fmt.Fprintf(&b, " (binaries from `%s`)", s.bin)
	}
	fmt.Fprintf(&b, "; run on %s, it took %s. Load average (1, 5, 15 min) %s before and %s after: every process of the run (load tool, ratelimitd, Redis) shares these cores with whatever else runs, so compare only figures of one run.\n\n",
		mc.Date, su.elapsed.Round(time.Second), su.loadBefore, su.loadAt)

	b.WriteString("Method: the suite starts every process itself on free 127.0.0.1 ports: Redis (a standalone server; a Cluster of three masters without replicas), ratelimitd processes with the config below, and `ratelimitctl noop-server`. ")
	fmt.Fprintf(&b, "Each figure comes from one `ratelimitctl bench -o json -q` process. Every closed-loop run lasts %v with %d callers over %d gRPC connections (%d connections divide evenly among 1, 2 or 3 replicas); requests are in domain `bench` with `api_key` set to one of %s values picked uniformly",
		s.duration, s.callers, s.conns, s.conns, fmtCount(float64(s.keys)))
	if s.overLimit > 0 {
		fmt.Fprintf(&b, ", %g %% of them with the value `over` (refused)", s.overLimit*100)
	}
	fmt.Fprintf(&b, ". The open-loop runs send %s calls/s for %v (latency measured from each call's intended time). ", fmtCount(s.rate), s.duration)
	b.WriteString("A round runs the two no-op ceilings first, then every other closed- and open-loop run, so that each figure is compared with a ceiling of the same invocation; ")
	if s.repeat > 1 {
		fmt.Fprintf(&b, "there were %d rounds, and each figure is the median of its %d runs, figure by figure. ", s.repeat, s.repeat)
	} else {
		b.WriteString("there was one round (`-repeat N` takes the median of N). ")
	}
	b.WriteString("**vs no-op (process)** is a run's calls/s over that of `ratelimitctl noop-server`, a separate process that answers OK and does nothing: the fair ceiling for a ratelimitd process on this machine. **vs no-op (in-process)** compares with `bench -noop-server`, which shares the load tool's runtime. **CPU µs per call** is the user and system CPU time each side spent during the run (`/proc/PID/stat` of the ratelimitd or no-op processes and of the redis-server processes, the rusage of the `ratelimitctl bench` process), divided by the calls: when every process shares the same cores, throughput is bounded by their sum, so it shows where a gap to the ceiling comes from.\n\n")
	fmt.Fprintf(&b, "ratelimitd runs with its defaults, plus `%s`", strings.Join(daemonFlags, " "))
	if len(s.daemonFlags) > 0 {
		fmt.Fprintf(&b, " `%s`", strings.Join(s.daemonFlags, " "))
	}
	b.WriteString(" (the default 10 ms would turn queueing on a loaded two-core machine into UNAVAILABLE answers), and this config:\n\n```yaml\n" + benchConfig + "```\n\n")

	b.WriteString("### Targets\n\n| target | measured | result |\n|---|---|---|\n")
	for _, t := range su.targets() {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.Name, t.Measured, t.Result)
	}
	b.WriteString("\nCost is 1/throughput. The open-loop targets compare ratelimitd on Redis with the no-op server (separate process) at the same rate.")
	if su.footprint.Status == "ok" {
		fmt.Fprintf(&b, " Bytes per bucket come from `%s`: the heap the backend itself holds per bucket (table slot, key and state), not the process's RSS (see Live keys for that).", su.footprint.Command)
	}
	b.WriteString("\n\n")

	b.WriteString("### Ceilings\n\n")
	su.closedTable(&b, su.scenario(scCeiling))

	b.WriteString("\n### Descriptors per request\n\n")
	fmt.Fprintf(&b, "One ratelimitd per backend; each descriptor is its own bucket (`k7`, `k7.1`, `k7.2`, ...), decided in one backend call per request.\n\n")
	su.closedTable(&b, su.scenario(scDescriptors))
	su.chartLink(&b, charts, "descriptors", "calls/s and p99 against descriptors per request")

	b.WriteString("\n### Open loop\n\n")
	su.openTable(&b)

	b.WriteString("\n### Live keys\n\n")
	su.liveTables(&b)
	su.chartLink(&b, charts, "live-keys", "calls/s and p99 against live keys")

	b.WriteString("\n### Replicas sharing one Redis\n\n")
	if ms := su.scenario(scReplicas); len(ms) > 0 {
		b.WriteString("1, 2 and 3 ratelimitd processes on one standalone Redis, 1 descriptor per request; the load tool spreads its connections over them in turn (`-addr a,b,c`). All share the same two cores, so this shows the cost of more processes, not the gain of more machines.\n\n")
		su.closedTable(&b, ms)
		su.chartLink(&b, charts, "replicas", "calls/s and p99 against replicas")
	} else {
		b.WriteString("Not run (`-redis=false`).\n")
	}

	b.WriteString("\n### Redis Cluster vs one Redis\n\n")
	if ms := su.scenario(scCluster); len(ms) > 0 {
		b.WriteString("A Cluster of three masters (on this machine) against the standalone Redis of the descriptor runs. With 16 descriptors the buckets fall on several slots, so one request is one pipelined script per slot.\n\n")
		var both []*measurement
		for _, d := range []int{1, 16} {
			if m := su.get(fmt.Sprintf("redis-d%d", d)); m != nil {
				both = append(both, m)
			}
			if m := su.get(fmt.Sprintf("cluster-d%d", d)); m != nil {
				both = append(both, m)
			}
		}
		su.closedTable(&b, both)
		su.chartLink(&b, charts, "cluster", "calls/s and p99, Redis Cluster against one Redis")
	} else {
		b.WriteString("Not run (`-redis=false`).\n")
	}

	if len(su.notes) > 0 {
		b.WriteString("\n### Notes\n\n")
		for _, n := range su.notes {
			fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(n, "\n", " "))
		}
	}
	b.WriteString("\nRaw results: `-json FILE` writes every run's `ratelimitctl bench` report.\n")
	return b.String()
}

// chartLink writes the image link of chart name, if it was drawn.
func (su *suite) chartLink(b *strings.Builder, charts map[string]string, name, alt string) {
	if p, ok := charts[name]; ok {
		fmt.Fprintf(b, "\n![%s](%s)\n", alt, filepath.ToSlash(p))
	}
}

// openTable writes the open-loop table.
func (su *suite) openTable(b *strings.Builder) {
	ms := su.scenario(scOpenLoop)
	noop := su.get("open-noop")
	fmt.Fprintf(b, "%s calls/s at fixed intended times, at most 1000 in flight, 1 descriptor per request. Latency counts from the intended time, so queueing behind a stall is included. **vs no-op** is the ratio to the no-op server's (separate process) figure at the same rate.\n\n", fmtCount(su.s.rate))
	b.WriteString("| server | calls/s | p50 | p99 | p99.9 | p99 vs no-op | p99.9 vs no-op | errors | CPU µs per call: server + Redis + load tool |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, m := range ms {
		f := m.Median
		r99, r999 := math.NaN(), math.NaN()
		if noop != nil && noop.Median.P99 > 0 && noop.Median.P999 > 0 {
			r99, r999 = f.P99/noop.Median.P99, f.P999/noop.Median.P999
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %d | %s |\n", m.Label, fmtCount(f.CallsPerSecond), fmtUS(f.P50), fmtUS(f.P99), fmtUS(f.P999), times(r99), times(r999), f.Errors, fmtCPU(f.CPU))
	}
	for _, m := range ms {
		if m.Median.CallsPerSecond < 0.98*m.Rate {
			fmt.Fprintf(b, "\n%s answered %s calls/s, short of the %s asked: it could not keep up, and its latencies are mostly queueing.\n",
				strings.ToUpper(m.Label[:1])+m.Label[1:], fmtCount(m.Median.CallsPerSecond), fmtCount(m.Rate))
		}
	}
}

// liveTables writes the live-key tables: memory after the prefill, then
// the load.
func (su *suite) liveTables(b *strings.Builder) {
	ms := su.scenario(scLiveKeys)
	fmt.Fprintf(b, "For each count a fresh ratelimitd (and, for Redis, a fresh redis-server) is prefilled with `ratelimitctl bench -dist seq -descriptors %d -requests K/%d` (each of the K keys once), its memory read, then loaded over the same K keys picked uniformly, 1 descriptor per request (with `-repeat N`, N loads after the one prefill). The memory backend runs with `-memory-max-buckets` above K so that nothing is evicted. RSS is the ratelimitd process's VmRSS (Go heap, garbage not yet collected, runtime); per key is its growth during the prefill divided by K (memory backend only: with Redis, ratelimitd holds no bucket), and likewise for Redis's used_memory.", su.s.prefillDescrs, su.s.prefillDescrs)
	if !su.s.redis10M && su.s.redis && !su.s.quick {
		b.WriteString(" Redis at 10M keys is behind `-redis-10m` (its prefill takes minutes).")
	}
	b.WriteString(" The prefill's p99 and max latency show stalls while the store grows (its calls have a 1 minute deadline).")
	b.WriteString("\n\n| run | prefill | prefill p99, max | ratelimitd RSS before → after | per key | Redis used_memory after | per key |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, m := range ms {
		l := m.Live
		per, redisCol, redisPer := "—", "—", "—"
		if m.Backend == beRedis {
			redisCol = fmtBytes(l.RedisUsedAfter)
			redisPer = fmt.Sprintf("%.0f B", float64(l.RedisUsedAfter-l.RedisUsedBefore)/float64(l.Buckets))
		} else { // with Redis, ratelimitd holds no bucket
			per = fmt.Sprintf("%.0f B", float64(l.RSSAfter-l.RSSBefore)/float64(l.Buckets))
		}
		fmt.Fprintf(b, "| %s | %s calls in %.1f s | %s, %s | %s → %s | %s | %s | %s |\n", m.Label, fmtCount(float64(l.PrefillCalls)), l.PrefillSeconds,
			fmtUS(l.PrefillP99), fmtUS(l.PrefillMax), fmtBytes(l.RSSBefore), fmtBytes(l.RSSAfter), per, redisCol, redisPer)
	}
	b.WriteString("\n")
	su.closedTable(b, ms)
}

// rawDoc is the -json file.
type rawDoc struct {
	Command        string         `json:"command"`
	Machine        machine        `json:"machine"`
	Started        time.Time      `json:"started"`
	ElapsedSeconds float64        `json:"elapsed_seconds"`
	LoadBefore     string         `json:"loadavg_before"`
	LoadAfter      string         `json:"loadavg_after"`
	Settings       rawSettings    `json:"settings"`
	Measurements   []*measurement `json:"measurements"`
	Targets        []target       `json:"targets"`
	Footprint      footprint      `json:"footprint"`
	Notes          []string       `json:"notes"`
	Charts         []string       `json:"charts"`
}

// rawSettings are the settings in the -json file.
type rawSettings struct {
	RunSeconds    float64  `json:"run_seconds"`
	Repeat        int      `json:"repeat"`
	Callers       int      `json:"callers"`
	Conns         int      `json:"conns"`
	Keys          int      `json:"keys"`
	Rate          float64  `json:"rate"`
	OverLimit     float64  `json:"over_limit_fraction"`
	Redis         bool     `json:"redis"`
	Quick         bool     `json:"quick"`
	DaemonFlags   []string `json:"ratelimitd_flags"`
	PrefillDescrs int      `json:"prefill_descriptors"`
	Config        string   `json:"config"`
}

// write writes the charts, the document and the -json file.
func (su *suite) write() error {
	files, err := su.charts()
	if err != nil {
		return fmt.Errorf("charts: %w", err)
	}
	rel := map[string]string{}
	var paths []string
	for name, path := range files {
		r, err := filepath.Rel(filepath.Dir(su.s.doc), path)
		if err != nil {
			r = path
		}
		rel[name] = r
		paths = append(paths, path)
	}
	doc, err := os.ReadFile(su.s.doc)
	if err != nil {
		return err
	}
	out, err := replaceSection(doc, su.section(rel))
	if err != nil {
		return fmt.Errorf("%s: %w", su.s.doc, err)
	}
	if err := writeFile(su.s.doc, out); err != nil {
		return err
	}
	su.logf("wrote %s and %d charts in %s", su.s.doc, len(files), su.s.img)
	if su.s.jsonOut == "" {
		return nil
	}
	raw := rawDoc{
		Command: su.command(), Machine: su.machine, Started: su.started.UTC(), ElapsedSeconds: su.elapsed.Seconds(),
		LoadBefore: su.loadBefore, LoadAfter: su.loadAt,
		Settings: rawSettings{RunSeconds: su.s.duration.Seconds(), Repeat: su.s.repeat, Callers: su.s.callers, Conns: su.s.conns,
			Keys: su.s.keys, Rate: su.s.rate, OverLimit: su.s.overLimit, Redis: su.s.redis, Quick: su.s.quick,
			DaemonFlags: append(append([]string{}, daemonFlags...), su.s.daemonFlags...), PrefillDescrs: su.s.prefillDescrs, Config: benchConfig},
		Measurements: su.ms, Targets: su.targets(), Footprint: su.footprint, Notes: su.notes, Charts: paths,
	}
	if raw.Notes == nil {
		raw.Notes = []string{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(raw); err != nil {
		return err
	}
	if err := writeFile(su.s.jsonOut, buf.Bytes()); err != nil {
		return err
	}
	su.logf("wrote %s", su.s.jsonOut)
	return nil
}

// writeFile replaces path's content atomically.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
