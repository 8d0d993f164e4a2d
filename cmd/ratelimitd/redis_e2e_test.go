package main

// The Redis end-to-end tests run the built binary against real Redis
// processes started by internal/redistest on free loopback ports: several
// ratelimitd instances sharing one Redis (standalone, Cluster, Sentinel),
// Redis killed and restarted under load, replicas with skewed clocks, and a
// start while Redis is down. As in e2e_test.go, every wait is bounded
// polling; no assertion depends on how long something took.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

// redisE2EConfig: [user=*] allows limit a day, or an hour with unit hour;
// [load=*] allows (practically) everything.
func redisE2EConfig(unit string, limit int) string {
	return fmt.Sprintf(`domain: redis-e2e
descriptors:
  - key: user
    rate_limit: {unit: %s, requests_per_unit: %d}
  - key: load
    rate_limit: {unit: day, requests_per_unit: 4000000000}
`, unit, limit)
}

// startWith starts bin with args and the environment variables env added.
func startWith(t *testing.T, bin string, env map[string]string, args ...string) *proc {
	t.Helper()
	// startProc passes os.Environ() to the process: set env only around it.
	for k, v := range env {
		old, had := os.LookupEnv(k)
		os.Setenv(k, v)
		defer func() {
			if had {
				os.Setenv(k, old)
			} else {
				os.Unsetenv(k)
			}
		}()
	}
	return startProc(t, bin, args...)
}

// redisInstance starts a ratelimitd on the Redis at addrs with the test's
// config in dir.
func redisInstance(t *testing.T, bin, dir string, env map[string]string, addrs []string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"-config", dir, "-backend", "redis", "-redis-addr", strings.Join(addrs, ",")}, extra...)
	return startWith(t, bin, env, args...)
}

func configDir(t *testing.T, data string) string {
	t.Helper()
	dir := t.TempDir()
	writeConfig(t, filepath.Join(dir, "config.yaml"), data)
	return dir
}

// try is one ShouldRateLimit with a bounded wait: the response, or the
// call's error.
func (c *rls) try(domain string, ds ...*ratelimitv3.RateLimitDescriptor) (*rlsv3.RateLimitResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	return c.rl.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: domain, Descriptors: ds})
}

func readyz(t *testing.T, p *proc) (int, string) {
	t.Helper()
	return get(t, p.httpAddr, "/readyz")
}

// admitExactly sends 3×limit calls for one fresh user, spread over
// clients on every instance from many goroutines, and checks that exactly
// limit were admitted. A window boundary during the run (by the local
// clock, which Redis shares) restarts it with a fresh user.
func admitExactly(t *testing.T, instances []*proc, unit time.Duration, limit int) {
	t.Helper()
	const goroutinesPerInstance = 8
	var clients []*rls
	for _, p := range instances {
		for range goroutinesPerInstance {
			clients = append(clients, dial(t, p.grpcAddr))
		}
	}
	for attempt := 0; attempt < 5; attempt++ {
		user := fmt.Sprintf("exact-%d-%d", time.Now().UnixNano(), attempt)
		startWindow := time.Now().Truncate(unit)
		total := int64(3 * limit)
		var sent, admitted, refused atomic.Int64
		var errs sync.Map
		var wg sync.WaitGroup
		for _, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for sent.Add(1) <= total {
					resp, err := c.try("redis-e2e", descriptor("user", user))
					switch {
					case err != nil:
						errs.Store(err.Error(), true)
					case resp.OverallCode == rlsv3.RateLimitResponse_OK:
						admitted.Add(1)
					default:
						refused.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if !time.Now().Truncate(unit).Equal(startWindow) {
			t.Logf("attempt %d crossed a window boundary: trying again", attempt)
			continue
		}
		errs.Range(func(k, _ any) bool {
			t.Errorf("call failed: %v", k)
			return true
		})
		if admitted.Load() != int64(limit) || admitted.Load()+refused.Load() != total {
			t.Errorf("admitted %d and refused %d of %d calls from %d clients on %d instances; want exactly %d admitted",
				admitted.Load(), refused.Load(), total, len(clients), len(instances), limit)
		}
		return
	}
	t.Fatal("every attempt crossed a window boundary")
}

// patientArgs make the exactness runs immune to a slow machine: the test
// asserts counts, not latency, and a call that times out after Redis
// counted it would make the count unknowable. The socket read and write
// timeouts (1s by default) would cut a slow call short before the backend
// timeout, so they are raised to match.
var patientArgs = []string{"-backend-timeout", "5s", "-redis-read-timeout", "5s", "-redis-write-timeout", "5s", "-breaker-failures", "0"}

func testRedisExactStandalone(t *testing.T, bin string) {
	r := redistest.Standalone(t)
	dir := configDir(t, redisE2EConfig("day", 100))
	var ps []*proc
	for range 3 {
		ps = append(ps, redisInstance(t, bin, dir, nil, []string{r.Addr}, patientArgs...))
	}
	admitExactly(t, ps, 24*time.Hour, 100)
}

func testRedisExactCluster(t *testing.T, bin string) {
	cl := redistest.Cluster(t)
	dir := configDir(t, redisE2EConfig("day", 100))
	var ps []*proc
	for range 3 {
		ps = append(ps, redisInstance(t, bin, dir, nil, cl.Addrs, append([]string{"-redis-topology", "cluster"}, patientArgs...)...))
	}
	admitExactly(t, ps, 24*time.Hour, 100)
}

// Two replicas whose clocks are 90 minutes apart still share one hourly
// window: the scripts read Redis TIME, not the replicas' clocks. Deciding
// on the replicas' clocks would put them in different windows and admit
// twice the limit.
func testRedisSkewedClocks(t *testing.T, bin string) {
	r := redistest.Standalone(t)
	dir := configDir(t, redisE2EConfig("hour", 50))
	a := redisInstance(t, bin, dir, nil, []string{r.Addr}, patientArgs...)
	b := redisInstance(t, bin, dir, map[string]string{testClockOffsetEnv: "-90m"}, []string{r.Addr}, patientArgs...)
	admitExactly(t, []*proc{a, b}, time.Hour, 50)
}

// load runs calls on c from a few goroutines until stop is closed and
// records every outcome: the codes of the errors, and how many succeeded.
type load struct {
	ok    atomic.Int64
	mu    sync.Mutex
	codes map[codes.Code]int
	wg    sync.WaitGroup
	stop  chan struct{}
}

func startLoad(c *rls, key string) *load {
	l := &load{codes: map[codes.Code]int{}, stop: make(chan struct{})}
	for range 4 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				_, err := c.try("redis-e2e", descriptor("load", key))
				if err == nil {
					l.ok.Add(1)
					continue
				}
				l.mu.Lock()
				l.codes[status.Code(err)]++
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) count(c codes.Code) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.codes[c]
}

func (l *load) end() map[codes.Code]int {
	close(l.stop)
	l.wg.Wait()
	return l.codes
}

func alive(t *testing.T, p *proc) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("ratelimitd exited: %v", p.waitErr)
	default:
	}
}

func testRedisKilledUnderLoad(t *testing.T, bin string) {
	r := redistest.Standalone(t)
	dir := configDir(t, redisE2EConfig("day", 100))
	p := redisInstance(t, bin, dir, nil, []string{r.Addr}, "-breaker-probe-interval", "200ms")
	// A second instance fails open while Redis is down.
	open := redisInstance(t, bin, dir, nil, []string{r.Addr}, "-on-backend-failure", "allow")
	c, co := dial(t, p.grpcAddr), dial(t, open.grpcAddr)
	eventually(t, "the first calls through Redis", func() bool {
		_, err := c.try("redis-e2e", descriptor("load", "warm"))
		return err == nil
	})
	eventually(t, "/readyz 200 with Redis up", func() bool { code, _ := readyz(t, p); return code == http.StatusOK })

	l := startLoad(c, "k")
	eventually(t, "load to flow", func() bool { return l.ok.Load() > 10 })
	r.Kill()
	eventually(t, "calls to answer UNAVAILABLE", func() bool { return l.count(codes.Unavailable) > 10 })
	eventually(t, "/readyz 503 with Redis down", func() bool {
		code, body := readyz(t, p)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "redis")
	})
	const fallbackAllowed = `ratelimitd_fallback_decisions_total{decision="allowed",policy="allow"}`
	if resp, err := co.try("redis-e2e", descriptor("user", "fail-open")); err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Errorf("-on-backend-failure allow with Redis down: %v, %v; want OK", resp.GetOverallCode(), err)
	}
	if got := metric(t, open.httpAddr, fallbackAllowed); got < 1 {
		t.Errorf("%s = %v, want at least 1", fallbackAllowed, got)
	}
	alive(t, p)

	r.Restart()
	okBefore := l.ok.Load()
	eventually(t, "calls to succeed again after the restart", func() bool { return l.ok.Load() > okBefore+10 })
	eventually(t, "/readyz 200 after the restart", func() bool { code, _ := readyz(t, p); return code == http.StatusOK })
	outcomes := l.end()
	for code, n := range outcomes {
		if code != codes.Unavailable {
			t.Errorf("%d calls answered %v; want only UNAVAILABLE while Redis was down (none hang to their deadline)", n, code)
		}
	}
	alive(t, p)
	alive(t, open)
}

func testRedisStartsWhileRedisDown(t *testing.T, bin string) {
	r := redistest.Standalone(t)
	r.Kill()
	dir := configDir(t, redisE2EConfig("day", 3))
	p := redisInstance(t, bin, dir, nil, []string{r.Addr})
	c := dial(t, p.grpcAddr)
	code, body := readyz(t, p)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "redis") {
		t.Errorf("/readyz with Redis down: %d %q, want 503 naming redis", code, body)
	}
	if _, err := c.try("redis-e2e", descriptor("user", "early")); status.Code(err) != codes.Unavailable {
		t.Errorf("a call with Redis down: %v, want UNAVAILABLE", err)
	}
	if code, _ := get(t, p.httpAddr, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with Redis down: %d, want 200 (alive)", code)
	}
	r.Restart()
	eventually(t, "/readyz 200 once Redis runs", func() bool { code, _ := readyz(t, p); return code == http.StatusOK })
	eventually(t, "a call to succeed once Redis runs", func() bool {
		resp, err := c.try("redis-e2e", descriptor("user", "late"))
		return err == nil && resp.OverallCode == rlsv3.RateLimitResponse_OK
	})
}

func testRedisSentinelFailover(t *testing.T, bin string) {
	s := redistest.Sentinel(t)
	dir := configDir(t, redisE2EConfig("day", 1000))
	p := redisInstance(t, bin, dir, nil, s.SentinelAddrs,
		"-redis-topology", "sentinel", "-redis-master-name", s.MasterName, "-breaker-probe-interval", "200ms")
	c := dial(t, p.grpcAddr)
	eventually(t, "the first call through the master", func() bool {
		_, err := c.try("redis-e2e", descriptor("user", "before"))
		return err == nil
	})
	s.KillMaster()
	s.WaitForPromotion(redistest.FailoverPatience)
	eventually(t, "calls to succeed through the promoted replica", func() bool {
		resp, err := c.try("redis-e2e", descriptor("user", "after"))
		return err == nil && resp.OverallCode == rlsv3.RateLimitResponse_OK
	})
	eventually(t, "/readyz 200 after the failover", func() bool { code, _ := readyz(t, p); return code == http.StatusOK })
	alive(t, p)
}

// A bucket Redis refused is answered from the local over-limit cache, also
// while Redis is down.
func testRedisLocalCache(t *testing.T, bin string) {
	r := redistest.Standalone(t)
	dir := configDir(t, redisE2EConfig("day", 3))
	p := redisInstance(t, bin, dir, nil, []string{r.Addr}, "-local-cache-size", "100")
	c := dial(t, p.grpcAddr)
	const hits = "ratelimitd_local_cache_hits_total"
	for attempt := 0; ; attempt++ {
		user := fmt.Sprintf("cached-%d", attempt)
		day := time.Now().Truncate(24 * time.Hour)
		var got []string
		for range 5 {
			resp := c.call(t, "redis-e2e", descriptor("user", user))
			got = append(got, resp.OverallCode.String())
		}
		if !time.Now().Truncate(24*time.Hour).Equal(day) && attempt < 3 {
			continue
		}
		if want := "OK OK OK OVER_LIMIT OVER_LIMIT"; strings.Join(got, " ") != want {
			t.Fatalf("five calls: %v, want %s", got, want)
		}
		if h := metric(t, p.httpAddr, hits); h != 1 {
			t.Errorf("%s = %v, want 1 (the fifth call)", hits, h)
		}
		r.Kill()
		resp, err := c.try("redis-e2e", descriptor("user", user))
		if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
			t.Errorf("cached bucket with Redis down: %v, %v; want OVER_LIMIT from the cache", resp.GetOverallCode(), err)
		}
		if _, err := c.try("redis-e2e", descriptor("user", "uncached")); status.Code(err) != codes.Unavailable {
			t.Errorf("uncached bucket with Redis down: %v, want UNAVAILABLE", err)
		}
		return
	}
}

// TestRedisEndToEnd builds the binary once and runs every Redis scenario
// with it.
func TestRedisEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Redis")
	}
	bin := buildBinary(t)
	for _, sc := range []struct {
		name string
		run  func(*testing.T, string)
	}{
		{"exact on standalone", testRedisExactStandalone},
		{"exact on cluster", testRedisExactCluster},
		{"skewed clocks", testRedisSkewedClocks},
		{"killed under load", testRedisKilledUnderLoad},
		{"starts while Redis is down", testRedisStartsWhileRedisDown},
		{"sentinel failover", testRedisSentinelFailover},
		{"local over-limit cache", testRedisLocalCache},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, bin) })
	}
}
