package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// The debug listener (-debug-addr) serves Go's profiler and nothing else.
// It is off by default and never shares the HTTP listener's mux: profiles
// reveal memory contents (heap, goroutine stacks with arguments) and a CPU
// profile or trace costs CPU while it runs, so it belongs on an address
// only an operator reaches, such as 127.0.0.1 with kubectl port-forward.
// net/http/pprof also registers itself on http.DefaultServeMux when
// imported; ratelimitd never serves that mux.

// debugHandler returns the mux of the debug listener: net/http/pprof's
// handlers under /debug/pprof/.
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // also serves the named profiles: heap, goroutine, ...
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// debugServer returns the HTTP server of the debug listener. It has no
// write timeout: /debug/pprof/profile and /trace answer after the
// seconds they are asked to record.
func debugServer(log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           debugHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// isLoopback reports whether the listener address is on a loopback
// interface, to warn when the profiler is reachable from the network.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
