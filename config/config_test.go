package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ratelimitd/ratelimitd/algorithms"
)

// invalidFixtures maps each file of testdata/invalid, one per validation
// error, to the exact errors it gives ("path: message", without the file).
var invalidFixtures = map[string][]string{
	// ratelimitd's extensions: algorithms, bursts, periods, calendars, rate_limits.
	"bad_alignment":                     {"test.k: alignment \"local\" is not one of epoch, calendar"},
	"bad_burst":                         {"test.k: burst must be an integer from 1 to 1099511627776, found \"0\""},
	"bad_burst_multiplier":              {"test.k: burst_multiplier must be a number greater than 0, found \"-3\""},
	"bad_lease":                         {"test.k: lease must be a duration such as 30s, 5m or 90m, at most 10 years, found \"forever\""},
	"bad_period":                        {"test.k: period must be a duration such as 30s, 5m or 90m, at most 10 years, found \"fortnight\""},
	"bad_timezone":                      {"test.k: timezone \"Mars/Olympus_Mons\" is not a known IANA time zone (such as Europe/Paris or UTC)"},
	"burst_and_multiplier":              {"test.k: set burst or burst_multiplier, not both"},
	"burst_multiplier_too_large":        {"test.k: burst_multiplier 1000 gives a burst of 4294967295000 with requests_per_unit 4294967295, above the largest burst, 1099511627776"},
	"burst_multiplier_zero_burst":       {"test.k: burst_multiplier 0.5 gives a burst of 0 with requests_per_unit 1"},
	"burst_wrong_algorithm":             {"test.k: burst applies only to algorithms token_bucket and gcra, not sliding_window"},
	"calendar_bad_unit":                 {"test.k: alignment: calendar needs a unit of hour, day, week, month or year, without period or unit_multiplier"},
	"calendar_wrong_algorithm":          {"test.k: alignment: calendar applies only to algorithms fixed_window and sliding_window, not gcra"},
	"concurrency_with_unit":             {"test.k: unit does not apply to algorithm concurrency: it takes max_in_flight and lease"},
	"concurrency_without_lease":         {"test.k: algorithm concurrency needs a lease (how long an acquisition lasts when its release is lost), such as 30m"},
	"concurrency_without_max_in_flight": {"test.k: algorithm concurrency needs max_in_flight greater than 0"},
	"lease_without_concurrency":         {"test.k: lease applies only to algorithm concurrency"},
	"period_and_unit_multiplier":        {"test.k: set period or unit_multiplier, not both"},
	"period_not_multiple_of_unit":       {"test.k: period 90m is not a whole number of hours: drop unit (the reported unit is then derived from the period) or pick a smaller one"},
	"period_not_seconds":                {"test.k: period 1500ms is not a whole number of seconds (the smallest unit Envoy reports)"},
	"period_too_long":                   {"test.k: the period is longer than 10 years"},
	"rate_limit_and_rate_limits":        {"test.k: set rate_limit or rate_limits, not both"},
	"rate_limits_empty":                 {"test.k: rate_limits is empty: give at least one limit"},
	"rate_limits_item_not_a_mapping":    {"test.k: rate_limits[0]: must be a mapping with unit and requests_per_unit, found \"10/second\""},
	"rate_limits_concurrency_shared":    {"test.k: rate_limits[1]: concurrency cannot share a rate_limits list with other limits: give it its own descriptor"},
	"rate_limits_entry_error":           {"test.k: rate_limits[1]: burst must be an integer from 1 to 1099511627776, found \"0\""},
	"rate_limits_not_a_list":            {"test.k: rate_limits must be a list of limits, found a mapping"},
	"rate_limits_unknown_key":           {"test.k: rate_limits[1]: unknown key \"replaces\" (want unit, requests_per_unit, name, algorithm, burst, burst_multiplier, period, unit_multiplier, alignment, timezone, max_in_flight, lease; unlimited and replaces belong to a single rate_limit)"},
	"rate_zero":                         {"test.k: algorithm token_bucket needs requests_per_unit greater than 0"},
	"timezone_without_calendar":         {"test.k: timezone applies only with alignment: calendar"},
	"unit_multiplier_zero":              {"test.k: unit_multiplier must be greater than 0"},
	"hash_tag_not_a_string":             {`test.org: hash_tag must be a descriptor key such as org (or "" for none), found a list`},
	"hash_tag_braces":                   {`test: hash_tag "{org}" must be a descriptor key without { or }: ratelimitd writes the braces`},
	"hash_tag_unknown_key":              {`test.org.path: hash_tag "orgs" would never apply: no descriptor here, above or below has key "orgs"`},
	"hash_tag_unknown_key_domain":       {`test: hash_tag "tenant" would never apply: no descriptor of the domain has key "tenant"`},
	"unknown_algorithm":                 {"test.k: algorithm \"leaky\" is not one of fixed_window, sliding_window, token_bucket, gcra, concurrency"},
	"unlimited_with_algorithm":          {"test.k: unlimited: true cannot have algorithm: an unlimited rule has no limit"},
	// Domain settings (tiers, disabled, idempotency, policies) and rule
	// extensions (policy, meter, max_override, charge_always).
	"tiers_not_a_mapping":              {`test.tiers: tiers must be a mapping with key, default and multipliers, found a list`},
	"tiers_unknown_key":                {`test.tiers: unknown key "levels" in tiers (want key, default, multipliers)`},
	"tiers_key_missing":                {`test.tiers: key is missing or empty: want the descriptor entry key that carries the tier, such as tier`},
	"tiers_key_not_a_string":           {`test.tiers: key must be a string, found a list`},
	"tiers_multipliers_missing":        {`test.tiers: multipliers is missing or empty: want a mapping of tier name to multiplier, such as {user: 1, admin: 10}`},
	"tiers_multipliers_not_a_mapping":  {`test.tiers: multipliers must be a mapping of tier name to multiplier, found a list`},
	"tiers_negative_multiplier":        {`test.tiers: multipliers.anon must be a number of 0 or more, found "-1"`},
	"tiers_empty_tier_name":            {`test.tiers: multipliers has an empty tier name`},
	"tiers_default_missing":            {`test.tiers: default is missing: want the tier of descriptors without one, one of the multipliers' tiers`},
	"tiers_default_unknown":            {`test.tiers: default "guest" is not one of the multipliers' tiers (user, admin)`},
	"tiers_default_not_a_string":       {`test.tiers: default must be a string, found a mapping`},
	"tiers_key_used":                   {`test.org.tier=admin: descriptor key tier is the tiers key: the server removes it before matching`},
	"disabled_not_a_bool":              {`test: disabled must be true or false, found "maybe"`},
	"idempotency_not_a_mapping":        {`test.idempotency: idempotency must be a mapping with key and ttl, found "idempotency_key"`},
	"idempotency_unknown_key":          {`test.idempotency: unknown key "expiry" in idempotency (want key, ttl)`},
	"idempotency_key_missing":          {`test.idempotency: key is missing or empty: want the descriptor entry key that carries the idempotency key, such as idempotency_key`},
	"idempotency_ttl_zero":             {`test.idempotency: ttl must be greater than 0`},
	"idempotency_ttl_too_long":         {`test.idempotency: ttl must be a duration such as 30s, 5m or 90m, at most 7 days, found "200h"`},
	"idempotency_same_key_as_tiers":    {`test.idempotency: tiers and idempotency use the same key "tier": give each its own`},
	"idempotency_key_used":             {`test.idempotency_key: descriptor key idempotency_key is the idempotency key: the server removes it before matching`},
	"policies_not_a_mapping":           {`test.policies: policies must be a mapping of policy name to meters, found a list`},
	"policy_bad_name":                  {`test.policies: policy name "gold plan" must be one or more of A-Z, a-z, 0-9, _, . and -`},
	"policy_no_meters":                 {`test.policies.starter: has no meters: give at least one, such as requests: {requests_per_unit: 1000, unit: hour}`},
	"policy_not_a_mapping":             {`test.policies.starter: want a mapping of meter name to limits, found "1000/hour"`},
	"meter_bad_name":                   {`test.policies.starter: meter name "to kens" must be one or more of A-Z, a-z, 0-9, _, . and -`},
	"meter_not_a_limit":                {`test.policies.starter: tokens: must be a limit mapping or a list of limits, found "lots"`},
	"meter_empty_list":                 {`test.policies.starter: tokens: is an empty list: give at least one limit`},
	"meter_item_not_a_mapping":         {`test.policies.starter: tokens[0]: must be a mapping with unit and requests_per_unit, found "1000/hour"`},
	"meter_unlimited":                  {`test.policies.starter: requests: unknown key "unlimited" (want unit, requests_per_unit, name, algorithm, burst, burst_multiplier, period, unit_multiplier, alignment, timezone, max_in_flight, lease; unlimited and replaces are not allowed in policies)`},
	"meter_concurrency_shared":         {`test.policies.starter: runs[1]: concurrency cannot share a meter's list with other limits: give it its own meter`},
	"meter_limit_error":                {`test.policies.starter: tokens[1]: unit "fortnight" is not one of second, minute, hour, day, week, month, year`},
	"policy_unknown":                   {`test.org: policy "gold" is not one of the domain's policies (pro, starter)`},
	"policy_without_policies":          {`test.org: policy "starter" is not one of the domain's policies (it declares none)`},
	"meter_unknown":                    {`test.org: policy "starter" has no meter "tokenz" (requests, tokens)`},
	"meter_without_policy":             {`test.org: meter applies only with policy`},
	"policy_and_rate_limit":            {`test.org: set policy or rate_limit, not both`},
	"policy_and_rate_limits":           {`test.org: set policy or rate_limits, not both`},
	"policy_not_a_string":              {`test.org: policy must be a string, found a list`},
	"policy_empty":                     {`test.org: policy is empty: name one of the domain's policies`},
	"meter_empty":                      {`test.org: meter is empty: name one of the policy's meters, or leave meter out for requests`},
	"meter_not_a_string":               {`test.org: meter must be a string, found a mapping`},
	"max_override_not_a_mapping":       {`test.k: max_override must be a mapping with requests_per_unit and unit, found "1000/minute"`},
	"max_override_unknown_key":         {`test.k: unknown key "algorithm" in max_override (want requests_per_unit, unit, unit_multiplier, period)`},
	"max_override_below":               {`test.k: max_override 400 per minute is below the rule's own limit 500 per minute`},
	"max_override_below_policy":        {`test.org: max_override 16 per minute is below the rule's own limit 1000 per hour`},
	"max_override_without_limit":       {`test.k: max_override needs a limit on the descriptor: rate_limit, rate_limits or policy`},
	"max_override_concurrency":         {`test.k: max_override does not apply to algorithm concurrency: it caps a rate, not max_in_flight`},
	"max_override_limit_error":         {`test.k: max_override: unit is missing: want one of second, minute, hour, day, week, month, year`},
	"charge_always_not_a_bool":         {`test.k: charge_always must be true or false, found "sometimes"`},
	"charge_always_without_limit":      {`test.k: charge_always needs a limit on the descriptor: rate_limit, rate_limits or policy`},
	"charge_always_unlimited":          {`test.k: charge_always does not apply to an unlimited rule`},
	"charge_always_concurrency":        {`test.k: charge_always does not apply to algorithm concurrency: an acquisition over max_in_flight must be refused`},
	"bad_bool":                         {`test.k: shadow_mode must be true or false, found "maybe"`},
	"bad_requests_per_unit":            {`test.k: requests_per_unit must be an integer from 0 to 4294967295, found "-1"`},
	"bad_unit":                         {`test.k: unit "minutes" is not one of second, minute, hour, day, week, month, year`},
	"bad_yaml":                         {`line 2: invalid YAML: did not find expected '-' indicator`},
	"descriptor_not_a_mapping":         {`test.descriptors[0]: descriptor must be a mapping with key, value, rate_limit..., found "a"`},
	"descriptors_not_a_list":           {`test: descriptors must be a list, found a mapping`},
	"duplicate_key":                    {`test.key1=value1: duplicate descriptor: the same key and value are already declared at this level (line 3)`},
	"empty":                            {`file is empty: want a mapping with domain and descriptors`},
	"empty_domain":                     {`domain: missing or empty; every file needs a domain`},
	"empty_key":                        {`test.descriptors[0]: key is missing or empty`},
	"key_not_a_string":                 {`test.descriptors[0]: key must be a string, found a list`},
	"metadata_not_a_mapping":           {`test.k: metadata must be a mapping, found a list`},
	"missing_unit":                     {`test.k=v: unit is missing: want one of second, minute, hour, day, week, month, year`},
	"nested_error":                     {`test.a=1.b.c=x*: unit "fortnight" is not one of second, minute, hour, day, week, month, year`},
	"non_string_key":                   {`test.descriptors[0]: keys must be strings, found a list`},
	"not_a_mapping":                    {`line 1: want a mapping with domain and descriptors, found a list`},
	"rate_limit_not_a_mapping":         {`test.k: rate_limit must be a mapping with unit and requests_per_unit, found "fast"`},
	"repeated_yaml_key":                {`test.descriptors[0]: key "key" appears twice (first at line 3)`},
	"replaces_empty":                   {`test.k: replaces[0] has an empty name`},
	"replaces_self":                    {`test.k: replaces[0] names the rule itself ("mine")`},
	"share_threshold_without_wildcard": {`test.files=files/a.pdf: share_threshold needs a value with a * wildcard, found "files/a.pdf"`},
	"share_threshold_without_value":    {`test.files: share_threshold needs a value with a * wildcard, found no value`},
	"two_documents":                    {`line 2: file holds more than one YAML document: put each domain in its own file`},
	"unknown_key":                      {`test.k: unknown key "ratelimit" (want key, value, rate_limit, rate_limits, descriptors, shadow_mode, quota_mode, detailed_metric, value_to_metric, share_threshold, metadata, hash_tag, policy, meter, max_override, charge_always)`},
	"unknown_rate_limit_key":           {`test.k: unknown key "requestsperunit" in rate_limit (want unit, requests_per_unit, unlimited, name, replaces, algorithm, burst, burst_multiplier, period, unit_multiplier, alignment, timezone, max_in_flight, lease)`},
	"unknown_replaces_key":             {`test.k: unknown key "rule" in replaces[0] (want name)`},
	"unknown_top_key":                  {`test: unknown key "descriptor" (want domain, descriptors, hash_tag, tiers, disabled, idempotency, policies)`},
	"unlimited_with_unit":              {`test.foo: unlimited: true cannot have a unit (found "day"): an unlimited rule has no window`},
}

func errorStrings(t *testing.T, err error) []string {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v (%T) is not Errors", err, err)
	}
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func TestInvalidFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			want, ok := invalidFixtures[name]
			if !ok {
				t.Fatalf("fixture %s has no entry in invalidFixtures", f)
			}
			c, err := Load(f, Options{})
			if err == nil {
				t.Fatalf("Load(%s) succeeded, want errors", f)
			}
			if c != nil {
				t.Errorf("Load(%s) returned a config with its errors", f)
			}
			var wantFull []string
			for _, w := range want {
				wantFull = append(wantFull, f+": "+w)
			}
			if diff := cmp.Diff(wantFull, errorStrings(t, err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
	for name := range invalidFixtures {
		if !seen[name] {
			t.Errorf("invalidFixtures names %s, which has no file in testdata/invalid", name)
		}
	}
}

func TestEveryErrorOfAFileIsReported(t *testing.T) {
	f := "testdata/multi/many_errors.yaml"
	_, err := Load(f, Options{})
	want := []string{
		f + `: test: unknown key "extra" (want domain, descriptors, hash_tag, tiers, disabled, idempotency, policies)`,
		f + `: test.a: unit "minutes" is not one of second, minute, hour, day, week, month, year`,
		f + `: test.a: duplicate descriptor: the same key and value are already declared at this level (line 5)`,
		f + `: test.b=exact: share_threshold needs a value with a * wildcard, found "exact"`,
		f + `: test.b=exact.c: unknown key "colour" (want key, value, rate_limit, rate_limits, descriptors, shadow_mode, quota_mode, detailed_metric, value_to_metric, share_threshold, metadata, hash_tag, policy, meter, max_override, charge_always)`,
		f + `: test.b=exact.c: unlimited: true cannot have a unit (found "hour"): an unlimited rule has no window`,
	}
	if diff := cmp.Diff(want, errorStrings(t, err)); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	var errs Errors
	errors.As(err, &errs)
	if got := errs[1].Line; got != 6 {
		t.Errorf("line of the bad unit = %d, want 6", got)
	}
	if got := err.Error(); strings.Count(got, "\n") != len(want)-1 {
		t.Errorf("Errors.Error() = %q, want one line per error", got)
	}
}

func TestErrorsAcrossFiles(t *testing.T) {
	files := []File{
		{Name: "one.yaml", Data: []byte("domain: a\ndescriptors:\n  - key: k\n    rate_limit: {unit: bad}\n")},
		{Name: "two.yaml", Data: []byte("domain: b\nbogus: 1\n")},
	}
	_, err := Parse(files, Options{})
	want := []string{
		`one.yaml: a.k: unit "bad" is not one of second, minute, hour, day, week, month, year`,
		`two.yaml: b: unknown key "bogus" (want domain, descriptors, hash_tag, tiers, disabled, idempotency, policies)`,
	}
	if diff := cmp.Diff(want, errorStrings(t, err)); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestDuplicateDomainAndMerge(t *testing.T) {
	_, err := Load("testdata/merge", Options{})
	want := []string{`testdata/merge/b.yaml: shared: domain "shared" is already declared in testdata/merge/a.yaml; put its descriptors in one file or let files merge (ratelimitd -merge-domains, MERGE_DOMAIN_CONFIG=true)`}
	if diff := cmp.Diff(want, errorStrings(t, err)); diff != "" {
		t.Errorf("without MergeDomains (-want +got):\n%s", diff)
	}

	c, err := Load("testdata/merge", Options{MergeDomains: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []struct {
		key  string
		rate uint32
	}{{"a", 1}, {"b", 2}} {
		r := c.Match("shared", []Entry{{e.key, "x"}})
		if r == nil || r.RequestsPerUnit != e.rate {
			t.Errorf("Match(shared, %s) = %+v, want rate %d", e.key, r, e.rate)
		}
	}

	// A clash between merged files is an error naming both places.
	clash := []File{
		{Name: "a.yaml", Data: []byte("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n")},
		{Name: "b.yaml", Data: []byte("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 1}\n")},
	}
	_, err = Parse(clash, Options{MergeDomains: true})
	want = []string{`b.yaml: d.k: duplicate descriptor: the same key and value are already declared at this level (a.yaml line 3)`}
	if diff := cmp.Diff(want, errorStrings(t, err)); diff != "" {
		t.Errorf("merge clash (-want +got):\n%s", diff)
	}
}

func mustLoad(t testing.TB, path string) *Config {
	t.Helper()
	c, err := Load(path, Options{})
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	return c
}

func entries(kv ...string) []Entry {
	var es []Entry
	for i := 0; i+1 < len(kv); i += 2 {
		es = append(es, Entry{kv[i], kv[i+1]})
	}
	return es
}

func TestMatch(t *testing.T) {
	c := mustLoad(t, "testdata/valid")
	tests := []struct {
		name    string
		domain  string
		entries []Entry
		want    string // Path of the matched rule, "" for nil
	}{
		// The reference's basic config test, on our own shapes.
		{"unknown domain", "nope", entries("route", "x"), ""},
		{"no entries", "basic", nil, ""},
		{"placeholder without rule", "basic", entries("tenant", "acme"), ""},
		{"unknown value, no default", "basic", entries("tenant", "other"), ""},
		{"nested default", "basic", entries("tenant", "acme", "user", "bob"), "basic.tenant=acme.user"},
		{"nested exact over default", "basic", entries("tenant", "acme", "user", "root"), "basic.tenant=acme.user=root"},
		{"top default", "basic", entries("route", "anything"), "basic.route"},
		{"top exact over default", "basic", entries("route", "checkout"), "basic.route=checkout"},
		{"whitelisted value", "basic", entries("route", "health"), ""},
		{"empty value takes default", "basic", entries("route", ""), "basic.route"},
		{"case-insensitive unit", "basic", entries("ip", "1.2.3.4"), "basic.ip"},
		{"longer than config", "basic", entries("route", "x", "extra", "y"), ""},
		{"longer than config below a rule", "basic", entries("ip", "1", "port", "80"), ""},
		{"shorter than config", "basic", entries("region", "eu"), "basic.region=eu"},
		{"deep", "basic", entries("region", "eu", "zone", "eu-1"), "basic.region=eu.zone=eu-1"},
		{"no fallback to shallower rule", "basic", entries("region", "eu", "zone", "eu-2"), ""},
		{"key mismatch", "basic", entries("Route", "x"), ""},

		// Wildcards.
		{"prefix", "wildcard", entries("path", "/api/v2/x"), "wildcard.path=/api/*"},
		{"prefix matches empty rest", "wildcard", entries("path", "/api/"), "wildcard.path=/api/*"},
		{"first wildcard in config order wins", "wildcard", entries("path", "/api/v1/orders"), "wildcard.path=/api/v1/*"},
		{"exact beats earlier wildcards", "wildcard", entries("path", "/api/v1/users"), "wildcard.path=/api/v1/users"},
		{"prefix mismatch", "wildcard", entries("path", "/web/x"), ""},
		{"suffix", "wildcard", entries("host", "www.example.com"), "wildcard.host=*.example.com"},
		{"suffix mismatch", "wildcard", entries("host", "example.com.evil"), ""},
		{"middle", "wildcard", entries("host", "api.eu.internal"), "wildcard.host=api.*.internal"},
		{"middle empty run", "wildcard", entries("host", "api..internal"), "wildcard.host=api.*.internal"},
		{"middle no overlap", "wildcard", entries("host", "api.internal"), ""},
		{"several stars", "wildcard", entries("svc", "svc-users-ep-get-rpc"), "wildcard.svc=svc*ep*rpc"},
		{"several stars adjacent parts", "wildcard", entries("svc", "svceprpc"), "wildcard.svc=svc*ep*rpc"},
		{"several stars mismatch", "wildcard", entries("svc", "svc-users-rpc"), ""},
		{"star before default", "wildcard", entries("any", "x"), "wildcard.any=*"},
		{"star matches empty", "wildcard", entries("any", ""), "wildcard.any=*"},
		{"nested wildcards", "wildcard", entries("tenant", "t1", "res", "r9"), "wildcard.tenant=t*.res=r*"},
		{"literal star value", "wildcard", entries("path", "/api/v1/*"), "wildcard.path=/api/v1/*"},

		// Features.
		{"unlimited", "features", entries("client", "internal"), "features.client=internal"},
		{"default with replaces target", "features", entries("client", "other"), "features.client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.Match(tt.domain, tt.entries)
			got := ""
			if r != nil {
				got = r.Path
			}
			if got != tt.want {
				t.Errorf("Match(%q, %v) = %q, want %q", tt.domain, tt.entries, got, tt.want)
			}
		})
	}
	var nilConfig *Config
	if nilConfig.Match("basic", entries("route", "x")) != nil || nilConfig.HasDomain("basic") {
		t.Error("a nil *Config matched something")
	}
}

func TestRuleFields(t *testing.T) {
	c := mustLoad(t, "testdata/valid/features.yaml")
	got := map[string]*Rule{}
	for _, r := range c.Rules() {
		got[r.Path] = r
	}
	want := map[string]*Rule{
		"features.client=internal": {
			Domain: "features", Path: "features.client=internal", StatKey: "features.client_internal",
			Unlimited: true, Limit: algorithms.Limit{Algorithm: algorithms.FixedWindow}, Line: 7,
			Levels: []Level{{"client", "internal"}},
		},
		"features.client": {
			Domain: "features", Path: "features.client", StatKey: "features.client",
			Name: "per-client", RequestsPerUnit: 1000, Unit: Week, ShadowMode: true, DetailedMetric: true,
			Limit: algorithms.Limit{Rate: 1000, Period: 7 * algorithms.Day}, Line: 12,
			Levels: []Level{{"client", ""}},
		},
		"features.client=partner": {
			Domain: "features", Path: "features.client=partner", StatKey: "features.client_partner",
			Name: "partner", Replaces: []string{"per-client"}, RequestsPerUnit: 100000, Unit: Month, QuotaMode: true,
			Metadata: map[string]any{"service": "partner-backend", "weight": int64(3), "tags": []any{"a", "b"}},
			Limit:    algorithms.Limit{Rate: 100000, Period: 30 * algorithms.Day}, Line: 20,
			Levels: []Level{{"client", "partner"}},
		},
		"features.files=files/*": {
			Domain: "features", Path: "features.files=files/*", StatKey: "features.files_files/*",
			RequestsPerUnit: 7, Unit: Year, Limit: algorithms.Limit{Rate: 7, Period: 365 * algorithms.Day}, Line: 34,
			share: []string{"files/*"}, Levels: []Level{{"files", "files/*"}},
		},
		"features.route=api/*.method": {
			Domain: "features", Path: "features.route=api/*.method", StatKey: "features.route_api/*.method",
			RequestsPerUnit: 60, Unit: Minute, ValueToMetric: true, Limit: algorithms.Limit{Rate: 60, Period: algorithms.Minute}, Line: 45,
			Levels: []Level{{"route", "api/*"}, {"method", ""}},
		},
	}
	for _, r := range want {
		r.File = "testdata/valid/features.yaml"
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(Rule{}), cmpopts.IgnoreFields(Rule{}, "Limits")); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
}

func TestRulesOrder(t *testing.T) {
	c := mustLoad(t, "testdata/valid")
	var paths []string
	for _, r := range c.Rules() {
		paths = append(paths, r.Path)
	}
	want := []string{
		"basic.tenant=acme.user", "basic.tenant=acme.user=root", "basic.route", "basic.route=checkout",
		"basic.ip", "basic.region=eu", "basic.region=eu.zone=eu-1",
		"features.client=internal", "features.client", "features.client=partner", "features.files=files/*",
		"features.route=api/*.method",
		"wildcard.path=/api/v1/*", "wildcard.path=/api/*", "wildcard.path=/api/v1/users", "wildcard.host=*.example.com",
		"wildcard.host=api.*.internal", "wildcard.svc=svc*ep*rpc", "wildcard.any=*", "wildcard.any",
		"wildcard.tenant=t*.res=r*",
	}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Errorf("Rules() order (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"basic", "features", "wildcard"}, c.Domains()); diff != "" {
		t.Errorf("Domains() (-want +got):\n%s", diff)
	}
	wantFiles := []string{"testdata/valid/basic.yaml", "testdata/valid/features.yaml", "testdata/valid/wildcard.yaml"}
	if diff := cmp.Diff(wantFiles, c.LoadedFiles()); diff != "" {
		t.Errorf("LoadedFiles() (-want +got):\n%s", diff)
	}
}

// TestReferenceShapes loads configs written the way envoyproxy/ratelimit's
// README and tests write them and checks that they load unchanged.
func TestReferenceShapes(t *testing.T) {
	shapes := map[string]string{
		"replaces": `
domain: mongo_cps
descriptors:
  - key: database
    value: users
    rate_limit:
      unit: second
      requests_per_unit: 500
  - key: database
    value: default
    rate_limit:
      name: default-db
      unit: second
      requests_per_unit: 500
  - key: database
    value: special
    rate_limit:
      unit: second
      requests_per_unit: 1000
      replaces:
        - name: default-db
`,
		"shadow and detailed": `
---
domain: messaging
descriptors:
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        detailed_metric: true
        rate_limit:
          unit: day
          requests_per_unit: 5
  - key: to_number
    shadow_mode: true
    rate_limit:
      unit: day
      requests_per_unit: 100
`,
		"metadata": `
domain: test-domain
descriptors:
  - key: key1
    value: value1
    descriptors:
      - key: subkey1
        rate_limit:
          unit: second
          requests_per_unit: 5
        metadata:
          name: service_1
  - key: key2
    rate_limit:
      unit: minute
      requests_per_unit: 20
    metadata:
      service_with_quota:
        name: service_2
`,
		"numbers and yaml 1.1 booleans": `
domain: numbers
descriptors:
  - key: throughput
    value: 30
    shadow_mode: yes
    quota_mode: off
    rate_limit:
      unit: second
      requests_per_unit: 30
  - key: empty_value
    value:
    rate_limit:
      unlimited: true
      requests_per_unit: 10
`,
		"no descriptors": "domain: empty\n",
	}
	for name, yml := range shapes {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]File{{Name: name, Data: []byte(yml)}}, Options{}); err != nil {
				t.Fatal(err)
			}
		})
	}
	c, _ := Parse([]File{{Name: "n", Data: []byte(shapes["numbers and yaml 1.1 booleans"])}}, Options{})
	r := c.Match("numbers", entries("throughput", "30"))
	if r == nil || !r.ShadowMode || r.QuotaMode {
		t.Errorf("numbers: got %+v, want shadow, not quota", r)
	}
	if r := c.Match("numbers", entries("empty_value", "x")); r == nil || !r.Unlimited || r.RequestsPerUnit != 0 {
		t.Errorf("null value: got %+v, want key-only unlimited rule ignoring requests_per_unit", r)
	}
	c, _ = Parse([]File{{Name: "m", Data: []byte(shapes["metadata"])}}, Options{})
	r = c.Match("test-domain", entries("key2", "x"))
	want := map[string]any{"service_with_quota": map[string]any{"name": "service_2"}}
	if r == nil || !cmp.Equal(r.Metadata, want) {
		t.Errorf("metadata: got %+v, want %v", r, want)
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	c := mustLoad(t, "testdata/valid")
	cases := [][]Entry{
		entries("tenant", "acme", "user", "root"),
		entries("tenant", "acme", "user", "bob"),
		entries("svc", "svc-users-ep-get-rpc"),
		entries("host", "nothing.matches"),
		entries("tenant", "t1", "res", "r9"),
	}
	for _, es := range cases {
		if n := testing.AllocsPerRun(100, func() { c.Match("wildcard", es); c.Match("basic", es) }); n != 0 {
			t.Errorf("Match(%v) allocates %v times, want 0", es, n)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	c := mustLoad(b, "testdata/valid")
	exact := entries("tenant", "acme", "user", "root")
	wild := entries("svc", "svc-users-ep-get-rpc")
	b.Run("exact", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Match("basic", exact)
		}
	})
	b.Run("wildcard", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Match("wildcard", wild)
		}
	})
}

// BenchmarkAppendKey builds a bucket key into a reused buffer, as the
// server does per descriptor: no allocation once the buffer has room.
func BenchmarkAppendKey(b *testing.B) {
	c := mustLoad(b, "testdata/valid")
	es := entries("tenant", "acme", "user", "root")
	r := c.Match("basic", es)
	if r == nil {
		b.Fatal("no rule")
	}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendKey(buf[:0], es)
	}
}

func TestAppendKey(t *testing.T) {
	c := mustLoad(t, "testdata/valid")
	key := func(domain string, es []Entry) string {
		t.Helper()
		r := c.Match(domain, es)
		if r == nil {
			t.Fatalf("Match(%s, %v) = nil", domain, es)
		}
		return string(r.AppendKey(nil, es))
	}
	if got, want := key("basic", entries("route", "abc")), "5:basic1:15:route3:abc12:fixed_window8:60000000"; got != want {
		t.Errorf("key = %q, want %q", got, want)
	}
	// envoyproxy/ratelimit's a_b + c == a + b_c collision cannot happen.
	rule := &Rule{Domain: "d", Limit: algorithms.Limit{Period: 1}}
	k1 := string(rule.AppendKey(nil, entries("a_b", "c")))
	k2 := string(rule.AppendKey(nil, entries("a", "b_c")))
	k3 := string(rule.AppendKey(nil, entries("a", "b", "c", "")))
	if k1 == k2 || k1 == k3 || k2 == k3 {
		t.Errorf("ambiguous keys: %q %q %q", k1, k2, k3)
	}
	// share_threshold: every matching value shares one bucket; without it
	// each value has its own.
	f1 := key("features", entries("files", "files/a.pdf"))
	f2 := key("features", entries("files", "files/b.csv"))
	if f1 != f2 || !strings.Contains(f1, "7:files/*") {
		t.Errorf("share_threshold keys differ or lack the pattern: %q %q", f1, f2)
	}
	p1 := key("wildcard", entries("path", "/api/x"))
	p2 := key("wildcard", entries("path", "/api/y"))
	if p1 == p2 {
		t.Errorf("wildcard without share_threshold shares a bucket: %q", p1)
	}
	// share_threshold at a parent level applies to the rule below it.
	n1 := key("wildcard", entries("tenant", "t1", "res", "r1"))
	n2 := key("wildcard", entries("tenant", "t2", "res", "r1"))
	n3 := key("wildcard", entries("tenant", "t2", "res", "r2"))
	if n1 != n2 || n2 == n3 {
		t.Errorf("nested share_threshold keys: %q %q %q", n1, n2, n3)
	}
	// A unit change moves to a new bucket.
	r1, _ := OverrideRule("basic", entries("route", "abc"), 20, Minute)
	r2, _ := OverrideRule("basic", entries("route", "abc"), 20, Hour)
	if bytes.Equal(r1.AppendKey(nil, entries("route", "abc")), r2.AppendKey(nil, entries("route", "abc"))) {
		t.Error("a unit change keeps the bucket key")
	}
	// No allocation with room in dst.
	r := c.Match("wildcard", entries("tenant", "t1", "res", "r1"))
	es := entries("tenant", "t1", "res", "r1")
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = r.AppendKey(buf[:0], es) }); n != 0 {
		t.Errorf("AppendKey allocates %v times, want 0", n)
	}
}

func TestOverrideRule(t *testing.T) {
	r, err := OverrideRule("api", entries("user", "alice", "path", ""), 42, Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := &Rule{
		Domain: "api", Path: "api.user=alice.path", StatKey: "api.user_alice.path",
		RequestsPerUnit: 42, Unit: Hour, Limit: algorithms.Limit{Rate: 42, Period: algorithms.Hour},
	}
	if diff := cmp.Diff(want, r, cmp.AllowUnexported(Rule{}), cmpopts.IgnoreFields(Rule{}, "Limits")); diff != "" {
		t.Errorf("OverrideRule (-want +got):\n%s", diff)
	}
	for _, u := range []Unit{UnitUnknown, 8, -1} {
		if _, err := OverrideRule("api", nil, 1, u); err == nil || !strings.HasPrefix(err.Error(), "config: ") {
			t.Errorf("OverrideRule(unit %d) error = %v, want a config: error", u, err)
		}
	}
}

func TestUnits(t *testing.T) {
	want := []struct {
		name   string
		unit   Unit
		period int64
	}{
		{"second", Second, algorithms.Second},
		{"minute", Minute, 60 * algorithms.Second},
		{"hour", Hour, 3600 * algorithms.Second},
		{"day", Day, 86400 * algorithms.Second},
		{"week", Week, 7 * 86400 * algorithms.Second},
		{"month", Month, 30 * 86400 * algorithms.Second},
		{"year", Year, 365 * 86400 * algorithms.Second},
	}
	for _, w := range want {
		for _, s := range []string{w.name, strings.ToUpper(w.name)} {
			if u, err := ParseUnit(s); err != nil || u != w.unit {
				t.Errorf("ParseUnit(%q) = %v, %v; want %v", s, u, err, w.unit)
			}
		}
		if got := w.unit.String(); got != w.name {
			t.Errorf("%d.String() = %q, want %q", w.unit, got, w.name)
		}
		if got := UnitPeriod(w.unit); got != w.period {
			t.Errorf("UnitPeriod(%v) = %d, want %d", w.unit, got, w.period)
		}
	}
	for _, s := range []string{"", "unknown", "minutes", "fortnight"} {
		if _, err := ParseUnit(s); err == nil {
			t.Errorf("ParseUnit(%q) succeeded", s)
		}
	}
	if UnitUnknown.String() != "unknown" || UnitPeriod(UnitUnknown) != 0 {
		t.Error("UnitUnknown has a name or a period")
	}
}

func writeTestFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	// A Kubernetes ConfigMap mount: dir/x.yaml -> ..data/x.yaml,
	// ..data -> ..2026_01_01/.
	stamp := filepath.Join(dir, "..2026_01_01")
	if err := os.Mkdir(stamp, 0o755); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(stamp, "cm.yaml"), "domain: cm\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n")
	if err := os.Symlink("..2026_01_01", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "cm.yaml"), filepath.Join(dir, "cm.yaml")); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, "plain.yml"), "domain: plain\n")
	writeTestFile(t, filepath.Join(dir, ".hidden.yaml"), "not: valid: yaml: [")
	writeTestFile(t, filepath.Join(dir, "notes.txt"), "not yaml")
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, "sub.yaml", "nested.yaml"), "domain: nested\n")

	c, err := Load(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"cm", "plain"}, c.Domains()); diff != "" {
		t.Errorf("domains (-want +got):\n%s", diff)
	}
	if r := c.Match("cm", entries("k", "v")); r == nil || r.File != filepath.Join(dir, "cm.yaml") {
		t.Errorf("symlinked file: Match = %+v", r)
	}

	// A single file loads whatever its name; a missing path is a config: error.
	if _, err := Load(filepath.Join(dir, "cm.yaml"), Options{}); err != nil {
		t.Errorf("Load(file): %v", err)
	}
	_, err = Load(filepath.Join(dir, "missing"), Options{})
	var errs Errors
	if err == nil || errors.As(err, &errs) || !strings.HasPrefix(err.Error(), "config: ") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want a wrapped config: error", err)
	}

	// An empty directory is an empty, valid config.
	c, err = Load(t.TempDir(), Options{})
	if err != nil || len(c.Rules()) != 0 || c.HasDomain("cm") {
		t.Errorf("empty dir: %v, %v", c, err)
	}
}

func TestHash(t *testing.T) {
	a := File{Name: "a.yaml", Data: []byte("domain: a\n")}
	b := File{Name: "b.yaml", Data: []byte("domain: b\n")}
	c1, _ := Parse([]File{a, b}, Options{})
	c2, _ := Parse([]File{b, a}, Options{})
	if c1.Hash() != c2.Hash() || len(c1.Hash()) != 64 {
		t.Errorf("hash depends on file order or is not hex sha256: %q %q", c1.Hash(), c2.Hash())
	}
	b2 := File{Name: "b.yaml", Data: []byte("domain: b \n")}
	c3, _ := Parse([]File{a, b2}, Options{})
	if c3.Hash() == c1.Hash() {
		t.Error("hash ignores content")
	}
	// Moving bytes between name and content changes the hash.
	x, _ := Parse([]File{{Name: "ab", Data: []byte("domain: c")}}, Options{})
	y, _ := Parse([]File{{Name: "a", Data: []byte("bdomain: c")}}, Options{})
	if y != nil && x.Hash() == y.Hash() {
		t.Error("hash is ambiguous")
	}
	if h := hashFiles([]File{{Name: "ab", Data: []byte("x")}}); h == hashFiles([]File{{Name: "a", Data: []byte("bx")}}) {
		t.Error("hashFiles is ambiguous")
	}
}

// TestExamplesLoad loads every rate-limit config of the examples: by
// convention they live in examples/<name>/config/; other YAML under
// examples is Envoy or Kubernetes config.
func TestExamplesLoad(t *testing.T) {
	dirs, err := filepath.Glob("../examples/*/config")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		more, _ := filepath.Glob(filepath.Join(dir, "*.yml"))
		files = append(files, more...)
		if len(files) == 0 {
			continue
		}
		found += len(files)
		c, err := Load(dir, Options{})
		if err != nil {
			t.Errorf("Load(%s):\n%v", dir, err)
			continue
		}
		if len(c.Rules()) == 0 {
			t.Errorf("%s declares no rules", dir)
		}
	}
	if _, err := os.Stat("../examples/quickstart/config"); err == nil && found == 0 {
		t.Error("examples/quickstart/config exists but holds no *.yaml")
	}
	t.Logf("loaded %d example config files", found)
}

func TestErrorRendering(t *testing.T) {
	e := &Error{File: "f.yaml", Path: "d.k=v", Message: "bad"}
	if got := e.Error(); got != "f.yaml: d.k=v: bad" {
		t.Errorf("Error() = %q", got)
	}
	e.Path = ""
	if got := e.Error(); got != "f.yaml: bad" {
		t.Errorf("Error() without path = %q", got)
	}
}

func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/*/*.yaml", "testdata/invalid/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data, "k", "v")
		}
	}
	f.Add([]byte("domain: d\ndescriptors:\n  - key: k\n    value: '*a*b*'\n    rate_limit: {unit: second, requests_per_unit: 1}\n"), "k", "xaYbZ")
	f.Fuzz(func(t *testing.T, data []byte, key, value string) {
		c, err := Parse([]File{{Name: "fuzz.yaml", Data: data}}, Options{})
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 || c != nil {
				t.Fatalf("error %v (%T) with config %v", err, err, c)
			}
			return
		}
		// Success implies matching works, for config paths and for
		// random entries.
		probes := [][]Entry{{{key, value}}, {{key, value}, {value, key}}, nil}
		for _, r := range c.Rules() {
			if !c.HasDomain(r.Domain) {
				t.Fatalf("rule %s of undeclared domain", r.Path)
			}
			if !r.Unlimited && r.Limit.Period <= 0 {
				t.Fatalf("rule %s has period %d", r.Path, r.Limit.Period)
			}
		}
		for _, d := range c.Domains() {
			for _, es := range probes {
				if r := c.Match(d, es); r != nil {
					if r.Domain != d {
						t.Fatalf("Match(%s) gave a rule of %s", d, r.Domain)
					}
					k := r.AppendKey(nil, es)
					if r.HashTag != "" {
						// "{" + 8 hex digits + "}", then the untagged key.
						if len(k) < 10 || k[0] != '{' || k[9] != '}' || bytes.ContainsAny(k[1:9], "{}") {
							t.Fatalf("key %q of a rule with hash_tag %q has no tag", k, r.HashTag)
						}
						k = k[10:]
					}
					if !bytes.HasPrefix(k, appendField(nil, d)) {
						t.Fatalf("key %q does not start with the domain", k)
					}
				}
			}
		}
		if slices.ContainsFunc(c.Rules(), func(r *Rule) bool { return r == nil }) {
			t.Fatal("nil rule")
		}
	})
}

// TestDocsExample keeps docs/config.md honest: its complete example loads
// and matches as its table says.
func TestDocsExample(t *testing.T) {
	c := docsExample(t, "## A complete example")
	tests := []struct {
		entries []Entry
		want    string
	}{
		{entries("api_key", "abc"), "api.api_key"},
		{entries("api_key", "partner-1234"), "api.api_key=partner-1234"},
		{entries("api_key", "internal-ci"), "api.api_key=internal-*"},
		{entries("path", "/api/uploads/a", "method", "POST"), "api.path=/api/uploads/*.method=POST"},
		{entries("path", "/api/uploads/a"), ""},
		{entries("path", "/api/uploads/a", "method", "GET"), ""},
		{entries("api_key", "abc", "path", "/x"), ""},
	}
	for _, tt := range tests {
		got := ""
		if r := c.Match("api", tt.entries); r != nil {
			got = r.Path
		}
		if got != tt.want {
			t.Errorf("Match(%v) = %q, want %q", tt.entries, got, tt.want)
		}
	}
	r := c.Match("api", entries("route", "abc"))
	if r != nil {
		t.Errorf("unexpected rule %s", r.Path)
	}
	// The bucket key example, shown with spaces between fields.
	es := entries("route", "abc")
	k := string(mustLoad(t, "testdata/valid").Match("basic", es).AppendKey(nil, es))
	shown := "5:basic 1:1 5:route 3:abc 12:fixed_window 8:60000000"
	doc, _ := os.ReadFile("../docs/config.md")
	if k != strings.ReplaceAll(shown, " ", "") || !strings.Contains(string(doc), shown) {
		t.Errorf("docs key example is out of date; the key is %q", k)
	}
}

func TestAliasBombIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("domain: d\nanchors:\n  - &l0 [{key: a}, {key: b}]\n")
	for i := 1; i < 25; i++ {
		fmt.Fprintf(&b, "  - &l%d [{key: a, descriptors: *l%d}, {key: b, descriptors: *l%d}]\n", i, i-1, i-1)
	}
	b.WriteString("descriptors: *l24\n")
	_, err := Parse([]File{{Name: "bomb.yaml", Data: []byte(b.String())}}, Options{})
	got := errorStrings(t, err)
	want := []string{
		`bomb.yaml: d: unknown key "anchors" (want domain, descriptors, hash_tag, tiers, disabled, idempotency, policies)`,
		`bomb.yaml: d.a.a.a.a.a.a.a.a.a.b.b.a.a.a.a.b.b.a.b.a.a.b: file has more than 100000 descriptors`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

// docsExample parses the first YAML block of docs/config.md after heading.
func docsExample(t *testing.T, heading string) *Config {
	t.Helper()
	doc, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Skip("docs/config.md not found:", err)
	}
	_, rest, ok := strings.Cut(string(doc), heading)
	if !ok {
		t.Fatalf("docs/config.md has no %q", heading)
	}
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	example, _, _ := strings.Cut(rest, "```")
	c, err := Parse([]File{{Name: "docs/config.md", Data: []byte(example)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
