package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/config"
)

func TestSamplerAtFixedInstants(t *testing.T) {
	// 2 lines a second, 3 at once.
	s := newSampler(2, 3)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	for i, step := range []struct {
		t          time.Time
		ok         bool
		suppressed int64
	}{
		{at(0), true, 0}, // a full bucket to start with
		{at(0), true, 0},
		{at(0), true, 0},
		{at(0), false, 0}, // empty: counted
		{at(0), false, 0},
		{at(499), false, 0}, // 0.998 tokens: not yet
		{at(500), true, 3},  // one token back: the 3 refused lines are reported
		{at(500), false, 0},
		{at(400), false, 0},  // the clock went back: no tokens, no harm
		{at(1000), true, 2},  // the 400 ms step added none
		{at(60000), true, 0}, // a long pause refills to 3, not more
		{at(60000), true, 0},
		{at(60000), true, 0},
		{at(60000), false, 0},
	} {
		ok, n := s.allow(step.t)
		if ok != step.ok || n != step.suppressed {
			t.Fatalf("step %d at %v: allow = %v, %d; want %v, %d", i, step.t.Sub(t0), ok, n, step.ok, step.suppressed)
		}
	}
}

// logBuffer collects JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the lines logged with message msg, decoded.
func (b *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(b.buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// clock is a settable Options.Now.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}
func (c *clock) set(t time.Time) { c.ns.Store(t.UnixNano()) }
func (c *clock) now() time.Time  { return time.Unix(0, c.ns.Load()) }
func jsonLogger(b *logBuffer, l slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: l}))
}

const logConfig = `domain: logs
descriptors:
  - key: api_key
    rate_limit: {unit: hour, requests_per_unit: 1, name: per_key}
  - key: trial
    shadow_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
`

func TestRefusalLogsAreSampled(t *testing.T) {
	var logs logBuffer
	clk := newClock(t0)
	e := newEnv(t, logConfig, Options{Logger: jsonLogger(&logs, slog.LevelInfo), Now: clk.now})
	call := func() {
		t.Helper()
		if _, err := e.rls.ShouldRateLimit(context.Background(), rq("logs", desc("api_key", "secret-key-42"))); err != nil {
			t.Fatal(err)
		}
	}
	// One allowed call, then a flood of refusals at one instant: the first
	// logBurst are logged, the rest counted.
	call()
	for range logBurst + 7 {
		call()
	}
	lines := logs.lines(t, "rate limit exceeded")
	if len(lines) != logBurst {
		t.Fatalf("%d refusal lines at one instant, want %d (the burst)", len(lines), logBurst)
	}
	want := map[string]any{"level": "INFO", "msg": "rate limit exceeded", "domain": "logs", "rule": "per_key",
		"code": "over_limit", "keys": "api_key", "limit": "1 per hour"}
	got := lines[0]
	delete(got, "time")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("refusal line (-want +got):\n%s", diff)
	}
	// A second later, logRate tokens are back: the next line reports the
	// 7 that were dropped.
	clk.set(t0.Add(time.Second))
	call()
	lines = logs.lines(t, "rate limit exceeded")
	if len(lines) != logBurst+1 || lines[logBurst]["suppressed"] != float64(7) {
		t.Fatalf("after 1s: %d lines, last %v; want %d, suppressed 7", len(lines), lines[len(lines)-1], logBurst+1)
	}
	if strings.Contains(logs.String(), "secret-key-42") {
		t.Errorf("an info log carries a descriptor value:\n%s", logs.String())
	}
	// Shadow-mode refusals are logged with their code.
	if _, err := e.rls.ShouldRateLimit(context.Background(), rq("logs", desc("trial", "x"))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rls.ShouldRateLimit(context.Background(), rq("logs", desc("trial", "x"))); err != nil {
		t.Fatal(err)
	}
	lines = logs.lines(t, "rate limit exceeded")
	if last := lines[len(lines)-1]; last["code"] != "shadow_mode" || last["rule"] != "logs.trial" {
		t.Errorf("shadow-mode refusal: %v", last)
	}

	t.Run("debug adds the values", func(t *testing.T) {
		var logs logBuffer
		e := newEnv(t, logConfig, Options{Logger: jsonLogger(&logs, slog.LevelDebug)})
		for range 2 {
			if _, err := e.rls.ShouldRateLimit(context.Background(), rq("logs", desc("api_key", "secret-key-42"))); err != nil {
				t.Fatal(err)
			}
		}
		lines := logs.lines(t, "rate limit exceeded")
		if len(lines) != 1 || lines[0]["entries"] != "api_key=secret-key-42" {
			t.Errorf("debug refusal lines: %v", lines)
		}
	})
}

func TestFailureLogsAreSampled(t *testing.T) {
	var logs logBuffer
	clk := newClock(t0)
	e := newEnv(t, logConfig, Options{Logger: jsonLogger(&logs, slog.LevelInfo), Now: clk.now, Backend: failingBackend{}})
	call := func(domain string) {
		t.Helper()
		if _, err := e.rls.ShouldRateLimit(context.Background(), rq(domain, desc("api_key", "k"))); err == nil {
			t.Fatal("no error from a failing backend")
		}
	}
	for range logBurst + 3 {
		call("logs")
	}
	clk.set(t0.Add(time.Second))
	call("logs")
	lines := logs.lines(t, "rate limit request failed")
	if len(lines) != logBurst+1 {
		t.Fatalf("%d failure lines, want %d", len(lines), logBurst+1)
	}
	last := lines[logBurst]
	delete(last, "time")
	want := map[string]any{"level": "WARN", "msg": "rate limit request failed", "domain": "logs", "code": "unavailable",
		"kind": "unavailable", "error": "server: backend apply: backend unavailable\ntest: storage down", "suppressed": float64(3)}
	if diff := cmp.Diff(want, last); diff != "" {
		t.Errorf("failure line (-want +got):\n%s", diff)
	}
	if got := testutil.ToFloat64(e.s.m.backendErrs.WithLabelValues(kindUnavailable)); got != logBurst+4 {
		t.Errorf("backend_errors_total{kind=unavailable} = %v, want every failure (%d)", got, logBurst+4)
	}
}

// errBackend fails every call with err.
type errBackend struct{ err error }

func (b errBackend) Apply(context.Context, int64, backends.Mode, []backends.Request, []algorithms.Decision) error {
	return b.err
}
func (errBackend) Close() error { return nil }

func TestBackendErrorKinds(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		backend backends.Backend
		timeout time.Duration
		kind    string
	}{
		{"storage down", context.Background(), failingBackend{}, 0, kindUnavailable},
		{"our deadline", context.Background(), blockingBackend{}, 10 * time.Millisecond, kindTimeout},
		{"caller gone", canceled, blockingBackend{}, 0, kindCanceled},
		{"a bug", context.Background(), errBackend{errors.New("test: bad reply")}, 0, kindOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, logConfig, Options{Backend: tc.backend, BackendTimeout: tc.timeout})
			if _, err := e.s.ShouldRateLimit(tc.ctx, rq("logs", desc("api_key", "k"))); err == nil {
				t.Fatal("no error")
			}
			for _, k := range []string{kindTimeout, kindUnavailable, kindCanceled, kindOther} {
				want := 0.0
				if k == tc.kind {
					want = 1
				}
				if got := testutil.ToFloat64(e.s.m.backendErrs.WithLabelValues(k)); got != want {
					t.Errorf("backend_errors_total{kind=%q} = %v, want %v", k, got, want)
				}
			}
		})
	}
}

func TestDecisionCodesAndHits(t *testing.T) {
	const cfg = `domain: m
descriptors:
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 5, name: per_user}
  - key: trial
    shadow_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: tokens
    quota_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
`
	type counts struct{ OK, Over, Shadow, Quota, Hits float64 }
	read := func(e *env, rule string) counts {
		d := e.s.m.decisions
		return counts{
			OK:     testutil.ToFloat64(d.WithLabelValues("m", rule, codeOK)),
			Over:   testutil.ToFloat64(d.WithLabelValues("m", rule, codeOverLimit)),
			Shadow: testutil.ToFloat64(d.WithLabelValues("m", rule, codeShadowMode)),
			Quota:  testutil.ToFloat64(d.WithLabelValues("m", rule, codeQuotaMode)),
			Hits:   testutil.ToFloat64(e.s.m.hits.WithLabelValues("m", rule)),
		}
	}
	// Three calls: A passes everything; in B the shadow and quota rules
	// refuse (neither blocks the call) and the user rule allows; C asks
	// the user rule for 10 hits and is refused.
	for _, tc := range []struct {
		mode backends.Mode
		want map[string]counts
	}{
		// A refused call charges nothing; shadow and quota refusals do
		// not block the call but are not charged themselves.
		{backends.AllOrNothing, map[string]counts{
			"per_user": {OK: 2, Over: 1, Hits: 2},
			"m.trial":  {OK: 1, Shadow: 1, Hits: 1},
			"m.tokens": {OK: 1, Quota: 1, Hits: 1},
		}},
		// Everything is charged, refused hits included.
		{backends.ChargeAlways, map[string]counts{
			"per_user": {OK: 2, Over: 1, Hits: 12},
			"m.trial":  {OK: 1, Shadow: 1, Hits: 2},
			"m.tokens": {OK: 1, Quota: 1, Hits: 2},
		}},
		// Any refusal, shadow and quota included, charges nothing.
		{backends.StopWhenOver, map[string]counts{
			"per_user": {OK: 2, Over: 1, Hits: 1},
			"m.trial":  {OK: 1, Shadow: 1, Hits: 1},
			"m.tokens": {OK: 1, Quota: 1, Hits: 1},
		}},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			e := newEnv(t, cfg, Options{Mode: tc.mode})
			for _, req := range []*rlsv3.RateLimitRequest{
				rq("m", desc("user", "u"), desc("trial", "t"), desc("tokens", "k")),
				rq("m", desc("user", "u"), desc("trial", "t"), desc("tokens", "k")),
				rq("m", withHits(desc("user", "u"), 10)),
			} {
				if _, err := e.rls.ShouldRateLimit(context.Background(), req); err != nil {
					t.Fatal(err)
				}
			}
			got := map[string]counts{}
			for rule := range tc.want {
				got[rule] = read(e, rule)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("decisions and hits (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigLoadLogs(t *testing.T) {
	var logs logBuffer
	e := newEnv(t, "", Options{Logger: jsonLogger(&logs, slog.LevelInfo)})
	const v1 = `domain: a
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 10}
  - key: ip
    rate_limit: {unit: second, requests_per_unit: 5}
  - key: path
    value: /x
    rate_limit: {unit: hour, requests_per_unit: 1}
`
	// v2: a.user changes its limit, a.ip goes, a.org comes, a.path=/x is
	// unchanged, domain b is new.
	v2 := []config.File{{Name: "a.yaml", Data: []byte(`domain: a
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 20}
  - key: org
    rate_limit: {unit: second, requests_per_unit: 5}
  - key: path
    value: /x
    rate_limit: {unit: hour, requests_per_unit: 1}
`)}, {Name: "b.yaml", Data: []byte(`domain: b
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 1}
`)}}
	c1 := parse(t, v1)
	c2, err := config.Parse(v2, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.s.SetConfig(c1)
	e.s.SetConfig(c2)
	e.s.ConfigLoadFailed(config.Errors{{File: "a.yaml", Path: "a.user", Message: "bad"}, {File: "a.yaml", Path: "a.ip", Message: "worse"}})

	loaded := logs.lines(t, "rate limit config loaded")
	if len(loaded) != 2 {
		t.Fatalf("%d load lines, want 2:\n%s", len(loaded), logs.String())
	}
	for _, l := range loaded {
		delete(l, "time")
	}
	want := []map[string]any{{
		"level": "INFO", "msg": "rate limit config loaded", "result": "success", "hash": c1.Hash(), "version": float64(1),
		"domains": float64(1), "rules": float64(3),
		"domains_added": "a", "domains_removed": "", "domains_changed": "",
		"rules_added": float64(3), "rules_removed": float64(0), "rules_changed": float64(0),
		"rule_changes": "+a.ip,+a.path=/x,+a.user",
	}, {
		"level": "INFO", "msg": "rate limit config loaded", "result": "success", "hash": c2.Hash(), "version": float64(2),
		"domains": float64(2), "rules": float64(4),
		"domains_added": "b", "domains_removed": "", "domains_changed": "a",
		"rules_added": float64(2), "rules_removed": float64(1), "rules_changed": float64(1),
		"rule_changes": "+a.org,+b.user,-a.ip,~a.user",
	}}
	if diff := cmp.Diff(want, loaded); diff != "" {
		t.Errorf("load lines (-want +got):\n%s", diff)
	}
	failed := logs.lines(t, "rate limit config load failed")
	if len(failed) != 1 {
		t.Fatalf("%d failure lines, want 1", len(failed))
	}
	delete(failed[0], "time")
	if diff := cmp.Diff(map[string]any{"level": "ERROR", "msg": "rate limit config load failed", "result": "error",
		"errors": float64(2), "hash_in_use": c2.Hash(), "version_in_use": float64(2)}, failed[0]); diff != "" {
		t.Errorf("failure line (-want +got):\n%s", diff)
	}
	if n := len(logs.lines(t, "rate limit config rejected")); n != 2 {
		t.Errorf("%d error lines, want one per error (2)", n)
	}
	// The info metric follows the config in use; the last load failed.
	if got := testutil.ToFloat64(e.s.m.configInfo.WithLabelValues(c2.Hash(), "2")); got != 1 {
		t.Errorf("config_info for version 2 = %v", got)
	}
	if n := testutil.CollectAndCount(e.s.m.configInfo); n != 1 {
		t.Errorf("config_info has %d series, want 1", n)
	}
	if got := testutil.ToFloat64(e.s.m.configLastLoad); got != 0 {
		t.Errorf("config_last_load_successful = %v after a rejected load", got)
	}
}

func TestDiffSeesEveryRuleSetting(t *testing.T) {
	base := `domain: d
descriptors:
  - key: k
    rate_limit: {unit: minute, requests_per_unit: 10}
`
	for name, changed := range map[string]string{
		"unit":      "    rate_limit: {unit: hour, requests_per_unit: 10}\n",
		"algorithm": "    rate_limit: {unit: minute, requests_per_unit: 10, algorithm: gcra}\n",
		"name":      "    rate_limit: {unit: minute, requests_per_unit: 10, name: n}\n",
		"shadow":    "    shadow_mode: true\n    rate_limit: {unit: minute, requests_per_unit: 10}\n",
		"unlimited": "    rate_limit: {unlimited: true}\n",
	} {
		next := strings.Replace(base, "    rate_limit: {unit: minute, requests_per_unit: 10}\n", changed, 1)
		d := diffConfigs(parse(t, base), parse(t, next))
		if len(d.rulesChanged) != 1 || len(d.rulesAdded)+len(d.rulesRemoved) != 0 || !slices.Equal(d.domainsChanged, []string{"d"}) {
			t.Errorf("%s: diff %+v, want d.k changed", name, d)
		}
	}
	if d := diffConfigs(parse(t, base), parse(t, base)); len(d.rulesChanged)+len(d.domainsChanged) != 0 {
		t.Errorf("same config: diff %+v", d)
	}
}
