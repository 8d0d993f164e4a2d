package main

import (
	"bufio"
	"context"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// docMetrics reads the metrics table of docs/operations.md (the rows of
// the "### Metrics" section whose first cell is a metric name in
// backquotes) and returns each name's documented type.
func docMetrics(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `([a-z_:][a-z0-9_:]*)` \\| ([a-z]+) \\|")
	out := map[string]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "### Metrics":
			in = true
			continue
		case strings.HasPrefix(line, "#"):
			in = false
		}
		if m := row.FindStringSubmatch(line); in && m != nil {
			if _, dup := out[m[1]]; dup {
				t.Errorf("operations.md lists %s twice", m[1])
			}
			out[m[1]] = m[2]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no metrics table found in docs/operations.md under ### Metrics")
	}
	return out
}

// servedMetrics scrapes /metrics at httpAddr and returns the type of every
// family it exposes, but the Go runtime's and the process's.
func servedMetrics(t *testing.T, httpAddr string) map[string]string {
	t.Helper()
	_, body := get(t, httpAddr, "/metrics")
	out := map[string]string{}
	for line := range strings.Lines(body) {
		f := strings.Fields(line)
		if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" && !strings.HasPrefix(f[2], "go_") && !strings.HasPrefix(f[2], "process_") {
			out[f[2]] = f[3]
		}
	}
	return out
}

// TestMetricsAreDocumented runs ratelimitd twice, in-process: with the
// memory backend, and with Redis (unreachable: ratelimitd serves anyway)
// behind every wrapper (breaker, local cache, local fallback). Every
// metric family either serves must be in the table of docs/operations.md
// with its type, and every metric of the table must be served by one of
// them.
func TestMetricsAreDocumented(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, filepath.Join(dir, "config.yaml"), e2eConfig(1))
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadRedis := l.Addr().String()
	l.Close()
	base := map[string]string{
		"RATELIMITD_GRPC_ADDR":      "127.0.0.1:0",
		"RATELIMITD_HTTP_ADDR":      "127.0.0.1:0",
		"RATELIMITD_CONFIG":         dir,
		"RATELIMITD_LOG_FORMAT":     "json",
		"RATELIMITD_OVERRIDES_FILE": filepath.Join(dir, "overrides.json"),
	}
	redis := map[string]string{
		"RATELIMITD_BACKEND":            "redis",
		"RATELIMITD_REDIS_ADDR":         deadRedis,
		"RATELIMITD_LOCAL_CACHE_SIZE":   "100",
		"RATELIMITD_ON_BACKEND_FAILURE": "local",
	}
	served := map[string]string{}
	for _, extra := range []map[string]string{nil, redis} {
		environ := map[string]string{}
		for k, v := range base {
			environ[k] = v
		}
		for k, v := range extra {
			environ[k] = v
		}
		_, httpAddr, stop := runInProcess(t, environ)
		for name, typ := range servedMetrics(t, httpAddr) {
			served[name] = typ
		}
		if code := stop(); code != 0 {
			t.Fatalf("exit code %d", code)
		}
	}

	documented := docMetrics(t)
	for _, name := range slices.Sorted(maps.Keys(served)) {
		switch typ, ok := documented[name]; {
		case !ok:
			t.Errorf("%s (%s) is served but not in the metrics table of docs/operations.md", name, served[name])
		case typ != served[name]:
			t.Errorf("%s is a %s, docs/operations.md says %s", name, served[name], typ)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(documented)) {
		if _, ok := served[name]; !ok {
			t.Errorf("docs/operations.md lists %s, which no ratelimitd serves", name)
		}
	}
}

// TestGRPCMetricsCount checks the gRPC server series against known calls:
// two ShouldRateLimit calls answered, one refused as InvalidArgument, and
// a health Watch stream that receives one message and sends one.
func TestGRPCMetricsCount(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, filepath.Join(dir, "config.yaml"), e2eConfig(1))
	grpcAddr, httpAddr, stop := runInProcess(t, map[string]string{
		"RATELIMITD_GRPC_ADDR":      "127.0.0.1:0",
		"RATELIMITD_HTTP_ADDR":      "127.0.0.1:0",
		"RATELIMITD_CONFIG":         dir,
		"RATELIMITD_LOG_FORMAT":     "json",
		"RATELIMITD_OVERRIDES_FILE": filepath.Join(dir, "overrides.json"),
	})
	defer stop()
	c := dial(t, grpcAddr)
	c.call(t, "e2e", descriptor("user", "a"))
	c.call(t, "e2e", descriptor("user", "b"))
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if _, err := c.rl.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty request: %v, want InvalidArgument", err)
	}
	w, err := healthpb.NewHealthClient(c.conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel() // ends the stream: it is then counted as handled
	_, body := get(t, httpAddr, "/metrics")
	rls := `grpc_method="ShouldRateLimit",grpc_service="envoy.service.ratelimit.v3.RateLimitService",grpc_type="unary"`
	watch := `grpc_method="Watch",grpc_service="grpc.health.v1.Health",grpc_type="server_stream"`
	for _, want := range []string{
		`grpc_server_started_total{` + rls + `} 3`,
		`grpc_server_msg_received_total{` + rls + `} 3`,
		`grpc_server_msg_sent_total{` + rls + `} 2`,
		`grpc_server_handled_total{grpc_code="OK",` + rls + `} 2`,
		`grpc_server_handled_total{grpc_code="InvalidArgument",` + rls + `} 1`,
		`grpc_server_handled_total{grpc_code="Unavailable",` + rls + `} 0`,
		`grpc_server_handling_seconds_count{` + rls + `} 3`,
		`grpc_server_started_total{` + watch + `} 1`,
		`grpc_server_msg_received_total{` + watch + `} 1`,
		`grpc_server_msg_sent_total{` + watch + `} 1`,
		`grpc_server_started_total{grpc_method="Check",grpc_service="grpc.health.v1.Health",grpc_type="unary"} 0`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
