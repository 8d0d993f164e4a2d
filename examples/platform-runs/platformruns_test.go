// The acceptance test of examples/platform-runs: layered limits that must
// all pass, charged all or nothing, each layer's status reported, the
// in-flight limit with its releases, and the IETF headers and problem+json
// bodies, against the memory backend and a real Redis, on a fixed clock.
package platformruns_test

import (
	"encoding/json"
	"fmt"
	"testing"

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

// caller is who ext_authz says is calling: one identity, and the org.
type caller struct {
	user, apiKey, internal, org string
}

func (c caller) metadata() map[string]string {
	md := map[string]string{}
	for k, v := range map[string]string{"user_id": c.user, "api_key_id": c.apiKey, "internal_service": c.internal, "org_id": c.org} {
		if v != "" {
			md["envoy.filters.http.ext_authz:"+k] = v
		}
	}
	return md
}

// route is one route of envoy-routes.yaml: its name, and a request to it.
type route struct {
	name, method, path string
	template           string // the path entry it sends
}

var (
	createRun = route{"create_run", "POST", "/v1/runs", "/v1/runs"}
	listRuns  = route{"list_runs", "GET", "/v1/runs", "/v1/runs"}
	getRun    = route{"get_run", "GET", "/v1/runs/run_8c1f", "/v1/runs/{id}"}
	status    = route{"status", "GET", "/v1/status", "/v1/status"}
)

// api plays Envoy in front of the runs API.
type api struct {
	t      *testing.T
	e      *harness.Env
	routes *harness.Routes
}

// start serves the example as the README runs it: -header-style ietf
// -over-limit-body problem+json.
func start(t *testing.T, backend string) api {
	routes := harness.LoadRoutes(t, "envoy-routes.yaml", "platform")
	e := harness.Start(t, "config", backend, server.Options{HeaderStyle: server.HeadersIETF, Body: server.BodyProblemJSON})
	return api{t: t, e: e, routes: routes}
}

func (a api) req(r route, c caller, remote string) harness.Request {
	return harness.Request{
		Headers:    map[string]string{":method": r.method, ":path": r.path},
		RemoteAddr: remote,
		Metadata:   c.metadata(),
	}
}

// begin is Envoy's call when a request starts.
func (a api) begin(r route, c caller) *rlsv3.RateLimitResponse {
	a.t.Helper()
	return a.e.Envoy(a.routes, r.name, a.req(r, c, "203.0.113.7"), harness.OnRequest)
}

// end is Envoy's call when the request's stream ends: the release, for
// callers of an org (Envoy sends nothing for the others).
func (a api) end(r route, c caller) {
	a.t.Helper()
	req := a.req(r, c, "203.0.113.7")
	if len(a.routes.Descriptors(a.t, r.name, req, harness.OnStreamDone)) == 0 {
		return
	}
	if resp := a.e.Envoy(a.routes, r.name, req, harness.OnStreamDone); resp.GetOverallCode() != ok {
		a.t.Fatalf("%s: release answered %s", r.name, resp.GetOverallCode())
	}
}

// do is a whole request: begin, and end when allowed.
func (a api) do(r route, c caller) *rlsv3.RateLimitResponse {
	a.t.Helper()
	resp := a.begin(r, c)
	if resp.GetOverallCode() == ok {
		a.end(r, c)
	}
	return resp
}

// layers reports what each layer of a request of c to r has used, as the
// admin API inspects it: per endpoint, org per minute, in flight, and run
// creations.
func (a api) layers(r route, c caller) [4]int64 {
	a.t.Helper()
	used := func(kv ...string) int64 {
		bs := a.e.Inspect("platform", harness.D(kv...)).GetBuckets()
		if len(bs) != 1 {
			a.t.Fatalf("inspect %v: %d buckets, want 1", kv, len(bs))
		}
		return bs[0].GetUsed()
	}
	return [4]int64{
		used("method", r.method, "path", r.template, "user", c.user),
		used("org", c.org),
		used("org", c.org, "concurrency", "requests"),
		used("org", c.org, "endpoint", "create_run"),
	}
}

// layer is what one descriptor status should say.
type layer struct {
	code      rlsv3.RateLimitResponse_Code
	name      string
	remaining uint32
}

func expectLayers(t *testing.T, what string, resp *rlsv3.RateLimitResponse, want ...layer) {
	t.Helper()
	sts := resp.GetStatuses()
	if len(sts) != len(want) {
		t.Fatalf("%s: %d statuses, want %d", what, len(sts), len(want))
	}
	for i, w := range want {
		st := sts[i]
		if st.GetCode() != w.code || st.GetCurrentLimit().GetName() != w.name || st.GetLimitRemaining() != w.remaining {
			t.Errorf("%s: status %d is %s %q remaining %d, want %s %q remaining %d", what, i, st.GetCode(), st.GetCurrentLimit().GetName(), st.GetLimitRemaining(), w.code, w.name, w.remaining)
		}
	}
}

func expectHeaders(t *testing.T, what string, resp *rlsv3.RateLimitResponse, want map[string]string) {
	t.Helper()
	if len(resp.GetResponseHeadersToAdd()) != len(want) {
		t.Errorf("%s: headers\n%swant %v", what, harness.Headers(resp), want)
	}
	for name, v := range want {
		if got, found := harness.Header(t, resp, name); !found || got != v {
			t.Errorf("%s: %s %q (present %v), want %q", what, name, got, found, v)
		}
	}
}

// problem is the problem+json body of a refusal.
type problem struct {
	Type             string   `json:"type"`
	Title            string   `json:"title"`
	Status           int      `json:"status"`
	Detail           string   `json:"detail"`
	Policy           string   `json:"policy"`
	ViolatedPolicies []string `json:"violated-policies"`
	RetryAfter       int64    `json:"retry_after"`
}

// expectRefusal checks a refusal's headers and body: the IETF fields of the
// refusing policy, Retry-After and the problem.
func expectRefusal(t *testing.T, what string, resp *rlsv3.RateLimitResponse, policy, quota, detail string, retry int64) {
	t.Helper()
	if resp.GetOverallCode() != over {
		t.Fatalf("%s: %s, want OVER_LIMIT", what, resp.GetOverallCode())
	}
	ra := fmt.Sprint(retry)
	expectHeaders(t, what, resp, map[string]string{
		"RateLimit-Policy": fmt.Sprintf("%q;%s", policy, quota),
		"RateLimit":        fmt.Sprintf("%q;r=0;t=%s", policy, ra),
		"Retry-After":      ra,
		"Content-Type":     "application/problem+json",
	})
	var p problem
	if err := json.Unmarshal(resp.GetRawBody(), &p); err != nil {
		t.Fatalf("%s: body %q: %v", what, resp.GetRawBody(), err)
	}
	want := problem{
		Type:             server.DefaultProblemType,
		Title:            "Rate limit exceeded",
		Status:           429,
		Detail:           detail,
		Policy:           policy,
		ViolatedPolicies: []string{policy},
		RetryAfter:       retry,
	}
	if fmt.Sprint(p) != fmt.Sprint(want) {
		t.Errorf("%s: body %s\nwant %+v", what, resp.GetRawBody(), want)
	}
}

// TestAllLayers: a request passes when every layer does, each layer has
// its own status, and the headers describe the one closest to its limit.
func TestAllLayers(t *testing.T) {
	harness.ForEachBackend(t, func(t *testing.T, backend string) {
		a := start(t, backend)
		ann := caller{user: "u_ann", org: "acme"}

		resp := a.begin(createRun, ann)
		if resp.GetOverallCode() != ok {
			t.Fatalf("POST /v1/runs: %s", resp.GetOverallCode())
		}
		expectLayers(t, "POST /v1/runs", resp,
			layer{ok, "endpoint_per_user", 9},
			layer{ok, "org_per_minute", 299},
			layer{ok, "org_in_flight", 49},
			layer{ok, "org_run_creations", 99})
		expectHeaders(t, "POST /v1/runs", resp, map[string]string{
			"RateLimit-Policy": `"endpoint_per_user";q=10;w=1`,
			"RateLimit":        `"endpoint_per_user";r=9;t=1`,
		})
		if len(resp.GetRawBody()) != 0 {
			t.Errorf("allowed answer with a body: %q", resp.GetRawBody())
		}
		if got := a.layers(createRun, ann); got != [4]int64{1, 1, 1, 1} {
			t.Errorf("used after POST /v1/runs starts: %v, want [1 1 1 1]", got)
		}
		a.end(createRun, ann)
		if got := a.layers(createRun, ann); got != [4]int64{1, 1, 0, 1} {
			t.Errorf("used after its stream ends: %v, want [1 1 0 1] (released)", got)
		}

		// Other routes send three layers; each endpoint has its own bucket.
		for i, r := range []route{listRuns, getRun} {
			resp := a.do(r, ann)
			expectLayers(t, r.name, resp,
				layer{ok, "endpoint_per_user", 9},
				layer{ok, "org_per_minute", uint32(298 - i)},
				layer{ok, "org_in_flight", 49})
		}
	})
}

// TestEachLayerRefusesAlone: each layer refuses on its own, the request is
// refused, the other layers' statuses are OK, and nothing is charged to
// them.
func TestEachLayerRefusesAlone(t *testing.T) {
	harness.ForEachBackend(t, func(t *testing.T, backend string) {
		t.Run("per endpoint", func(t *testing.T) {
			a := start(t, backend)
			bo := caller{user: "u_bo", org: "org-a"}
			for i := 1; i <= 10; i++ {
				if resp := a.do(listRuns, bo); resp.GetOverallCode() != ok {
					t.Fatalf("GET /v1/runs %d: %s", i, resp.GetOverallCode())
				}
			}
			before := a.layers(listRuns, bo)
			resp := a.begin(listRuns, bo)
			expectLayers(t, "11th GET /v1/runs in a second", resp,
				layer{over, "endpoint_per_user", 0},
				layer{ok, "org_per_minute", 290},
				layer{ok, "org_in_flight", 50})
			expectRefusal(t, "11th GET /v1/runs", resp, "endpoint_per_user", "q=10;w=1", "Rate limit exceeded: 10 per 1 second", 1)
			if after := a.layers(listRuns, bo); after != before {
				t.Errorf("used before the refusal %v, after %v: want unchanged", before, after)
			}
			// Another endpoint, another bucket.
			if resp := a.do(getRun, bo); resp.GetOverallCode() != ok {
				t.Errorf("GET /v1/runs/{id}: %s, want OK", resp.GetOverallCode())
			}
		})

		t.Run("org per minute", func(t *testing.T) {
			a := start(t, backend)
			for u := range 30 {
				c := caller{user: fmt.Sprintf("u_b%02d", u), org: "org-b"}
				for i := 1; i <= 10; i++ {
					if resp := a.do(listRuns, c); resp.GetOverallCode() != ok {
						t.Fatalf("%s, GET %d: %s", c.user, i, resp.GetOverallCode())
					}
				}
			}
			fresh := caller{user: "u_b30", org: "org-b"}
			before := a.layers(listRuns, fresh)
			resp := a.begin(listRuns, fresh)
			expectLayers(t, "301st GET of the org in a minute", resp,
				layer{ok, "endpoint_per_user", 10},
				layer{over, "org_per_minute", 0},
				layer{ok, "org_in_flight", 50})
			expectRefusal(t, "301st GET of the org", resp, "org_per_minute", "q=300;w=60", "Rate limit exceeded: 300 per 1 minute", 60)
			if after := a.layers(listRuns, fresh); after != before || after[0] != 0 {
				t.Errorf("used before the refusal %v, after %v: want unchanged, none for the endpoint", before, after)
			}
		})

		t.Run("in flight", func(t *testing.T) {
			a := start(t, backend)
			var running []caller
			for u := range 5 {
				c := caller{user: fmt.Sprintf("u_c%d", u), org: "org-c"}
				for i := 1; i <= 10; i++ {
					if resp := a.begin(createRun, c); resp.GetOverallCode() != ok {
						t.Fatalf("run %d of %s: %s", i, c.user, resp.GetOverallCode())
					}
					running = append(running, c)
				}
			}
			late := caller{user: "u_c5", org: "org-c"}
			before := a.layers(createRun, late)
			if before != [4]int64{0, 50, 50, 50} {
				t.Fatalf("used with 50 runs in flight: %v, want [0 50 50 50]", before)
			}
			resp := a.begin(createRun, late)
			expectLayers(t, "51st run in flight", resp,
				layer{ok, "endpoint_per_user", 10},
				layer{ok, "org_per_minute", 250},
				layer{over, "org_in_flight", 0},
				layer{ok, "org_run_creations", 50})
			// Retry when the oldest leases expire: acquisitions of the
			// 09:00-09:05 slot of lease/6 last until 09:35.
			expectRefusal(t, "51st run", resp, "org_in_flight", `q=50;qu="concurrent-requests"`, "Rate limit exceeded: 50 concurrent requests", 35*60)
			if after := a.layers(createRun, late); after != before {
				t.Errorf("used before the refusal %v, after %v: want unchanged", before, after)
			}
			// One run ends: its release lets exactly one more in.
			a.end(createRun, running[0])
			resp = a.begin(createRun, late)
			expectLayers(t, "after one run ends", resp,
				layer{ok, "endpoint_per_user", 9},
				layer{ok, "org_per_minute", 249},
				layer{ok, "org_in_flight", 0},
				layer{ok, "org_run_creations", 49})
			if resp := a.begin(createRun, late); resp.GetOverallCode() != over || resp.GetStatuses()[2].GetCode() != over {
				t.Errorf("the next run: %s, in flight %s; want OVER_LIMIT by org_in_flight", resp.GetOverallCode(), resp.GetStatuses()[2].GetCode())
			}
		})

		t.Run("run creations", func(t *testing.T) {
			a := start(t, backend)
			for u := range 10 {
				c := caller{user: fmt.Sprintf("u_d%d", u), org: "org-d"}
				for i := 1; i <= 10; i++ {
					if resp := a.do(createRun, c); resp.GetOverallCode() != ok {
						t.Fatalf("run %d of %s: %s", i, c.user, resp.GetOverallCode())
					}
				}
			}
			late := caller{user: "u_d10", org: "org-d"}
			before := a.layers(createRun, late)
			resp := a.begin(createRun, late)
			expectLayers(t, "101st run of the minute", resp,
				layer{ok, "endpoint_per_user", 10},
				layer{ok, "org_per_minute", 200},
				layer{ok, "org_in_flight", 50},
				layer{over, "org_run_creations", 0})
			expectRefusal(t, "101st run", resp, "org_run_creations", "q=100;w=60", "Rate limit exceeded: 100 per 1 minute", 60)
			if after := a.layers(createRun, late); after != before {
				t.Errorf("used before the refusal %v, after %v: want unchanged", before, after)
			}
			// The extra layer is on POST /v1/runs only.
			if resp := a.do(listRuns, late); resp.GetOverallCode() != ok {
				t.Errorf("GET /v1/runs: %s, want OK", resp.GetOverallCode())
			}
		})
	})
}

// TestIdentities: the per-endpoint limit of each kind of caller, at one
// instant.
func TestIdentities(t *testing.T) {
	harness.ForEachBackend(t, func(t *testing.T, backend string) {
		a := start(t, backend)
		tests := []struct {
			name   string
			c      caller
			limit  string
			n      int
			layers int
		}{
			{"user", caller{user: "u_eve", org: "org-e"}, "endpoint_per_user", 10, 3},
			{"API key", caller{apiKey: "key_41", org: "org-e"}, "endpoint_per_api_key", 20, 3},
			{"internal service", caller{internal: "billing"}, "endpoint_per_internal_service", 100, 1},
		}
		for _, tt := range tests {
			passed := 0
			for range tt.n + 1 {
				resp := a.do(getRun, tt.c)
				if len(resp.GetStatuses()) != tt.layers || resp.GetStatuses()[0].GetCurrentLimit().GetName() != tt.limit {
					t.Fatalf("%s: statuses %v, want %d layers, the first %s", tt.name, resp.GetStatuses(), tt.layers, tt.limit)
				}
				if resp.GetOverallCode() == ok {
					passed++
				}
			}
			if passed != tt.n {
				t.Errorf("%s: %d of %d passed at once, want %d", tt.name, passed, tt.n+1, tt.n)
			}
		}

		// Unauthenticated: per client address, IPv6 by /64.
		statusFrom := func(addr string) *rlsv3.RateLimitResponse {
			t.Helper()
			return a.e.Envoy(a.routes, status.name, a.req(status, caller{}, addr), harness.OnRequest)
		}
		for _, addrs := range [][]string{
			{"198.51.100.4", "198.51.100.4", "198.51.100.4"},
			{"2001:db8:1:2::10", "2001:db8:1:2::99", "2001:db8:1:2:ffff::1"}, // one /64
		} {
			for i, addr := range addrs {
				resp := statusFrom(addr)
				want := ok
				if i == 2 {
					want = over
				}
				if resp.GetOverallCode() != want || resp.GetStatuses()[0].GetCurrentLimit().GetName() != "endpoint_per_client_address" {
					t.Errorf("GET /v1/status from %s (call %d): %s by %q, want %s by endpoint_per_client_address", addr, i+1, resp.GetOverallCode(), resp.GetStatuses()[0].GetCurrentLimit().GetName(), want)
				}
			}
		}
		if resp := statusFrom("198.51.100.5"); resp.GetOverallCode() != ok {
			t.Errorf("GET /v1/status from another address: %s, want OK", resp.GetOverallCode())
		}
	})
}
