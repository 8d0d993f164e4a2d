package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/ratelimitd/ratelimitd/backends"
)

// env returns a getenv over m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestSettings(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		s, err := parseSettings(nil, env(nil), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if s.grpcAddr != "127.0.0.1:8081" || s.httpAddr != "127.0.0.1:8080" || s.configPath != "examples/quickstart/config" ||
			s.chargeMode != backends.AllOrNothing || s.backend != "memory" || s.drainTimeout != 10*time.Second ||
			s.logLevel != slog.LevelInfo || s.headerLimit != "RateLimit-Limit" {
			t.Errorf("defaults: %+v", s)
		}
	})
	t.Run("environment fallback", func(t *testing.T) {
		s, err := parseSettings(nil, env(map[string]string{
			"RATELIMITD_GRPC_ADDR":          "127.0.0.1:9001",
			"RATELIMITD_CHARGE_MODE":        "stop_when_over",
			"RATELIMITD_RESPONSE_HEADERS":   "true",
			"RATELIMITD_MEMORY_MAX_BUCKETS": "42",
			"RATELIMITD_DRAIN_TIMEOUT":      "3s",
			"RATELIMITD_LOG_LEVEL":          "debug",
			"RATELIMITD_HEADER_RESET":       "X-Reset",
			"RATELIMITD_VALIDATE":           "/etc/passwd", // no fallback: a command, not a setting
		}), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if s.grpcAddr != "127.0.0.1:9001" || s.chargeMode != backends.StopWhenOver || !s.responseHeaders ||
			s.memoryMaxBuckets != 42 || s.drainTimeout != 3*time.Second || s.logLevel != slog.LevelDebug ||
			s.headerReset != "X-Reset" || s.validate != "" {
			t.Errorf("from the environment: %+v", s)
		}
	})
	t.Run("flag wins", func(t *testing.T) {
		s, err := parseSettings([]string{"-grpc-addr", "127.0.0.1:9002", "-response-headers=false"}, env(map[string]string{
			"RATELIMITD_GRPC_ADDR":        "127.0.0.1:9001",
			"RATELIMITD_RESPONSE_HEADERS": "true",
		}), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if s.grpcAddr != "127.0.0.1:9002" || s.responseHeaders {
			t.Errorf("flags over the environment: %+v", s)
		}
	})
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad env value", nil, map[string]string{"RATELIMITD_DRAIN_TIMEOUT": "soon"}, "RATELIMITD_DRAIN_TIMEOUT"},
		{"bad charge mode", []string{"-charge-mode", "sometimes"}, nil, "sometimes"},
		{"bad backend", []string{"-backend", "etcd"}, nil, "etcd"},
		{"bad log format", nil, map[string]string{"RATELIMITD_LOG_FORMAT": "xml"}, "xml"},
		{"extra argument", []string{"serve"}, nil, "serve"},
		{"negative drain", []string{"-drain-timeout", "-1s"}, nil, "drain-timeout"},
		{"brace in key prefix", []string{"-key-prefix", "rl{x}:"}, nil, "must not contain { or }"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSettings(tt.args, env(tt.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one naming %q", err, tt.want)
			}
		})
	}
}

func TestUsageNamesEnvironment(t *testing.T) {
	var stderr strings.Builder
	if code := run(context.Background(), []string{"-h"}, env(nil), io.Discard, &stderr); code != 0 {
		t.Errorf("-h: exit code %d, want 0", code)
	}
	for _, want := range []string{"-grpc-addr", "$RATELIMITD_GRPC_ADDR", "$RATELIMITD_MEMORY_MAX_BUCKETS", "-validate"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("usage does not mention %s:\n%s", want, stderr.String())
		}
	}
	if strings.Contains(stderr.String(), "RATELIMITD_VALIDATE") {
		t.Error("usage offers RATELIMITD_VALIDATE")
	}
	if code := run(context.Background(), []string{"-no-such-flag"}, env(nil), io.Discard, io.Discard); code != 2 {
		t.Errorf("unknown flag: exit code %d, want 2", code)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeConfig(t, good, `domain: shop
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 10, name: per_user}
    descriptors:
      - key: path
        value: /cart/*
        shadow_mode: true
        rate_limit: {unit: hour, requests_per_unit: 100}
  - key: internal
    rate_limit: {unlimited: true}
`)
	var stdout, stderr strings.Builder
	if code := run(context.Background(), []string{"-validate", good}, env(nil), &stdout, &stderr); code != 0 {
		t.Fatalf("good config: exit code %d, want 0; stderr:\n%s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	wantFields := [][]string{
		{"shop.user", "10/minute", `name="per_user"`},
		{"shop.user.path=/cart/*", "100/hour", "shadow_mode"},
		{"shop.internal", "unlimited"},
	}
	if len(lines) != len(wantFields) {
		t.Fatalf("good config: %d lines, want one per rule (%d):\n%s", len(lines), len(wantFields), stdout.String())
	}
	for i, want := range wantFields {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("line %d: %q, want fields %q", i, lines[i], want)
		}
	}

	bad := filepath.Join(dir, "bad")
	if err := os.Mkdir(bad, 0o755); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, filepath.Join(bad, "a.yaml"), `domain: a
descriptors:
  - key: user
    rate_limit: {unit: fortnight, requests_per_unit: 3}
`)
	writeConfig(t, filepath.Join(bad, "b.yaml"), `domain: b
descriptors:
  - key: ip
    colour: blue
    rate_limit: {unit: second, requests_per_unit: 3}
`)
	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), []string{"-validate", bad}, env(nil), &stdout, &stderr); code != 1 {
		t.Fatalf("bad config: exit code %d, want 1", code)
	}
	errLines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	var sawA, sawB bool
	for _, l := range errLines {
		sawA = sawA || strings.HasPrefix(l, filepath.Join(bad, "a.yaml")+": a.user: ") && strings.Contains(l, "fortnight")
		sawB = sawB || strings.HasPrefix(l, filepath.Join(bad, "b.yaml")+": b.ip: ") && strings.Contains(l, "colour")
	}
	if !sawA || !sawB {
		t.Errorf("bad config: want an error line for each file (file: path: message), got:\n%s", stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("bad config printed rules:\n%s", stdout.String())
	}
}

// TestRunFromEnvironment starts the server in-process with its addresses
// and config from RATELIMITD_* variables only, then stops it through ctx.
// runInProcess runs run() with the given environment and no arguments
// until the test ends, and returns the bound gRPC and HTTP addresses, read
// from its JSON "serving" log line (the environment must ask for JSON
// logs), and stop, which cancels it and returns its exit code.
func runInProcess(t *testing.T, environ map[string]string) (grpcAddr, httpAddr string, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, nil, env(environ), io.Discard, pw)
		pw.Close()
	}()
	lines := newLogLines()
	go func() { // ends when run returns and closes pw
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines.add(sc.Text())
		}
		lines.end()
	}()
	serving, _ := lines.await(t, 0, `"serving"`, msgIs("serving"))
	grpcAddr, _ = serving["grpc_addr"].(string)
	httpAddr, _ = serving["http_addr"].(string)
	return grpcAddr, httpAddr, func() int {
		cancel()
		select {
		case c := <-code:
			return c
		case <-time.After(patience):
			t.Fatal("run did not return after ctx was done")
			return -1
		}
	}
}

func TestRunFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, filepath.Join(dir, "config.yaml"), e2eConfig(1))
	grpcAddr, httpAddr, stop := runInProcess(t, map[string]string{
		"RATELIMITD_GRPC_ADDR":  "127.0.0.1:0",
		"RATELIMITD_HTTP_ADDR":  "127.0.0.1:0",
		"RATELIMITD_CONFIG":     dir,
		"RATELIMITD_LOG_FORMAT": "json",
	})
	if !strings.HasPrefix(grpcAddr, "127.0.0.1:") || !strings.HasPrefix(httpAddr, "127.0.0.1:") {
		t.Fatalf("serving on %q and %q, want loopback", grpcAddr, httpAddr)
	}
	if st, body := get(t, httpAddr, "/readyz"); st != http.StatusOK {
		t.Errorf("/readyz: %d %s", st, body)
	}
	c := dial(t, grpcAddr)
	if got := c.versionLimit(t); got != 1001 {
		t.Errorf("limit %d from the config named by RATELIMITD_CONFIG, want 1001", got)
	}
	resp := c.call(t, "e2e", descriptor("user", "env"))
	if resp.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Errorf("first call: %v", resp.OverallCode)
	}
	if code := stop(); code != 0 {
		t.Errorf("exit code %d after ctx done, want 0", code)
	}
}
