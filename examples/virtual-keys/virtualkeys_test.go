// The acceptance test of examples/virtual-keys: requests and tokens per
// hour and per day by plan, tokens charged at stream end, checks that
// consume nothing, and a key moved to the pro plan through the admin API,
// against the memory backend and a real Redis, on a fixed clock.
package virtualkeys_test

import (
	"strconv"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.uber.org/goleak"

	"github.com/ratelimitd/ratelimitd/examples/internal/harness"
	adminv1 "github.com/ratelimitd/ratelimitd/proto/ratelimitd/admin/v1"
	"github.com/ratelimitd/ratelimitd/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	ok   = rlsv3.RateLimitResponse_OK
	over = rlsv3.RateLimitResponse_OVER_LIMIT
)

// gateway plays Envoy in front of the LLM for one virtual key.
type gateway struct {
	t      *testing.T
	e      *harness.Env
	routes *harness.Routes
	key    string
}

func start(t *testing.T, backend string) (*harness.Env, func(key string) gateway) {
	routes := harness.LoadRoutes(t, "envoy-routes.yaml", "llm")
	e := harness.Start(t, "config", backend, server.Options{HeaderStyle: server.HeadersIETF})
	return e, func(key string) gateway { return gateway{t: t, e: e, routes: routes, key: key} }
}

func (g gateway) request(path string, tokens int) harness.Request {
	md := map[string]string{"envoy.filters.http.ext_authz:virtual_key_id": g.key}
	if tokens >= 0 {
		md["llm.usage:total_tokens"] = strconv.Itoa(tokens)
	}
	return harness.Request{Headers: map[string]string{":method": "POST", ":path": path}, Metadata: md}
}

// start is the call Envoy makes when a chat completion starts: the
// request, and the check of the key's tokens.
func (g gateway) start() *rlsv3.RateLimitResponse {
	g.t.Helper()
	return g.e.Envoy(g.routes, "chat_completions", g.request("/v1/chat/completions", -1), harness.OnRequest)
}

// done is the call Envoy makes when the completion's stream ends, with the
// tokens the response used.
func (g gateway) done(tokens int) *rlsv3.RateLimitResponse {
	g.t.Helper()
	return g.e.Envoy(g.routes, "chat_completions", g.request("/v1/chat/completions", tokens), harness.OnStreamDone)
}

// complete is a whole completion: start, and when allowed, done with
// tokens. It returns the start's answer.
func (g gateway) complete(tokens int) *rlsv3.RateLimitResponse {
	g.t.Helper()
	resp := g.start()
	if resp.GetOverallCode() == ok {
		g.done(tokens)
	}
	return resp
}

// usage is GET /v1/key/usage: both meters checked, nothing consumed.
func (g gateway) usage() *rlsv3.RateLimitResponse {
	g.t.Helper()
	return g.e.Envoy(g.routes, "key_usage", g.request("/v1/key/usage", -1), harness.OnRequest)
}

// buckets returns used per bucket of a meter ("requests" or "tokens"), as
// the admin API reports it: [hourly, daily].
func (g gateway) used(meter string) [2]int64 {
	g.t.Helper()
	d := harness.D("virtual_key", g.key)
	if meter == "tokens" {
		d = harness.D("virtual_key", g.key, "usage", "tokens")
	}
	bs := g.e.Inspect("llm", d).GetBuckets()
	if len(bs) != 2 {
		g.t.Fatalf("inspect %s: %d buckets, want 2 (hourly, daily)", meter, len(bs))
	}
	return [2]int64{bs[0].GetUsed(), bs[1].GetUsed()}
}

// status checks one descriptor status: code, limit name and remaining.
func status(t *testing.T, what string, st *rlsv3.RateLimitResponse_DescriptorStatus, code rlsv3.RateLimitResponse_Code, name string, remaining uint32) {
	t.Helper()
	if st.GetCode() != code || st.GetCurrentLimit().GetName() != name || st.GetLimitRemaining() != remaining {
		t.Errorf("%s: %s %q remaining %d, want %s %q remaining %d", what, st.GetCode(), st.GetCurrentLimit().GetName(), st.GetLimitRemaining(), code, name, remaining)
	}
}

// TestChecksConsumeNothing: hits_addend 0 on a descriptor reports what is
// left without consuming it.
func TestChecksConsumeNothing(t *testing.T) {
	harness.ForEachBackend(t, func(t *testing.T, backend string) {
		_, gw := start(t, backend)
		g := gw("vk_alice")
		for range 5 {
			resp := g.usage()
			if resp.GetOverallCode() != ok {
				t.Fatalf("usage: %s", resp.GetOverallCode())
			}
			status(t, "usage, requests", resp.GetStatuses()[0], ok, "starter_requests_hourly", 100)
			status(t, "usage, tokens", resp.GetStatuses()[1], ok, "starter_tokens_hourly", 20000)
		}
		// The closest to its limit is in the headers: the hourly requests.
		if v, _ := harness.Header(t, g.usage(), "RateLimit"); v != `"starter_requests_hourly";r=100;t=3600` {
			t.Errorf("usage: RateLimit %q", v)
		}
		// A completion takes one request, and its tokens at the end.
		resp := g.start()
		status(t, "start", resp.GetStatuses()[0], ok, "starter_requests_hourly", 99)
		status(t, "start, tokens check", resp.GetStatuses()[1], ok, "starter_tokens_hourly", 20000)
		g.done(1234)
		for range 5 {
			resp := g.usage()
			status(t, "usage after one completion, requests", resp.GetStatuses()[0], ok, "starter_requests_hourly", 99)
			status(t, "usage after one completion, tokens", resp.GetStatuses()[1], ok, "starter_tokens_hourly", 20000-1234)
		}
		if got := g.used("requests"); got != [2]int64{1, 1} {
			t.Errorf("requests used (hourly, daily) %v, want [1 1]", got)
		}
		if got := g.used("tokens"); got != [2]int64{1234, 1234} {
			t.Errorf("tokens used (hourly, daily) %v, want [1234 1234]", got)
		}
		// The check refuses above the limit, not at it: a key that has
		// spent exactly its 20000 tokens still starts a completion.
		g.done(20000 - 1234)
		resp = g.start()
		if resp.GetOverallCode() != ok {
			t.Errorf("at exactly 20000 tokens: %s, want OK", resp.GetOverallCode())
		}
		status(t, "at exactly 20000 tokens", resp.GetStatuses()[1], ok, "starter_tokens_hourly", 0)
	})
}

// TestHourlyAndDaily: the hourly budgets come back every hour, the daily
// ones at midnight UTC; tokens are counted even past the limit.
func TestHourlyAndDaily(t *testing.T) {
	harness.ForEachBackend(t, func(t *testing.T, backend string) {
		e, gw := start(t, backend)
		g := gw("vk_bob")

		// 09:00: seven completions of 3000 tokens. The seventh's tokens
		// take the key to 21000, past the hourly 20000: counted anyway.
		for i := 1; i <= 7; i++ {
			if resp := g.start(); resp.GetOverallCode() != ok {
				t.Fatalf("09:00, completion %d: %s", i, resp.GetOverallCode())
			}
			resp := g.done(3000)
			want := ok
			if i == 7 {
				want = over // Envoy ignores the answer of a stream-done call
			}
			if resp.GetOverallCode() != want {
				t.Errorf("09:00, tokens of completion %d: %s, want %s", i, resp.GetOverallCode(), want)
			}
		}
		if got := g.used("tokens"); got != [2]int64{21000, 21000} {
			t.Fatalf("09:00: tokens used (hourly, daily) %v, want [21000 21000]", got)
		}
		// The eighth is refused by the tokens check, and takes no request.
		resp := g.start()
		if resp.GetOverallCode() != over {
			t.Fatalf("09:00, completion 8: %s, want OVER_LIMIT", resp.GetOverallCode())
		}
		status(t, "09:00, completion 8, tokens", resp.GetStatuses()[1], over, "starter_tokens_hourly", 0)
		if got := g.used("requests"); got != [2]int64{7, 7} {
			t.Errorf("09:00: requests used %v after a refusal, want [7 7]", got)
		}

		// 10:00: the hourly windows are new; the day keeps its 21000.
		e.Clock.Set(harness.T0.Add(time.Hour))
		if got := g.used("tokens"); got != [2]int64{0, 21000} {
			t.Errorf("10:00: tokens used (hourly, daily) %v, want [0 21000]", got)
		}
		if got := g.used("requests"); got != [2]int64{0, 7} {
			t.Errorf("10:00: requests used (hourly, daily) %v, want [0 7]", got)
		}
		for i := 1; i <= 7; i++ {
			if resp := g.complete(3000); resp.GetOverallCode() != ok {
				t.Fatalf("10:00, completion %d: %s", i, resp.GetOverallCode())
			}
		}
		if resp := g.start(); resp.GetOverallCode() != over {
			t.Fatalf("10:00, completion 8: %s, want OVER_LIMIT", resp.GetOverallCode())
		}

		// 11:00: the hourly tokens are whole, but the day has 8000 left
		// (50000 - 42000), and the status shows the daily limit.
		e.Clock.Set(harness.T0.Add(2 * time.Hour))
		resp = g.usage()
		status(t, "11:00, usage, tokens", resp.GetStatuses()[1], ok, "starter_tokens_daily", 8000)
		for i := 1; i <= 3; i++ {
			if resp := g.complete(3000); resp.GetOverallCode() != ok {
				t.Fatalf("11:00, completion %d: %s", i, resp.GetOverallCode())
			}
		}
		// 51000 of the day's 50000: refused by the daily limit, with 11000
		// of the hour still unused.
		resp = g.start()
		if resp.GetOverallCode() != over {
			t.Fatalf("11:00, completion 4: %s, want OVER_LIMIT", resp.GetOverallCode())
		}
		status(t, "11:00, completion 4, tokens", resp.GetStatuses()[1], over, "starter_tokens_daily", 0)
		if cl := resp.GetStatuses()[1].GetCurrentLimit(); cl.GetRequestsPerUnit() != 50000 || cl.GetUnit() != rlsv3.RateLimitResponse_RateLimit_DAY {
			t.Errorf("11:00: current_limit %v, want 50000 per DAY", cl)
		}
		// The client is told to come back at midnight UTC, in 13 hours.
		for name, want := range map[string]string{
			"RateLimit-Policy": `"starter_tokens_daily";q=50000;w=86400`,
			"RateLimit":        `"starter_tokens_daily";r=0;t=46800`,
			"Retry-After":      "46800",
		} {
			if got, _ := harness.Header(t, resp, name); got != want {
				t.Errorf("11:00, completion 4: %s %q, want %q", name, got, want)
			}
		}
		if got := g.used("tokens"); got != [2]int64{9000, 51000} {
			t.Errorf("11:00: tokens used (hourly, daily) %v, want [9000 51000]", got)
		}

		// Every hour of the day after: still refused. The next UTC day: not.
		for h := 12; h <= 23; h++ {
			e.Clock.Set(time.Date(2026, 3, 2, h, 59, 59, 0, time.UTC))
			if resp := g.start(); resp.GetOverallCode() != over {
				t.Fatalf("%02d:59:59: %s, want OVER_LIMIT (the day's tokens are spent)", h, resp.GetOverallCode())
			}
		}
		e.Clock.Set(time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC))
		resp = g.start()
		if resp.GetOverallCode() != ok {
			t.Fatalf("next day 00:00: %s, want OK", resp.GetOverallCode())
		}
		status(t, "next day, tokens", resp.GetStatuses()[1], ok, "starter_tokens_hourly", 20000)
		if got := g.used("tokens"); got != [2]int64{0, 0} {
			t.Errorf("next day: tokens used %v, want [0 0]", got)
		}
	})
}

// TestMoveToPro: an operator moves one key to the pro plan through the
// admin API; its usage so far still counts, other keys stay on starter.
func TestMoveToPro(t *testing.T) {
	harness.ForEachBackend(t, func(t *testing.T, backend string) {
		e, gw := start(t, backend)
		carol, dave := gw("vk_carol"), gw("vk_dave")
		for _, g := range []gateway{carol, dave} {
			for i := 1; i <= 100; i++ {
				if resp := g.complete(10); resp.GetOverallCode() != ok {
					t.Fatalf("%s, completion %d: %s", g.key, i, resp.GetOverallCode())
				}
			}
			resp := g.start()
			if resp.GetOverallCode() != over {
				t.Fatalf("%s, completion 101: %s, want OVER_LIMIT", g.key, resp.GetOverallCode())
			}
			status(t, g.key+", completion 101", resp.GetStatuses()[0], over, "starter_requests_hourly", 0)
		}

		set, err := e.Admin.SetOverride(e.AdminContext(), &adminv1.SetOverrideRequest{Override: &adminv1.Override{
			Domain:  "llm",
			Entries: []*adminv1.Entry{{Key: "virtual_key", Value: "vk_carol"}},
			Value:   &adminv1.Override_Policy{Policy: "pro"},
			Reason:  "upgraded to pro",
		}})
		if err != nil {
			t.Fatalf("SetOverride policy pro: %v", err)
		}
		if set.GetOverride().GetPolicy() != "pro" {
			t.Errorf("SetOverride answered %v", set.GetOverride())
		}

		// Carol is on pro now: 1000 an hour, of which 100 are spent.
		resp := carol.start()
		if resp.GetOverallCode() != ok {
			t.Fatalf("vk_carol on pro: %s, want OK", resp.GetOverallCode())
		}
		status(t, "vk_carol on pro", resp.GetStatuses()[0], ok, "pro_requests_hourly", 899)
		status(t, "vk_carol on pro, tokens", resp.GetStatuses()[1], ok, "pro_tokens_hourly", 200000-1000)
		if cl := resp.GetStatuses()[0].GetCurrentLimit(); cl.GetRequestsPerUnit() != 1000 || cl.GetUnit() != rlsv3.RateLimitResponse_RateLimit_HOUR {
			t.Errorf("vk_carol on pro: current_limit %v, want 1000 per HOUR", cl)
		}
		carol.done(10)
		for i := 102; i <= 1000; i++ {
			if resp := carol.complete(10); resp.GetOverallCode() != ok {
				t.Fatalf("vk_carol on pro, completion %d: %s", i, resp.GetOverallCode())
			}
		}
		if resp := carol.start(); resp.GetOverallCode() != over {
			t.Errorf("vk_carol on pro, completion 1001: %s, want OVER_LIMIT", resp.GetOverallCode())
		}
		// Dave is still on starter.
		if resp := dave.start(); resp.GetOverallCode() != over {
			t.Errorf("vk_dave: %s, want OVER_LIMIT (starter)", resp.GetOverallCode())
		}

		// Back to starter: the override removed, Carol's 1000 requests of
		// the day fill starter's hourly 100 and daily 1000 alike; the
		// status names the one that refuses longest, the daily.
		if _, err := e.Admin.DeleteOverride(e.AdminContext(), &adminv1.DeleteOverrideRequest{Domain: "llm", Entries: []*adminv1.Entry{{Key: "virtual_key", Value: "vk_carol"}}}); err != nil {
			t.Fatalf("DeleteOverride: %v", err)
		}
		resp = carol.start()
		if resp.GetOverallCode() != over {
			t.Fatalf("vk_carol back on starter: %s, want OVER_LIMIT", resp.GetOverallCode())
		}
		status(t, "vk_carol back on starter", resp.GetStatuses()[0], over, "starter_requests_daily", 0)
	})
}
