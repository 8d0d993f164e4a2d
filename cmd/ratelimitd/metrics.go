package main

// gRPC server metrics. These are the series of go-grpc-middleware's
// Prometheus provider (the names, help, labels and label values that
// dashboards for it expect), served by interceptors of our own: the
// provider resolves five labelled series per call (WithLabelValues hashes
// the label values and allocates the label slices), which cost about 7% of
// the CPU of a loaded server. Here every registered method's series are
// resolved once, when the services are registered, into a read-only map;
// a call then costs a map lookup and the increments.

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpcHandlingBuckets are the buckets of grpc_server_handling_seconds: from
// well under a Redis round trip to past Envoy's 20 ms default timeout (a
// call that slow has been given up on).
var grpcHandlingBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}

// grpcMetrics are the gRPC server metrics: grpc_server_started_total,
// grpc_server_handled_total, grpc_server_msg_received_total,
// grpc_server_msg_sent_total and the grpc_server_handling_seconds
// histogram, labelled by type, service, method and, when handled, code.
type grpcMetrics struct {
	started, handled, received, sent *prometheus.CounterVec
	handling                         *prometheus.HistogramVec

	// methods holds the resolved series of every registered method, by
	// full method name ("/package.Service/Method"). It is written by
	// initialize, before the server serves, and only read afterwards.
	methods map[string]*methodMetrics
}

// methodMetrics are one method's series.
type methodMetrics struct {
	started, received, sent prometheus.Counter
	handling                prometheus.Observer
	handled                 [codes.Unauthenticated + 1]prometheus.Counter
}

// newGRPCMetrics registers the gRPC server metrics on reg. Pass
// m.serverOptions() to grpc.NewServer, then call m.initialize(gs) once the
// services are registered, so that every method's series exist at 0 before
// its first call.
func newGRPCMetrics(reg prometheus.Registerer) *grpcMetrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	m := &grpcMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_started_total",
			Help: "Total number of RPCs started on the server.",
		}, labels),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total",
			Help: "Total number of RPCs completed on the server, regardless of success or failure.",
		}, append(labels[:3:3], "grpc_code")),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_received_total",
			Help: "Total number of RPC stream messages received on the server.",
		}, labels),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_sent_total",
			Help: "Total number of gRPC stream messages sent by the server.",
		}, labels),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: grpcHandlingBuckets,
		}, labels),
		methods: map[string]*methodMetrics{},
	}
	reg.MustRegister(m.started, m.handled, m.received, m.sent, m.handling)
	return m
}

// serverOptions are the server options that feed m.
func (m *grpcMetrics) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.unary),
		grpc.ChainStreamInterceptor(m.stream),
	}
}

// initialize resolves the series of every method registered on gs.
func (m *grpcMetrics) initialize(gs *grpc.Server) {
	for service, info := range gs.GetServiceInfo() {
		for _, mi := range info.Methods {
			m.methods["/"+service+"/"+mi.Name] = m.resolve(grpcType(mi.IsClientStream, mi.IsServerStream), service, mi.Name)
		}
	}
}

// resolve returns the series of one method.
func (m *grpcMetrics) resolve(typ, service, method string) *methodMetrics {
	mm := &methodMetrics{
		started:  m.started.WithLabelValues(typ, service, method),
		received: m.received.WithLabelValues(typ, service, method),
		sent:     m.sent.WithLabelValues(typ, service, method),
		handling: m.handling.WithLabelValues(typ, service, method),
	}
	for c := range mm.handled {
		mm.handled[c] = m.handled.WithLabelValues(typ, service, method, codes.Code(c).String())
	}
	return mm
}

// lookup returns the series of fullMethod; a method registered after
// initialize (none is) gets fresh series on each call.
func (m *grpcMetrics) lookup(fullMethod string, clientStream, serverStream bool) *methodMetrics {
	if mm, ok := m.methods[fullMethod]; ok {
		return mm
	}
	service, method, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	return m.resolve(grpcType(clientStream, serverStream), service, method)
}

// done records the end of a call that started at t0.
func (mm *methodMetrics) done(err error, t0 time.Time) {
	c := status.Code(err)
	if int(c) < len(mm.handled) {
		mm.handled[c].Inc()
	} else {
		mm.handled[codes.Unknown].Inc()
	}
	mm.handling.Observe(time.Since(t0).Seconds())
}

func (m *grpcMetrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	t0 := time.Now()
	mm := m.lookup(info.FullMethod, false, false)
	mm.started.Inc()
	mm.received.Inc()
	resp, err := handler(ctx, req)
	if err == nil {
		mm.sent.Inc()
	}
	mm.done(err, t0)
	return resp, err
}

func (m *grpcMetrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	t0 := time.Now()
	mm := m.lookup(info.FullMethod, info.IsClientStream, info.IsServerStream)
	mm.started.Inc()
	err := handler(srv, &countedStream{ServerStream: ss, mm: mm})
	mm.done(err, t0)
	return err
}

// countedStream counts a stream's messages.
type countedStream struct {
	grpc.ServerStream
	mm *methodMetrics
}

func (s *countedStream) SendMsg(msg any) error {
	err := s.ServerStream.SendMsg(msg)
	if err == nil {
		s.mm.sent.Inc()
	}
	return err
}

func (s *countedStream) RecvMsg(msg any) error {
	err := s.ServerStream.RecvMsg(msg)
	if err == nil {
		s.mm.received.Inc()
	}
	return err
}

// grpcType is the grpc_type label value of a method.
func grpcType(clientStream, serverStream bool) string {
	switch {
	case clientStream && serverStream:
		return "bidi_stream"
	case clientStream:
		return "client_stream"
	case serverStream:
		return "server_stream"
	}
	return "unary"
}
