package server

import (
	"context"
	"testing"
	"time"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const algorithmsConfig = `domain: alg
descriptors:
  - key: gcra
    rate_limit: {requests_per_unit: 500, unit: minute, algorithm: gcra, burst: 50}
  - key: tb
    rate_limit: {requests_per_unit: 100, unit: second, algorithm: token_bucket, burst_multiplier: 3}
  - key: sw
    rate_limit: {requests_per_unit: 4, unit: minute, algorithm: sliding_window}
  - key: two
    rate_limits:
      - {requests_per_unit: 10, unit: second, name: burst}
      - {requests_per_unit: 3, period: 90m, name: sustained}
  - key: org
    descriptors:
      - key: concurrency
        value: runs
        rate_limit: {algorithm: concurrency, max_in_flight: 2, lease: 30m}
  - key: daily
    rate_limit: {requests_per_unit: 2, unit: day, alignment: calendar, timezone: Europe/Paris}
`

// status builds an expected status; reset in whole seconds.
func algStatus(code rlsv3.RateLimitResponse_Code, rpu uint32, unit rlsv3.RateLimitResponse_RateLimit_Unit, mult uint32, name string, remaining uint32, reset int64) *dstat {
	st := counted(code, rpu, unit, name, remaining, reset)
	if mult > 1 {
		st.CurrentLimit.UnitMultiplier = wrapperspb.UInt32(mult)
	}
	return st
}

// resetTo is the whole seconds from t0 + at to the end of an epoch-aligned
// window of period.
func resetTo(at, period time.Duration) int64 {
	now := t0.Add(at).UnixMicro()
	p := period.Microseconds()
	us := p - now%p
	return (us + 999_999) / 1_000_000
}

func TestAlgorithmStatuses(t *testing.T) {
	clock := t0
	e := newEnv(t, algorithmsConfig, Options{Now: func() time.Time { return clock }})
	conc := func(neg bool) *commonv3.RateLimitDescriptor {
		d := desc("org", "o1", "concurrency", "runs")
		if neg {
			d = negative(d)
		}
		return d
	}
	const UNKNOWN = rlsv3.RateLimitResponse_RateLimit_UNKNOWN
	// Concurrency slots are 5 minutes (lease/6): an acquisition at t0
	// counts until its slot's end + 30 min.
	slot := 5 * time.Minute
	concReset := func(at time.Duration) int64 { return resetTo(at, slot) + int64((30 * time.Minute).Seconds()) }
	paris, _ := time.LoadLocation("Europe/Paris")
	y, m, d := t0.In(paris).Date()
	midnight := int64(time.Date(y, m, d+1, 0, 0, 0, 0, paris).Sub(t0).Seconds() + 0.5)
	for i, st := range []struct {
		at   time.Duration
		req  *rlsv3.RateLimitRequest
		want *resp
	}{
		// gcra: 50 at once, then one every 120 ms; the bucket is whole 6 s
		// after it was emptied.
		{0, rqHits(50, "alg", desc("gcra", "k")), overall(OK, algStatus(OK, 500, MINUTE, 1, "", 0, 6))},
		{0, rq("alg", desc("gcra", "k")), overall(OVER, algStatus(OVER, 500, MINUTE, 1, "", 0, 6))},
		{120 * time.Millisecond, rq("alg", desc("gcra", "k")), overall(OK, algStatus(OK, 500, MINUTE, 1, "", 0, 6))},
		// token_bucket with burst_multiplier 3: 300 at once.
		{0, rqHits(299, "alg", desc("tb", "k")), overall(OK, algStatus(OK, 100, SECOND, 1, "", 1, 3))},
		{0, rqHits(2, "alg", desc("tb", "k")), overall(OVER, algStatus(OVER, 100, SECOND, 1, "", 0, 3))},
		{0, rq("alg", withHits(desc("tb", "k"), 0)), overall(OK, algStatus(OK, 100, SECOND, 1, "", 1, 3))},
		// sliding_window: reset is when nothing counted weighs any more.
		{0, rqHits(4, "alg", desc("sw", "k")), overall(OK, algStatus(OK, 4, MINUTE, 1, "", 0, resetTo(0, time.Minute)+60))},
		// rate_limits: the most restrictive limit is reported; 90 minutes
		// are MINUTE × 90.
		{0, rq("alg", desc("two", "k")), overall(OK, algStatus(OK, 3, MINUTE, 90, "sustained", 2, resetTo(0, 90*time.Minute)))},
		{0, rqHits(2, "alg", desc("two", "k")), overall(OK, algStatus(OK, 3, MINUTE, 90, "sustained", 0, resetTo(0, 90*time.Minute)))},
		{0, rq("alg", desc("two", "k")), overall(OVER, algStatus(OVER, 3, MINUTE, 90, "sustained", 0, resetTo(0, 90*time.Minute)))},
		// ... and the refusal charged nothing: full is not over.
		{0, rq("alg", withHits(desc("two", "k"), 0)), overall(OK, algStatus(OK, 3, MINUTE, 90, "sustained", 0, resetTo(0, 90*time.Minute)))},
		// concurrency: max_in_flight, no time unit; acquire, refuse,
		// release, acquire again.
		{0, rq("alg", conc(false)), overall(OK, algStatus(OK, 2, UNKNOWN, 1, "", 1, concReset(0)))},
		{0, rq("alg", conc(false)), overall(OK, algStatus(OK, 2, UNKNOWN, 1, "", 0, concReset(0)))},
		{0, rq("alg", conc(false)), overall(OVER, algStatus(OVER, 2, UNKNOWN, 1, "", 0, concReset(0)))},
		{time.Second, rq("alg", conc(true)), overall(OK, algStatus(OK, 2, UNKNOWN, 1, "", 1, concReset(time.Second)))},
		{time.Second, rq("alg", conc(false)), overall(OK, algStatus(OK, 2, UNKNOWN, 1, "", 0, concReset(time.Second)))},
		// calendar: the day ends at midnight in Paris.
		{0, rq("alg", desc("daily", "k")), overall(OK, algStatus(OK, 2, DAY, 1, "", 1, midnight))},
	} {
		clock = t0.Add(st.at)
		got, err := e.rls.ShouldRateLimit(context.Background(), st.req)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if diff := cmp.Diff(st.want, got, protocmp.Transform()); diff != "" {
			t.Errorf("step %d: response mismatch (-want +got):\n%s", i, diff)
		}
	}
}

func TestMostRestrictive(t *testing.T) {
	e := newEnv(t, algorithmsConfig, Options{})
	// 10/second and 3/90 minutes: after 2 hits the burst limit has 8
	// left, the sustained one 1: sustained is reported.
	got, err := e.rls.ShouldRateLimit(context.Background(), rqHits(2, "alg", desc("two", "m")))
	if err != nil {
		t.Fatal(err)
	}
	if st := got.Statuses[0]; st.CurrentLimit.Name != "sustained" || st.LimitRemaining != 1 {
		t.Errorf("reported %v", st)
	}
}
