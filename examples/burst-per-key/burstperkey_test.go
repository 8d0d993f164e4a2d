// The acceptance test of examples/burst-per-key: the numbers its README
// promises, against the memory backend and a real Redis, at fixed instants.
package burstperkey_test

import (
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

// start serves the example as the README runs it: -header-style draft03.
func start(t *testing.T, backend string) (*harness.Env, func(key string) *rlsv3.RateLimitResponse) {
	routes := harness.LoadRoutes(t, "envoy-routes.yaml", "api")
	e := harness.Start(t, "config", backend, server.Options{HeaderStyle: server.HeadersDraft03})
	call := func(key string) *rlsv3.RateLimitResponse {
		t.Helper()
		req := harness.Request{Headers: map[string]string{":method": "GET", ":path": "/v1/items", "x-api-key": key}}
		return e.Envoy(routes, "api", req, harness.OnRequest)
	}
	return e, call
}

// expectHeaders checks the whole set of headers of an answer.
func expectHeaders(t *testing.T, what string, resp *rlsv3.RateLimitResponse, want map[string]string) {
	t.Helper()
	if len(resp.GetResponseHeadersToAdd()) != len(want) {
		t.Errorf("%s: headers\n%swant %d headers %v", what, harness.Headers(resp), len(want), want)
	}
	for name, v := range want {
		if got, found := harness.Header(t, resp, name); !found || got != v {
			t.Errorf("%s: %s = %q (present %v), want %q", what, name, got, found, v)
		}
	}
}

func TestBurst(t *testing.T) {
	harness.ForEachBackend(t, func(t *testing.T, backend string) {
		_, call := start(t, backend)

		// 50 calls at one instant pass; the headers count down.
		for i := 1; i <= 50; i++ {
			resp := call("key-a")
			if resp.GetOverallCode() != ok {
				t.Fatalf("call %d of the burst: %s, want OK", i, resp.GetOverallCode())
			}
			st := resp.GetStatuses()[0]
			if got, want := st.GetLimitRemaining(), uint32(50-i); got != want {
				t.Fatalf("call %d: limit_remaining %d, want %d", i, got, want)
			}
			// The bucket is full again 120 ms per call taken, rounded up.
			reset := (time.Duration(i)*120*time.Millisecond + time.Second - 1) / time.Second
			switch i {
			case 1, 50:
				expectHeaders(t, "allowed", resp, map[string]string{
					"X-RateLimit-Limit":     "500",
					"X-RateLimit-Remaining": itoa(50 - i),
					"X-RateLimit-Reset":     itoa(int(reset)),
				})
			}
		}

		// The 51st is refused: remaining 0, retry in 120 ms (1 s rounded
		// up), the bucket full again in 6 s.
		resp := call("key-a")
		if resp.GetOverallCode() != over {
			t.Fatalf("call 51: %s, want OVER_LIMIT", resp.GetOverallCode())
		}
		st := resp.GetStatuses()[0]
		cl := st.GetCurrentLimit()
		if cl.GetRequestsPerUnit() != 500 || cl.GetUnit() != rlsv3.RateLimitResponse_RateLimit_MINUTE || cl.GetName() != "per_api_key" {
			t.Errorf("call 51: current_limit %v, want 500 per MINUTE named per_api_key", cl)
		}
		if st.GetLimitRemaining() != 0 || st.GetDurationUntilReset().GetSeconds() != 6 {
			t.Errorf("call 51: remaining %d, reset %ds; want 0 and 6s", st.GetLimitRemaining(), st.GetDurationUntilReset().GetSeconds())
		}
		expectHeaders(t, "refused", resp, map[string]string{
			"X-RateLimit-Limit":     "500",
			"X-RateLimit-Remaining": "0",
			"X-RateLimit-Reset":     "6",
			"Retry-After":           "1",
		})

		// Another key has its own bucket.
		if n := countOK(51, func() *rlsv3.RateLimitResponse { return call("key-b") }); n != 50 {
			t.Errorf("key-b: %d of 51 calls at once passed, want 50", n)
		}
	})
}

func TestSustainedRate(t *testing.T) {
	harness.ForEachBackend(t, func(t *testing.T, backend string) {
		e, call := start(t, backend)
		if n := countOK(50, func() *rlsv3.RateLimitResponse { return call("key-a") }); n != 50 {
			t.Fatalf("burst: %d of 50 passed", n)
		}
		// Then a call every 10 ms for a minute: one passes every 120 ms,
		// 500 in the minute, 8 or 9 in each second.
		total := 0
		perSecond := make([]int, 60)
		for step := 1; step <= 6000; step++ {
			e.Clock.Advance(10 * time.Millisecond)
			resp := call("key-a")
			switch resp.GetOverallCode() {
			case ok:
				total++
				perSecond[(step-1)/100]++
				if step%12 != 0 {
					t.Fatalf("a call passed at +%d ms, not on the 120 ms grid", step*10)
				}
			case over:
				if step%12 == 0 {
					t.Fatalf("the call at +%d ms was refused, want the 120 ms slot to pass", step*10)
				}
				if v, _ := harness.Header(t, resp, "Retry-After"); v != "1" {
					t.Fatalf("refusal at +%d ms: Retry-After %q, want 1", step*10, v)
				}
			}
		}
		if total != 500 {
			t.Errorf("%d calls passed in the minute after the burst, want 500", total)
		}
		for s, n := range perSecond {
			if n != 8 && n != 9 {
				t.Errorf("second %d: %d passed, want 8 or 9 (8.3 a second)", s+1, n)
			}
		}
	})
}

func TestEvery100ms(t *testing.T) {
	harness.ForEachBackend(t, func(t *testing.T, backend string) {
		e, call := start(t, backend)
		countOK(50, func() *rlsv3.RateLimitResponse { return call("key-a") })
		// A caller sending every 100 ms after the burst gets 5 calls of 6:
		// 50 of 60 in 6 s. Refused calls do not push the next slot back.
		passed := 0
		for range 60 {
			e.Clock.Advance(100 * time.Millisecond)
			if call("key-a").GetOverallCode() == ok {
				passed++
			}
		}
		if passed != 50 {
			t.Errorf("%d of 60 calls every 100 ms passed, want 50", passed)
		}
	})
}

func countOK(n int, call func() *rlsv3.RateLimitResponse) int {
	c := 0
	for range n {
		if call().GetOverallCode() == ok {
			c++
		}
	}
	return c
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
