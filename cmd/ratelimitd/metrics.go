package main

import (
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// grpcHandlingBuckets are the buckets of grpc_server_handling_seconds: from
// well under a Redis round trip to past Envoy's 20 ms default timeout (a
// call that slow has been given up on).
var grpcHandlingBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}

// newGRPCMetrics registers on reg the gRPC server metrics of
// go-grpc-middleware's Prometheus provider (grpc_server_started_total,
// grpc_server_handled_total, grpc_server_msg_received_total,
// grpc_server_msg_sent_total and the grpc_server_handling_seconds
// histogram, labelled by service, method, type and, when handled, code)
// and returns them. Pass grpcMetricsOptions(m) to grpc.NewServer, then call
// m.InitializeMetrics(gs) once the services are registered, so that every
// method's series exist at 0 before its first call.
func newGRPCMetrics(reg prometheus.Registerer) *grpcprom.ServerMetrics {
	m := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramBuckets(grpcHandlingBuckets)))
	reg.MustRegister(m)
	return m
}

// grpcMetricsOptions are the server options that feed m.
func grpcMetricsOptions(m *grpcprom.ServerMetrics) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(m.StreamServerInterceptor()),
	}
}
