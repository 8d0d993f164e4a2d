package server

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/config"
)

// hdrNow is the instant of every answer of these tests: 0.25 s into a
// second, so that Unix reset times show their rounding.
var hdrNow = time.Date(2026, 3, 1, 12, 0, 0, 250_000_000, time.UTC) // Unix 1772366400

const hdrSec = algorithms.Second

// hdrFixed is a fixed-window limit of rpu hits per mult units, as config
// compiles it.
func hdrFixed(name string, rpu uint32, unit config.Unit, mult uint32) config.RuleLimit {
	return config.RuleLimit{
		Name: name, RequestsPerUnit: rpu, Unit: unit, UnitMultiplier: mult,
		Limit: algorithms.Limit{Algorithm: algorithms.FixedWindow, Rate: int64(rpu), Period: config.UnitPeriod(unit) * int64(mult)},
	}
}

// hdrConc is a concurrency limit of n in flight with a 30-minute lease.
func hdrConc(name string, n uint32) config.RuleLimit {
	return config.RuleLimit{
		Name: name, RequestsPerUnit: n, UnitMultiplier: 1,
		Limit: algorithms.Limit{Algorithm: algorithms.Concurrency, Rate: int64(n), Period: 30 * algorithms.Minute},
	}
}

func hdrList(kv ...string) []*corev3.HeaderValue {
	var l []*corev3.HeaderValue
	for i := 0; i+1 < len(kv); i += 2 {
		l = append(l, &corev3.HeaderValue{Key: kv[i], Value: kv[i+1]})
	}
	return l
}

// Decisions used below.
var (
	// 498 of 500 left, 12.3 s to the end of the window.
	hdrAllowed = algorithms.Decision{Allowed: true, Remaining: 498, ResetAfter: 12_300_000, Count: 2}
	// Refused in a fixed window: retry when it ends.
	hdrOverFixed = algorithms.Decision{Remaining: 0, ResetAfter: 12_300_000, RetryAfter: 12_300_000, Count: 500}
	// Refused by a token bucket: a token in 1.2 s, full in 30 s.
	hdrOverBucket = algorithms.Decision{Remaining: 0, ResetAfter: 30 * hdrSec, RetryAfter: 1_200_000, Count: 100}
)

func TestClientHeaders(t *testing.T) {
	api := hdrFixed("api", 500, config.Minute, 1)
	ref := responseOptions{Style: HeadersReference}
	draft := responseOptions{Style: HeadersDraft03}
	ietf := responseOptions{Style: HeadersIETF}
	both := responseOptions{Style: HeadersBoth}
	monthWindow := api
	monthWindow.Limit.Period = 30 * algorithms.Day
	monthWindow.Limit.WindowStart = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	monthWindow.Limit.WindowEnd = time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	bigBucket := config.RuleLimit{Name: "big", RequestsPerUnit: math.MaxUint32, Unit: config.Second, UnitMultiplier: 1,
		Limit: algorithms.Limit{Algorithm: algorithms.TokenBucket, Rate: 5_000_000_000, Period: hdrSec}}

	for _, tc := range []struct {
		name string
		o    responseOptions
		v    limitView
		want []*corev3.HeaderValue
	}{
		{"off", responseOptions{}, limitView{Policy: "api", Limit: api, Decision: hdrOverFixed, Over: true}, nil},
		{"unknown style", responseOptions{Style: 42}, limitView{Policy: "api", Limit: api, Decision: hdrOverFixed, Over: true}, nil},

		// reference: envoyproxy/ratelimit's headers, never Retry-After.
		{"reference allowed", ref, limitView{Policy: "api", Limit: api, Decision: hdrAllowed},
			hdrList("RateLimit-Limit", "500", "RateLimit-Remaining", "498", "RateLimit-Reset", "13")},
		{"reference over", ref, limitView{Policy: "api", Limit: api, Decision: hdrOverFixed, Over: true},
			hdrList("RateLimit-Limit", "500", "RateLimit-Remaining", "0", "RateLimit-Reset", "13")},
		{"reference names", responseOptions{Style: HeadersReference, HeaderLimit: "L", HeaderRemaining: "R", HeaderReset: "X-Reset"},
			limitView{Policy: "api", Limit: api, Decision: hdrAllowed},
			hdrList("L", "500", "R", "498", "X-Reset", "13")},
		{"reference remaining clamped as limit_remaining", ref,
			limitView{Policy: "big", Limit: bigBucket, Decision: algorithms.Decision{Allowed: true, Remaining: 4_999_999_999}},
			hdrList("RateLimit-Limit", "5000000000", "RateLimit-Remaining", "4294967295", "RateLimit-Reset", "0")},

		// draft03.
		{"draft03 allowed", draft, limitView{Policy: "api", Limit: api, Decision: hdrAllowed},
			hdrList("X-RateLimit-Limit", "500", "X-RateLimit-Remaining", "498", "X-RateLimit-Reset", "13")},
		{"draft03 over", draft, limitView{Policy: "api", Limit: api, Decision: hdrOverFixed, Over: true},
			hdrList("X-RateLimit-Limit", "500", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "13", "Retry-After", "13")},
		{"draft03 unix reset", responseOptions{Style: HeadersDraft03, ResetUnix: true}, limitView{Policy: "api", Limit: api, Decision: hdrAllowed},
			hdrList("X-RateLimit-Limit", "500", "X-RateLimit-Remaining", "498", "X-RateLimit-Reset", "1772366413")}, // 12:00:12.55 up
		{"draft03 unix reset exact", responseOptions{Style: HeadersDraft03, ResetUnix: true},
			limitView{Policy: "api", Limit: api, Decision: algorithms.Decision{Allowed: true, Remaining: 1, ResetAfter: 12_750_000}},
			hdrList("X-RateLimit-Limit", "500", "X-RateLimit-Remaining", "1", "X-RateLimit-Reset", "1772366413")}, // 12:00:13.000000
		{"draft03 unix reset just past", responseOptions{Style: HeadersDraft03, ResetUnix: true},
			limitView{Policy: "api", Limit: api, Decision: algorithms.Decision{Allowed: true, Remaining: 1, ResetAfter: 12_750_001}},
			hdrList("X-RateLimit-Limit", "500", "X-RateLimit-Remaining", "1", "X-RateLimit-Reset", "1772366414")},
		{"draft03 bucket over retries before reset", draft,
			limitView{Policy: "b", Limit: hdrFixed("b", 100, config.Second, 1), Decision: hdrOverBucket, Over: true},
			hdrList("X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "30", "Retry-After", "2")},
		{"draft03 concurrency", draft, limitView{Policy: "runs", Limit: hdrConc("runs", 50),
			Decision: algorithms.Decision{Allowed: true, Remaining: 48, ResetAfter: 30 * algorithms.Minute}},
			hdrList("X-RateLimit-Limit", "50", "X-RateLimit-Remaining", "48", "X-RateLimit-Reset", "1800")},

		// ietf.
		{"ietf allowed", ietf, limitView{Policy: "api", Limit: api, Decision: hdrAllowed},
			hdrList("RateLimit-Policy", `"api";q=500;w=60`, "RateLimit", `"api";r=498;t=13`)},
		{"ietf over", ietf, limitView{Policy: "api", Limit: api, Decision: hdrOverFixed, Over: true},
			hdrList("RateLimit-Policy", `"api";q=500;w=60`, "RateLimit", `"api";r=0;t=13`, "Retry-After", "13")},
		{"ietf bucket over: t is the retry, not the full refill", ietf,
			limitView{Policy: "b", Limit: hdrFixed("b", 100, config.Second, 1), Decision: hdrOverBucket, Over: true},
			hdrList("RateLimit-Policy", `"b";q=100;w=1`, "RateLimit", `"b";r=0;t=2`, "Retry-After", "2")},
		{"ietf refused but answered OK (shadow): no Retry-After", ietf,
			limitView{Policy: "api", Limit: api, Decision: hdrOverFixed},
			hdrList("RateLimit-Policy", `"api";q=500;w=60`, "RateLimit", `"api";r=0;t=13`)},
		{"ietf concurrency allowed", ietf, limitView{Policy: "runs", Limit: hdrConc("runs", 50),
			Decision: algorithms.Decision{Allowed: true, Remaining: 48, ResetAfter: 30 * algorithms.Minute}},
			hdrList("RateLimit-Policy", `"runs";q=50;qu="concurrent-requests"`, "RateLimit", `"runs";r=48`)},
		{"ietf concurrency over", ietf, limitView{Policy: "runs", Limit: hdrConc("runs", 50),
			Decision: algorithms.Decision{ResetAfter: 30 * algorithms.Minute, RetryAfter: 5*algorithms.Minute - 1}, Over: true},
			hdrList("RateLimit-Policy", `"runs";q=50;qu="concurrent-requests"`, "RateLimit", `"runs";r=0;t=300`, "Retry-After", "300")},
		{"ietf 90-minute period", ietf, limitView{Policy: "sustained", Limit: config.RuleLimit{Name: "sustained", RequestsPerUnit: 1000, Unit: config.Minute, UnitMultiplier: 90,
			Limit: algorithms.Limit{Rate: 1000, Period: 90 * algorithms.Minute}}, Decision: algorithms.Decision{Allowed: true, Remaining: 999, ResetAfter: 3599 * hdrSec}},
			hdrList("RateLimit-Policy", `"sustained";q=1000;w=5400`, "RateLimit", `"sustained";r=999;t=3599`)},
		{"ietf unit_multiplier", ietf, limitView{Policy: "two", Limit: hdrFixed("two", 7, config.Hour, 2), Decision: algorithms.Decision{Allowed: true, Remaining: 6, ResetAfter: 1}},
			hdrList("RateLimit-Policy", `"two";q=7;w=7200`, "RateLimit", `"two";r=6;t=1`)},
		{"ietf calendar month window", ietf, limitView{Policy: "monthly", Limit: monthWindow, Decision: hdrAllowed},
			hdrList("RateLimit-Policy", `"monthly";q=500;w=2678400`, "RateLimit", `"monthly";r=498;t=13`)},
		{"ietf no window known", ietf, limitView{Policy: "p", Limit: config.RuleLimit{Limit: algorithms.Limit{Rate: 3}}, Decision: algorithms.Decision{Allowed: true, Remaining: 2}},
			hdrList("RateLimit-Policy", `"p";q=3`, "RateLimit", `"p";r=2;t=0`)},

		// Policy names as sf-strings.
		{"ietf escaped name", ietf, limitView{Policy: `a"b\c`, Limit: api, Decision: hdrAllowed},
			hdrList("RateLimit-Policy", `"a\"b\\c";q=500;w=60`, "RateLimit", `"a\"b\\c";r=498;t=13`)},
		{"ietf non-printable name", ietf, limitView{Policy: "x\ny\x7fé\xffz", Limit: api, Decision: hdrAllowed},
			hdrList("RateLimit-Policy", `"x?y???z";q=500;w=60`, "RateLimit", `"x?y???z";r=498;t=13`)},
		{"ietf empty name", ietf, limitView{Limit: api, Decision: hdrAllowed},
			hdrList("RateLimit-Policy", `"";q=500;w=60`, "RateLimit", `"";r=498;t=13`)},

		// both: draft03 then ietf, one Retry-After.
		{"both allowed", both, limitView{Policy: "api", Limit: api, Decision: hdrAllowed},
			hdrList("X-RateLimit-Limit", "500", "X-RateLimit-Remaining", "498", "X-RateLimit-Reset", "13",
				"RateLimit-Policy", `"api";q=500;w=60`, "RateLimit", `"api";r=498;t=13`)},
		{"both over", both, limitView{Policy: "api", Limit: api, Decision: hdrOverFixed, Over: true},
			hdrList("X-RateLimit-Limit", "500", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "13",
				"RateLimit-Policy", `"api";q=500;w=60`, "RateLimit", `"api";r=0;t=13`, "Retry-After", "13")},

		// Odd input.
		{"negative remaining, zero reset", both, limitView{Policy: "api", Limit: api, Decision: algorithms.Decision{Remaining: -5}},
			hdrList("X-RateLimit-Limit", "500", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "0",
				"RateLimit-Policy", `"api";q=500;w=60`, "RateLimit", `"api";r=0;t=0`)},
		{"never fits: Retry-After is the reset", both, limitView{Policy: "api", Limit: api, Decision: algorithms.Decision{ResetAfter: 59_500_000, RetryAfter: -1}, Over: true},
			hdrList("X-RateLimit-Limit", "500", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "60",
				"RateLimit-Policy", `"api";q=500;w=60`, "RateLimit", `"api";r=0;t=60`, "Retry-After", "60")},
		{"never fits, no reset: no Retry-After", both, limitView{Policy: "api", Limit: api, Decision: algorithms.Decision{RetryAfter: -1}, Over: true},
			hdrList("X-RateLimit-Limit", "500", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "0",
				"RateLimit-Policy", `"api";q=500;w=60`, "RateLimit", `"api";r=0;t=0`)},
		{"rate 0 (tier multiplier 0)", draft, limitView{Policy: "anon", Limit: hdrFixed("anon", 0, config.Minute, 1), Decision: algorithms.Decision{ResetAfter: 1, RetryAfter: -1}, Over: true},
			hdrList("X-RateLimit-Limit", "0", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1", "Retry-After", "1")},
		{"blocked tier, as the server describes it", both, limitView{Policy: "anon", Limit: hdrFixed("anon", 0, config.Minute, 1), Decision: algorithms.Decision{RetryAfter: -1}, Over: true},
			hdrList("X-RateLimit-Limit", "0", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "0",
				"RateLimit-Policy", `"anon";q=0;w=60`, "RateLimit", `"anon";r=0;t=0`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, v := tc.o, tc.v
			got := appendClientHeaders(nil, &o, &v, hdrNow)
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClientHeadersAppend(t *testing.T) {
	prev := &corev3.HeaderValue{Key: "X-Other", Value: "1"}
	v := limitView{Policy: "api", Limit: hdrFixed("api", 5, config.Second, 1), Decision: algorithms.Decision{Allowed: true, Remaining: 4, ResetAfter: hdrSec}}
	got := appendClientHeaders([]*corev3.HeaderValue{prev}, &responseOptions{Style: HeadersIETF}, &v, hdrNow)
	want := hdrList("X-Other", "1", "RateLimit-Policy", `"api";q=5;w=1`, "RateLimit", `"api";r=4;t=1`)
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	if got[0] != prev {
		t.Error("the headers already in dst were not kept")
	}
	if got := appendClientHeaders(nil, &responseOptions{}, &v, hdrNow); got != nil {
		t.Errorf("HeadersOff appended %v", got)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for _, tc := range []struct {
		retry, reset, want int64
	}{
		{1, 0, 1},                         // 1 µs: at least 1 s
		{hdrSec, 0, 1},                    // exact
		{hdrSec + 1, 0, 2},                // rounded up
		{1_200_000, 30 * hdrSec, 2},       // the retry, not the reset
		{59 * hdrSec, hdrSec, 59},         // the retry even when after the reset
		{-1, 59_500_000, 60},              // never fits: the reset
		{-1, 1, 1},                        // ... at least 1
		{0, 2_500_000, 3},                 // unknown: the reset
		{-7, 0, 0},                        // neither known
		{-1, -1, 0},                       //
		{math.MaxInt64, 0, 9223372036855}, // no overflow
		{math.MinInt64, math.MaxInt64, 9223372036855},
	} {
		d := algorithms.Decision{RetryAfter: tc.retry, ResetAfter: tc.reset}
		if got := retryAfterSeconds(&d); got != tc.want {
			t.Errorf("retryAfterSeconds(RetryAfter %d, ResetAfter %d) = %d, want %d", tc.retry, tc.reset, got, tc.want)
		}
	}
}

func TestRetryUnixReset(t *testing.T) {
	whole := time.Unix(1772366400, 0)
	for _, tc := range []struct {
		now   time.Time
		after int64
		want  int64
	}{
		{whole, 0, 1772366400},
		{whole, 1, 1772366401},
		{whole, hdrSec, 1772366401},
		{hdrNow, 0, 1772366401}, // 12:00:00.25 rounds up
		{hdrNow, 750_000, 1772366401},
		{hdrNow, 750_001, 1772366402},
		{hdrNow, -5, 1772366401},
		{hdrNow, math.MaxInt64, 1772366400 + math.MaxInt64/hdrSec + 1},
		{time.Unix(math.MaxInt64/2, 999_999_999), math.MaxInt64, math.MaxInt64/2 + math.MaxInt64/hdrSec + 1},
		{time.Unix(math.MaxInt64-5, 0), 10 * hdrSec, math.MaxInt64}, // saturates
		{time.Unix(-10, 500_000_000), 0, -9},                        // before the epoch: -9.5 rounds up to -9
	} {
		if got := unixSecondsUp(tc.now, tc.after); got != tc.want {
			t.Errorf("unixSecondsUp(%v, %d) = %d, want %d", tc.now, tc.after, got, tc.want)
		}
	}
}

func TestParseHeaderStyle(t *testing.T) {
	for _, h := range []HeaderStyle{HeadersOff, HeadersReference, HeadersDraft03, HeadersIETF, HeadersBoth} {
		got, err := ParseHeaderStyle(h.String())
		if err != nil || got != h {
			t.Errorf("ParseHeaderStyle(%q) = %v, %v; want %v", h.String(), got, err, h)
		}
	}
	if got, err := ParseHeaderStyle("IETF"); err != nil || got != HeadersIETF {
		t.Errorf(`ParseHeaderStyle("IETF") = %v, %v`, got, err)
	}
	_, err := ParseHeaderStyle("draft-03")
	if err == nil || err.Error() != `server: header style "draft-03" is not one of off, reference, draft03, ietf, both` {
		t.Errorf("ParseHeaderStyle(draft-03) error = %v", err)
	}
	if s := HeaderStyle(9).String(); s != "unknown" {
		t.Errorf("HeaderStyle(9).String() = %q", s)
	}
}

func TestParseBodyFormat(t *testing.T) {
	for _, b := range []BodyFormat{BodyOff, BodyProblemJSON, BodyJSON} {
		got, err := ParseBodyFormat(b.String())
		if err != nil || got != b {
			t.Errorf("ParseBodyFormat(%q) = %v, %v; want %v", b.String(), got, err, b)
		}
	}
	_, err := ParseBodyFormat("problem")
	if err == nil || err.Error() != `server: body format "problem" is not one of off, problem+json, json` {
		t.Errorf("ParseBodyFormat(problem) error = %v", err)
	}
	if s := BodyFormat(9).String(); s != "unknown" {
		t.Errorf("BodyFormat(9).String() = %q", s)
	}
}

// TestOverLimitBodyBytes pins the exact bytes, field order included, of
// one body of each format.
func TestOverLimitBodyBytes(t *testing.T) {
	v := limitView{Policy: "api", Limit: hdrFixed("api", 500, config.Minute, 1), Decision: hdrOverFixed, Over: true}
	body, ct := overLimitBody(&responseOptions{Body: BodyProblemJSON}, &v)
	want := `{"type":"https://github.com/ratelimitd/ratelimitd/blob/main/docs/responses.md#rate-limit-exceeded","title":"Rate limit exceeded","status":429,"detail":"Rate limit exceeded: 500 per 1 minute","policy":"api","violated-policies":["api"],"retry_after":13}`
	if string(body) != want || ct != "application/problem+json" {
		t.Errorf("problem+json body =\n%s\n%s\nwant\n%s\napplication/problem+json", body, ct, want)
	}
	body, ct = overLimitBody(&responseOptions{Body: BodyJSON}, &v)
	want = `{"error":{"message":"Rate limit exceeded: 500 per 1 minute","type":"rate_limit_error","code":"rate_limit_exceeded","retry_after":13}}`
	if string(body) != want || ct != "application/json" {
		t.Errorf("json body =\n%s\n%s\nwant\n%s\napplication/json", body, ct, want)
	}
	for _, f := range []BodyFormat{BodyOff, 7} {
		if body, ct := overLimitBody(&responseOptions{Body: f}, &v); body != nil || ct != "" {
			t.Errorf("body format %v: got %q, %q; want none", f, body, ct)
		}
	}
}

// TestOverLimitBody decodes every body back and compares it whole.
func TestOverLimitBody(t *testing.T) {
	type problem struct {
		Type             string   `json:"type"`
		Title            string   `json:"title"`
		Status           int      `json:"status"`
		Detail           string   `json:"detail"`
		Policy           string   `json:"policy"`
		ViolatedPolicies []string `json:"violated-policies"`
		RetryAfter       *int64   `json:"retry_after"`
	}
	type apiError struct {
		Error struct {
			Message    string `json:"message"`
			Type       string `json:"type"`
			Code       string `json:"code"`
			RetryAfter *int64 `json:"retry_after"`
		} `json:"error"`
	}
	n := func(v int64) *int64 { return &v }
	sustained := config.RuleLimit{Name: "sustained", RequestsPerUnit: 1000, Unit: config.Minute, UnitMultiplier: 90,
		Limit: algorithms.Limit{Rate: 1000, Period: 90 * algorithms.Minute}}
	bare := config.RuleLimit{Limit: algorithms.Limit{Rate: 30, Period: 3 * algorithms.Hour}} // no unit: from the period
	odd := config.RuleLimit{Limit: algorithms.Limit{Rate: 30, Period: 2_500_000}}            // not whole seconds
	for _, tc := range []struct {
		name        string
		o           responseOptions
		v           limitView
		detail      string
		retry       *int64
		problemType string
	}{
		{"minute", responseOptions{}, limitView{Policy: "api", Limit: hdrFixed("api", 500, config.Minute, 1), Decision: hdrOverFixed, Over: true},
			"Rate limit exceeded: 500 per 1 minute", n(13), DefaultProblemType},
		{"90 minutes", responseOptions{}, limitView{Policy: "sustained", Limit: sustained, Decision: algorithms.Decision{ResetAfter: 3599 * hdrSec, RetryAfter: 3599 * hdrSec}, Over: true},
			"Rate limit exceeded: 1000 per 90 minutes", n(3599), DefaultProblemType},
		{"unit_multiplier", responseOptions{}, limitView{Policy: "s", Limit: hdrFixed("s", 3, config.Second, 30), Decision: hdrOverBucket, Over: true},
			"Rate limit exceeded: 3 per 30 seconds", n(2), DefaultProblemType},
		{"period without unit", responseOptions{}, limitView{Policy: "bare", Limit: bare, Decision: hdrOverBucket, Over: true},
			"Rate limit exceeded: 30 per 3 hours", n(2), DefaultProblemType},
		{"odd period", responseOptions{}, limitView{Policy: "odd", Limit: odd, Decision: hdrOverBucket, Over: true},
			"Rate limit exceeded: 30 per 3 seconds", n(2), DefaultProblemType},
		{"no window", responseOptions{}, limitView{Policy: "none", Limit: config.RuleLimit{Limit: algorithms.Limit{Rate: 4}}, Decision: hdrOverBucket, Over: true},
			"Rate limit exceeded", n(2), DefaultProblemType},
		{"concurrency", responseOptions{}, limitView{Policy: "runs", Limit: hdrConc("runs", 50), Decision: algorithms.Decision{ResetAfter: 30 * algorithms.Minute, RetryAfter: 299 * hdrSec}, Over: true},
			"Rate limit exceeded: 50 concurrent requests", n(299), DefaultProblemType},
		{"retry unknown", responseOptions{}, limitView{Policy: "api", Limit: hdrFixed("api", 500, config.Minute, 1), Decision: algorithms.Decision{RetryAfter: -1}, Over: true},
			"Rate limit exceeded: 500 per 1 minute", nil, DefaultProblemType},
		{"custom type, odd name", responseOptions{ProblemType: "https://iana.org/assignments/http-problem-types#quota-exceeded"},
			limitView{Policy: "a\"<b>\\é\xff", Limit: hdrFixed("", 1, config.Day, 1), Decision: algorithms.Decision{RetryAfter: 1}, Over: true},
			"Rate limit exceeded: 1 per 1 day", n(1), "https://iana.org/assignments/http-problem-types#quota-exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policy := strings.ToValidUTF8(tc.v.Policy, "\uFFFD")
			o := tc.o
			o.Body = BodyProblemJSON
			body, ct := overLimitBody(&o, &tc.v)
			if ct != "application/problem+json" {
				t.Errorf("problem+json content type %q", ct)
			}
			var p problem
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatalf("problem+json body %s: %v", body, err)
			}
			wantP := problem{Type: tc.problemType, Title: "Rate limit exceeded", Status: 429, Detail: tc.detail,
				Policy: policy, ViolatedPolicies: []string{policy}, RetryAfter: tc.retry}
			if diff := cmp.Diff(wantP, p); diff != "" {
				t.Errorf("problem+json %s (-want +got):\n%s", body, diff)
			}

			o.Body = BodyJSON
			body, ct = overLimitBody(&o, &tc.v)
			if ct != "application/json" {
				t.Errorf("json content type %q", ct)
			}
			var e apiError
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("json body %s: %v", body, err)
			}
			var wantE apiError
			wantE.Error.Message, wantE.Error.Type, wantE.Error.Code, wantE.Error.RetryAfter = tc.detail, "rate_limit_error", "rate_limit_exceeded", tc.retry
			if diff := cmp.Diff(wantE, e); diff != "" {
				t.Errorf("json %s (-want +got):\n%s", body, diff)
			}
		})
	}
}

// TestHeaderBodyFromConfig checks the quota, window and text of limits as
// config compiles them from YAML, so that a change there shows here.
func TestHeaderBodyFromConfig(t *testing.T) {
	c, err := config.Parse([]config.File{{Name: "responses.yaml", Data: []byte(`
domain: api
descriptors:
  - key: minute
    rate_limit: {requests_per_unit: 500, unit: minute, name: per-minute}
  - key: sustained
    rate_limit: {requests_per_unit: 1000, period: 90m, name: sustained}
  - key: multi
    rate_limit: {requests_per_unit: 5, unit: minute, unit_multiplier: 10, algorithm: sliding_window, name: ten-minutes}
  - key: bucket
    rate_limit: {requests_per_unit: 100, unit: second, algorithm: token_bucket, burst: 300, name: bucket}
  - key: monthly
    rate_limit: {requests_per_unit: 100000, unit: month, alignment: calendar, name: monthly}
  - key: concurrency
    rate_limit: {algorithm: concurrency, max_in_flight: 50, lease: 30m, name: runs}
`)}}, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	limits := map[string]config.RuleLimit{}
	for _, r := range c.Rules() {
		for _, l := range r.Limits {
			limits[l.Name] = l
		}
	}
	at := hdrNow.UnixMicro()
	for _, tc := range []struct {
		name, policy, detail string
	}{
		{"per-minute", `"per-minute";q=500;w=60`, "Rate limit exceeded: 500 per 1 minute"},
		{"sustained", `"sustained";q=1000;w=5400`, "Rate limit exceeded: 1000 per 90 minutes"},
		{"ten-minutes", `"ten-minutes";q=5;w=600`, "Rate limit exceeded: 5 per 10 minutes"},
		{"bucket", `"bucket";q=100;w=1`, "Rate limit exceeded: 100 per 1 second"},
		{"monthly", `"monthly";q=100000;w=2678400`, "Rate limit exceeded: 100000 per 1 month"}, // March: 31 days
		{"runs", `"runs";q=50;qu="concurrent-requests"`, "Rate limit exceeded: 50 concurrent requests"},
	} {
		l, ok := limits[tc.name]
		if !ok {
			t.Errorf("no limit %q in the config", tc.name)
			continue
		}
		l.Limit = l.At(at) // as the server applies it
		v := limitView{Policy: l.Name, Limit: l, Decision: algorithms.Decision{RetryAfter: hdrSec}, Over: true}
		got := appendClientHeaders(nil, &responseOptions{Style: HeadersIETF}, &v, hdrNow)
		if len(got) == 0 || got[0].Key != "RateLimit-Policy" || got[0].Value != tc.policy {
			t.Errorf("%s: headers %v, want RateLimit-Policy: %s", tc.name, got, tc.policy)
		}
		if d := detailText(&v.Limit); d != tc.detail {
			t.Errorf("%s: detail %q, want %q", tc.name, d, tc.detail)
		}
	}
}

// TestHeadersAndBodyNeverPanic is a property test over random views,
// options and instants: nothing panics, every header value is printable
// ASCII, numbers are never negative, Retry-After comes exactly on Over
// answers of the styles that have it and is at least 1, and bodies are
// valid JSON.
func TestHeadersAndBodyNeverPanic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ints := []int64{0, 1, -1, 2, -2, 59, 999_999, hdrSec, hdrSec + 1, 60 * hdrSec, math.MaxUint32, math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, algorithms.MaxAmount}
	num := func() int64 {
		if rng.IntN(3) == 0 {
			return rng.Int64() - rng.Int64()
		}
		return ints[rng.IntN(len(ints))]
	}
	name := func() string {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return string(b)
	}
	isNum := func(s string) bool {
		_, err := strconv.ParseUint(s, 10, 64)
		return err == nil
	}
	for i := range 20000 {
		v := limitView{
			Policy: name(),
			Limit: config.RuleLimit{
				Name: name(), RequestsPerUnit: rng.Uint32(), Unit: config.Unit(rng.IntN(10) - 1), UnitMultiplier: rng.Uint32N(4),
				Limit: algorithms.Limit{
					Algorithm: algorithms.Algorithm(rng.IntN(6)), Rate: num(), Period: num(), Burst: num(),
					WindowStart: num(), WindowEnd: num(),
				},
			},
			Decision: algorithms.Decision{Allowed: rng.IntN(2) == 0, Remaining: num(), ResetAfter: num(), RetryAfter: num(), Count: num()},
			Over:     rng.IntN(2) == 0,
		}
		o := responseOptions{Style: HeaderStyle(rng.IntN(6)), ResetUnix: rng.IntN(2) == 0, Body: BodyFormat(rng.IntN(4)), ProblemType: name()}
		now := time.Unix(num()/2, rng.Int64N(1e9))
		var hs []*corev3.HeaderValue
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("case %d: panic %v on %+v, %+v, %v", i, r, v, o, now)
				}
			}()
			hs = appendClientHeaders(nil, &o, &v, now)
			if body, ct := overLimitBody(&o, &v); (body == nil) != (ct == "") || (body != nil && !json.Valid(body)) {
				t.Fatalf("case %d: body %q, content type %q", i, body, ct)
			}
		}()
		retries := 0
		for _, h := range hs {
			for j := 0; j < len(h.Value); j++ {
				if c := h.Value[j]; c < 0x20 || c > 0x7e {
					t.Fatalf("case %d: header %s: %q is not printable ASCII", i, h.Key, h.Value)
				}
			}
			switch h.Key {
			case "Retry-After":
				retries++
				if n, err := strconv.ParseInt(h.Value, 10, 64); err != nil || n < 1 {
					t.Fatalf("case %d: Retry-After %q", i, h.Value)
				}
			case "RateLimit", "RateLimit-Policy":
				if !strings.HasPrefix(h.Value, `"`) || strings.Contains(h.Value, "=-") {
					t.Fatalf("case %d: %s: %q", i, h.Key, h.Value)
				}
			default:
				if !isNum(h.Value) && !(h.Key == "X-RateLimit-Reset" && o.ResetUnix) {
					t.Fatalf("case %d: %s: %q is not a non-negative integer", i, h.Key, h.Value)
				}
			}
		}
		if retries > 1 || (retries == 1 && (!v.Over || o.Style == HeadersReference)) {
			t.Fatalf("case %d: %d Retry-After in %v for style %v, over %v", i, retries, hs, o.Style, v.Over)
		}
	}
}

// TestHeaderAllocs keeps the per-answer cost of headers in check: one
// slice of header values, plus the strings that are not small numbers.
func TestHeaderAllocs(t *testing.T) {
	v := limitView{Policy: "api", Limit: hdrFixed("api", 500, config.Minute, 1), Decision: hdrOverFixed, Over: true}
	for _, tc := range []struct {
		style HeaderStyle
		max   float64
	}{
		{HeadersReference, 2}, // the slice; "500"
		{HeadersDraft03, 2},   // the slice; "500"
		{HeadersIETF, 4},      // the slice, the buffer, the two values
		{HeadersBoth, 5},
	} {
		o := responseOptions{Style: tc.style}
		dst := make([]*corev3.HeaderValue, 0, 8)
		got := testing.AllocsPerRun(100, func() { _ = appendClientHeaders(dst[:0], &o, &v, hdrNow) })
		t.Logf("style %v: %v allocations", tc.style, got)
		if got > tc.max {
			t.Errorf("style %v: %v allocations per answer, want at most %v", tc.style, got, tc.max)
		}
	}
}
