package main

import (
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestDebugListener(t *testing.T) {
	t.Run("off by default", func(t *testing.T) {
		serving, stop := runServing(t, map[string]string{
			"RATELIMITD_GRPC_ADDR":  "127.0.0.1:0",
			"RATELIMITD_HTTP_ADDR":  "127.0.0.1:0",
			"RATELIMITD_CONFIG":     configDir(t, e2eConfig(1)),
			"RATELIMITD_LOG_FORMAT": "json",
		})
		httpAddr, _ := serving["http_addr"].(string)
		if _, ok := serving["debug_addr"]; ok {
			t.Errorf("serving line names a debug address without -debug-addr: %v", serving)
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
			if st, _ := get(t, httpAddr, path); st != http.StatusNotFound {
				t.Errorf("GET %s on the HTTP listener: %d, want 404", path, st)
			}
		}
		if code := stop(); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
	})
	t.Run("on its own listener", func(t *testing.T) {
		serving, stop := runServing(t, map[string]string{
			"RATELIMITD_GRPC_ADDR":  "127.0.0.1:0",
			"RATELIMITD_HTTP_ADDR":  "127.0.0.1:0",
			"RATELIMITD_DEBUG_ADDR": "127.0.0.1:0",
			"RATELIMITD_CONFIG":     configDir(t, e2eConfig(1)),
			"RATELIMITD_LOG_FORMAT": "json",
		})
		httpAddr, _ := serving["http_addr"].(string)
		debugAddr, _ := serving["debug_addr"].(string)
		if !strings.HasPrefix(debugAddr, "127.0.0.1:") {
			t.Fatalf("debug_addr %q in the serving line, want a loopback address", debugAddr)
		}
		if st, body := get(t, debugAddr, "/debug/pprof/"); st != http.StatusOK || !strings.Contains(body, "goroutine") {
			t.Errorf("GET /debug/pprof/ on -debug-addr: %d %.200s", st, body)
		}
		if st, body := get(t, debugAddr, "/debug/pprof/goroutine?debug=1"); st != http.StatusOK || !strings.Contains(body, "goroutine profile") {
			t.Errorf("GET /debug/pprof/goroutine on -debug-addr: %d %.200s", st, body)
		}
		if st, _ := get(t, debugAddr, "/metrics"); st != http.StatusNotFound {
			t.Errorf("GET /metrics on -debug-addr: %d, want 404 (pprof only)", st)
		}
		if st, _ := get(t, httpAddr, "/debug/pprof/"); st != http.StatusNotFound {
			t.Errorf("GET /debug/pprof/ on the HTTP listener with -debug-addr: %d, want 404", st)
		}
		if code := stop(); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
	})
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:6060": true, "[::1]:6060": true, "0.0.0.0:6060": false, "10.0.0.1:6060": false} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := isLoopback(a); got != want {
			t.Errorf("isLoopback(%s) = %v, want %v", addr, got, want)
		}
	}
}
