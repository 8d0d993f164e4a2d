package main

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// collector is an OTLP trace collector that keeps what it receives.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []collected
}

type collected struct {
	service, name, traceID, parentID string
}

func (c *collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				c.spans = append(c.spans, collected{service, sp.GetName(), hex.EncodeToString(sp.GetTraceId()), hex.EncodeToString(sp.GetParentSpanId())})
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (c *collector) received() []collected {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.spans)
}

// startCollector serves a collector on a free loopback port until the
// test ends.
func startCollector(t *testing.T) (*collector, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	g := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(g, c)
	done := make(chan struct{})
	go func() { defer close(done); g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); <-done })
	return c, lis.Addr().String()
}

func TestTracingToACollector(t *testing.T) {
	col, colAddr := startCollector(t)
	serving, stop := runServing(t, map[string]string{
		"RATELIMITD_GRPC_ADDR":          "127.0.0.1:0",
		"RATELIMITD_HTTP_ADDR":          "127.0.0.1:0",
		"RATELIMITD_CONFIG":             configDir(t, e2eConfig(1)),
		"RATELIMITD_LOG_FORMAT":         "json",
		"RATELIMITD_OTLP_ENDPOINT":      colAddr,
		"RATELIMITD_OTLP_INSECURE":      "true",
		"RATELIMITD_TRACE_SAMPLE_RATIO": "0", // only calls whose caller samples them
	})
	if serving["tracing"] != true {
		t.Errorf("serving line %v, want tracing true", serving)
	}
	c := dial(t, serving["grpc_addr"].(string))
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	sampled := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+traceID+"-"+parentID+"-01")
	req := &rlsv3.RateLimitRequest{Domain: "e2e", Descriptors: []*ratelimitv3.RateLimitDescriptor{descriptor("user", "traced")}}
	if _, err := c.rl.ShouldRateLimit(sampled, req); err != nil {
		t.Fatal(err)
	}
	if _, err := c.rl.ShouldRateLimit(context.Background(), req); err != nil { // no parent, ratio 0
		t.Fatal(err)
	}
	if _, err := healthpb.NewHealthClient(c.conn).Check(sampled, &healthpb.HealthCheckRequest{}); err != nil { // never traced
		t.Fatal(err)
	}
	// Spans go out in batches: the shutdown flushes them.
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	got := col.received()
	var names []string
	for _, s := range got {
		names = append(names, s.name)
		if s.service != "ratelimitd" || s.traceID != traceID {
			t.Errorf("span %+v, want service ratelimitd in trace %s", s, traceID)
		}
	}
	slices.Sort(names)
	if want := []string{"backend.apply", "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"}; !slices.Equal(names, want) {
		t.Errorf("spans %q, want %q", names, want)
	}
	for _, s := range got {
		if strings.HasPrefix(s.name, "envoy.") && s.parentID != parentID {
			t.Errorf("server span's parent %s, want the caller's %s", s.parentID, parentID)
		}
	}
}

func TestTracingSettings(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-trace-sample-ratio", "1.5"}, "-trace-sample-ratio"},
		{[]string{"-otlp-endpoint", "http://collector:4317/"}, "-otlp-endpoint"},
		{[]string{"-otlp-insecure"}, "-otlp-insecure needs -otlp-endpoint"},
	} {
		if _, err := parseSettings(tt.args, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want one naming %s", tt.args, err, tt.want)
		}
	}
	s, err := parseSettings(nil, env(nil), io.Discard)
	if err != nil || s.otlpEndpoint != "" || s.traceSampleRatio != defaultTraceSampleRatio {
		t.Errorf("defaults: endpoint %q, ratio %v (%v); want tracing off, ratio %v", s.otlpEndpoint, s.traceSampleRatio, err, defaultTraceSampleRatio)
	}
}
