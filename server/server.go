// Package server is ratelimitd's gRPC and HTTP edge: the Envoy RLS v3
// ShouldRateLimit service, gRPC health and reflection, the HTTP endpoints
// (/json, /healthcheck, /healthz, /readyz, /metrics, /rlconfig) and the
// Prometheus metrics. It is the only package that touches proto types.
//
// One ShouldRateLimit call flows like this: the request is validated, the
// current config snapshot is taken once (an atomic pointer swapped by
// SetConfig, so a call sees one config from start to end), every descriptor
// is matched to at most one rule, every counted rule becomes one
// backends.Request, and a single Backend.Apply decides them all. The
// response, the metrics and the logs are then built from those decisions,
// once. Scratch memory (entries, keys, requests, decisions) comes from a
// sync.Pool so that the hot path allocates little beyond the response.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/config"
	"github.com/ratelimitd/ratelimitd/overrides"
)

// Default header names, as envoyproxy/ratelimit's RATE_LIMIT_RESPONSE_HEADERS.
const (
	DefaultHeaderLimit     = "RateLimit-Limit"
	DefaultHeaderRemaining = "RateLimit-Remaining"
	DefaultHeaderReset     = "RateLimit-Reset"
)

// DefaultBackendTimeout bounds every Backend.Apply when Options.BackendTimeout
// is zero: well under the 20 ms after which Envoy's rate-limit filter gives
// up by default, so that a slow backend is answered UNAVAILABLE while Envoy
// still listens. ratelimitd's -backend-timeout defaults to the same.
const DefaultBackendTimeout = 10 * time.Millisecond

// Health service names the server reports on, besides "" (the whole server)
// and the RLS service's full name.
const healthServiceShort = "ratelimit"

// Options configure a Server. Only Backend is required.
type Options struct {
	// Backend decides the buckets. Required.
	Backend backends.Backend
	// Now is the clock decisions are taken at; default time.Now.
	Now func() time.Time
	// Mode says what a call charges when some buckets are over limit.
	Mode backends.Mode
	// BackendTimeout is the deadline of each Apply; 0 means
	// DefaultBackendTimeout, a negative value sets none of our own (for the
	// memory backend, which does no I/O). A call whose own deadline is
	// earlier keeps it.
	BackendTimeout time.Duration
	// KeyPrefix is prepended to every bucket key.
	KeyPrefix string
	// GlobalShadowMode answers OK whatever the decisions (statuses still
	// say OVER_LIMIT), as envoyproxy/ratelimit's SHADOW_MODE.
	GlobalShadowMode bool
	// GlobalQuotaMode treats every rule as in quota mode: over-limit
	// descriptors answer OK and are listed in the dynamic metadata's
	// quotaModeViolations, and the call is never refused for them.
	GlobalQuotaMode bool
	// ResponseHeaders adds the limit, remaining and reset headers of the
	// descriptor closest to its limit, as envoyproxy/ratelimit's
	// RATE_LIMIT_RESPONSE_HEADERS_ENABLED.
	ResponseHeaders bool
	// Header names; defaults DefaultHeaderLimit, DefaultHeaderRemaining,
	// DefaultHeaderReset.
	HeaderLimit, HeaderRemaining, HeaderReset string
	// HeaderStyle says which rate-limit headers answers carry, from the
	// descriptor closest to its limit, on allowed answers too. HeadersOff
	// with ResponseHeaders set means HeadersReference.
	HeaderStyle HeaderStyle
	// ResetUnix makes the draft03 X-RateLimit-Reset a Unix time in seconds
	// instead of the seconds until the reset.
	ResetUnix bool
	// Body is the format of the raw_body of OVER_LIMIT answers, sent with
	// its Content-Type header; BodyOff sends none.
	Body BodyFormat
	// ProblemType is the "type" of problem+json bodies; default
	// DefaultProblemType.
	ProblemType string
	// Overrides, when set, returns the runtime overrides in force (the
	// admin API's); called once per request, it must be cheap (an atomic
	// load) and never return a Set that changes.
	Overrides func() *overrides.Set
	// DynamicMetadata fills dynamic_metadata as envoyproxy/ratelimit's
	// RESPONSE_DYNAMIC_METADATA.
	DynamicMetadata bool
	// Registry receives the metrics and is served on /metrics. New creates
	// one (with the Go and process collectors) when nil.
	Registry *prometheus.Registry
	// Logger receives the logs; default slog.Default().
	Logger *slog.Logger
	// Tracer, when set, traces every backend call in a span named
	// "backend.apply" (see tracing.go); nil traces nothing and costs
	// nothing. Name it after TracerName.
	Tracer trace.Tracer
	// Ready, when set, is consulted by /readyz once the server is serving:
	// an error makes it answer 503 with the error's text (e.g. the Redis
	// backend is unreachable). It must return promptly (it runs under the
	// probe's request context); gRPC health does not consult it.
	Ready func(context.Context) error
}

// Server answers ShouldRateLimit from the loaded config and the backend.
// Create it with New. It is safe for concurrent use; SetConfig may be called
// at any time (a call in flight keeps the snapshot it started with).
//
// Health: the server reports NOT_SERVING until a config was set and
// SetServing(true) was called; SetServing(false) (shutdown) makes it
// NOT_SERVING again. The same state drives gRPC health, /healthcheck and
// /readyz.
type Server struct {
	o       Options
	memo    backends.Memo // the backend's, nil when it keeps no memos
	ro      responseOptions
	now     func() time.Time
	log     *slog.Logger
	reg     *prometheus.Registry
	m       *metrics
	health  *health.Server
	snap    atomic.Pointer[snapshot]
	loads   atomic.Int64 // configs set, for the config version
	pool    sync.Pool    // of *scratch
	logs    logSamplers  // samplers of refusal and failure log lines
	hmu     sync.Mutex
	serving bool // guarded by hmu
}

// snapshot is one loaded config and the metric handles of its rules, so the
// hot path looks metric series up by rule pointer without building labels.
type snapshot struct {
	cfg       *config.Config
	version   int64     // 1 for the first config, +1 per load
	loadedAt  time.Time // when SetConfig was called
	rules     map[*config.Rule]*ruleMetrics
	overrides map[string]*ruleMetrics // by domain
}

// New returns a Server for o. It fails when o.Backend is nil or the metrics
// cannot be registered (e.g. a second Server on the same Registry).
func New(o Options) (*Server, error) {
	if o.Backend == nil {
		return nil, fmt.Errorf("server: new: backend is nil")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.BackendTimeout == 0 {
		o.BackendTimeout = DefaultBackendTimeout
	}
	if o.HeaderLimit == "" {
		o.HeaderLimit = DefaultHeaderLimit
	}
	if o.HeaderRemaining == "" {
		o.HeaderRemaining = DefaultHeaderRemaining
	}
	if o.HeaderReset == "" {
		o.HeaderReset = DefaultHeaderReset
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
		o.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	overridesLen := func() float64 {
		if o.Overrides == nil {
			return 0
		}
		return float64(o.Overrides().Len())
	}
	m, err := newMetrics(o.Registry, overridesLen)
	if err != nil {
		return nil, fmt.Errorf("server: new: %w", err)
	}
	if o.ResponseHeaders && o.HeaderStyle == HeadersOff {
		o.HeaderStyle = HeadersReference
	}
	s := &Server{
		o: o,
		ro: responseOptions{
			Style:           o.HeaderStyle,
			ResetUnix:       o.ResetUnix,
			Body:            o.Body,
			ProblemType:     o.ProblemType,
			HeaderLimit:     o.HeaderLimit,
			HeaderRemaining: o.HeaderRemaining,
			HeaderReset:     o.HeaderReset,
		},
		now:    o.Now,
		log:    o.Logger,
		reg:    o.Registry,
		m:      m,
		health: health.NewServer(),
	}
	s.memo, _ = o.Backend.(backends.Memo)
	s.pool.New = func() any { return new(scratch) }
	s.logs = newLogSamplers()
	s.updateHealth()
	return s, nil
}

// SetConfig makes c the config of every call that starts from now on,
// counts a successful load, publishes c's hash and version in
// ratelimitd_config_info, and logs one line with what changed against the
// config it replaces (domains and rules added, removed and changed). A nil
// c is ignored.
func (s *Server) SetConfig(c *config.Config) {
	if c == nil {
		return
	}
	sn := s.m.snapshot(c, s.o.GlobalQuotaMode)
	sn.version = s.loads.Add(1)
	sn.loadedAt = s.now()
	prev := s.snap.Swap(sn)
	s.m.configLoads.WithLabelValues("success").Inc()
	s.m.configLastLoad.Set(1)
	s.m.configInfo.WithLabelValues(c.Hash(), strconv.FormatInt(sn.version, 10)).Set(1)
	var prevCfg *config.Config
	if prev != nil {
		prevCfg = prev.cfg
		s.m.configInfo.DeleteLabelValues(prev.cfg.Hash(), strconv.FormatInt(prev.version, 10))
	}
	s.log.Info("rate limit config loaded", configLoadedAttrs(prevCfg, c, sn.version)...)
	s.updateHealth()
}

// ConfigLoadFailed records a config that could not be loaded: it counts the
// error, logs every line of err (config.Errors has one per problem), then
// one line with the result. The current config stays in use.
func (s *Server) ConfigLoadFailed(err error) {
	s.m.configLoads.WithLabelValues("error").Inc()
	s.m.configLastLoad.Set(0)
	n := 0
	var errs config.Errors
	switch {
	case err == nil:
	case errors.As(err, &errs):
		for _, e := range errs {
			s.log.Error("rate limit config rejected", "error", e.Error())
		}
		n = len(errs)
	default:
		s.log.Error("rate limit config rejected", "error", err.Error())
		n = 1
	}
	attrs := []any{"result", "error", "errors", n}
	if sn := s.snap.Load(); sn != nil {
		attrs = append(attrs, "hash_in_use", sn.cfg.Hash(), "version_in_use", sn.version)
	}
	s.log.Error("rate limit config load failed", attrs...)
}

// Config returns the config in use, or nil before the first SetConfig.
func (s *Server) Config() *config.Config {
	if sn := s.snap.Load(); sn != nil {
		return sn.cfg
	}
	return nil
}

// SetServing sets whether the server wants traffic. It reports SERVING only
// while serving is true and a config is loaded.
func (s *Server) SetServing(serving bool) {
	s.hmu.Lock()
	s.serving = serving
	s.hmu.Unlock()
	s.updateHealth()
}

// ready reports whether the server is SERVING.
func (s *Server) ready() bool {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	return s.serving && s.snap.Load() != nil
}

func (s *Server) updateHealth() {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if s.serving && s.snap.Load() != nil {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, name := range [...]string{"", rlsv3.RateLimitService_ServiceDesc.ServiceName, healthServiceShort} {
		s.health.SetServingStatus(name, st)
	}
}

// Register registers on g the RLS v3 service, grpc.health.v1 (for "",
// "envoy.service.ratelimit.v3.RateLimitService" and "ratelimit") and server
// reflection.
func (s *Server) Register(g *grpc.Server) {
	rlsv3.RegisterRateLimitServiceServer(g, s)
	healthpb.RegisterHealthServer(g, s.health)
	reflection.Register(g)
}
