package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ratelimitd/ratelimitd/backends"
)

func TestReferenceSettings(t *testing.T) {
	t.Run("none set: our defaults", func(t *testing.T) {
		s, err := parseSettings(nil, env(map[string]string{"HOSTNAME": "box", "PATH": "/bin"}), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if s.grpcAddr != "127.0.0.1:8081" || s.httpAddr != "127.0.0.1:8080" || len(s.notes) != 0 {
			t.Errorf("without reference variables: grpc %q http %q notes %q", s.grpcAddr, s.httpAddr, s.notes)
		}
	})
	t.Run("a typical deployment", func(t *testing.T) {
		s, err := parseSettings(nil, env(map[string]string{
			"USE_STATSD":             "false",
			"LOG_LEVEL":              "warning",
			"RUNTIME_ROOT":           "/data",
			"RUNTIME_SUBDIRECTORY":   "ratelimit",
			"RUNTIME_IGNOREDOTFILES": "true",
			"REDIS_SOCKET_TYPE":      "tcp",
			"REDIS_URL":              "redis:6379",
			"REDIS_AUTH":             "rl:secret",
			"STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT": "true",
			"LIMIT_RESPONSE_HEADERS_ENABLED":          "true",
			"LIMIT_RESET_HEADER":                      "X-Reset",
			"SHADOW_MODE":                             "true",
			"CACHE_KEY_PREFIX":                        "rl_",
			"LOCAL_CACHE_SIZE_IN_BYTES":               "1048576",
			"REDIS_TIMEOUT":                           "2s",
			"GRPC_MAX_CONNECTION_AGE":                 "24h",
		}), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		want := settings{
			grpcAddr: "0.0.0.0:8081", httpAddr: "0.0.0.0:8080", configPath: "/data/ratelimit/config",
			backend: "redis", chargeMode: backends.StopWhenOver, responseHeaders: true, headerReset: "X-Reset",
			globalShadowMode: true, keyPrefix: "rl_", localCacheSize: 1048576 / localCacheEntryBytes,
			logLevel: slog.LevelWarn, maxConnectionAge: 24 * time.Hour,
		}
		got := settings{
			grpcAddr: s.grpcAddr, httpAddr: s.httpAddr, configPath: s.configPath, backend: s.backend,
			chargeMode: s.chargeMode, responseHeaders: s.responseHeaders, headerReset: s.headerReset,
			globalShadowMode: s.globalShadowMode, keyPrefix: s.keyPrefix, localCacheSize: s.localCacheSize,
			logLevel: s.logLevel, maxConnectionAge: s.maxConnectionAge,
		}
		if got.grpcAddr != want.grpcAddr || got.httpAddr != want.httpAddr || got.configPath != want.configPath ||
			got.backend != want.backend || got.chargeMode != want.chargeMode || got.responseHeaders != want.responseHeaders ||
			got.headerReset != want.headerReset || got.globalShadowMode != want.globalShadowMode || got.keyPrefix != want.keyPrefix ||
			got.localCacheSize != want.localCacheSize || got.logLevel != want.logLevel || got.maxConnectionAge != want.maxConnectionAge {
			t.Errorf("got  %+v\nwant %+v", got, want)
		}
		r := s.redis
		if r.topology != "standalone" || strings.Join(r.addrs, ",") != "redis:6379" || r.username != "rl" || r.password != "secret" ||
			r.dialTimeout != 2*time.Second || r.readTimeout != 2*time.Second {
			t.Errorf("redis settings %+v", r)
		}
		if len(s.notes) == 0 || !strings.Contains(s.notes[0], "RUNTIME_ROOT") {
			t.Errorf("notes %q, want the variables read named", s.notes)
		}
	})
	t.Run("sentinel and cluster urls", func(t *testing.T) {
		s, err := parseSettings(nil, env(map[string]string{"REDIS_TYPE": "sentinel", "REDIS_URL": "mymaster,s1:26379,s2:26379", "REDIS_SENTINEL_AUTH": "pw"}), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.redis; r.topology != "sentinel" || r.masterName != "mymaster" || strings.Join(r.addrs, ",") != "s1:26379,s2:26379" || r.sentinelPassword != "pw" {
			t.Errorf("sentinel: %+v", r)
		}
		s, err = parseSettings(nil, env(map[string]string{"BACKEND_TYPE": "redis", "REDIS_TYPE": "CLUSTER", "REDIS_URL": "n1:7000,n2:7001"}), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.redis; s.backend != "redis" || r.topology != "cluster" || len(r.addrs) != 2 {
			t.Errorf("cluster: backend %q %+v", s.backend, r)
		}
	})
	t.Run("ours win over the reference's", func(t *testing.T) {
		s, err := parseSettings([]string{"-grpc-addr", "127.0.0.1:9"}, env(map[string]string{
			"GRPC_PORT": "7000", "PORT": "7001", "RATELIMITD_HTTP_ADDR": "127.0.0.1:10",
			"SHADOW_MODE": "true", "RATELIMITD_GLOBAL_SHADOW_MODE": "false",
		}), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if s.grpcAddr != "127.0.0.1:9" || s.httpAddr != "127.0.0.1:10" || s.globalShadowMode {
			t.Errorf("grpc %q http %q shadow %v", s.grpcAddr, s.httpAddr, s.globalShadowMode)
		}
	})
	for _, tt := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"memcache", map[string]string{"BACKEND_TYPE": "memcache"}, "BACKEND_TYPE=memcache is not supported"},
		{"xds", map[string]string{"CONFIG_TYPE": "GRPC_XDS_SOTW"}, "CONFIG_TYPE=GRPC_XDS_SOTW is not supported"},
		{"uds", map[string]string{"GRPC_UDS": "/tmp/rl.sock"}, "GRPC_UDS is not supported"},
		{"bad bool", map[string]string{"SHADOW_MODE": "maybe"}, `invalid value "maybe" for SHADOW_MODE`},
		{"bad level", map[string]string{"LOG_LEVEL": "loud"}, `invalid value "loud" for LOG_LEVEL`},
		{"bad redis type", map[string]string{"REDIS_URL": "r:1", "REDIS_TYPE": "ring"}, `invalid value "ring" for REDIS_TYPE`},
		{"sentinel without master", map[string]string{"REDIS_URL": "s1:26379", "REDIS_TYPE": "SENTINEL"}, "master-name,sentinel-address"},
		{"bad port", map[string]string{"GRPC_PORT": "eighty"}, `invalid value "eighty" for GRPC_PORT`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSettings(nil, env(tt.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestRunWithReferenceEnvironment starts the server configured only the way
// an envoyproxy/ratelimit deployment is: its variables and its directory
// layout ($RUNTIME_ROOT/$RUNTIME_SUBDIRECTORY/config).
func TestRunWithReferenceEnvironment(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "ratelimit", "config")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, filepath.Join(dir, "config.yaml"), e2eConfig(1))
	grpcAddr, _, stop := runInProcess(t, map[string]string{
		"GRPC_HOST": "127.0.0.1", "GRPC_PORT": "0", "HOST": "127.0.0.1", "PORT": "0",
		"RUNTIME_ROOT": root, "RUNTIME_SUBDIRECTORY": "ratelimit", "USE_STATSD": "false",
		"LOG_FORMAT": "json", "LOG_LEVEL": "info",
	})
	c := dial(t, grpcAddr)
	if got := c.versionLimit(t); got != 1001 {
		t.Errorf("limit %d from $RUNTIME_ROOT/$RUNTIME_SUBDIRECTORY/config, want 1001", got)
	}
	if code := stop(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}
