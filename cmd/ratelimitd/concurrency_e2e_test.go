package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestConcurrencyEndToEnd plays Envoy's two calls of examples/concurrency
// over gRPC against the built binary, with the example's own config and a
// smaller max_in_flight: acquire (request start) up to the maximum, be
// refused, release (stream done, is_negative_hits), acquire again.
func TestConcurrencyEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	example, err := os.ReadFile("../../examples/concurrency/config/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The example's config, with 3 in flight so that the test stays short.
	if !strings.Contains(string(example), "max_in_flight: 50") {
		t.Fatal("the example config no longer holds max_in_flight: 50")
	}
	cfg := strings.Replace(string(example), "max_in_flight: 50", "max_in_flight: 3", 1)
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := buildBinary(t)
	p := startProc(t, bin, "-config", dir)
	c := dial(t, p.grpcAddr)

	start := func(org string) *ratelimitv3.RateLimitDescriptor {
		return descriptor("org", org, "concurrency", "runs")
	}
	done := func(org string) *ratelimitv3.RateLimitDescriptor {
		// As Envoy sends hits_addend {number: 1, is_negative_hits: true}.
		d := start(org)
		d.HitsAddend = wrapperspb.UInt64(1)
		d.IsNegativeHits = true
		return d
	}
	expect := func(what string, d *ratelimitv3.RateLimitDescriptor, code rlsv3.RateLimitResponse_Code, remaining uint32) {
		t.Helper()
		resp := c.call(t, "runs", d)
		st := resp.Statuses[0]
		if resp.OverallCode != code || st.Code != code || st.LimitRemaining != remaining {
			t.Fatalf("%s: overall %v, status %v", what, resp.OverallCode, st)
		}
		cl := st.CurrentLimit
		if cl.GetRequestsPerUnit() != 3 || cl.GetUnit() != rlsv3.RateLimitResponse_RateLimit_UNKNOWN || cl.GetName() != "runs_in_flight" {
			t.Fatalf("%s: current_limit %v, want max_in_flight 3, no unit", what, cl)
		}
		if s := st.GetDurationUntilReset().GetSeconds(); s < 30*60 || s > 35*60 {
			t.Fatalf("%s: duration_until_reset %ds, want within the lease (30 to 35 min)", what, s)
		}
	}
	expect("run 1 starts", start("acme"), rlsv3.RateLimitResponse_OK, 2)
	expect("run 2 starts", start("acme"), rlsv3.RateLimitResponse_OK, 1)
	expect("run 3 starts", start("acme"), rlsv3.RateLimitResponse_OK, 0)
	expect("run 4 is refused", start("acme"), rlsv3.RateLimitResponse_OVER_LIMIT, 0)
	expect("another org is not", start("globex"), rlsv3.RateLimitResponse_OK, 2)
	expect("run 2 is done", done("acme"), rlsv3.RateLimitResponse_OK, 1)
	expect("run 4 starts now", start("acme"), rlsv3.RateLimitResponse_OK, 0)
	expect("and run 5 waits", start("acme"), rlsv3.RateLimitResponse_OVER_LIMIT, 0)
	for i := 0; i < 5; i++ { // more releases than runs: the count stops at 0
		c.call(t, "runs", done("acme"))
	}
	expect("after extra releases", start("acme"), rlsv3.RateLimitResponse_OK, 2)
}
