package main

// Tracing through OpenTelemetry, off unless -otlp-endpoint is set. Spans
// go to an OTLP gRPC collector in batches (a full queue drops spans; the
// hot path never waits for the collector). Each ShouldRateLimit call gets
// a server span from the otelgrpc stats handler, which continues the
// caller's W3C trace context (Envoy sends traceparent when it traces), and
// a child span "backend.apply" from the server (server/tracing.go).
//
// Sampling follows the parent: a call whose traceparent says sampled is
// traced, one that says not sampled is not, and -trace-sample-ratio decides
// for calls that arrive without a trace context. Health checks are never
// traced.
//
// The exporter also reads the standard OTEL_EXPORTER_OTLP_* variables
// (headers, certificates, compression, timeout), and the resource reads
// OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; the flags win over the
// endpoint and TLS variables.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/ratelimitd/ratelimitd/server"
)

// defaultTraceSampleRatio is -trace-sample-ratio's default. It only
// applies to calls without a trace context (Envoy's sampling decides for
// the others): one in a hundred keeps a busy rate-limit service's traces
// affordable while still showing its latency.
const defaultTraceSampleRatio = 0.01

// tracingShutdownTimeout bounds the flush of the last spans on exit.
const tracingShutdownTimeout = 5 * time.Second

// serviceName is the service.name of ratelimitd's spans (unless
// OTEL_SERVICE_NAME says otherwise).
const serviceName = "ratelimitd"

// tracing is the OpenTelemetry setup of one run; nil when tracing is off.
type tracing struct {
	tp   *sdktrace.TracerProvider
	prop propagation.TextMapPropagator
}

// checkTracingSettings checks -otlp-endpoint and -trace-sample-ratio.
func checkTracingSettings(s settings) error {
	if s.traceSampleRatio < 0 || s.traceSampleRatio > 1 {
		return fmt.Errorf("-trace-sample-ratio must be from 0 to 1, not %v", s.traceSampleRatio)
	}
	if s.otlpEndpoint == "" {
		if s.otlpInsecure {
			return errors.New("-otlp-insecure needs -otlp-endpoint")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(s.otlpEndpoint); err != nil {
		return fmt.Errorf("-otlp-endpoint %q: want host:port: %v", s.otlpEndpoint, err)
	}
	return nil
}

// startTracing sets tracing up as s says, or returns nil when
// -otlp-endpoint is empty. It does not wait for the collector: the
// exporter connects in the background and export errors are logged.
// It sets the global text map propagator (W3C trace context and baggage)
// for any library that reads it.
func startTracing(ctx context.Context, s settings, log *slog.Logger) (*tracing, error) {
	if s.otlpEndpoint == "" {
		return nil, nil
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(s.otlpEndpoint)}
	if s.otlpInsecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: otlp exporter: %w", err)
	}
	// Later sources win: the environment may rename the service.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", serviceName)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		// A malformed OTEL_RESOURCE_ATTRIBUTES leaves a partial resource.
		log.Warn("tracing: resource", "error", err.Error())
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(s.traceSampleRatio))),
	)
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	otel.SetTextMapPropagator(prop)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing", "error", err.Error())
	}))
	return &tracing{tp: tp, prop: prop}, nil
}

// grpcServerOptions are the gRPC server options that trace RPCs: the
// otelgrpc stats handler, health checks left out. None when t is nil.
func (t *tracing) grpcServerOptions() []grpc.ServerOption {
	if t == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(grpcStatsHandler(t.tp, t.prop))}
}

// grpcStatsHandler returns the otelgrpc server handler for tp and prop.
// Its metrics are not kept (Prometheus on /metrics has ours).
func grpcStatsHandler(tp trace.TracerProvider, prop propagation.TextMapPropagator) stats.Handler {
	return otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithPropagators(prop),
		otelgrpc.WithMeterProvider(noopmetric.NewMeterProvider()),
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	)
}

// tracer is the tracer of server.Options.Tracer; nil when t is nil.
func (t *tracing) tracer() trace.Tracer {
	if t == nil {
		return nil
	}
	return t.tp.Tracer(server.TracerName)
}

// shutdown flushes the spans still queued, for at most
// tracingShutdownTimeout, and stops the exporter.
func (t *tracing) shutdown(log *slog.Logger) {
	if t == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
	defer cancel()
	if err := t.tp.Shutdown(ctx); err != nil {
		log.Warn("tracing: flushing the last spans", "error", err.Error())
	}
}
