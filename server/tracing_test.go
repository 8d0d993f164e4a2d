package server

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/memory"
)

// tracedEnv serves o on a bufconn gRPC server with the otelgrpc stats
// handler, as ratelimitd does with -otlp-endpoint, recording every span
// in memory.
func tracedEnv(t *testing.T, o Options) (rlsv3.RateLimitServiceClient, *tracetest.InMemoryExporter) {
	t.Helper()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans)) // parent-based, always samples roots
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	if o.Backend == nil {
		b := memory.New(memory.Options{})
		t.Cleanup(func() { b.Close() })
		o.Backend = b
	}
	o.Now = func() time.Time { return t0 }
	o.Logger = slog.New(slog.DiscardHandler)
	o.BackendTimeout = 10 * time.Second
	o.Tracer = tp.Tracer(TracerName)
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	s.SetConfig(parse(t, testConfig))
	s.SetServing(true)
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer(grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithPropagators(propagation.TraceContext{}),
		otelgrpc.WithMeterProvider(noopmetric.NewMeterProvider()),
	)))
	s.Register(g)
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
	return rlsv3.NewRateLimitServiceClient(conn), spans
}

// Envoy's trace: the caller's trace and span ids, as sent in traceparent.
const (
	remoteTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	remoteSpanID  = "00f067aa0ba902b7"
)

// withTraceparent returns ctx carrying a W3C traceparent with flags
// ("01" sampled, "00" not) in its outgoing metadata, as Envoy sends it.
func withTraceparent(ctx context.Context, flags string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+remoteTraceID+"-"+remoteSpanID+"-"+flags)
}

// awaitSpans waits until exp holds n spans (the server span ends after the
// response is sent, so possibly after the client has it) and returns them.
func awaitSpans(t *testing.T, exp *tracetest.InMemoryExporter, n int) tracetest.SpanStubs {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := exp.GetSpans()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d spans after 10s, want %d: %v", len(got), n, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func spanNamed(t *testing.T, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	for _, s := range spans {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no span %q among %d", name, len(spans))
	return tracetest.SpanStub{}
}

func attrs(kvs []attribute.KeyValue) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestTracingContinuesTheCallersTrace(t *testing.T) {
	rls, exp := tracedEnv(t, Options{Mode: backends.AllOrNothing})
	ctx := withTraceparent(context.Background(), "01")
	if _, err := rls.ShouldRateLimit(ctx, rq("test", desc("key1", "value1"), desc("path", "/api/x"))); err != nil {
		t.Fatal(err)
	}
	spans := awaitSpans(t, exp, 2)
	srvSpan := spanNamed(t, spans, "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit")
	apply := spanNamed(t, spans, ApplySpanName)

	wantTrace, _ := trace.TraceIDFromHex(remoteTraceID)
	wantParent, _ := trace.SpanIDFromHex(remoteSpanID)
	if got := srvSpan.SpanContext.TraceID(); got != wantTrace {
		t.Errorf("server span trace id %s, want the caller's %s", got, wantTrace)
	}
	if srvSpan.SpanKind != trace.SpanKindServer || !srvSpan.Parent.IsRemote() || srvSpan.Parent.SpanID() != wantParent {
		t.Errorf("server span: kind %v, parent %s (remote %v), want a server span under the caller's %s",
			srvSpan.SpanKind, srvSpan.Parent.SpanID(), srvSpan.Parent.IsRemote(), wantParent)
	}
	if apply.SpanContext.TraceID() != wantTrace || apply.Parent.SpanID() != srvSpan.SpanContext.SpanID() {
		t.Errorf("backend.apply in trace %s under %s, want trace %s under the server span %s",
			apply.SpanContext.TraceID(), apply.Parent.SpanID(), wantTrace, srvSpan.SpanContext.SpanID())
	}
	a := attrs(apply.Attributes)
	if a[AttrBuckets].AsInt64() != 2 || a[AttrChargeMode].AsString() != backends.AllOrNothing.String() {
		t.Errorf("backend.apply attributes %v, want 2 buckets under %s", apply.Attributes, backends.AllOrNothing)
	}
	if _, ok := a[AttrErrorType]; ok || apply.Status.Code == otelcodes.Error {
		t.Errorf("backend.apply of a call that succeeded: status %v, attributes %v", apply.Status, apply.Attributes)
	}
}

func TestTracingRecordsBackendErrors(t *testing.T) {
	rls, exp := tracedEnv(t, Options{Backend: failingBackend{}})
	_, err := rls.ShouldRateLimit(withTraceparent(context.Background(), "01"), rq("test", desc("key1", "value1")))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("error %v, want UNAVAILABLE", err)
	}
	apply := spanNamed(t, awaitSpans(t, exp, 2), ApplySpanName)
	if apply.Status.Code != otelcodes.Error || attrs(apply.Attributes)[AttrErrorType].AsString() != "unavailable" {
		t.Errorf("backend.apply of a failed call: status %v, attributes %v; want an error, error.type unavailable", apply.Status, apply.Attributes)
	}
}

func TestTracingFollowsTheCallersSampling(t *testing.T) {
	rls, exp := tracedEnv(t, Options{})
	// Not sampled by the caller: nothing is recorded. A sampled call
	// after it shows that spans do get through.
	if _, err := rls.ShouldRateLimit(withTraceparent(context.Background(), "00"), rq("test", desc("key1", "value1"))); err != nil {
		t.Fatal(err)
	}
	if _, err := rls.ShouldRateLimit(withTraceparent(context.Background(), "01"), rq("test", desc("key1", "other"))); err != nil {
		t.Fatal(err)
	}
	spans := awaitSpans(t, exp, 2)
	time.Sleep(50 * time.Millisecond) // a stray span of the first call would have ended by now
	if spans = exp.GetSpans(); len(spans) != 2 {
		t.Errorf("%d spans, want the 2 of the sampled call only: %v", len(spans), spans)
	}
}

// TestNoTracerCostsNothing: with Options.Tracer nil, the span helpers around
// Backend.Apply allocate nothing.
func TestNoTracerCostsNothing(t *testing.T) {
	s, err := New(Options{Backend: failingBackend{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		_, span := s.startApplySpan(ctx, 3, backends.ChargeAlways)
		endApplySpan(span, nil)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per call without a tracer, want 0", allocs)
	}
}
