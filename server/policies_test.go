package server

import (
	"context"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/ratelimitd/ratelimitd/config"
	"github.com/ratelimitd/ratelimitd/overrides"
)

const policyConfig = `domain: api
tiers:
  key: tier
  default: user
  multipliers: {admin: 10, user: 1, anon: 0.5, banned: 0}
idempotency: {key: idempotency_key, ttl: 10m}
policies:
  starter:
    requests: {requests_per_unit: 3, unit: hour}
    tokens: {requests_per_unit: 100, unit: hour}
  pro:
    requests: {requests_per_unit: 30, unit: hour}
    tokens: {requests_per_unit: 1000, unit: hour}
descriptors:
  - key: api_key
    max_override: {requests_per_unit: 8, unit: minute}
    rate_limit: {requests_per_unit: 4, unit: minute, name: per-key}
  - key: internal
    rate_limit: {unlimited: true}
  - key: gcra_key
    rate_limit: {requests_per_unit: 60, unit: minute, algorithm: gcra, burst: 2}
  - key: vk
    policy: starter
    descriptors:
      - key: meter
        value: tokens
        policy: starter
        meter: tokens
        charge_always: true
`

func policyEnv(t *testing.T, o Options) *env {
	t.Helper()
	return newEnv(t, policyConfig, o)
}

// call sends req and fails the test on an error.
func call(t *testing.T, e *env, req *rlsv3.RateLimitRequest) *resp {
	t.Helper()
	r, err := e.rls.ShouldRateLimit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestTiersScaleLimits(t *testing.T) {
	e := policyEnv(t, Options{})
	for _, tc := range []struct {
		tier  string // "" sends no tier entry
		key   string
		limit uint32
	}{
		{"", "k-default", 4},
		{"user", "k-user", 4},
		{"admin", "k-admin", 40},
		{"anon", "k-anon", 2},
		{"nobody-knows", "k-unknown", 4}, // an unknown tier is the default's
	} {
		d := desc("api_key", tc.key)
		if tc.tier != "" {
			d = desc("tier", tc.tier, "api_key", tc.key)
		}
		allowed := 0
		for range 50 {
			r := call(t, e, rq("api", d))
			if r.OverallCode == OK {
				allowed++
			}
			if got := r.Statuses[0].CurrentLimit.GetRequestsPerUnit(); got != tc.limit {
				t.Fatalf("tier %q: current_limit %d, want %d", tc.tier, got, tc.limit)
			}
		}
		if allowed != int(tc.limit) {
			t.Errorf("tier %q: %d allowed, want %d", tc.tier, allowed, tc.limit)
		}
	}
}

func TestTierKeepsOneBucket(t *testing.T) {
	e := policyEnv(t, Options{})
	// Two calls as user, then as admin: the same bucket, seen with the
	// admin's larger limit.
	call(t, e, rq("api", desc("tier", "user", "api_key", "k")))
	call(t, e, rq("api", desc("tier", "user", "api_key", "k")))
	r := call(t, e, rq("api", desc("tier", "admin", "api_key", "k")))
	if got := r.Statuses[0].LimitRemaining; got != 37 {
		t.Errorf("admin after two user calls: remaining %d, want 37 (40 - 3)", got)
	}
}

func TestTierZeroBlocks(t *testing.T) {
	e := policyEnv(t, Options{HeaderStyle: HeadersDraft03})
	r := call(t, e, rq("api", desc("tier", "banned", "api_key", "k"), desc("api_key", "other")))
	if r.OverallCode != OVER || r.Statuses[0].Code != OVER || r.Statuses[0].CurrentLimit.GetRequestsPerUnit() != 0 {
		t.Fatalf("banned tier: %v", r)
	}
	// The other descriptor was not charged (all or nothing, and no backend
	// call charged it).
	r = call(t, e, rq("api", desc("api_key", "other")))
	if got := r.Statuses[0].LimitRemaining; got != 3 {
		t.Errorf("other key after the blocked call: remaining %d, want 3", got)
	}
}

func TestDisabledDomain(t *testing.T) {
	e := newEnv(t, "domain: off\ndisabled: true\ndescriptors:\n  - key: k\n    rate_limit: {requests_per_unit: 1, unit: hour}\n", Options{})
	for range 3 {
		r := call(t, e, rq("off", desc("k", "v")))
		if diff := cmp.Diff(overall(OK, okStatus()), r, protocmp.Transform()); diff != "" {
			t.Fatalf("disabled domain (-want +got):\n%s", diff)
		}
	}
}

// staticOverrides serves a fixed set.
func staticOverrides(list ...*overrides.Override) func() *overrides.Set {
	s := overrides.NewSet(list)
	return func() *overrides.Set { return s }
}

func TestOverrides(t *testing.T) {
	ovs := staticOverrides(
		&overrides.Override{Domain: "api", Entries: []config.Entry{{Key: "api_key", Value: "raised"}}, Kind: overrides.Limit, RequestsPerUnit: 6, Unit: config.Minute},
		&overrides.Override{Domain: "api", Entries: []config.Entry{{Key: "api_key", Value: "capped"}}, Kind: overrides.Limit, RequestsPerUnit: 100, Unit: config.Minute},
		&overrides.Override{Domain: "api", Entries: []config.Entry{{Key: "api_key", Value: "free"}}, Kind: overrides.Unlimited},
		&overrides.Override{Domain: "api", Entries: []config.Entry{{Key: "internal", Value: "svc"}}, Kind: overrides.Limit, RequestsPerUnit: 2, Unit: config.Minute},
		&overrides.Override{Domain: "api", Entries: []config.Entry{{Key: "vk", Value: "big"}}, Kind: overrides.Policy, Policy: "pro"},
	)
	e := policyEnv(t, Options{Overrides: ovs})
	type overrideCase struct {
		name  string
		d     []string
		limit uint32 // 0: unlimited
		calls uint32 // calls on the key so far, this one included
	}
	cases := []overrideCase{
		{"raised", []string{"api_key", "raised"}, 6, 1},
		{"capped by max_override", []string{"api_key", "capped"}, 8, 1},
		{"unlimited under a ceiling gets the ceiling", []string{"api_key", "free"}, 8, 1},
		{"limit on an unlimited rule", []string{"internal", "svc"}, 2, 1},
		{"no override on an unlimited rule", []string{"internal", "other"}, 0, 1},
		{"policy override", []string{"vk", "big"}, 30, 1},
		{"the rule's policy", []string{"vk", "small"}, 3, 1},
		{"policy override, tokens meter", []string{"vk", "big", "meter", "tokens"}, 1000, 1},
		{"tier does not scale a limit override", []string{"tier", "admin", "api_key", "raised"}, 6, 2},
		{"tier scales a policy override", []string{"tier", "admin", "vk", "big"}, 300, 2},
	}
	for _, tc := range cases {
		r := call(t, e, rq("api", desc(tc.d...)))
		st := r.Statuses[0]
		if tc.limit == 0 {
			if st.LimitRemaining != 4294967295 || st.CurrentLimit != nil {
				t.Errorf("%s: want unlimited, got %v", tc.name, st)
			}
			continue
		}
		if got := st.CurrentLimit.GetRequestsPerUnit(); got != tc.limit {
			t.Errorf("%s: limit %d, want %d", tc.name, got, tc.limit)
		}
		if got := st.LimitRemaining; got != tc.limit-tc.calls {
			t.Errorf("%s: remaining %d, want %d", tc.name, got, tc.limit-tc.calls)
		}
	}
}

func TestOverrideKeepsBucketWithSamePeriod(t *testing.T) {
	ovs := func() *overrides.Set { return overrides.NewSet(nil) }
	var cur func() *overrides.Set = ovs
	e := policyEnv(t, Options{Overrides: func() *overrides.Set { return cur() }})
	for range 3 {
		call(t, e, rq("api", desc("api_key", "k")))
	}
	// Raising the limit to 6 per minute keeps the count of 3.
	cur = staticOverrides(&overrides.Override{Domain: "api", Entries: []config.Entry{{Key: "api_key", Value: "k"}}, Kind: overrides.Limit, RequestsPerUnit: 6, Unit: config.Minute})
	r := call(t, e, rq("api", desc("api_key", "k")))
	if got := r.Statuses[0].LimitRemaining; got != 2 {
		t.Errorf("after raising to 6: remaining %d, want 2", got)
	}
}

func TestChargeAlwaysCountsUsageOverTheLimit(t *testing.T) {
	e := policyEnv(t, Options{})
	tokens := func(n uint64) *resp {
		return call(t, e, rq("api", withHits(desc("vk", "v", "meter", "tokens"), n)))
	}
	if r := tokens(80); r.OverallCode != OK || r.Statuses[0].LimitRemaining != 20 {
		t.Fatalf("80 tokens: %v", r)
	}
	// 50 more tokens were used already: counted although over the limit.
	if r := tokens(50); r.OverallCode != OVER {
		t.Fatalf("50 more: %v", r)
	}
	if r := tokens(0); r.Statuses[0].LimitRemaining != 0 || r.OverallCode != OVER {
		t.Fatalf("check after (130 of 100 used): %v", r)
	}
	// A check of 1 token is refused: 130 of 100 are used.
	if r := tokens(1); r.OverallCode != OVER {
		t.Fatalf("one more token: %v", r)
	}
}

func TestIdempotentReplay(t *testing.T) {
	e := policyEnv(t, Options{})
	first := call(t, e, rq("api", desc("api_key", "k", "idempotency_key", "req-1")))
	for range 5 {
		again := call(t, e, rq("api", desc("api_key", "k", "idempotency_key", "req-1")))
		if diff := cmp.Diff(first, again, protocmp.Transform()); diff != "" {
			t.Fatalf("replay differs (-first +replay):\n%s", diff)
		}
	}
	// Replays consumed nothing: 4 - 1 = 3 left, this call takes one.
	r := call(t, e, rq("api", desc("api_key", "k", "idempotency_key", "req-2")))
	if got := r.Statuses[0].LimitRemaining; got != 2 {
		t.Errorf("after 1 call and 5 replays, a new call sees remaining %d, want 2", got)
	}
	// The idempotency entry is not part of the bucket key.
	r = call(t, e, rq("api", desc("api_key", "k")))
	if got := r.Statuses[0].LimitRemaining; got != 1 {
		t.Errorf("without the key: remaining %d, want 1", got)
	}
}

func TestHeaderStylesOnAnswers(t *testing.T) {
	for _, tc := range []struct {
		style HeaderStyle
		want  []*corev3.HeaderValue
	}{
		{HeadersDraft03, []*corev3.HeaderValue{
			{Key: "X-RateLimit-Limit", Value: "4"},
			{Key: "X-RateLimit-Remaining", Value: "3"},
			{Key: "X-RateLimit-Reset", Value: "45"},
		}},
		{HeadersIETF, []*corev3.HeaderValue{
			{Key: "RateLimit-Policy", Value: `"per-key";q=4;w=60`},
			{Key: "RateLimit", Value: `"per-key";r=3;t=45`},
		}},
	} {
		e := policyEnv(t, Options{HeaderStyle: tc.style})
		r := call(t, e, rq("api", desc("api_key", "k")))
		if diff := cmp.Diff(tc.want, r.ResponseHeadersToAdd, protocmp.Transform()); diff != "" {
			t.Errorf("%v (-want +got):\n%s", tc.style, diff)
		}
	}
}

func TestOverLimitBodies(t *testing.T) {
	e := policyEnv(t, Options{HeaderStyle: HeadersDraft03, Body: BodyProblemJSON})
	var r *resp
	for range 5 {
		r = call(t, e, rq("api", desc("api_key", "k")))
	}
	if r.OverallCode != OVER {
		t.Fatalf("5th call: %v", r.OverallCode)
	}
	want := `{"type":"` + DefaultProblemType + `","title":"Rate limit exceeded","status":429,"detail":"Rate limit exceeded: 4 per 1 minute","policy":"per-key","violated-policies":["per-key"],"retry_after":45}`
	if string(r.RawBody) != want {
		t.Errorf("body:\n got %s\nwant %s", r.RawBody, want)
	}
	hdr := map[string]string{}
	for _, h := range r.ResponseHeadersToAdd {
		hdr[h.Key] = h.Value
	}
	if hdr["Content-Type"] != "application/problem+json" || hdr["Retry-After"] != "45" || hdr["X-RateLimit-Remaining"] != "0" {
		t.Errorf("headers: %v", hdr)
	}
	// Allowed answers carry no body.
	ok := call(t, e, rq("api", desc("api_key", "other")))
	if ok.RawBody != nil {
		t.Errorf("allowed answer has a body: %s", ok.RawBody)
	}
}

func TestIdempotencyKeyWithOtherDescriptors(t *testing.T) {
	e := policyEnv(t, Options{})
	first := call(t, e, rq("api", desc("api_key", "k", "idempotency_key", "req-1")))
	// The stream-end call of the same request reuses the key with another
	// descriptor: decided on its own, not answered with the first answer.
	tokens := call(t, e, rq("api", withHits(desc("vk", "v", "meter", "tokens", "idempotency_key", "req-1"), 30)))
	if got := tokens.Statuses[0].LimitRemaining; got != 70 {
		t.Errorf("tokens call: remaining %d, want 70", got)
	}
	again := call(t, e, rq("api", withHits(desc("vk", "v", "meter", "tokens", "idempotency_key", "req-1"), 30)))
	if got := again.Statuses[0].LimitRemaining; got != 70 {
		t.Errorf("its replay: remaining %d, want 70 (the first answer)", got)
	}
	if first.Statuses[0].LimitRemaining != 3 {
		t.Errorf("first: %v", first)
	}
}
