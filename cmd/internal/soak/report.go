package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ratelimitd/ratelimitd/internal/loadrig"
)

// markdown renders the report.
func (rep *report) markdown() string {
	var b strings.Builder
	o := rep.o
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	loadrig.ReportHead{Title: "Soak", Program: "soak", Args: rep.args, Started: rep.started, Took: rep.took, Machine: rep.machine,
		Failures: rep.failures(), Pass: "no crash, exit 0 on SIGTERM, every measure flat."}.Write(&b)
	for _, r := range rep.runs {
		if l := r.load; l != nil && l.Count > 0 && l.Errors > 0 {
			p("Note: %s: %.2f%% of the soak's calls failed%s (reported, not judged: see the backend's section).\n\n", r.backend, 100*float64(l.Errors)/float64(l.Count), codes(l.ErrorsByCode))
		}
	}
	p("## Method\n\n")
	p("For each backend, one ratelimitd on loopback, with one rule: domain `soak`, `api_key`: `%s`, one bucket per key and second.\n\n", soakRule)
	p("1. Maximum load: `ratelimitctl bench`, closed loop, 16 callers over %d connections, for %v: the calls answered OK or OVER_LIMIT per second.\n", benchConns, o.probe)
	if o.rate > 0 {
		p("   Skipped: `-rate %g` was given.\n", o.rate)
	}
	p("2. Soak: `ratelimitctl bench -rate R`, open loop at R = %g × the maximum, for %v per backend, keys `k0`..`k%d` (%s), %d connections.\n",
		o.fraction, o.duration, o.keys-1, o.dist, benchConns)
	p("3. Every %v: ratelimitd's `/metrics` (`process_resident_memory_bytes`, `go_goroutines`, `process_open_fds`, `ratelimitd_requests_total`, `ratelimitd_memory_buckets`, `ratelimitd_redis_pool_connections`) and Redis `INFO` (`connected_clients`, which includes this program's one connection, and `used_memory`) and `DBSIZE`.\n", o.sample)
	p("4. Flat: after a warm-up of %v, the median of the last %v is at most the median of the first %v after the warm-up × %.2f, plus %d MiB (RSS), %d (goroutines), %d (fds), %d (Redis clients); Redis clients may also reach the pool size + 1 (%d). Only growth fails.\n\n",
		o.warmup, o.window, o.window, 1+o.tolerance, slackRSS>>20, slackGoroutines, slackFDs, slackRedisClients, o.poolSize+1)
	for _, r := range rep.runs {
		r.markdown(&b, o)
	}
	return b.String()
}

// markdown renders one backend's run.
func (r *backendRun) markdown(b *strings.Builder, o options) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	name := map[string]string{"memory": "Memory backend", "redis": "Redis backend (standalone)"}[r.backend]
	p("## %s\n\n", name)
	if r.probe != nil {
		p("Maximum load (closed loop, %d callers, %.0fs): **%.0f calls/s** answered OK or OVER_LIMIT (%.0f calls/s with %d errors; p50 %s, p99 %s).\n",
			r.probe.Callers, r.probe.DurationSeconds, r.probe.answered(), r.probe.CallsPerSecond, r.probe.Errors, us(r.probe.Latency.P50), us(r.probe.Latency.P99))
	}
	if r.rate > 0 {
		p("Soak rate: **%.0f calls/s** for %v.\n\n", r.rate, o.duration)
	}
	if l := r.load; l != nil {
		p("| calls | calls/s | OK | OVER_LIMIT | errors | p50 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|---|---|\n")
		p("| %d | %.0f | %d | %d | %d%s | %s | %s | %s | %s |\n\n", l.Count, l.CallsPerSecond, l.OK, l.OverLimit, l.Errors, codes(l.ErrorsByCode),
			us(l.Latency.P50), us(l.Latency.P99), us(l.Latency.P999), us(l.Latency.Max))
		p("Latency is measured from each call's intended send time (open loop), so it includes any queueing.")
		if r.backendErrors != nil {
			var kinds []string
			for k, v := range r.backendErrors {
				kinds = append(kinds, fmt.Sprintf("%s %.0f", k, v))
			}
			slices.Sort(kinds)
			p(" ratelimitd's backend errors over the probe and the soak (`ratelimitd_backend_errors_total`): %s; the circuit breaker opened %.0f times.", strings.Join(kinds, ", "), r.breakerOpens)
		}
		p("\n\n")
	}
	if len(r.points) > 0 {
		r.table(b, o)
	}
	if len(r.checks) > 0 {
		p("| measure | first | last | max | median, first window | median, last window | limit | flat |\n|---|---|---|---|---|---|---|---|\n")
		for _, c := range r.checks {
			verdict := "yes"
			if !c.flat {
				verdict = "**no**"
			}
			p("| %s | %s | %s | %s | %s (%d samples) | %s (%d samples) | %s | %s |\n", c.name, c.fmt(c.first), c.fmt(c.last), c.fmt(c.max),
				c.fmt(c.early), c.nEarly, c.fmt(c.late), c.nLate, c.fmt(c.limit), verdict)
		}
		p("\n")
	}
	switch {
	case r.crash != "":
		p("ratelimitd: **crashed**: `%s`.\n\n", r.crash)
	case r.stopErr != nil:
		p("ratelimitd: **%s**.\n\n", r.stopErr)
	case r.exit >= 0:
		p("ratelimitd: no crash, exit status %d after SIGTERM.\n\n", r.exit)
	}
	if r.err != nil {
		p("Error: ```%s```\n\n", strings.ReplaceAll(r.err.Error(), "\n", " / "))
	}
}

// table renders the samples, one row per tenth of the run.
func (r *backendRun) table(b *strings.Builder, o options) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	redis := r.backend == "redis"
	if redis {
		p("| t | RSS (MiB) | goroutines | open fds | Redis clients | pool conns | Redis keys | Redis memory (MiB) | calls/s |\n|---|---|---|---|---|---|---|---|---|\n")
	} else {
		p("| t | RSS (MiB) | goroutines | open fds | buckets | calls/s |\n|---|---|---|---|---|---|\n")
	}
	row := rowEvery(o)
	next := time.Duration(0)
	prev := -1
	for i, pt := range r.points {
		if pt.at < next && i != len(r.points)-1 {
			continue
		}
		for next <= pt.at {
			next += row
		}
		rate := "-"
		if prev >= 0 {
			q := r.points[prev]
			if dt := (pt.at - q.at).Seconds(); dt > 0 {
				rate = fmt.Sprintf("%.0f", (pt.requests-q.requests)/dt)
			}
		}
		prev = i
		if redis {
			p("| %s | %.1f | %.0f | %.0f | %.0f | %.0f | %.0f | %.1f | %s |\n", pt.at.Round(o.sample), pt.rss/(1<<20), pt.goroutines, pt.fds,
				pt.redisClients, pt.poolConns, pt.buckets, pt.redisMem/(1<<20), rate)
		} else {
			p("| %s | %.1f | %.0f | %.0f | %.0f | %s |\n", pt.at.Round(o.sample), pt.rss/(1<<20), pt.goroutines, pt.fds, pt.buckets, rate)
		}
	}
	p("\ncalls/s is ratelimitd's own count (`ratelimitd_requests_total`) between rows.\n\n")
}

// fmt formats a value of c in its display unit.
func (c check) fmt(v float64) string {
	if v < 0 {
		return "-"
	}
	if c.scale != 1 {
		return fmt.Sprintf("%.1f", v/c.scale)
	}
	return fmt.Sprintf("%.0f", v)
}

// us formats microseconds.
func us(v int64) string {
	return (time.Duration(v) * time.Microsecond).String()
}

// codes formats errors by gRPC code, or nothing when there are none.
func codes(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for c, n := range m {
		parts = append(parts, fmt.Sprintf("%s %d", c, n))
	}
	slices.Sort(parts)
	return " (" + strings.Join(parts, ", ") + ")"
}
