package server

// Tracing. With Options.Tracer set, every Backend.Apply runs in a span
// named "backend.apply", a child of the call's context: under ratelimitd,
// the server span that the OpenTelemetry gRPC stats handler starts for
// the RPC, itself a child of the caller's W3C traceparent (Envoy's). The
// span says how many buckets the call decided, under which charge mode,
// and how it failed. The backend's kind is not the server's business: the
// tracer provider's resource names the process.
//
// With Options.Tracer nil (the default) nothing here runs beyond a nil
// check: the hot path allocates nothing for tracing. With a tracer, a call
// that is not sampled gets a non-recording span and no attributes.

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ratelimitd/ratelimitd/backends"
)

// TracerName is the instrumentation scope a tracer for Options.Tracer
// should be named after.
const TracerName = "github.com/ratelimitd/ratelimitd/server"

// ApplySpanName names the span around each Backend.Apply.
const ApplySpanName = "backend.apply"

// Attributes of the backend.apply span.
const (
	// AttrBuckets is the number of buckets (backends.Request) decided.
	AttrBuckets = attribute.Key("ratelimitd.buckets")
	// AttrChargeMode is the charge mode of the call (backends.Mode).
	AttrChargeMode = attribute.Key("ratelimitd.charge_mode")
	// AttrErrorType says how a failed call failed: deadline_exceeded,
	// canceled, unavailable or backend_error (OpenTelemetry's error.type).
	AttrErrorType = attribute.Key("error.type")
)

// startApplySpan starts the backend.apply span under ctx. It returns ctx
// and a nil span when tracing is off.
func (s *Server) startApplySpan(ctx context.Context, buckets int, mode backends.Mode) (context.Context, trace.Span) {
	if s.o.Tracer == nil {
		return ctx, nil
	}
	ctx, span := s.o.Tracer.Start(ctx, ApplySpanName)
	if span.IsRecording() {
		span.SetAttributes(AttrBuckets.Int(buckets), AttrChargeMode.String(mode.String()))
	}
	return ctx, span
}

// endApplySpan ends span, recording err; a nil span (tracing off) is
// ignored.
func endApplySpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil && span.IsRecording() {
		span.SetAttributes(AttrErrorType.String(applyErrorType(err)))
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// applyErrorType classifies a failed Backend.Apply for AttrErrorType.
func applyErrorType(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, backends.ErrUnavailable):
		return "unavailable"
	}
	return "backend_error"
}
