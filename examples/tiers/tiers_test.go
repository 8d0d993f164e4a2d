// The acceptance test of examples/tiers: what each tier gets at one instant
// and per second, that a caller keeps one bucket across tiers, and that a
// tier of multiplier 0 is refused, against the memory backend and a real
// Redis, on a fixed clock.
package tiers_test

import (
	"bytes"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.uber.org/goleak"

	"github.com/ratelimitd/ratelimitd/examples/internal/harness"
	"github.com/ratelimitd/ratelimitd/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	ok   = rlsv3.RateLimitResponse_OK
	over = rlsv3.RateLimitResponse_OVER_LIMIT
)

// client is a caller behind Envoy: its id and tier as ext_authz reports
// them ("" for no tier).
type client struct {
	t      *testing.T
	e      *harness.Env
	routes *harness.Routes
	caller string
}

func (c client) call(path, tier string) *rlsv3.RateLimitResponse {
	c.t.Helper()
	md := map[string]string{"envoy.filters.http.ext_authz:caller_id": c.caller}
	if tier != "" {
		md["envoy.filters.http.ext_authz:tier"] = tier
	}
	req := harness.Request{Headers: map[string]string{":method": "GET", ":path": path + "?q=x"}, Metadata: md}
	return c.e.Envoy(c.routes, "v1", req, harness.OnRequest)
}

// countOK makes n calls at the current instant and counts the OK answers.
func (c client) countOK(n int, path, tier string) int {
	c.t.Helper()
	passed := 0
	for range n {
		if c.call(path, tier).GetOverallCode() == ok {
			passed++
		}
	}
	return passed
}

func start(t *testing.T, backend string) (*harness.Env, func(caller string) client) {
	routes := harness.LoadRoutes(t, "envoy-routes.yaml", "api")
	e := harness.Start(t, "config", backend, server.Options{})
	return e, func(caller string) client { return client{t: t, e: e, routes: routes, caller: caller} }
}

// TestTiers: per tier, what passes at one instant (the burst, 3 seconds of
// the rate) and in each following second (the rate), on both endpoints.
func TestTiers(t *testing.T) {
	tests := []struct {
		tier       string // as ext_authz reports it; "" none
		path       string
		rate, burn int
	}{
		{"admin", "/v1/search", 100, 300},
		{"user", "/v1/search", 10, 30},
		{"a2a", "/v1/search", 50, 150},
		{"mcp", "/v1/search", 50, 150},
		{"service", "/v1/search", 50, 150},
		{"anon", "/v1/search", 5, 15},
		{"", "/v1/search", 5, 15},     // no tier: Envoy's default_value, anon
		{"gold", "/v1/search", 5, 15}, // a tier the config does not list: its default, anon
		{"admin", "/v1/runs", 20, 60},
		{"user", "/v1/runs", 2, 6},
		{"anon", "/v1/runs", 1, 3}, // 2 × 0.5 = 1 a second, 6 × 0.5 = 3 at once
	}
	harness.ForEachBackend(t, func(t *testing.T, backend string) {
		e, caller := start(t, backend)
		for i, tt := range tests {
			e.Clock.Set(harness.T0)
			c := caller("caller-" + itoa(i))
			first := c.call(tt.path, tt.tier)
			cl := first.GetStatuses()[0].GetCurrentLimit()
			if first.GetOverallCode() != ok || cl.GetRequestsPerUnit() != uint32(tt.rate) || cl.GetUnit() != rlsv3.RateLimitResponse_RateLimit_SECOND {
				t.Errorf("tier %q %s: first call %s, current_limit %v; want OK at %d per SECOND", tt.tier, tt.path, first.GetOverallCode(), cl, tt.rate)
			}
			if got := first.GetStatuses()[0].GetLimitRemaining(); got != uint32(tt.burn-1) {
				t.Errorf("tier %q %s: remaining after one call %d, want %d (the burst less one)", tt.tier, tt.path, got, tt.burn-1)
			}
			if n := 1 + c.countOK(tt.burn, tt.path, tt.tier); n != tt.burn {
				t.Errorf("tier %q %s: %d passed at one instant, want %d", tt.tier, tt.path, n, tt.burn)
			}
			for s := 1; s <= 3; s++ {
				e.Clock.Advance(time.Second)
				if n := c.countOK(tt.rate+1, tt.path, tt.tier); n != tt.rate {
					t.Errorf("tier %q %s: %d passed in second %d, want %d", tt.tier, tt.path, n, s, tt.rate)
				}
			}
		}
	})
}

// TestTierChange: a caller whose tier changes keeps its bucket: the tier
// entry is taken out before keying, and only the limit scales.
func TestTierChange(t *testing.T) {
	harness.ForEachBackend(t, func(t *testing.T, backend string) {
		e, caller := start(t, backend)
		c := caller("user-7")
		if n := c.countOK(31, "/v1/search", "user"); n != 30 {
			t.Fatalf("as user: %d passed at once, want 30", n)
		}
		// Promoted at the same instant: the admin bucket holds 300, of
		// which 30 are spent.
		if n := c.countOK(301, "/v1/search", "admin"); n != 270 {
			t.Errorf("then as admin: %d passed at once, want 270 (300 less the 30 spent)", n)
		}
		// Back to user: 300 spent fill a bucket of 30.
		if n := c.countOK(1, "/v1/search", "user"); n != 0 {
			t.Errorf("then as user again: %d passed, want 0", n)
		}
		// One bucket key whatever the tier.
		var key []byte
		for _, tier := range []string{"user", "admin", "anon", "mcp"} {
			ins := e.Inspect("api", harness.D("path", "/v1/search", "caller", "user-7", "tier", tier))
			if len(ins.GetBuckets()) != 1 {
				t.Fatalf("inspect as %s: %d buckets, want 1", tier, len(ins.GetBuckets()))
			}
			k := ins.GetBuckets()[0].GetKey()
			if key == nil {
				key = k
			} else if !bytes.Equal(k, key) {
				t.Errorf("inspect as %s: bucket key %q, as user %q: want the same bucket", tier, k, key)
			}
		}
	})
}

// TestBlocked: a tier of multiplier 0 is refused, with a current limit of
// 0, and charges nothing.
func TestBlocked(t *testing.T) {
	harness.ForEachBackend(t, func(t *testing.T, backend string) {
		_, caller := start(t, backend)
		c := caller("user-9")
		for range 3 {
			resp := c.call("/v1/search", "blocked")
			st := resp.GetStatuses()[0]
			if resp.GetOverallCode() != over || st.GetCode() != over || st.GetCurrentLimit().GetRequestsPerUnit() != 0 || st.GetLimitRemaining() != 0 {
				t.Fatalf("blocked: %s, status %v; want OVER_LIMIT with a current limit of 0", resp.GetOverallCode(), st)
			}
		}
		// The refusals took nothing from the caller's bucket.
		if n := c.countOK(31, "/v1/search", "user"); n != 30 {
			t.Errorf("as user after being blocked: %d passed at once, want 30", n)
		}
	})
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
