package main

import (
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ratelimitd/ratelimitd/backends/resilient"
)

func TestRedisSettings(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		s, err := parseSettings([]string{"-backend", "redis"}, env(nil), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		r := s.redis
		if r.topology != "standalone" || !slices.Equal(r.addrs, []string{"127.0.0.1:6379"}) || r.tls != nil ||
			s.onFailure != resilient.Unavailable || s.fallbackReplicas != 1 || s.breakerFailures != resilient.DefaultBreakerFailures ||
			s.breakerProbeInterval != time.Second || s.localCacheSize != 0 || s.backendTimeout != 10*time.Millisecond || s.clockOffset != 0 {
			t.Errorf("defaults: %+v", s)
		}
	})
	t.Run("environment", func(t *testing.T) {
		dir := t.TempDir()
		pw := filepath.Join(dir, "pw")
		if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := parseSettings(nil, env(map[string]string{
			"RATELIMITD_BACKEND":                 "redis",
			"RATELIMITD_REDIS_TOPOLOGY":          "sentinel",
			"RATELIMITD_REDIS_ADDR":              "10.0.0.1:26379, 10.0.0.2:26379",
			"RATELIMITD_REDIS_MASTER_NAME":       "mymaster",
			"RATELIMITD_REDIS_PASSWORD_FILE":     pw,
			"RATELIMITD_REDIS_SENTINEL_PASSWORD": "sp",
			"RATELIMITD_REDIS_DB":                "2",
			"RATELIMITD_REDIS_TLS_SERVER_NAME":   "redis.internal",
			"RATELIMITD_REDIS_BATCH_WINDOW":      "100us",
			"RATELIMITD_ON_BACKEND_FAILURE":      "local",
			"RATELIMITD_FALLBACK_REPLICAS":       "3",
			"RATELIMITD_LOCAL_CACHE_SIZE":        "1000",
			"RATELIMITD_TEST_CLOCK_OFFSET":       "-90s",
		}), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		r := s.redis
		if r.topology != "sentinel" || !slices.Equal(r.addrs, []string{"10.0.0.1:26379", "10.0.0.2:26379"}) ||
			r.masterName != "mymaster" || r.password != "s3cret" || r.sentinelPassword != "sp" || r.db != 2 ||
			r.tls == nil || r.tls.ServerName != "redis.internal" || r.tls.MinVersion != tls.VersionTLS12 ||
			r.batchWindow != 100*time.Microsecond || s.onFailure != resilient.Local || s.fallbackReplicas != 3 ||
			s.localCacheSize != 1000 || s.clockOffset != -90*time.Second {
			t.Errorf("from the environment: %+v %+v", s, r)
		}
	})
	t.Run("unix socket", func(t *testing.T) {
		s, err := parseSettings([]string{"-backend", "redis", "-redis-addr", "/run/redis.sock"}, env(nil), io.Discard)
		if err != nil || !slices.Equal(s.redis.addrs, []string{"/run/redis.sock"}) {
			t.Errorf("unix socket: %v %v", s.redis.addrs, err)
		}
	})
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"bad topology", []string{"-redis-topology", "ring"}, "ring"},
		{"sentinel without master", []string{"-redis-topology", "sentinel"}, "-redis-master-name"},
		{"standalone with two addresses", []string{"-redis-addr", "a:1,b:2"}, "one address"},
		{"empty address", []string{"-redis-addr", " , "}, "-redis-addr"},
		{"bad policy", []string{"-on-backend-failure", "pray"}, "pray"},
		{"zero replicas", []string{"-fallback-replicas", "0"}, "-fallback-replicas"},
		{"negative cache", []string{"-local-cache-size", "-1"}, "-local-cache-size"},
		{"password twice", []string{"-redis-password", "a", "-redis-password-file", "/nonexistent"}, "exclusive"},
		{"missing password file", []string{"-redis-password-file", "/nonexistent/pw"}, "-redis-password-file"},
		{"cert without key", []string{"-redis-tls-cert", "/c.pem"}, "-redis-tls-key"},
		{"missing CA", []string{"-redis-tls-ca", "/nonexistent/ca.pem"}, "-redis-tls-ca"},
		{"negative probe interval", []string{"-breaker-probe-interval", "-1s"}, "breaker-probe-interval"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSettings(append([]string{"-backend", "redis"}, tt.args...), env(nil), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one naming %q", err, tt.want)
			}
		})
	}
	if _, err := parseSettings(nil, env(map[string]string{testClockOffsetEnv: "soon"}), io.Discard); err == nil {
		t.Error("bad clock offset: no error")
	}
}
