package config

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ratelimitd/ratelimitd/algorithms"
)

func parseOne(t *testing.T, yml string) *Config {
	t.Helper()
	c, err := Parse([]File{{Name: "t.yaml", Data: []byte(yml)}}, Options{})
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return c
}

// rateLimit is a fixed-window RuleLimit of rate per unit.
func rateLimit(rate uint32, unit Unit) RuleLimit {
	return RuleLimit{RequestsPerUnit: rate, Unit: unit, UnitMultiplier: 1, Limit: algorithms.Limit{Rate: int64(rate), Period: UnitPeriod(unit)}}
}

func TestDomainSettings(t *testing.T) {
	c := mustLoad(t, "testdata/extensions/policies.yaml")
	d := c.Domain("llm")
	if d == nil {
		t.Fatal(`Domain("llm") = nil`)
	}
	hourly, daily := rateLimit(1000000, Hour), rateLimit(5000000, Day)
	hourly.Name, daily.Name = "tokens-hourly", "tokens-daily"
	proRequests := rateLimit(10000, Hour)
	proRequests.Limit.Algorithm, proRequests.Limit.Burst = algorithms.GCRA, 500
	want := &Domain{
		Name: "llm",
		Tiers: &Tiers{Key: "tier", Default: "user", Multipliers: map[string]float64{
			"admin": 10, "user": 1, "a2a": 5, "mcp": 5, "service": 5, "anon": 0.5,
		}},
		Idempotency: &Idempotency{Key: "idempotency_key", TTL: 10 * time.Minute},
		Policies: map[string]*Policy{
			"starter": {Name: "starter", Meters: map[string][]RuleLimit{
				"requests": {rateLimit(1000, Hour)},
				"tokens":   {hourly, daily},
			}},
			"pro": {Name: "pro", Meters: map[string][]RuleLimit{
				"requests": {proRequests},
				"tokens":   {rateLimit(10000000, Hour)},
			}},
		},
	}
	if diff := cmp.Diff(want, d, cmpopts.IgnoreUnexported(Domain{})); diff != "" {
		t.Errorf("Domain(llm) (-want +got):\n%s", diff)
	}
	if got := len(d.rules); got != len(c.Rules()) {
		t.Errorf("the domain holds %d rules, the config %d", got, len(c.Rules()))
	}

	// A declared domain without extensions, an unknown one, a nil config.
	v := mustLoad(t, "testdata/valid")
	if diff := cmp.Diff(&Domain{Name: "basic"}, v.Domain("basic"), cmpopts.IgnoreUnexported(Domain{})); diff != "" {
		t.Errorf("Domain(basic) (-want +got):\n%s", diff)
	}
	if d := v.Domain("nope"); d != nil {
		t.Errorf("Domain(nope) = %+v, want nil", d)
	}
	var nilConfig *Config
	if nilConfig.Domain("basic") != nil || nilConfig.RulesWith("basic", nil) != nil {
		t.Error("a nil *Config has a domain")
	}
}

func TestDomainFieldParsing(t *testing.T) {
	for _, tt := range []struct {
		name, yml string
		want      *Domain
	}{
		{"none", "domain: d\n", &Domain{Name: "d"}},
		{"disabled", "domain: d\ndisabled: true\n", &Domain{Name: "d", Disabled: true}},
		{"disabled yes", "domain: d\ndisabled: yes\n", &Domain{Name: "d", Disabled: true}},
		{"disabled false", "domain: d\ndisabled: false\n", &Domain{Name: "d"}},
		{"null blocks", "domain: d\ntiers:\nidempotency:\npolicies:\ndisabled:\n", &Domain{Name: "d"}},
		{"empty policies", "domain: d\npolicies: {}\n", &Domain{Name: "d"}},
		{"tiers", "domain: d\ntiers: {key: tier, default: free, multipliers: {free: 1, blocked: 0, big: 2.5}}\n",
			&Domain{Name: "d", Tiers: &Tiers{Key: "tier", Default: "free", Multipliers: map[string]float64{"free": 1, "blocked": 0, "big": 2.5}}}},
		{"idempotency default ttl", "domain: d\nidempotency: {key: idem}\n",
			&Domain{Name: "d", Idempotency: &Idempotency{Key: "idem", TTL: 24 * time.Hour}}},
		{"idempotency ttl in seconds", "domain: d\nidempotency: {key: idem, ttl: 600}\n",
			&Domain{Name: "d", Idempotency: &Idempotency{Key: "idem", TTL: 10 * time.Minute}}},
		{"idempotency ttl of 7 days", "domain: d\nidempotency: {key: idem, ttl: 168h}\n",
			&Domain{Name: "d", Idempotency: &Idempotency{Key: "idem", TTL: 7 * 24 * time.Hour}}},
		{"policy with a period and a concurrency meter", `
domain: d
policies:
  p-1.x_y:
    requests: [{requests_per_unit: 1000, period: 90m}]
    runs: {algorithm: concurrency, max_in_flight: 5, lease: 30m}
`, &Domain{Name: "d", Policies: map[string]*Policy{"p-1.x_y": {Name: "p-1.x_y", Meters: map[string][]RuleLimit{
			"requests": {{RequestsPerUnit: 1000, Unit: Minute, UnitMultiplier: 90, Limit: algorithms.Limit{Rate: 1000, Period: 90 * algorithms.Minute}}},
			"runs":     {{RequestsPerUnit: 5, Limit: algorithms.Limit{Algorithm: algorithms.Concurrency, Rate: 5, Period: 30 * algorithms.Minute}}},
		}}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := parseOne(t, tt.yml).Domain("d")
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreUnexported(Domain{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestTiersMultiplier(t *testing.T) {
	tiers := &Tiers{Key: "tier", Default: "user", Multipliers: map[string]float64{"admin": 10, "user": 1, "anon": 0.5, "banned": 0}}
	for _, tt := range []struct {
		tier, name string
		m          float64
	}{
		{"admin", "admin", 10},
		{"anon", "anon", 0.5},
		{"banned", "banned", 0},
		{"", "user", 1},
		{"root", "user", 1},
		{"Admin", "user", 1}, // case-sensitive
	} {
		if m, name := tiers.Multiplier(tt.tier); m != tt.m || name != tt.name {
			t.Errorf("Multiplier(%q) = %v, %q; want %v, %q", tt.tier, m, name, tt.m, tt.name)
		}
	}
	var none *Tiers
	if m, name := none.Multiplier("admin"); m != 1 || name != "" {
		t.Errorf("nil Tiers: Multiplier = %v, %q; want 1, \"\"", m, name)
	}
	if n := testing.AllocsPerRun(100, func() { tiers.Multiplier("root") }); n != 0 {
		t.Errorf("Multiplier allocates %v times", n)
	}
}

func TestPolicyRules(t *testing.T) {
	c := mustLoad(t, "testdata/extensions/policies.yaml")
	d := c.Domain("llm")
	for _, tt := range []struct {
		entries              []Entry
		path, policy, meter  string
		maxOverride          *RuleLimit
		chargeAlways         bool
		wantName             string
		wantLimitsFromPolicy bool
	}{
		{entries("plan", "starter", "org", "acme"), "llm.plan=starter.org", "starter", "requests", ptr(rateLimit(5000, Hour)), false, "", true},
		{entries("plan", "starter", "org", "acme", "usage", "tokens"), "llm.plan=starter.org.usage=tokens", "starter", "tokens", nil, true, "tokens-hourly", true},
		{entries("plan", "pro", "org", "acme"), "llm.plan=pro.org", "pro", "requests", ptr(rateLimit(50000, Hour)), false, "", true},
		{entries("plan", "pro", "org", "acme", "usage", "tokens"), "llm.plan=pro.org.usage=tokens", "pro", "tokens", nil, true, "", true},
		{entries("path", "/v1/chat/completions"), "llm.path=/v1/chat/*", "", "", ptr(rateLimit(100, Second)), false, "", false},
	} {
		r := c.Match("llm", tt.entries)
		if r == nil || r.Path != tt.path {
			t.Fatalf("Match(%v) = %v, want %s", tt.entries, r, tt.path)
		}
		if r.Policy != tt.policy || r.Meter != tt.meter || r.ChargeAlways != tt.chargeAlways || r.Name != tt.wantName {
			t.Errorf("%s: policy %q meter %q charge_always %v name %q; want %q %q %v %q", r.Path, r.Policy, r.Meter, r.ChargeAlways, r.Name, tt.policy, tt.meter, tt.chargeAlways, tt.wantName)
		}
		if diff := cmp.Diff(tt.maxOverride, r.MaxOverride); diff != "" {
			t.Errorf("%s: max_override (-want +got):\n%s", r.Path, diff)
		}
		if tt.wantLimitsFromPolicy {
			if diff := cmp.Diff(d.Policies[tt.policy].Meters[tt.meter], r.Limits); diff != "" {
				t.Errorf("%s: limits differ from the policy's (-policy +rule):\n%s", r.Path, diff)
			}
		}
		if r.Limit != r.Limits[0].Limit || r.RequestsPerUnit != r.Limits[0].RequestsPerUnit || r.Unit != r.Limits[0].Unit {
			t.Errorf("%s: the single-limit fields differ from Limits[0]", r.Path)
		}
	}
	// The levels of a rule's path, as written.
	r := c.Match("llm", entries("plan", "starter", "org", "acme", "usage", "tokens"))
	if diff := cmp.Diff([]Level{{"plan", "starter"}, {"org", ""}, {"usage", "tokens"}}, r.Levels); diff != "" {
		t.Errorf("Levels (-want +got):\n%s", diff)
	}
	// Two rules of one policy do not share the policy's slice.
	a := c.Match("llm", entries("plan", "starter", "org", "a"))
	if &a.Limits[0] == &d.Policies["starter"].Meters["requests"][0] {
		t.Error("a rule shares its Limits with the policy")
	}
}

func ptr[T any](v T) *T { return &v }

func TestMaxOverrideForms(t *testing.T) {
	c := parseOne(t, `
domain: d
descriptors:
  - key: equal
    rate_limit: {requests_per_unit: 500, unit: minute}
    max_override: {requests_per_unit: 500, unit: minute}
  - key: period
    rate_limits: [{requests_per_unit: 10, unit: second}, {requests_per_unit: 100, unit: hour}]
    max_override: {requests_per_unit: 1000, period: 90s}
  - key: multiplier
    rate_limit: {requests_per_unit: 500, unit: minute, algorithm: gcra, burst: 50}
    max_override: {requests_per_unit: 1000, unit: minute, unit_multiplier: 2}
  - key: zero
    rate_limit: {requests_per_unit: 0, unit: minute}
    max_override: {requests_per_unit: 0, unit: second}
`)
	for _, tt := range []struct {
		key  string
		want RuleLimit
	}{
		{"equal", rateLimit(500, Minute)},
		{"period", RuleLimit{RequestsPerUnit: 1000, Unit: Second, UnitMultiplier: 90, Limit: algorithms.Limit{Rate: 1000, Period: 90 * algorithms.Second}}},
		{"multiplier", RuleLimit{RequestsPerUnit: 1000, Unit: Minute, UnitMultiplier: 2, Limit: algorithms.Limit{Rate: 1000, Period: 2 * algorithms.Minute}}},
		{"zero", rateLimit(0, Second)},
	} {
		r := c.Match("d", entries(tt.key, "x"))
		if r == nil || r.MaxOverride == nil {
			t.Fatalf("%s: rule %v without max_override", tt.key, r)
		}
		if diff := cmp.Diff(tt.want, *r.MaxOverride); diff != "" {
			t.Errorf("%s: max_override (-want +got):\n%s", tt.key, diff)
		}
		if r.ChargeAlways {
			t.Errorf("%s: charge_always without the field", tt.key)
		}
	}
	// charge_always: false is allowed anywhere a bool is.
	c = parseOne(t, "domain: d\ndescriptors:\n  - key: k\n    charge_always: false\n")
	if len(c.Rules()) != 0 {
		t.Errorf("charge_always: false made a rule")
	}
}

func TestRulesWith(t *testing.T) {
	c := mustLoad(t, "testdata/valid")
	paths := func(rs []*Rule) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Path)
		}
		return out
	}
	for _, tt := range []struct {
		name    string
		domain  string
		entries []Entry
		want    []string
	}{
		{"exact", "basic", entries("route", "checkout"), []string{"basic.route", "basic.route=checkout"}},
		{"key-only level", "basic", entries("route", "anything"), []string{"basic.route"}},
		{"nested, both levels", "basic", entries("tenant", "acme", "user", "root"), []string{"basic.tenant=acme.user", "basic.tenant=acme.user=root"}},
		{"nested, a parent level only", "basic", entries("tenant", "acme"), []string{"basic.tenant=acme.user", "basic.tenant=acme.user=root"}},
		{"a child level only", "basic", entries("user", "bob"), []string{"basic.tenant=acme.user"}},
		{"entries in any order", "basic", entries("zone", "eu-1", "region", "eu"), []string{"basic.region=eu.zone=eu-1"}},
		{"wrong value", "basic", entries("tenant", "other"), nil},
		{"entry not on the path", "basic", entries("route", "checkout", "method", "GET"), nil},
		{"unknown key", "basic", entries("nope", "x"), nil},
		{"wildcard", "wildcard", entries("path", "/api/v1/orders"), []string{"wildcard.path=/api/v1/*", "wildcard.path=/api/*"}},
		{"wildcard and exact", "wildcard", entries("path", "/api/v1/users"), []string{"wildcard.path=/api/v1/*", "wildcard.path=/api/*", "wildcard.path=/api/v1/users"}},
		{"middle wildcard", "wildcard", entries("host", "api.eu.internal"), []string{"wildcard.host=api.*.internal"}},
		{"star and key-only", "wildcard", entries("any", "x"), []string{"wildcard.any=*", "wildcard.any"}},
		{"nested wildcards", "wildcard", entries("tenant", "t9", "res", "r1"), []string{"wildcard.tenant=t*.res=r*"}},
		{"nested wildcard mismatch", "wildcard", entries("tenant", "x9"), nil},
		{"no entries: every rule", "features", nil, []string{"features.client=internal", "features.client", "features.client=partner", "features.files=files/*", "features.route=api/*.method"}},
		{"unknown domain", "nope", entries("route", "x"), nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, paths(c.RulesWith(tt.domain, tt.entries))); diff != "" {
				t.Errorf("RulesWith(%s, %v) (-want +got):\n%s", tt.domain, tt.entries, diff)
			}
		})
	}

	// Under TrailingWildcardsOnly a * inside a value is literal, as in Match.
	const yml = "domain: d\ndescriptors:\n  - key: k\n    value: a*b\n    rate_limit: {unit: second, requests_per_unit: 1}\n  - key: p\n    value: x*\n    rate_limit: {unit: second, requests_per_unit: 1}\n"
	for _, tt := range []struct {
		trailingOnly bool
		entries      []Entry
		want         []string
	}{
		{false, entries("k", "aXb"), []string{"d.k=a*b"}},
		{true, entries("k", "aXb"), nil},
		{true, entries("k", "a*b"), []string{"d.k=a*b"}},
		{true, entries("p", "xyz"), []string{"d.p=x*"}},
	} {
		c, err := Parse([]File{{Name: "w.yaml", Data: []byte(yml)}}, Options{TrailingWildcardsOnly: tt.trailingOnly})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, paths(c.RulesWith("d", tt.entries))); diff != "" {
			t.Errorf("trailing-only %v: RulesWith(%v) (-want +got):\n%s", tt.trailingOnly, tt.entries, diff)
		}
	}
}

func TestAppendLimitKeyFor(t *testing.T) {
	// For the rule's own limits it is AppendLimitKey, byte for byte.
	for _, path := range []string{"testdata/valid", "testdata/extensions/algorithms.yaml", "testdata/extensions/hash_tag.yaml", "testdata/extensions/policies.yaml"} {
		c := mustLoad(t, path)
		for _, r := range c.Rules() {
			es := make([]Entry, len(r.Levels))
			for i, l := range r.Levels {
				es[i] = Entry{l.Key, strings.ReplaceAll(l.Value, "*", "x") + "v"}
			}
			for i := range r.Limits {
				got := string(r.AppendLimitKeyFor(nil, es, &r.Limits[i], i))
				if want := string(r.AppendLimitKey(nil, es, i)); got != want {
					t.Errorf("%s limit %d: AppendLimitKeyFor %q, AppendLimitKey %q", r.Path, i, got, want)
				}
			}
		}
	}

	c := loadAlgorithms(t)
	ents := []Entry{{"api_key", "k"}, {"path", "/api/runs/7"}}
	r := c.Match("api", ents)
	key := func(l RuleLimit, i int) string { return string(r.AppendLimitKeyFor(nil, ents, &l, i)) }
	// A tier-scaled limit keeps its bucket; another period or algorithm
	// does not; the index field is i's.
	if key(ScaleLimit(r.Limits[1], 10), 1) != key(r.Limits[1], 1) {
		t.Error("a scaled limit changed its key")
	}
	other := rateLimit(20, Minute)
	if got, want := key(other, 0), "3:api1:27:api_key1:k4:path11:/api/runs/712:fixed_window8:60000000"; got != want {
		t.Errorf("override key %q, want %q", got, want)
	}
	if got, want := key(other, 1), "3:api1:27:api_key1:k4:path11:/api/runs/712:fixed_window8:600000001:1"; got != want {
		t.Errorf("override of limit 1: key %q, want %q", got, want)
	}
	gcra := r.Limits[0]
	gcra.Limit.Algorithm = algorithms.GCRA
	if key(gcra, 0) == key(r.Limits[0], 0) {
		t.Error("a change of algorithm kept the key")
	}
	d := []Entry{{"daily", "d"}}
	rd := c.Match("api", d)
	if got, want := string(rd.AppendLimitKeyFor(nil, d, &rd.Limits[0], 0)), "3:api1:15:daily1:d12:fixed_window11:8640000000021:calendar:Europe/Paris"; got != want {
		t.Errorf("calendar key %q, want %q", got, want)
	}
	buf := make([]byte, 0, 256)
	l := ScaleLimit(r.Limits[1], 0.5)
	if n := testing.AllocsPerRun(100, func() { buf = r.AppendLimitKeyFor(buf[:0], ents, &l, 1) }); n != 0 {
		t.Errorf("AppendLimitKeyFor allocates %v times", n)
	}
}

func TestScaleLimit(t *testing.T) {
	gcra := func(rate, burst int64) RuleLimit {
		return RuleLimit{RequestsPerUnit: uint32(rate), Unit: Minute, UnitMultiplier: 1, Limit: algorithms.Limit{Algorithm: algorithms.GCRA, Rate: rate, Period: algorithms.Minute, Burst: burst}}
	}
	for _, tt := range []struct {
		name string
		l    RuleLimit
		m    float64
		want RuleLimit
	}{
		{"1 is unchanged", gcra(500, 50), 1, gcra(500, 50)},
		{"10x scales rate and burst", gcra(500, 50), 10, gcra(5000, 500)},
		{"half of 1 stays 1", rateLimit(1, Second), 0.5, rateLimit(1, Second)},
		{"half of 3 rounds up", rateLimit(3, Second), 0.5, rateLimit(2, Second)},
		{"half of 5 rounds half away from zero", rateLimit(5, Second), 0.5, rateLimit(3, Second)},
		{"a third of 10 rounds down", rateLimit(10, Second), 1.0 / 3, rateLimit(3, Second)},
		{"tiny multiplier stays 1", gcra(500, 50), 1e-9, gcra(1, 1)},
		{"a burst of 0 (the rate) stays 0", gcra(500, 0), 2, gcra(1000, 0)},
		{"0 stays 0", rateLimit(0, Second), 5, rateLimit(0, Second)},
		{"0 multiplier is left to the caller", gcra(500, 50), 0, gcra(500, 50)},
		{"NaN is left to the caller", gcra(500, 50), math.NaN(), gcra(500, 50)},
		{"RequestsPerUnit saturates", rateLimit(math.MaxUint32, Second), 2,
			RuleLimit{RequestsPerUnit: math.MaxUint32, Unit: Second, UnitMultiplier: 1, Limit: algorithms.Limit{Rate: 2 * math.MaxUint32, Period: algorithms.Second}}},
		{"Rate and Burst saturate", gcra(1000, 1000), math.Inf(1),
			RuleLimit{RequestsPerUnit: math.MaxUint32, Unit: Minute, UnitMultiplier: 1, Limit: algorithms.Limit{Algorithm: algorithms.GCRA, Rate: algorithms.MaxAmount, Period: algorithms.Minute, Burst: algorithms.MaxAmount}}},
		{"concurrency scales max_in_flight", RuleLimit{RequestsPerUnit: 50, Limit: algorithms.Limit{Algorithm: algorithms.Concurrency, Rate: 50, Period: algorithms.Hour}}, 0.5,
			RuleLimit{RequestsPerUnit: 25, Limit: algorithms.Limit{Algorithm: algorithms.Concurrency, Rate: 25, Period: algorithms.Hour}}},
	} {
		got := ScaleLimit(tt.l, tt.m)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: ScaleLimit(%v, %v) (-want +got):\n%s", tt.name, tt.l, tt.m, diff)
		}
	}
	// The calendar and name are kept.
	paris, _ := time.LoadLocation("Europe/Paris")
	l := RuleLimit{Name: "daily", RequestsPerUnit: 10, Unit: Day, UnitMultiplier: 1, Calendar: paris, Limit: algorithms.Limit{Rate: 10, Period: algorithms.Day}}
	if got := ScaleLimit(l, 3); got.Calendar != paris || got.Name != "daily" || got.Limit.Rate != 30 {
		t.Errorf("ScaleLimit of a calendar limit = %+v", got)
	}
	if n := testing.AllocsPerRun(100, func() { l = ScaleLimit(l, 1.5) }); n != 0 {
		t.Errorf("ScaleLimit allocates %v times", n)
	}
}

func TestAbove(t *testing.T) {
	per := func(rate, period int64) *RuleLimit {
		return &RuleLimit{Limit: algorithms.Limit{Rate: rate, Period: period}}
	}
	conc := func(n int64) *RuleLimit {
		return &RuleLimit{Limit: algorithms.Limit{Algorithm: algorithms.Concurrency, Rate: n, Period: algorithms.Minute}}
	}
	for _, tt := range []struct {
		name string
		a, b *RuleLimit
		want bool
	}{
		{"more per minute", per(501, algorithms.Minute), per(500, algorithms.Minute), true},
		{"equal", per(500, algorithms.Minute), per(500, algorithms.Minute), false},
		{"less", per(499, algorithms.Minute), per(500, algorithms.Minute), false},
		{"same rate in other units", per(60, algorithms.Minute), per(1, algorithms.Second), false},
		{"a hair more per hour than per second", per(3601, algorithms.Hour), per(1, algorithms.Second), true},
		{"a hair less", per(3599, algorithms.Hour), per(1, algorithms.Second), false},
		{"1000 per 90 minutes vs 11 per minute", per(1000, 90*algorithms.Minute), per(11, algorithms.Minute), true},
		{"no overflow: huge rate and period", per(math.MaxInt64, math.MaxInt64-1), per(math.MaxInt64-1, math.MaxInt64), true},
		{"no overflow: reverse", per(math.MaxInt64-1, math.MaxInt64), per(math.MaxInt64, math.MaxInt64-1), false},
		{"algorithm and burst ignored", &RuleLimit{Limit: algorithms.Limit{Algorithm: algorithms.GCRA, Rate: 10, Period: algorithms.Second, Burst: 1000}}, per(10, algorithms.Second), false},
		{"concurrency compares max_in_flight", conc(51), conc(50), true},
		{"concurrency equal", conc(50), conc(50), false},
		{"concurrency ignores lease", &RuleLimit{Limit: algorithms.Limit{Algorithm: algorithms.Concurrency, Rate: 5, Period: algorithms.Second}}, conc(5), false},
	} {
		if got := Above(tt.a, tt.b); got != tt.want {
			t.Errorf("%s: Above(%v, %v) = %v, want %v", tt.name, tt.a, tt.b, got, tt.want)
		}
	}
}

func TestParseLimitSpec(t *testing.T) {
	perN := func(rate uint32, unit Unit, mult uint32) RuleLimit {
		return RuleLimit{RequestsPerUnit: rate, Unit: unit, UnitMultiplier: mult, Limit: algorithms.Limit{Rate: int64(rate), Period: UnitPeriod(unit) * int64(mult)}}
	}
	for _, tt := range []struct {
		spec string
		want RuleLimit
	}{
		{"500/minute", perN(500, Minute, 1)},
		{"500/min", perN(500, Minute, 1)},
		{"500/m", perN(500, Minute, 1)},
		{"500/MINUTE", perN(500, Minute, 1)},
		{"10/s", perN(10, Second, 1)},
		{"10/sec", perN(10, Second, 1)},
		{"10/second", perN(10, Second, 1)},
		{"100/h", perN(100, Hour, 1)},
		{"100/hour", perN(100, Hour, 1)},
		{"5/d", perN(5, Day, 1)},
		{"5/day", perN(5, Day, 1)},
		{"5/week", perN(5, Week, 1)},
		{"5/month", perN(5, Month, 1)},
		{"5/year", perN(5, Year, 1)},
		{" 500 / minute ", perN(500, Minute, 1)},
		{"0/minute", perN(0, Minute, 1)},
		{"4294967295/s", perN(math.MaxUint32, Second, 1)},
		{"1000/90m", perN(1000, Minute, 90)},
		{"1000/1h30m", perN(1000, Minute, 90)},
		{"1000/2h", perN(1000, Hour, 2)},
		{"1000/48h", perN(1000, Day, 2)},
		{"30/30s", perN(30, Second, 30)},
		{"1/1m", perN(1, Minute, 1)},
		{"50 concurrent", RuleLimit{RequestsPerUnit: 50, Limit: algorithms.Limit{Algorithm: algorithms.Concurrency, Rate: 50}}},
		{"50 concurrent (lease 30m)", RuleLimit{RequestsPerUnit: 50, Limit: algorithms.Limit{Algorithm: algorithms.Concurrency, Rate: 50, Period: 30 * algorithms.Minute}}},
	} {
		got, err := ParseLimitSpec(tt.spec)
		if err != nil {
			t.Errorf("ParseLimitSpec(%q): %v", tt.spec, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseLimitSpec(%q) (-want +got):\n%s", tt.spec, diff)
		}
	}
	for _, tt := range []struct{ spec, err string }{
		{"x", `config: limit "x": want <n>/<unit>, such as 500/minute`},
		{"", `config: limit "": want <n>/<unit>, such as 500/minute`},
		{"500", `config: limit "500": want <n>/<unit>, such as 500/minute`},
		{"500/", `config: limit "500/": want <n>/<unit>, such as 500/minute`},
		{"/minute", `config: limit "/minute": want <n>/<unit>, such as 500/minute`},
		{"-1/minute", `config: limit "-1/minute": want <n>/<unit>, such as 500/minute`},
		{"1.5/minute", `config: limit "1.5/minute": want <n>/<unit>, such as 500/minute`},
		{"500 per minute", `config: limit "500 per minute": want <n>/<unit>, such as 500/minute`},
		{"50 concurrent lease", `config: limit "50 concurrent lease": want <n>/<unit>, such as 500/minute`},
		{"many concurrent", `config: limit "many concurrent": want <n>/<unit>, such as 500/minute`},
		{"4294967296/s", `config: limit "4294967296/s": 4294967296 is not an integer from 0 to 4294967295`},
		{"99999999999999999999/s", `config: limit "99999999999999999999/s": 99999999999999999999 is not an integer from 0 to 4294967295`},
		{"500/fortnight", `config: limit "500/fortnight": unit "fortnight" is not one of s, sec, second, m, min, minute, h, hour, d, day, week, month, year, or a duration such as 90m`},
		{"500/0s", `config: limit "500/0s": period 0s must be greater than 0`},
		{"500/1500ms", `config: limit "500/1500ms": period 1500ms is not a whole number of seconds (the smallest unit Envoy reports)`},
		{"500/100000h", `config: limit "500/100000h": period 100000h is longer than 10 years`},
		{"0 concurrent", `config: limit "0 concurrent": max_in_flight must be greater than 0`},
		{"5 concurrent (lease 0s)", `config: limit "5 concurrent (lease 0s)": lease 0s must be a duration greater than 0, such as 30m, at most 10 years`},
	} {
		_, err := ParseLimitSpec(tt.spec)
		if err == nil || err.Error() != tt.err {
			t.Errorf("ParseLimitSpec(%q) error = %v, want %s", tt.spec, err, tt.err)
		}
	}
}

func TestRuleLimitString(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	c := loadAlgorithms(t)
	ruleLimit := func(key string, i int) RuleLimit { return c.Match("api", entries(key, "x")).Limits[i] }
	for _, tt := range []struct {
		l    RuleLimit
		want string
	}{
		{rateLimit(500, Minute), "500 per minute"},
		{rateLimit(1, Week), "1 per week"},
		{ruleLimit("api_key", 0), "500 per minute (gcra, burst 50)"},
		{ruleLimit("client", 0), "100 per second (token_bucket, burst 300)"},
		{ruleLimit("report", 0), "5 per 10 minutes (sliding_window)"},
		{ruleLimit("daily", 0), "1000 per day (calendar Europe/Paris)"},
		{ruleLimit("window", 0), "30 per 30 seconds"},
		{RuleLimit{Limit: algorithms.Limit{Rate: 1000, Period: 90 * algorithms.Minute}}, "1000 per 90 minutes"},
		{RuleLimit{Limit: algorithms.Limit{Rate: 7, Period: 1500 * algorithms.Millisecond}}, "7 per 1.5s"},
		{RuleLimit{Calendar: paris, Unit: Month, UnitMultiplier: 1, Limit: algorithms.Limit{Algorithm: algorithms.SlidingWindow, Rate: 9, Period: UnitPeriod(Month)}}, "9 per month (sliding_window, calendar Europe/Paris)"},
		{RuleLimit{Limit: algorithms.Limit{Algorithm: algorithms.Concurrency, Rate: 50, Period: 30 * algorithms.Minute}}, "50 concurrent (lease 30m)"},
		{RuleLimit{Limit: algorithms.Limit{Algorithm: algorithms.Concurrency, Rate: 50, Period: 90 * algorithms.Minute}}, "50 concurrent (lease 1h30m)"},
		{RuleLimit{Limit: algorithms.Limit{Algorithm: algorithms.Concurrency, Rate: 50, Period: algorithms.Hour}}, "50 concurrent (lease 1h)"},
		{RuleLimit{Limit: algorithms.Limit{Algorithm: algorithms.Concurrency, Rate: 50}}, "50 concurrent"},
	} {
		if got := tt.l.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
	// ParseLimitSpec reads what String writes for fixed windows and concurrency.
	for _, spec := range []string{"1000/90m", "50 concurrent (lease 30m)", "5/day"} {
		l, err := ParseLimitSpec(spec)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseLimitSpec(strings.NewReplacer(" per ", "/", " minutes", "m").Replace(l.String()))
		if err != nil || back != l {
			t.Errorf("%q → %q → %+v, %v", spec, l.String(), back, err)
		}
	}
}

func TestMergedDomainSettings(t *testing.T) {
	a := File{Name: "a.yaml", Data: []byte(`
domain: d
descriptors:
  - key: org
    policy: starter          # declared in b.yaml
`)}
	b := File{Name: "b.yaml", Data: []byte(`
domain: d
tiers: {key: tier, default: user, multipliers: {user: 1}}
policies:
  starter:
    requests: {requests_per_unit: 10, unit: second}
`)}
	c, err := Parse([]File{a, b}, Options{MergeDomains: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Match("d", entries("org", "x")); r == nil || r.Limit.Rate != 10 || r.Policy != "starter" {
		t.Errorf("policy from a later file: rule %+v", r)
	}
	if c.Domain("d").Tiers == nil {
		t.Error("tiers of a merged file are lost")
	}

	// A setting in two files, a policy in two files, a descriptor of one
	// file using the tiers key of another.
	a2 := File{Name: "a.yaml", Data: []byte(`
domain: d
tiers: {key: tier, default: user, multipliers: {user: 2}}
disabled: true
descriptors:
  - key: org
    rate_limit: {requests_per_unit: 10, unit: second}
`)}
	c2 := File{Name: "c.yaml", Data: []byte(`
domain: d
disabled: false
policies:
  starter:
    requests: {requests_per_unit: 20, unit: second}
descriptors:
  - key: tier
    rate_limit: {requests_per_unit: 10, unit: second}
`)}
	_, err = Parse([]File{a2, b, c2}, Options{MergeDomains: true})
	want := []string{
		`b.yaml: d.tiers: tiers is already set in a.yaml: set it in one file of the domain`,
		`c.yaml: d.disabled: disabled is already set in a.yaml: set it in one file of the domain`,
		`c.yaml: d.policies.starter: policy "starter" is already declared in b.yaml`,
		`c.yaml: d.tier: descriptor key tier is the tiers key: the server removes it before matching`,
	}
	if diff := cmp.Diff(want, errorStrings(t, err)); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

// TestExtensionErrorsTogether: the errors of the settings, of the
// descriptors and of the checks that need the whole domain are all
// reported, the domain-wide checks last.
func TestExtensionErrorsTogether(t *testing.T) {
	_, err := Parse([]File{{Name: "x.yaml", Data: []byte(`
domain: d
tiers: {key: tier, default: guest, multipliers: {user: 1}}
policies:
  starter:
    requests: {requests_per_unit: 10, unit: fortnight}
descriptors:
  - key: tier
    rate_limit: {requests_per_unit: 10, unit: second}
  - key: org
    policy: starter            # its error is the policy's, not repeated
  - key: team
    policy: gold
    charge_always: perhaps
  - key: user
    policy: starter
    meter: tokens
`)}}, Options{})
	want := []string{
		`x.yaml: d.tiers: default "guest" is not one of the multipliers' tiers (user)`,
		`x.yaml: d.policies.starter: requests: unit "fortnight" is not one of second, minute, hour, day, week, month, year`,
		`x.yaml: d.team: charge_always must be true or false, found "perhaps"`,
		`x.yaml: d.tier: descriptor key tier is the tiers key: the server removes it before matching`,
		`x.yaml: d.team: policy "gold" is not one of the domain's policies (starter)`,
	}
	if diff := cmp.Diff(want, errorStrings(t, err)); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	// Lines point at the offending nodes.
	var errs Errors
	if errors.As(err, &errs) && errs[3].Line != 8 {
		t.Errorf("line of the tier descriptor = %d, want 8", errs[3].Line)
	}
}

// TestDocsExtensions keeps the YAML examples of docs/config.md's
// extension sections loading.
func TestDocsExtensions(t *testing.T) {
	c := docsExample(t, "## Tiers (`tiers`)")
	if tr := c.Domain("api").Tiers; tr == nil || tr.Default != "user" {
		t.Errorf("tiers example: %+v", tr)
	}
	c = docsExample(t, "## Disabling a domain (`disabled`)")
	if !c.Domain("legacy").Disabled {
		t.Error("disabled example is not disabled")
	}
	c = docsExample(t, "## Idempotent retries (`idempotency`)")
	if idem := c.Domain("api").Idempotency; idem == nil || idem.TTL != 10*time.Minute {
		t.Errorf("idempotency example: %+v", idem)
	}
	c = docsExample(t, "## Policies (`policies`, `policy`, `meter`)")
	if r := c.Match("api", entries("plan", "pro", "org", "acme", "usage", "tokens")); r == nil || r.Policy != "pro" || r.Meter != "tokens" || !r.ChargeAlways {
		t.Errorf("policies example: %+v", r)
	}
	c = docsExample(t, "## Ceiling of runtime overrides (`max_override`)")
	if r := c.Match("api", entries("api_key", "k")); r == nil || r.MaxOverride == nil {
		t.Errorf("max_override example: %+v", r)
	}
	c = docsExample(t, "## Usage already spent (`charge_always`)")
	if r := c.Match("llm", entries("org", "acme", "usage", "tokens")); r == nil || !r.ChargeAlways {
		t.Errorf("charge_always example: %+v", r)
	}
}

func TestWildcardsPerLevelBounded(t *testing.T) {
	gen := func(n int) []File {
		var b strings.Builder
		b.WriteString("domain: w\ndescriptors:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - key: path\n    value: \"/p%d/*\"\n    rate_limit: {unit: second, requests_per_unit: 1}\n", i)
		}
		return []File{{Name: "w.yaml", Data: []byte(b.String())}}
	}
	if _, err := Parse(gen(maxWildcards), Options{}); err != nil {
		t.Fatalf("%d wildcards: %v", maxWildcards, err)
	}
	_, err := Parse(gen(maxWildcards+1), Options{})
	want := fmt.Sprintf("w.yaml: w.path=/p%d/*: more than %d wildcard values at one level", maxWildcards, maxWildcards)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("%d wildcards: %v, want %q", maxWildcards+1, err, want)
	}
}

// FuzzMatch matches fuzzed descriptors against a config with exact,
// wildcard, key-only and nested rules: Match never panics, and a rule it
// returns accepts every entry at its level (same key; the value equal, a
// wildcard that matches it, or a key-only level) and builds a key.
func FuzzMatch(f *testing.F) {
	const yaml = `domain: m
descriptors:
  - key: path
    value: "/api/*/runs/*"
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: path
    value: "/api/*"
    descriptors:
      - key: method
        value: POST
        rate_limit: {unit: second, requests_per_unit: 2}
      - key: method
        rate_limit: {unit: second, requests_per_unit: 3}
  - key: path
    rate_limit: {unit: second, requests_per_unit: 4}
  - key: org
    descriptors:
      - key: user
        value: "a*b*c"
        share_threshold: true
        rate_limit: {unit: minute, requests_per_unit: 5}
      - key: user
        descriptors:
          - key: tier
            value: gold
            rate_limit: {unit: hour, requests_per_unit: 6}
`
	c, err := Parse([]File{{Name: "m.yaml", Data: []byte(yaml)}}, Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("path\x00/api/x/runs/y")
	f.Add("path\x00/api/x\x00method\x00POST")
	f.Add("path\x00/api/x\x00method\x00GET")
	f.Add("org\x00o\x00user\x00aXbYc")
	f.Add("org\x00o\x00user\x00u\x00tier\x00gold")
	f.Add("path\x00")
	f.Fuzz(func(t *testing.T, spec string) {
		parts := strings.Split(spec, "\x00")
		var es []Entry
		for i := 0; i+1 < len(parts); i += 2 {
			es = append(es, Entry{Key: parts[i], Value: parts[i+1]})
		}
		r := c.Match("m", es)
		if r == nil {
			return
		}
		if len(r.Levels) != len(es) {
			t.Fatalf("rule %s has %d levels for %d entries", r.Path, len(r.Levels), len(es))
		}
		for i, l := range r.Levels {
			e := es[i]
			if l.Key != e.Key {
				t.Fatalf("rule %s level %d key %q, entry key %q", r.Path, i, l.Key, e.Key)
			}
			switch {
			case l.Value == "", l.Value == e.Value:
			case strings.Contains(l.Value, "*") && globMatch(strings.Split(l.Value, "*"), e.Value):
			default:
				t.Fatalf("rule %s level %d value %q does not accept %q", r.Path, i, l.Value, e.Value)
			}
		}
		if k := r.AppendKey(nil, es); len(k) == 0 {
			t.Fatal("empty key")
		}
	})
}
