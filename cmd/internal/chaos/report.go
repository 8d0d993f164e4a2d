package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/ratelimitd/ratelimitd/internal/loadrig"
)

var (
	unavailable      = codes.Unavailable.String()
	deadlineExceeded = codes.DeadlineExceeded.String()
)

// outageAnswer is what a call answers while Redis is down under policy.
func outageAnswer(policy string) string {
	switch policy {
	case "allow", "local":
		return outcomeOK
	case "deny":
		return outcomeOverLimit
	}
	return unavailable
}

// class returns the summary of class c (zero when it had no calls).
func (pr *phaseRun) class(c phase) summary {
	for _, s := range pr.summaries {
		if s.class == c {
			return s
		}
	}
	return summary{class: c, outcomes: map[string]cell{}}
}

// failures lists every failed check of pr; o holds the timing limits.
func (pr *phaseRun) failures(o options) []string {
	name := "-on-backend-failure " + pr.policy
	var out []string
	add := func(format string, args ...any) { out = append(out, name+": "+fmt.Sprintf(format, args...)) }
	if pr.err != nil {
		add("%s", firstLine(pr.err.Error()))
	}
	if pr.crash != "" {
		add("ratelimitd crashed: %s", pr.crash)
	}
	if pr.stopErr != nil {
		add("%v", pr.stopErr)
	} else if pr.exit != 0 {
		add("ratelimitd exit code %d after SIGTERM", pr.exit)
	}
	if pr.err != nil && len(pr.summaries) == 0 {
		return out
	}

	// Calls during the outage get the outage answer, or run out of time.
	want := outageAnswer(pr.policy)
	down := pr.class(phaseDown)
	if down.outcomes[want].n == 0 {
		add("no call answered %s while Redis was down", want)
	}
	for oc, c := range down.outcomes {
		if oc != want && oc != deadlineExceeded {
			add("%d calls answered %s while Redis was down (want %s)", c.n, oc, want)
		}
	}
	if down.total > 0 {
		if share := float64(down.outcomes[deadlineExceeded].n) / float64(down.total); share > o.maxDeadlineShare {
			add("%.2f%% of the calls while Redis was down ran out of time (at most %.2f%%)", 100*share, 100*o.maxDeadlineShare)
		}
	}
	if pr.policy == "unavailable" {
		// The limit is never reached: a refusal means a wrong count.
		for _, s := range pr.summaries {
			for _, oc := range []string{outcomeOverLimit, outcomeUnknown} {
				if n := s.outcomes[oc].n; n > 0 {
					add("%d calls answered %s (%s)", n, oc, s.class)
				}
			}
		}
		for i, k := range pr.kills {
			switch {
			case !k.recovered:
				add("kill %d: no OK answer within %v of Redis answering PING", i+1, recoveryPatience)
			case k.recovery > o.recoveryLimit:
				add("kill %d: first OK answer %v after Redis answered PING (at most %v)", i+1, k.recovery.Round(time.Millisecond), o.recoveryLimit)
			}
		}
		if len(pr.swaps) == 0 {
			add("no config swap happened")
		}
		for i, s := range pr.swaps {
			if !s.refused || !s.restored {
				add("swap %d: %s", i+1, s.problem)
			}
		}
		if a := pr.acct; a == nil {
			add("no accounting")
		} else if !a.passed() {
			if a.err != nil {
				add("accounting: %v", a.err)
			} else {
				add("accounting: Redis counted %d, clients saw %d OK: difference %d, outside [0, %d] (or %d keys below their OK answers)",
					a.used, a.ok, a.diff, a.bound(), a.badKeys)
			}
		}
	} else if pr.fallbacks <= 0 {
		add("ratelimitd_fallback_calls_total{policy=%q} is %g", pr.policy, pr.fallbacks)
	}
	return out
}

// failures lists every failed check.
func (rep *report) failures() []string {
	out := rep.main.failures(rep.o)
	if rep.fallback != nil {
		out = append(out, rep.fallback.failures(rep.o)...)
	}
	return out
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// markdown renders the report.
func (rep *report) markdown() string {
	var b strings.Builder
	o := rep.o
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	loadrig.ReportHead{Title: "Chaos", Program: "chaos", Args: rep.args, Started: rep.started, Took: rep.took, Machine: rep.machine,
		Failures: rep.failures(), Pass: fmt.Sprintf("no crash; every outage call answered as documented; recovery within %v of each restart; every broken config refused and the good one back; Redis's counts match the OK answers within the calls whose outcome is unknown.", o.recoveryLimit)}.Write(&b)

	p("## Method\n\n")
	where := "on disk, in the temporary directory"
	if rep.redisDir != "" {
		where = "in `" + filepath.Dir(rep.redisDir) + "` (a SIGKILLed process loses nothing it wrote; fsync matters only when the machine dies, and a disk fsync per write on a shared VM would show up as backend timeouts)"
	}
	p("- Redis: one `redis-server` on loopback with `appendonly yes` and `appendfsync always`, so that a Redis killed with SIGKILL restarts with every write it acknowledged; its files %s.\n", where)
	p("- ratelimitd: `-backend redis` with its defaults (`-backend-timeout 10ms`, a breaker opening after 5 failures and probing every 1s), a config directory and the admin API on.\n")
	p("- Rule: domain `%s`, `%s`: `%s`, far above the load: every call Redis decides is OK and adds 1 to its key's count.\n", chaosDomain, chaosKey, chaosLimit)
	p("- Load: this program's gRPC client, open loop at %g calls/s over %d connections, keys `c0`..`c%d` in turn, each call with a %v deadline (Envoy's default rate-limit timeout). Each call is classified by the phase at its start: *normal*; *down* (Redis dead from start to end); *restarting* (Redis started, not yet answering PING); *recovering* (Redis answers PING, no OK answer yet); *in flight at a kill or restart* (the phase changed during the call).\n",
		o.rate, o.conns, o.keys-1, o.deadline)
	p("- Kills: SIGKILL at %v and then every %v, restarted on the same port %v later; the recovery is the time from Redis answering PING to the first OK answer of a call started after it (at most %v).\n",
		o.killEvery/2, o.killEvery, o.outage, o.recoveryLimit)
	p("- Config swaps: at %v and then every %v, a config that fails validation is renamed over `config.yaml`, then the good one back. Refused: `ratelimitd_config_loads_total{result=\"error\"}` rose, `ratelimitd_config_last_load_successful` 0, `ratelimitd_config_info` the good hash and the same version. Back: a successful load, `last_load_successful` 1, the good hash, a higher version.\n",
		o.swapEvery/2, o.swapEvery)
	p("- Accounting: after the load, every key's count through the admin API (`ratelimitctl inspect -o json`), compared with the OK answers the client saw. Redis never counts less (no acknowledged write is lost). It counts more by the calls that ran but were answered an error: in flight when Redis died, answered after the client's deadline, or given up by the server after it sent them (backend timeouts); a refused connection or the open breaker runs nothing. The difference must lie between 0 and the sum of those three counts.\n")
	if rep.fallback != nil {
		p("- Fallback: a second ratelimitd with `-on-backend-failure %s` on the same Redis, one outage of %v under the same load; calls while Redis is down must answer %s.\n",
			rep.fallback.policy, o.outage, outageAnswer(rep.fallback.policy))
	}
	p("\n")

	rep.main.markdown(&b, o, fmt.Sprintf("Run: `-on-backend-failure unavailable`, %v", rep.main.duration))
	if rep.fallback != nil {
		rep.fallback.markdown(&b, o, fmt.Sprintf("Fallback: `-on-backend-failure %s`", rep.fallback.policy))
	}
	return b.String()
}

// markdown renders one phase run.
func (pr *phaseRun) markdown(b *strings.Builder, o options, title string) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("## %s\n\n", title)
	if len(pr.summaries) > 0 {
		p("Calls by phase (latency from send to answer):\n\n")
		p("| phase | calls | OK | OVER_LIMIT | UNAVAILABLE | DEADLINE_EXCEEDED | other | p50 | p99 | max | max of UNAVAILABLE answers |\n")
		p("|---|---|---|---|---|---|---|---|---|---|---|\n")
		var total int64
		for _, s := range pr.summaries {
			total += s.total
			var other []string
			for oc, c := range s.outcomes {
				if oc != outcomeOK && oc != outcomeOverLimit && oc != unavailable && oc != deadlineExceeded {
					other = append(other, fmt.Sprintf("%s %d", oc, c.n))
				}
			}
			slices.Sort(other)
			otherText := "0"
			if len(other) > 0 {
				otherText = strings.Join(other, ", ")
			}
			maxUnavail := "-"
			if c, ok := s.outcomes[unavailable]; ok {
				maxUnavail = ms(c.maxLat)
			}
			p("| %s | %d | %d | %d | %d | %d | %s | %s | %s | %s | %s |\n", s.class, s.total, s.outcomes[outcomeOK].n, s.outcomes[outcomeOverLimit].n,
				s.outcomes[unavailable].n, s.outcomes[deadlineExceeded].n, otherText, ms(s.p50), ms(s.p99), ms(s.max), maxUnavail)
		}
		p("\n%d calls. Latency is measured by this program, so on a busy machine it includes the client's own scheduling delays (an answer sent in time can be read late). ratelimitd's own count of OK answers (`ratelimitd_requests_total{code=\"ok\"}`): %.0f. Backend errors (`ratelimitd_backend_errors_total`): %s; the breaker opened %.0f times.",
			total, pr.serverOK, kinds(pr.backendErrors), pr.breakerOpens)
		if pr.policy != "unavailable" {
			p(" Calls decided by the fallback (`ratelimitd_fallback_calls_total{policy=%q}`): %.0f.", pr.policy, pr.fallbacks)
		}
		p("\n\n")
	}
	if len(pr.kills) > 0 {
		p("| Redis kill | at | calls in flight at SIGKILL | outage | restart to PING | PING to first OK |\n|---|---|---|---|---|---|\n")
		for i, k := range pr.kills {
			rec := "none"
			switch {
			case pr.policy != "unavailable":
				rec = "n/a (the fallback answers OK)"
			case k.recovered:
				rec = ms(k.recovery)
			}
			p("| %d | %v | %d | %s | %s | %s |\n", i+1, k.at.Round(time.Millisecond), k.inflight, ms(k.outage), ms(k.restart), rec)
		}
		p("\n")
	}
	if len(pr.swaps) > 0 {
		p("| config swap | at | broken refused | in | good back | in | version after |\n|---|---|---|---|---|---|---|\n")
		for i, s := range pr.swaps {
			p("| %d | %v | %s | %s | %s | %s | %d |\n", i+1, s.at.Round(time.Millisecond), yes(s.refused), ms(s.refusedIn), yes(s.restored), ms(s.restoredIn), s.version)
		}
		p("\n")
		for i, s := range pr.swaps {
			if s.problem != "" {
				p("Swap %d: %s\n\n", i+1, s.problem)
			}
		}
	}
	if a := pr.acct; a != nil {
		p("Accounting:\n\n")
		if a.err != nil {
			p("**%v**\n\n", a.err)
		} else {
			p("| Redis count (sum over %d keys) | OK answers seen | difference | errors of calls in flight at a kill or restart | DEADLINE_EXCEEDED while Redis was up | server-side backend timeouts | bound | calls in flight at SIGKILL | keys below their OK answers |\n", len(a.keys))
			p("|---|---|---|---|---|---|---|---|---|\n")
			p("| %d | %d | %d | %d | %d | %.0f | %d | %d | %d |\n\n", a.used, a.ok, a.diff, a.atKill, a.deadline, a.timeouts, a.bound(), a.inflight, a.badKeys)
			switch {
			case !a.passed():
				p("**The counts do not match**: the difference must lie between 0 and %d, and no key below its OK answers.\n\n", a.bound())
			case a.diff == 0:
				p("Exact: Redis counted exactly the OK answers.\n\n")
			case a.diff <= a.atKill:
				p("Redis counted %d more than the OK answers, within the %d errors of calls in flight at a kill or restart (their answer was lost with the connection).\n\n", a.diff, a.atKill)
			default:
				p("Redis counted %d more than the OK answers: calls that ran but were answered an error, within the bound of %d (%d in flight at a kill or restart, %d past the client's deadline, %.0f past the server's backend timeout; these overlap).\n\n",
					a.diff, a.bound(), a.atKill, a.deadline, a.timeouts)
			}
		}
	}
	switch {
	case pr.crash != "":
		p("ratelimitd: **crashed**: `%s`.\n\n", pr.crash)
	case !pr.alive && pr.err != nil:
		p("ratelimitd: **not running at the end of the load**.\n\n")
	case pr.stopErr != nil:
		p("ratelimitd: **%v**.\n\n", pr.stopErr)
	case pr.exit >= 0:
		p("ratelimitd: running throughout, no crash, exit status %d after SIGTERM.\n\n", pr.exit)
	}
	if pr.err != nil {
		p("Error: `%s`\n\n", strings.ReplaceAll(pr.err.Error(), "\n", " / "))
	}
}

// ms formats a duration in milliseconds with a tenth.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

// kinds formats backend errors by kind.
func kinds(m map[string]float64) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, v))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
