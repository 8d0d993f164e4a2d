// Command ratelimitd serves Envoy's rate limit service
// (envoy.service.ratelimit.v3.RateLimitService) over gRPC, and health,
// metrics and a JSON endpoint over HTTP, from descriptor YAML in
// envoyproxy/ratelimit's format.
//
// It is the only place that reads flags and the environment (every flag
// -some-name falls back to RATELIMITD_SOME_NAME; the flag wins), builds the
// real clock and wires config, backend and server together. It reloads the
// config when the files change on disk and on SIGHUP, keeping the last good
// config when a new one is broken, and drains on SIGTERM or SIGINT.
//
// Usage:
//
//	ratelimitd [flags]
//	ratelimitd -validate PATH
//
// See docs/operations.md for every flag.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/memory"
	"github.com/ratelimitd/ratelimitd/config"
	"github.com/ratelimitd/ratelimitd/overrides"
	"github.com/ratelimitd/ratelimitd/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, a second one ends the process at once.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is ratelimitd with its inputs passed in: it serves until ctx is done
// (or runs -validate) and returns the process exit code: 0 after a clean
// shutdown, 1 on a failure, 2 on a usage error.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	s, err := parseSettings(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "ratelimitd:", err)
		return 2
	}
	if s.validate != "" {
		return validate(s.validate, s.configOptions(), stdout, stderr)
	}
	log := newLogger(s, stderr)
	for _, n := range s.notes {
		log.Info(n)
	}
	if getenv("GOGC") == "" {
		// The runtime has read GOGC itself when it is set.
		go newGCTuner(s.gcPercent, uint64(s.gcHeadroom)).run(ctx)
	}
	if err := serve(ctx, s, log); err != nil {
		log.Error("ratelimitd stopped", "error", err)
		return 1
	}
	return 0
}

// newLogger returns the logger described by s, writing to w.
func newLogger(s settings, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: s.logLevel}
	if s.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the servers until ctx is done, then drains them. It returns an
// error when it cannot start (no valid config, address in use) or when a
// server fails; the error is logged by the caller.
func serve(ctx context.Context, s settings, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	backend, ready, store, err := newBackend(s, reg, log)
	if err != nil {
		return err
	}
	defer backend.Close()
	tokens, err := adminTokens(s)
	if err != nil {
		return err
	}
	ovWatcher, err := startOverrides(ctx, s, store, log)
	if err != nil {
		return err
	}
	defer ovWatcher.Close()
	tr, err := startTracing(ctx, s, log)
	if err != nil {
		return err
	}
	defer tr.shutdown(log) // after the drain: flushes the last calls' spans
	timeout := s.backendTimeout
	if s.backend == "memory" {
		timeout = -1 // no I/O to bound: a deadline could only fail calls on a busy CPU
	}
	now := time.Now
	if s.clockOffset != 0 {
		// Test-only (RATELIMITD_TEST_CLOCK_OFFSET): a replica whose clock
		// is off. Redis decides on its own TIME whatever this says.
		log.Warn("decision clock shifted for testing", "offset", s.clockOffset.String())
		now = func() time.Time { return time.Now().Add(s.clockOffset) }
	}

	srv, err := server.New(server.Options{
		Backend:          backend,
		Ready:            ready,
		Now:              now,
		Mode:             s.chargeMode,
		BackendTimeout:   timeout,
		KeyPrefix:        s.keyPrefix,
		GlobalShadowMode: s.globalShadowMode,
		GlobalQuotaMode:  s.globalQuotaMode,
		ResponseHeaders:  s.responseHeaders,
		HeaderLimit:      s.headerLimit,
		HeaderRemaining:  s.headerRemaining,
		HeaderReset:      s.headerReset,
		DynamicMetadata:  s.dynamicMetadata,
		HeaderStyle:      s.headerStyle,
		ResetUnix:        s.headerResetUnix,
		Body:             s.overLimitBody,
		ProblemType:      s.problemType,
		Overrides:        ovWatcher.Current,
		Registry:         reg,
		Logger:           log,
		Tracer:           tr.tracer(),
	})
	if err != nil {
		return err
	}

	// Reloads, from the watcher and from SIGHUP, all happen in this
	// goroutine, one at a time, so an older load can never replace a newer.
	// Both sources start before the first load, so that no change made
	// after it is missed (a change just before it costs one extra reload).
	changed := make(chan struct{}, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watcher, err := config.Watch(watchCtx, s.configPath, s.reloadDebounce, func() {
		select {
		case changed <- struct{}{}:
		default: // a reload is already pending
		}
	})
	if err != nil {
		log.Warn("not watching the config for changes; reload with SIGHUP", "error", err)
	} else {
		defer watcher.Close()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// The server logs every load: the rule count and hash, or every error.
	loadOpts := s.configOptions()
	load := func() error {
		c, err := config.Load(s.configPath, loadOpts)
		if err != nil {
			srv.ConfigLoadFailed(err)
			return err
		}
		srv.SetConfig(c)
		return nil
	}
	log.Info("loading config", "path", s.configPath)
	if err := load(); err != nil {
		return fmt.Errorf("config %s: %d errors", s.configPath, countErrors(err))
	}

	// Certificates are read before the listeners open, so that a missing
	// or broken one fails the start without binding anything.
	grpcTLS, httpTLS, err := listenerTLS(s)
	if err != nil {
		return err
	}
	grpcLis, err := net.Listen("tcp", s.grpcAddr)
	if err != nil {
		return err
	}
	httpLis, err := net.Listen("tcp", s.httpAddr)
	if err != nil {
		grpcLis.Close()
		return err
	}
	grpcOpts := []grpc.ServerOption{grpc.MaxRecvMsgSize(s.grpcMaxRecvMsgSize)}
	if s.grpcStreamWorkers > 0 {
		grpcOpts = append(grpcOpts, grpc.NumStreamWorkers(uint32(s.grpcStreamWorkers)))
	}
	if grpcTLS != nil {
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(grpcTLS)))
	}
	grpcOpts = append(grpcOpts, tr.grpcServerOptions()...)
	if s.maxConnectionAge > 0 {
		grpcOpts = append(grpcOpts, grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      s.maxConnectionAge,
			MaxConnectionAgeGrace: s.maxConnectionAgeGrace,
		}))
	}
	grpcMetrics := newGRPCMetrics(reg)
	grpcOpts = append(grpcOpts, grpcMetrics.serverOptions()...)
	gs := grpc.NewServer(grpcOpts...)
	srv.Register(gs)
	grpcMetrics.initialize(gs)
	admin, err := srv.NewAdmin(server.AdminOptions{Tokens: tokens, Store: store, Watcher: ovWatcher})
	if err != nil {
		grpcLis.Close()
		httpLis.Close()
		return err
	}
	// The admin API is on the gRPC listener, or on its own.
	var adminGS *grpc.Server
	var adminLis net.Listener
	if s.adminAddr == "" {
		admin.Register(gs)
	} else {
		if adminGS, err = adminServer(s); err == nil {
			adminLis, err = listenAdmin(s)
		}
		if err != nil {
			grpcLis.Close()
			httpLis.Close()
			return err
		}
		admin.Register(adminGS)
	}
	if len(tokens) > 0 {
		addr := grpcLis.Addr().String()
		if adminLis != nil {
			addr = adminLis.Addr().String()
		}
		log.Info("admin API on", "addr", addr, "tokens", len(tokens), "tls", s.adminTLSCert != "", "mtls", s.adminClientCA != "", "overrides", overrideStoreName(s))
	}
	hs := &http.Server{
		Handler:           srv.HTTPHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig:         httpTLS,
	}
	// The profiler, on a listener of its own (debug.go).
	var ds *http.Server
	var debugLis net.Listener
	if s.debugAddr != "" {
		if debugLis, err = net.Listen("tcp", s.debugAddr); err != nil {
			grpcLis.Close()
			httpLis.Close()
			if adminLis != nil {
				adminLis.Close()
			}
			return fmt.Errorf("-debug-addr: %w", err)
		}
		ds = debugServer(log)
		if !isLoopback(debugLis.Addr()) {
			log.Warn("pprof is reachable beyond loopback: keep -debug-addr off the network", "debug_addr", debugLis.Addr().String())
		}
	}

	// Every Serve goroutine is owned here: they return after the drain
	// below, and serve waits for all of them before it returns.
	served := make(chan error, 4)
	running := 2 // Serve calls not yet returned
	go func() { served <- gs.Serve(grpcLis) }()
	if adminGS != nil {
		running++
		go func() { served <- adminGS.Serve(adminLis) }()
	}
	go func() {
		var err error
		if httpTLS != nil {
			err = hs.ServeTLS(httpLis, "", "") // the certificate comes from TLSConfig
		} else {
			err = hs.Serve(httpLis)
		}
		served <- ignoreClosed(err)
	}()
	if ds != nil {
		running++
		go func() { served <- ignoreClosed(ds.Serve(debugLis)) }()
	}

	reload := func(trigger string) {
		log.Info("reloading config", "trigger", trigger, "path", s.configPath)
		if err := load(); err != nil {
			log.Warn("keeping the last good config", "hash", srv.Config().Hash(), "errors", countErrors(err))
		}
	}

	srv.SetServing(true)
	attrs := []any{"grpc_addr", grpcLis.Addr().String(), "http_addr", httpLis.Addr().String(),
		"backend", s.backend, "charge_mode", s.chargeMode.String(), "on_backend_failure", s.onFailure.String(),
		"tls", grpcTLS != nil, "mtls", s.tlsClientCA != "", "http_tls", httpTLS != nil, "tracing", tr != nil}
	if debugLis != nil {
		attrs = append(attrs, "debug_addr", debugLis.Addr().String())
	}
	log.Info("serving", attrs...)

	var failed error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-changed:
			reload("watch")
		case <-hup:
			reload("sighup")
		case err := <-served:
			running--
			failed = fmt.Errorf("server stopped: %w", err)
			break loop
		}
	}

	srv.SetServing(false)
	log.Info("draining", "timeout", s.drainTimeout.String())
	stopWatch()
	if adminGS != nil {
		adminGS.Stop() // admin calls are short; nothing to drain
	}
	if ds != nil {
		ds.Close() // cuts a profile being recorded: nothing to drain
	}
	drain(gs, hs, s.drainTimeout, log)
	for ; running > 0; running-- {
		if err := <-served; err != nil && failed == nil {
			failed = err
		}
	}
	log.Info("stopped")
	return failed
}

// drain stops accepting connections, lets in-flight gRPC calls and HTTP
// requests finish for at most timeout, then cuts what is left.
func drain(gs *grpc.Server, hs *http.Server, timeout time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		log.Warn("drain timeout: cutting the remaining gRPC calls")
		gs.Stop()
		<-stopped
	}
	if err := hs.Shutdown(ctx); err != nil {
		hs.Close()
	}
}

// ignoreClosed is err, or nil when err only says that the HTTP server was
// closed (by the drain).
func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// newBackend builds the backend named by s and registers its metrics on
// reg. It also returns the backend's readiness check, or nil when it has
// none (memory). It never waits for a remote store.
//
// It also returns the store of the admin API's overrides: a file for the
// memory backend, a hash in the same Redis for the redis backend.
func newBackend(s settings, reg prometheus.Registerer, log *slog.Logger) (backends.Backend, func(context.Context) error, overrides.Store, error) {
	switch s.backend {
	case "memory":
		return newMemoryBackend(s, reg), nil, overrides.NewFileStore(s.overridesFile), nil
	case "redis":
		return newRedisBackend(s, reg, log)
	}
	return nil, nil, nil, fmt.Errorf("unknown backend %q", s.backend)
}

// newMemoryBackend builds the memory backend and registers its occupancy
// metrics on reg.
func newMemoryBackend(s settings, reg prometheus.Registerer) *memory.Backend {
	m := memory.New(memory.Options{MaxBuckets: s.memoryMaxBuckets})
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ratelimitd_memory_buckets",
			Help: "Buckets the memory backend holds.",
		}, func() float64 { return float64(m.Stats().Buckets) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ratelimitd_memory_evictions_total",
			Help: "Live buckets the memory backend dropped to stay within -memory-max-buckets (they restart empty).",
		}, func() float64 { return float64(m.Stats().Evictions) }),
	)
	return m
}

// countErrors is the number of errors of a failed load.
func countErrors(err error) int {
	var errs config.Errors
	if errors.As(err, &errs) {
		return len(errs)
	}
	return 1
}
