package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/memory"
	"github.com/ratelimitd/ratelimitd/config"
	"github.com/ratelimitd/ratelimitd/overrides"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is 15.5 s into a minute: whole-second resets from it are, as the
// reference computes divider - now%divider with now = 1699999995:
// SECOND 1, MINUTE 45, HOUR 2805, DAY 6405.
var t0 = time.Unix(1699999995, 500_000_000)

const testConfig = `domain: test
descriptors:
  - key: key1
    value: value1
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: key1
    rate_limit: {unit: hour, requests_per_unit: 10}
  - key: path
    value: "/api/*"
    rate_limit: {unit: second, requests_per_unit: 5, name: api}
  - key: unl
    rate_limit: {unlimited: true}
  - key: nested
    descriptors:
      - key: inner
        rate_limit: {unit: minute, requests_per_unit: 2}
  - key: shadow
    shadow_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: quota
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: rep_a
    rate_limit: {unit: minute, requests_per_unit: 100, name: general}
  - key: rep_b
    rate_limit:
      unit: minute
      requests_per_unit: 200
      name: specific
      replaces: [{name: general}]
  - key: a
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: b
    rate_limit: {unit: day, requests_per_unit: 5}
  - key: meta
    metadata: {team: payments, tier: {level: 1}}
    rate_limit: {unit: minute, requests_per_unit: 10}
`

func parse(t testing.TB, yaml string) *config.Config {
	t.Helper()
	c, err := config.Parse([]config.File{{Name: "test.yaml", Data: []byte(yaml)}}, config.Options{})
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	return c
}

type env struct {
	s      *Server
	rls    rlsv3.RateLimitServiceClient
	health healthpb.HealthClient
}

// newEnv starts s on a bufconn gRPC server with the memory backend (unless
// o.Backend is set), the fixed clock t0 (unless o.Now is set) and a 10 s
// backend timeout (unless o.BackendTimeout is set). An empty
// yaml loads no config; serving is turned on either way.
func newEnv(t testing.TB, yaml string, o Options) *env {
	t.Helper()
	if o.Backend == nil {
		b := memory.New(memory.Options{})
		t.Cleanup(func() { b.Close() })
		o.Backend = b
	}
	if o.Now == nil {
		o.Now = func() time.Time { return t0 }
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.BackendTimeout == 0 {
		// Generous: a loaded CI machine (race detector, parallel packages)
		// can stall a goroutine past the 50 ms default.
		o.BackendTimeout = 10 * time.Second
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if yaml != "" {
		s.SetConfig(parse(t, yaml))
	}
	s.SetServing(true)
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer()
	s.Register(g)
	for _, svc := range []string{"envoy.service.ratelimit.v3.RateLimitService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if _, ok := g.GetServiceInfo()[svc]; !ok {
			t.Fatalf("Register did not register %s", svc)
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); g.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
		<-done
	})
	return &env{s: s, rls: rlsv3.NewRateLimitServiceClient(conn), health: healthpb.NewHealthClient(conn)}
}

// Request builders.

func desc(kv ...string) *commonv3.RateLimitDescriptor {
	d := &commonv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &commonv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

func withHits(d *commonv3.RateLimitDescriptor, h uint64) *commonv3.RateLimitDescriptor {
	d.HitsAddend = wrapperspb.UInt64(h)
	return d
}

func negative(d *commonv3.RateLimitDescriptor) *commonv3.RateLimitDescriptor {
	d.IsNegativeHits = true
	return d
}

func withLimit(d *commonv3.RateLimitDescriptor, rpu uint32, u typev3.RateLimitUnit) *commonv3.RateLimitDescriptor {
	d.Limit = &commonv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: rpu, Unit: u}
	return d
}

func rq(domain string, ds ...*commonv3.RateLimitDescriptor) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: domain, Descriptors: ds}
}

func rqHits(h uint32, domain string, ds ...*commonv3.RateLimitDescriptor) *rlsv3.RateLimitRequest {
	r := rq(domain, ds...)
	r.HitsAddend = h
	return r
}

// Response builders.

type (
	resp   = rlsv3.RateLimitResponse
	dstat  = rlsv3.RateLimitResponse_DescriptorStatus
	rlimit = rlsv3.RateLimitResponse_RateLimit
)

const (
	OK   = rlsv3.RateLimitResponse_OK
	OVER = rlsv3.RateLimitResponse_OVER_LIMIT
)

func okStatus() *dstat        { return &dstat{Code: OK} }
func unlimitedStatus() *dstat { return &dstat{Code: OK, LimitRemaining: 4294967295} }

func counted(code rlsv3.RateLimitResponse_Code, rpu uint32, unit rlsv3.RateLimitResponse_RateLimit_Unit, name string, remaining uint32, reset int64) *dstat {
	return &dstat{
		Code:               code,
		CurrentLimit:       &rlimit{RequestsPerUnit: rpu, Unit: unit, Name: name},
		LimitRemaining:     remaining,
		DurationUntilReset: durationpb.New(time.Duration(reset) * time.Second),
	}
}

func overall(code rlsv3.RateLimitResponse_Code, sts ...*dstat) *resp {
	return &resp{OverallCode: code, Statuses: sts}
}

const (
	SECOND = rlsv3.RateLimitResponse_RateLimit_SECOND
	MINUTE = rlsv3.RateLimitResponse_RateLimit_MINUTE
	HOUR   = rlsv3.RateLimitResponse_RateLimit_HOUR
	DAY    = rlsv3.RateLimitResponse_RateLimit_DAY
)

type step struct {
	req  *rlsv3.RateLimitRequest
	want *resp
}

func runSteps(t *testing.T, e *env, steps []step) {
	t.Helper()
	for i, st := range steps {
		got, err := e.rls.ShouldRateLimit(context.Background(), st.req)
		if err != nil {
			t.Fatalf("step %d: ShouldRateLimit: %v", i, err)
		}
		if diff := cmp.Diff(st.want, got, protocmp.Transform()); diff != "" {
			t.Fatalf("step %d: response mismatch (-want +got):\n%s", i, diff)
		}
	}
}

func TestShouldRateLimit(t *testing.T) {
	k1 := func() *commonv3.RateLimitDescriptor { return desc("key1", "value1") }
	k1s := func(rem uint32) *dstat { return counted(OK, 3, MINUTE, "", rem, 45) }
	k1over := counted(OVER, 3, MINUTE, "", 0, 45)
	tests := []struct {
		name  string
		o     Options
		steps []step
	}{
		{"unknown domain answers OK", Options{}, []step{
			{rq("nope", k1(), desc("x", "y")), overall(OK, okStatus(), okStatus())},
			{rq("nope", withLimit(k1(), 1, typev3.RateLimitUnit_SECOND)), overall(OK, okStatus())},
		}},
		{"no rule", Options{}, []step{
			{rq("test", desc("other", "x")), overall(OK, okStatus())},
			// a rule applies only at the descriptor's last entry
			{rq("test", desc("nested", "a")), overall(OK, okStatus())},
			{rq("test", desc("key1", "value1", "extra", "x")), overall(OK, okStatus())},
		}},
		{"exact, default, wildcard, nested", Options{}, []step{
			{rq("test", k1()), overall(OK, k1s(2))},
			{rq("test", desc("key1", "other")), overall(OK, counted(OK, 10, HOUR, "", 9, 2805))},
			{rq("test", desc("path", "/api/users")), overall(OK, counted(OK, 5, SECOND, "api", 4, 1))},
			{rq("test", desc("nested", "a", "inner", "b")), overall(OK, counted(OK, 2, MINUTE, "", 1, 45))},
		}},
		{"unlimited", Options{}, []step{
			{rq("test", desc("unl", "anything"), k1()), overall(OK, unlimitedStatus(), k1s(2))},
		}},
		{"counted OK then OVER_LIMIT", Options{}, []step{
			{rq("test", k1()), overall(OK, k1s(2))},
			{rq("test", k1()), overall(OK, k1s(1))},
			{rq("test", k1()), overall(OK, k1s(0))},
			{rq("test", k1()), overall(OVER, k1over)},
			{rq("test", k1()), overall(OVER, k1over)},
		}},
		{"request hits_addend, 0 means 1", Options{}, []step{
			{rqHits(2, "test", k1()), overall(OK, k1s(1))},
			{rqHits(2, "test", k1()), overall(OVER, k1over)},
			{rqHits(0, "test", k1()), overall(OK, k1s(0))},
		}},
		{"descriptor hits_addend wins, explicit 0 checks only", Options{}, []step{
			{rqHits(5, "test", withHits(k1(), 1)), overall(OK, k1s(2))},
			{rqHits(5, "test", withHits(k1(), 0)), overall(OK, k1s(2))},
			{rq("test", withHits(k1(), 0)), overall(OK, k1s(2))},
			{rq("test", withHits(k1(), 3)), overall(OVER, k1over)},
		}},
		{"is_negative_hits refunds", Options{}, []step{
			{rqHits(3, "test", k1()), overall(OK, k1s(0))},
			{rq("test", negative(withHits(k1(), 2))), overall(OK, k1s(2))},
			{rq("test", negative(k1())), overall(OK, k1s(3))},
			{rq("test", negative(k1())), overall(OK, k1s(3))}, // never above the limit
		}},
		{"descriptor limit override", Options{}, []step{
			{rq("test", withLimit(desc("whatever", "v"), 1, typev3.RateLimitUnit_SECOND)),
				overall(OK, counted(OK, 1, SECOND, "", 0, 1))},
			{rq("test", withLimit(desc("whatever", "v"), 1, typev3.RateLimitUnit_SECOND)),
				overall(OVER, counted(OVER, 1, SECOND, "", 0, 1))},
			// the override replaces a configured rule of the same descriptor
			{rq("test", withLimit(k1(), 7, typev3.RateLimitUnit_DAY)),
				overall(OK, counted(OK, 7, DAY, "", 6, 6405))},
		}},
		{"replaces", Options{}, []step{
			{rq("test", desc("rep_a", "x"), desc("rep_b", "y")),
				overall(OK, okStatus(), counted(OK, 200, MINUTE, "specific", 199, 45))},
			{rq("test", desc("rep_a", "x")), overall(OK, counted(OK, 100, MINUTE, "general", 99, 45))},
		}},
		{"shadow mode rule", Options{}, []step{
			{rq("test", desc("shadow", "x")), overall(OK, counted(OK, 1, MINUTE, "", 0, 45))},
			{rq("test", desc("shadow", "x")), overall(OK, counted(OK, 1, MINUTE, "", 0, 45))},
		}},
		{"global shadow mode", Options{GlobalShadowMode: true}, []step{
			{rqHits(3, "test", k1()), overall(OK, k1s(0))},
			{rq("test", k1()), overall(OK, k1over)},
		}},
		{"quota mode", Options{}, []step{
			{rq("test", desc("quota", "x")), overall(OK, counted(OK, 1, MINUTE, "", 0, 45))},
			{rq("test", desc("quota", "x")), overall(OK, &dstat{Code: OK, CurrentLimit: &rlimit{RequestsPerUnit: 1, Unit: MINUTE}})},
		}},
		{"quota mode with dynamic metadata", Options{DynamicMetadata: true}, []step{
			{rq("test", desc("quota", "x")), withMD(overall(OK, counted(OK, 1, MINUTE, "", 0, 45)),
				`{"domain":"test","descriptors":[{"entries":["quota=x"]}],"quotaModeEnabled":true}`)},
			{rq("test", k1(), desc("quota", "x")), withMD(overall(OK, k1s(2), &dstat{Code: OK, CurrentLimit: &rlimit{RequestsPerUnit: 1, Unit: MINUTE}}),
				`{"domain":"test","descriptors":[{"entries":["key1=value1"]},{"entries":["quota=x"]}],"quotaModeEnabled":true,"quotaModeViolations":[1]}`)},
		}},
		{"dynamic metadata", Options{DynamicMetadata: true}, []step{
			{rq("test", desc("x", "y")), withMD(overall(OK, okStatus()),
				`{"domain":"test","descriptors":[{"entries":["x=y"]}],"quotaModeEnabled":false}`)},
			{rqHits(2, "test", desc("meta", "m"), withHits(withLimit(desc("o", "v"), 9, typev3.RateLimitUnit_HOUR), 1)),
				withMD(overall(OK, counted(OK, 10, MINUTE, "", 8, 45), counted(OK, 9, HOUR, "", 8, 2805)),
					`{"domain":"test","hitsAddend":2,"quotaModeEnabled":false,
					  "metadata":{"team":"payments","tier":{"level":1}},
					  "descriptors":[{"entries":["meta=m"]},
					    {"entries":["o=v"],"limit":"requests_per_unit:9 unit:HOUR","hitsAddend":1}]}`)},
		}},
		{"response headers, closest to its limit", Options{ResponseHeaders: true, HeaderLimit: "X-Limit", HeaderRemaining: "X-Remaining", HeaderReset: "X-Reset"}, []step{
			{rq("test", desc("path", "/api/x"), k1(), desc("none", "x"), desc("unl", "x")),
				withHeaders(overall(OK, counted(OK, 5, SECOND, "api", 4, 1), k1s(2), okStatus(), unlimitedStatus()), "X-Limit", "3", "X-Remaining", "2", "X-Reset", "45")},
			{rqHits(3, "test", k1(), desc("path", "/api/x")),
				withHeaders(overall(OVER, k1over, counted(OK, 5, SECOND, "api", 4, 1)), "X-Limit", "3", "X-Remaining", "0", "X-Reset", "45")},
			{rq("test", desc("x", "y")), overall(OK, okStatus())},
		}},
		{"default header names", Options{ResponseHeaders: true}, []step{
			{rq("test", desc("path", "/api/x")),
				withHeaders(overall(OK, counted(OK, 5, SECOND, "api", 4, 1)), "RateLimit-Limit", "5", "RateLimit-Remaining", "4", "RateLimit-Reset", "1")},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, testConfig, tc.o)
			runSteps(t, e, tc.steps)
		})
	}
}

func withMD(r *resp, js string) *resp {
	var s structpb.Struct
	if err := s.UnmarshalJSON([]byte(js)); err != nil {
		panic(err)
	}
	r.DynamicMetadata = &s
	return r
}

func withHeaders(r *resp, kv ...string) *resp {
	for i := 0; i+1 < len(kv); i += 2 {
		r.ResponseHeadersToAdd = append(r.ResponseHeadersToAdd, &corev3.HeaderValue{Key: kv[i], Value: kv[i+1]})
	}
	return r
}

// TestChargeModes runs the same calls under each backends.Mode: a request
// with one descriptor over its limit, and one with a shadow-mode descriptor
// over its limit, then checks what the other descriptor was charged.
func TestChargeModes(t *testing.T) {
	a := func() *commonv3.RateLimitDescriptor { return desc("a", "1") }
	b := func() *commonv3.RateLimitDescriptor { return desc("b", "1") }
	sh := func() *commonv3.RateLimitDescriptor { return desc("shadow", "1") }
	aOK := counted(OK, 1, MINUTE, "", 0, 45)
	aOver := counted(OVER, 1, MINUTE, "", 0, 45)
	shOK := counted(OK, 1, MINUTE, "", 0, 45)
	bs := func(rem uint32) *dstat { return counted(OK, 5, DAY, "", rem, 6405) }
	tests := []struct {
		mode backends.Mode
		// remaining of b after: the enforcing veto call, the check, the
		// shadow veto call, the check.
		afterVeto, afterShadow uint32
	}{
		{backends.AllOrNothing, 4, 2},
		{backends.ChargeAlways, 3, 1},
		{backends.StopWhenOver, 4, 3},
	}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			e := newEnv(t, testConfig, Options{Mode: tc.mode})
			runSteps(t, e, []step{
				{rq("test", a(), b()), overall(OK, aOK, bs(4))},
				{rq("test", a(), b()), overall(OVER, aOver, bs(tc.afterVeto))},
				{rq("test", withHits(b(), 0)), overall(OK, bs(tc.afterVeto))},
				{rq("test", sh(), b()), overall(OK, shOK, bs(tc.afterVeto-1))},
				{rq("test", sh(), b()), overall(OK, shOK, bs(tc.afterShadow))},
				{rq("test", withHits(b(), 0)), overall(OK, bs(tc.afterShadow))},
			})
		})
	}
}

func TestErrors(t *testing.T) {
	long := strings.Repeat("k", MaxValueLen+1)
	many := make([]*commonv3.RateLimitDescriptor, MaxDescriptors+1)
	for i := range many {
		many[i] = desc("k", "v")
	}
	wide := desc()
	for range MaxEntries + 1 {
		wide.Entries = append(wide.Entries, &commonv3.RateLimitDescriptor_Entry{Key: "k", Value: "v"})
	}
	tests := []struct {
		name string
		req  *rlsv3.RateLimitRequest
		code codes.Code
		msg  string
	}{
		{"empty domain", rq("", desc("k", "v")), codes.InvalidArgument, "rate limit domain must not be empty"},
		{"no descriptors", rq("test"), codes.InvalidArgument, "rate limit descriptor list must not be empty"},
		{"descriptor without entries", rq("test", desc("k", "v"), desc()), codes.InvalidArgument, "rate limit descriptor 1 has no entries"},
		{"empty key", rq("test", desc("k", "v", "", "v")), codes.InvalidArgument, "rate limit descriptor 0 entry 1 has an empty key"},
		{"too many descriptors", rq("test", many...), codes.InvalidArgument, "rate limit descriptor list has 65 descriptors, more than the maximum of 64"},
		{"too many entries", rq("test", wide), codes.InvalidArgument, "rate limit descriptor 0 has 65 entries, more than the maximum of 64"},
		{"long key", rq("test", desc(long, "v")), codes.InvalidArgument, "rate limit descriptor 0 entry 0 key is longer than 65536 bytes"},
		{"long value", rq("test", desc("k", long)), codes.InvalidArgument, "rate limit descriptor 0 entry 0 value is longer than 65536 bytes"},
		{"long domain", rq(long, desc("k", "v")), codes.InvalidArgument, "rate limit domain is longer than 65536 bytes"},
		{"override without unit", rq("test", withLimit(desc("k", "v"), 5, typev3.RateLimitUnit_UNKNOWN)), codes.InvalidArgument, ""},
	}
	e := newEnv(t, testConfig, Options{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.rls.ShouldRateLimit(context.Background(), tc.req)
			st := status.Convert(err)
			if st.Code() != tc.code || (tc.msg != "" && st.Message() != tc.msg) {
				t.Fatalf("got %v %q, want %v %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
		})
	}

	t.Run("no config", func(t *testing.T) {
		e := newEnv(t, "", Options{})
		_, err := e.rls.ShouldRateLimit(context.Background(), rq("test", desc("k", "v")))
		st := status.Convert(err)
		if st.Code() != codes.FailedPrecondition || st.Message() != "no rate limit configuration loaded" {
			t.Fatalf("got %v %q", st.Code(), st.Message())
		}
	})
	t.Run("backend error", func(t *testing.T) {
		e := newEnv(t, testConfig, Options{Backend: failingBackend{}})
		_, err := e.rls.ShouldRateLimit(context.Background(), rq("test", desc("key1", "value1")))
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v, want Unavailable", err)
		}
		// a call that needs no backend still works
		got, err := e.rls.ShouldRateLimit(context.Background(), rq("test", desc("unl", "x")))
		if err != nil || got.OverallCode != OK {
			t.Fatalf("got %v, %v", got, err)
		}
	})
	t.Run("backend deadline", func(t *testing.T) {
		e := newEnv(t, testConfig, Options{Backend: blockingBackend{}, BackendTimeout: 10 * time.Millisecond})
		start := time.Now()
		_, err := e.rls.ShouldRateLimit(context.Background(), rq("test", desc("key1", "value1")))
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v, want Unavailable", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %v", d)
		}
	})
}

// failingBackend is a Backend whose storage is down.
type failingBackend struct{}

func (failingBackend) Apply(context.Context, int64, backends.Mode, []backends.Request, []algorithms.Decision) error {
	return errors.Join(backends.ErrUnavailable, errors.New("test: storage down"))
}
func (failingBackend) Close() error { return nil }

// blockingBackend waits for its deadline, as a backend that hangs.
type blockingBackend struct{}

func (blockingBackend) Apply(ctx context.Context, _ int64, _ backends.Mode, _ []backends.Request, _ []algorithms.Decision) error {
	<-ctx.Done()
	return errors.Join(backends.ErrUnavailable, ctx.Err())
}
func (blockingBackend) Close() error { return nil }

func TestHealth(t *testing.T) {
	e := newEnv(t, "", Options{})
	check := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		for _, svc := range []string{"", "envoy.service.ratelimit.v3.RateLimitService", "ratelimit"} {
			got, err := e.health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
			if err != nil {
				t.Fatalf("Check(%q): %v", svc, err)
			}
			if got.Status != want {
				t.Fatalf("Check(%q) = %v, want %v", svc, got.Status, want)
			}
		}
	}
	check(healthpb.HealthCheckResponse_NOT_SERVING) // serving but no config
	if e.s.Config() != nil {
		t.Fatal("Config() before SetConfig: want nil")
	}
	e.s.SetConfig(nil) // ignored
	check(healthpb.HealthCheckResponse_NOT_SERVING)
	e.s.SetConfig(parse(t, testConfig))
	check(healthpb.HealthCheckResponse_SERVING)
	e.s.SetServing(false)
	check(healthpb.HealthCheckResponse_NOT_SERVING)
	e.s.SetServing(true)
	check(healthpb.HealthCheckResponse_SERVING)
}

func TestSetConfigSwap(t *testing.T) {
	e := newEnv(t, testConfig, Options{})
	runSteps(t, e, []step{{rq("test", desc("key1", "value1")), overall(OK, counted(OK, 3, MINUTE, "", 2, 45))}})
	e.s.SetConfig(parse(t, strings.Replace(testConfig, "{unit: minute, requests_per_unit: 3}", "{unit: minute, requests_per_unit: 10, name: bigger}", 1)))
	// Same bucket (same unit), new limit.
	runSteps(t, e, []step{{rq("test", desc("key1", "value1")), overall(OK, counted(OK, 10, MINUTE, "bigger", 8, 45))}})
	// A failed load keeps the config.
	e.s.ConfigLoadFailed(config.Errors{{File: "f.yaml", Path: "test.key1", Message: "bad"}})
	runSteps(t, e, []step{{rq("test", desc("key1", "value1")), overall(OK, counted(OK, 10, MINUTE, "bigger", 7, 45))}})
}

func TestNewNeedsBackend(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without a backend: want an error")
	}
}

func TestHTTP(t *testing.T) {
	e := newEnv(t, "", Options{})
	h := e.s.HTTPHandler()
	do := func(method, path, body string) (int, string) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		b, _ := io.ReadAll(rec.Result().Body)
		return rec.Code, string(b)
	}
	expect := func(method, path, body string, code int, contains ...string) {
		t.Helper()
		gotCode, got := do(method, path, body)
		if gotCode != code {
			t.Fatalf("%s %s: status %d, want %d (body %q)", method, path, gotCode, code, got)
		}
		for _, c := range contains {
			if !strings.Contains(got, c) {
				t.Fatalf("%s %s: body %q does not contain %q", method, path, got, c)
			}
		}
	}

	expect("GET", "/healthz", "", 200, "ok")
	expect("GET", "/healthcheck", "", 500)
	expect("GET", "/readyz", "", 503, "no rate limit configuration loaded")
	expect("POST", "/json", `{"domain":"test","descriptors":[{"entries":[{"key":"key1","value":"value1"}]}]}`, 503)

	e.s.SetConfig(parse(t, testConfig))
	expect("GET", "/healthcheck", "", 200, "OK")
	expect("GET", "/readyz", "", 200, "ready")
	body := `{"domain":"test","descriptors":[{"entries":[{"key":"key1","value":"value1"}]}],"hitsAddend":3}`
	expect("POST", "/json", body, 200, `"overallCode":"OK"`, `"durationUntilReset":"45s"`)
	expect("POST", "/json", body, 429, `"overallCode":"OVER_LIMIT"`)
	expect("POST", "/json", `{"domain":`, 400)
	expect("POST", "/json", `{"domain":"test","bogus":1}`, 400)
	expect("POST", "/json", `{"domain":"","descriptors":[{"entries":[{"key":"k"}]}]}`, 400, "rate limit domain must not be empty")
	// A wildcard match with a value that must never reach a metric label.
	expect("POST", "/json", `{"domain":"test","descriptors":[{"entries":[{"key":"path","value":"/api/secret-value-123"}]}]}`, 200)

	expect("GET", "/rlconfig", "", 200,
		"test.key1_value1: unit=MINUTE requests_per_unit=3, shadow_mode: false\n",
		"test.shadow: unit=MINUTE requests_per_unit=1, shadow_mode: true",
		"name: specific, replaces: general")

	e.s.ConfigLoadFailed(errors.New("broken"))
	_, metrics := do("GET", "/metrics", "")
	for _, want := range []string{
		`ratelimitd_requests_total{code="ok"} 2`,
		`ratelimitd_requests_total{code="over_limit"} 1`,
		`ratelimitd_requests_total{code="invalid_argument"} 1`,
		`ratelimitd_requests_total{code="failed_precondition"} 1`,
		`ratelimitd_decisions_total{code="ok",domain="test",rule="test.key1_value1"} 1`,
		`ratelimitd_decisions_total{code="over_limit",domain="test",rule="test.key1_value1"} 1`,
		`ratelimitd_decisions_total{code="ok",domain="test",rule="api"} 1`,
		`ratelimitd_hits_total{domain="test",rule="test.key1_value1"} 3`, // the refused call charged nothing
		`ratelimitd_hits_total{domain="test",rule="api"} 1`,
		`ratelimitd_over_limit_total{domain="test",rule="test.key1_value1"} 1`,
		`ratelimitd_near_limit_total{domain="test",rule="test.key1_value1"} 1`,
		`ratelimitd_config_loads_total{result="success"} 1`,
		`ratelimitd_config_loads_total{result="error"} 1`,
		`ratelimitd_config_info{hash="` + parse(t, testConfig).Hash() + `",version="1"} 1`,
		`ratelimitd_config_last_load_successful 0`,
		`ratelimitd_backend_duration_seconds_count 3`,
		`ratelimitd_backend_errors_total{kind="timeout"} 0`,
		`ratelimitd_admin_changes_total{action="set_override"} 0`,
		`ratelimitd_global_shadow_mode_total 0`,
		`ratelimitd_shadow_mode_total`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(metrics, "secret-value-123") {
		t.Errorf("/metrics carries a raw descriptor value")
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", metrics)
	}

	e.s.SetServing(false)
	expect("GET", "/healthcheck", "", 500)
	expect("GET", "/readyz", "", 503, "not serving")
}

// FuzzShouldRateLimit feeds random descriptors through the real handler and
// the memory backend: it must never panic, never answer UNKNOWN, and either
// answer one status per descriptor or a gRPC error with a known code.
func FuzzShouldRateLimit(f *testing.F) {
	f.Add("test", "key1\x00value1", uint32(0), uint64(0), false, uint32(0), int32(0))
	f.Add("test", "path\x00/api/x\x01unl\x00y", uint32(3), uint64(1), true, uint32(0), int32(0))
	f.Add("test", "rep_a\x00x\x01rep_b\x00y\x01quota\x00z", uint32(0), uint64(0), false, uint32(5), int32(2))
	f.Add("", "", uint32(0), uint64(0), false, uint32(0), int32(9))
	f.Add("test", "nested\x00a\x00inner\x00b\x01\x01\x00", uint32(1<<31), uint64(1<<63), true, uint32(1), int32(7))
	e := newEnv(f, testConfig, Options{ResponseHeaders: true, DynamicMetadata: true})
	f.Fuzz(func(t *testing.T, domain, spec string, reqHits uint32, dHits uint64, neg bool, rpu uint32, unit int32) {
		checkAnswer(t, e, fuzzRequest(domain, spec, reqHits, dHits, neg, rpu, unit))
	})
}

// FuzzShouldRateLimitPolicies fuzzes the request path through tiers,
// runtime overrides, policies, charge_always, idempotent replays, every
// header and a problem+json body.
func FuzzShouldRateLimitPolicies(f *testing.F) {
	f.Add("api", "tier\x00admin\x00api_key\x00abc", uint32(0), uint64(0), false, uint32(0), int32(0))
	f.Add("api", "tier\x00banned\x00api_key\x00x\x01api_key\x00y", uint32(2), uint64(0), false, uint32(0), int32(0))
	f.Add("api", "vk\x00big\x00meter\x00tokens\x01idempotency_key\x00r1", uint32(0), uint64(500), false, uint32(0), int32(0))
	f.Add("api", "internal\x00svc\x01tier\x00\x01gcra_key\x00k", uint32(9), uint64(1), true, uint32(3), int32(2))
	f.Add("api", "idempotency_key\x00r2\x01tier\x00anon", uint32(0), uint64(0), false, uint32(0), int32(0))
	ovs := staticOverrides(
		&overrides.Override{Domain: "api", Entries: []config.Entry{{Key: "api_key", Value: "abc"}}, Kind: overrides.Limit, RequestsPerUnit: 6, Unit: config.Minute},
		&overrides.Override{Domain: "api", Entries: []config.Entry{{Key: "internal", Value: "svc"}}, Kind: overrides.Limit, RequestsPerUnit: 2, Unit: config.Second, Algorithm: "gcra", Burst: 3},
		&overrides.Override{Domain: "api", Entries: []config.Entry{{Key: "vk", Value: "big"}}, Kind: overrides.Policy, Policy: "pro"},
		&overrides.Override{Domain: "api", Entries: []config.Entry{{Key: "api_key", Value: "free"}}, Kind: overrides.Unlimited},
	)
	e := newEnv(f, policyConfig, Options{HeaderStyle: HeadersBoth, Body: BodyProblemJSON, DynamicMetadata: true, Overrides: ovs})
	f.Fuzz(func(t *testing.T, domain, spec string, reqHits uint32, dHits uint64, neg bool, rpu uint32, unit int32) {
		checkAnswer(t, e, fuzzRequest(domain, spec, reqHits, dHits, neg, rpu, unit))
	})
}

// fuzzRequest builds a request from fuzz input: descriptors separated by
// \x01, entries' keys and values by \x00.
func fuzzRequest(domain, spec string, reqHits uint32, dHits uint64, neg bool, rpu uint32, unit int32) *rlsv3.RateLimitRequest {
	req := &rlsv3.RateLimitRequest{Domain: domain, HitsAddend: reqHits}
	if spec == "" {
		return req
	}
	for i, ds := range strings.Split(spec, "\x01") {
		d := &commonv3.RateLimitDescriptor{IsNegativeHits: neg && i%2 == 0}
		parts := strings.Split(ds, "\x00")
		for j := 0; j < len(parts); j += 2 {
			v := ""
			if j+1 < len(parts) {
				v = parts[j+1]
			}
			if parts[j] == "" && v == "" {
				continue
			}
			d.Entries = append(d.Entries, &commonv3.RateLimitDescriptor_Entry{Key: parts[j], Value: v})
		}
		if i%3 == 1 {
			d.HitsAddend = wrapperspb.UInt64(dHits)
		}
		if rpu != 0 && i%4 == 2 {
			d.Limit = &commonv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: rpu, Unit: typev3.RateLimitUnit(unit)}
		}
		req.Descriptors = append(req.Descriptors, d)
	}
	return req
}

// checkAnswer sends req and checks what any answer must satisfy.
func checkAnswer(t *testing.T, e *env, req *rlsv3.RateLimitRequest) {
	got, err := e.s.ShouldRateLimit(context.Background(), req)
	if err != nil {
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("unexpected error %v", err)
		}
		return
	}
	if got.OverallCode == rlsv3.RateLimitResponse_UNKNOWN {
		t.Fatal("overall_code UNKNOWN")
	}
	if len(got.Statuses) != len(req.Descriptors) {
		t.Fatalf("%d statuses for %d descriptors", len(got.Statuses), len(req.Descriptors))
	}
	for i, st := range got.Statuses {
		if st.Code == rlsv3.RateLimitResponse_UNKNOWN {
			t.Fatalf("status %d UNKNOWN", i)
		}
	}
	if (got.RawBody != nil) != (got.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT && len(got.RawBody) > 0) {
		t.Fatalf("raw_body %q with overall %v", got.RawBody, got.OverallCode)
	}
}

// BenchmarkShouldRateLimit calls the handler directly: matching, keys,
// the memory backend, statuses and metrics, without gRPC. BackendTimeout
// is off, as ratelimitd runs the memory backend (no I/O to bound).
func BenchmarkShouldRateLimit(b *testing.B) {
	benchShouldRateLimit(b, []int{1, 16}, func(e *env, ctx context.Context, req *rlsv3.RateLimitRequest) error {
		_, err := e.s.ShouldRateLimit(ctx, req)
		return err
	})
}

// BenchmarkShouldRateLimitGRPC is BenchmarkShouldRateLimit through a gRPC
// client and server over bufconn (in memory, no syscalls): encoding,
// decoding and gRPC's own allocations included. allocs/op counts both
// sides of the call.
func BenchmarkShouldRateLimitGRPC(b *testing.B) {
	benchShouldRateLimit(b, []int{1, 4, 16}, func(e *env, ctx context.Context, req *rlsv3.RateLimitRequest) error {
		_, err := e.rls.ShouldRateLimit(ctx, req)
		return err
	})
}

// benchShouldRateLimit runs call in a loop for each count of descriptors,
// on a memory backend without a backend deadline.
func benchShouldRateLimit(b *testing.B, counts []int, call func(*env, context.Context, *rlsv3.RateLimitRequest) error) {
	kinds := []*commonv3.RateLimitDescriptor{
		desc("key1", "value1"), desc("key1", "other"), desc("path", "/api/x"), desc("nested", "a", "inner", "b"),
	}
	for _, n := range counts {
		b.Run(fmt.Sprintf("descriptors=%d", n), func(b *testing.B) {
			e := newEnv(b, testConfig, Options{Mode: backends.ChargeAlways, BackendTimeout: -1})
			req := &rlsv3.RateLimitRequest{Domain: "test"}
			for i := range n {
				req.Descriptors = append(req.Descriptors, kinds[i%len(kinds)])
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := call(e, ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
