package main

import (
	"cmp"
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/memory"
	"github.com/ratelimitd/ratelimitd/backends/redis"
	"github.com/ratelimitd/ratelimitd/backends/resilient"
	"github.com/ratelimitd/ratelimitd/overrides"
)

// Readiness of the Redis backend: a PING under readyTimeout, its outcome
// kept for readyTTL.
const (
	readyTTL     = time.Second
	readyTimeout = 500 * time.Millisecond
)

// newRedisBackend builds the Redis backend wrapped, from the inside out, in
// the circuit breaker, the local over-limit cache and the fallback (each
// when enabled; see backends/resilient for why in this order), registers
// their metrics on reg, and returns it with its readiness check. It does
// not wait for Redis: ratelimitd serves (and answers UNAVAILABLE, or the
// fallback's answer) until Redis answers.
func newRedisBackend(s settings, reg prometheus.Registerer, log *slog.Logger) (backends.Backend, func(context.Context) error, overrides.Store, error) {
	r := s.redis
	rb, err := redis.New(redis.Options{
		Topology:         r.topology,
		Addrs:            r.addrs,
		MasterName:       r.masterName,
		SentinelUsername: r.sentinelUsername,
		SentinelPassword: r.sentinelPassword,
		Username:         r.username,
		Password:         r.password,
		DB:               r.db,
		TLS:              r.tls,
		PoolSize:         r.poolSize,
		DialTimeout:      r.dialTimeout,
		ReadTimeout:      r.readTimeout,
		WriteTimeout:     r.writeTimeout,
		BatchWindow:      r.batchWindow,
		BatchMax:         r.batchMax,
		DisableFunctions: !r.functions,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	ready := &readiness{what: "redis", check: rb.Ping, ttl: readyTTL, timeout: readyTimeout, now: time.Now, log: log}
	registerRedisMetrics(reg, rb, ready)

	var b backends.Backend = rb
	if s.breakerFailures > 0 {
		br := resilient.NewBreaker(b, resilient.BreakerOptions{
			Failures:      s.breakerFailures,
			ProbeInterval: s.breakerProbeInterval,
			ProbeTimeout:  max(resilient.DefaultProbeTimeout, cmp.Or(r.dialTimeout, redis.DefaultDialTimeout)),
		})
		registerBreakerMetrics(reg, br)
		b = br
	}
	if s.localCacheSize > 0 {
		c := resilient.NewCache(b, resilient.CacheOptions{Size: s.localCacheSize})
		registerCacheMetrics(reg, c)
		b = c
	}
	if s.onFailure != resilient.Unavailable {
		o := resilient.FallbackOptions{Policy: s.onFailure, Replicas: s.fallbackReplicas}
		if s.onFailure == resilient.Local {
			o.Local = memory.New(memory.Options{MaxBuckets: s.memoryMaxBuckets})
		}
		f, err := resilient.NewFallback(b, o)
		if err != nil {
			b.Close()
			return nil, nil, nil, err
		}
		registerFallbackMetrics(reg, f)
		b = f
	}
	return b, ready.Ready, rb.OverrideStore(s.keyPrefix + s.overridesKey), nil
}

func registerBreakerMetrics(reg prometheus.Registerer, br *resilient.Breaker) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ratelimitd_backend_breaker_state",
			Help: "State of the circuit breaker in front of Redis: 0 closed, 1 open (calls answered at once without Redis), 2 half-open (probing).",
		}, func() float64 { return float64(br.Stats().State) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ratelimitd_backend_breaker_opens_total",
			Help: "Times the circuit breaker opened after -breaker-failures consecutive failed calls.",
		}, func() float64 { return float64(br.Stats().Opens) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ratelimitd_backend_breaker_rejected_total",
			Help: "Calls answered by the open circuit breaker without calling Redis.",
		}, func() float64 { return float64(br.Stats().Rejected) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ratelimitd_backend_breaker_probes_total",
			Help: "Probes the open circuit breaker sent to Redis.",
		}, func() float64 { return float64(br.Stats().Probes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ratelimitd_backend_breaker_probe_failures_total",
			Help: "Probes that failed (the breaker stayed open).",
		}, func() float64 { return float64(br.Stats().ProbeFailures) }),
	)
}

func registerCacheMetrics(reg prometheus.Registerer, c *resilient.Cache) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ratelimitd_local_cache_hits_total",
			Help: "Bucket decisions answered from the local over-limit cache (refused without Redis).",
		}, func() float64 { return float64(c.Stats().Hits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ratelimitd_local_cache_calls_total",
			Help: "Calls answered entirely by the local over-limit cache, without a Redis round trip.",
		}, func() float64 { return float64(c.Stats().Calls) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ratelimitd_local_cache_entries",
			Help: "Over-limit facts the local cache holds (at most -local-cache-size).",
		}, func() float64 { return float64(c.Stats().Entries) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ratelimitd_local_cache_evictions_total",
			Help: "Unexpired over-limit facts dropped to stay within -local-cache-size.",
		}, func() float64 { return float64(c.Stats().Evictions) }),
	)
}

func registerFallbackMetrics(reg prometheus.Registerer, f *resilient.Fallback) {
	policy := prometheus.Labels{"policy": f.Policy().String()}
	withDecision := func(d string) prometheus.Labels {
		return prometheus.Labels{"policy": f.Policy().String(), "decision": d}
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "ratelimitd_fallback_calls_total",
			Help:        "Calls decided by -on-backend-failure because Redis could not decide.",
			ConstLabels: policy,
		}, func() float64 { return float64(f.Stats().Calls) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "ratelimitd_fallback_decisions_total",
			Help:        "Bucket decisions made by -on-backend-failure because Redis could not decide.",
			ConstLabels: withDecision("allowed"),
		}, func() float64 { return float64(f.Stats().Allowed) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "ratelimitd_fallback_decisions_total",
			Help:        "Bucket decisions made by -on-backend-failure because Redis could not decide.",
			ConstLabels: withDecision("refused"),
		}, func() float64 { return float64(f.Stats().Refused) }),
	)
}

// registerRedisMetrics registers the Redis client's health and pool metrics.
func registerRedisMetrics(reg prometheus.Registerer, rb *redis.Backend, ready *readiness) {
	gauge := func(name, help string, f func(redis.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(rb.Stats()) })
	}
	counter := func(name, help string, f func(redis.Stats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(rb.Stats()) })
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ratelimitd_redis_up",
			Help: "1 when the last Redis PING (at most 1s old, 500ms timeout) succeeded, else 0.",
		}, ready.up),
		gauge("ratelimitd_redis_pool_connections", "Connections open to Redis (all nodes).",
			func(s redis.Stats) float64 { return float64(s.TotalConns) }),
		gauge("ratelimitd_redis_pool_idle_connections", "Idle connections in the Redis pool (all nodes).",
			func(s redis.Stats) float64 { return float64(s.IdleConns) }),
		counter("ratelimitd_redis_pool_hits_total", "Times a free connection was found in the Redis pool.",
			func(s redis.Stats) float64 { return float64(s.Hits) }),
		counter("ratelimitd_redis_pool_misses_total", "Times a connection to Redis had to be dialled.",
			func(s redis.Stats) float64 { return float64(s.Misses) }),
		counter("ratelimitd_redis_pool_timeouts_total", "Waits for a free Redis connection that timed out (raise -redis-pool-size).",
			func(s redis.Stats) float64 { return float64(s.Timeouts) }),
		counter("ratelimitd_redis_script_errors_total", "Script invocations Redis answered with an error (other than NOSCRIPT).",
			func(s redis.Stats) float64 { return float64(s.ScriptErrors) }),
		counter("ratelimitd_redis_noscript_reloads_total", "Script invocations sent again in full after NOSCRIPT (Redis restarted or failed over).",
			func(s redis.Stats) float64 { return float64(s.NoscriptReloads) }),
		counter("ratelimitd_redis_calls_total", "Backend calls that reached Redis.",
			func(s redis.Stats) float64 { return float64(s.Calls) }),
		counter("ratelimitd_redis_batches_total", "Pipelines sent to Redis; calls/batches is the mean batch size.",
			func(s redis.Stats) float64 { return float64(s.Batches) }),
		counter("ratelimitd_redis_cluster_refunds_total", "Cluster calls whose charged slots were refunded because another slot refused.",
			func(s redis.Stats) float64 { return float64(s.Refunds) }),
		counter("ratelimitd_redis_cluster_refund_errors_total", "Cluster refunds that failed (budget stays charged until the window ends).",
			func(s redis.Stats) float64 { return float64(s.RefundErrors) }),
	)
}
