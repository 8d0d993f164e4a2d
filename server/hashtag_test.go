package server

import (
	"context"
	"strings"
	"sync"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/memory"
)

// keyRecorder is the memory backend, remembering the keys of every call.
type keyRecorder struct {
	backends.Backend
	mu   sync.Mutex
	keys [][]string
}

func (k *keyRecorder) Apply(ctx context.Context, now int64, mode backends.Mode, reqs []backends.Request, out []algorithms.Decision) error {
	var keys []string
	for _, r := range reqs {
		keys = append(keys, string(r.Key))
	}
	k.mu.Lock()
	k.keys = append(k.keys, keys)
	k.mu.Unlock()
	return k.Backend.Apply(ctx, now, mode, reqs, out)
}

// TestHashTagKeys: the server writes the key prefix, then the rule's key,
// which for a rule with hash_tag starts with the tag; so one org's
// buckets carry one tag right after the prefix, and a descriptor's limit
// override is never tagged.
func TestHashTagKeys(t *testing.T) {
	mem := memory.New(memory.Options{})
	t.Cleanup(func() { mem.Close() })
	rec := &keyRecorder{Backend: mem}
	e := newEnv(t, `domain: api
hash_tag: org
descriptors:
  - key: org
    rate_limit: {unit: minute, requests_per_unit: 100}
    descriptors:
      - key: path
        rate_limit: {unit: minute, requests_per_unit: 10}
      - key: concurrency
        value: runs
        rate_limit: {algorithm: concurrency, max_in_flight: 2, lease: 30m}
`, Options{Backend: rec, KeyPrefix: "rl:"})
	res, err := e.rls.ShouldRateLimit(context.Background(), rq("api",
		desc("org", "acme", "path", "/api/runs"),
		desc("org", "acme"),
		desc("org", "acme", "concurrency", "runs"),
		withLimit(desc("org", "acme", "path", "/x"), 5, typev3.RateLimitUnit_SECOND),
	))
	if err != nil {
		t.Fatal(err)
	}
	if res.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("overall %v, want OK", res.OverallCode)
	}
	if len(rec.keys) != 1 || len(rec.keys[0]) != 4 {
		t.Fatalf("backend calls %q, want one call with 4 keys", rec.keys)
	}
	keys := rec.keys[0]
	const tag = "rl:{45fd71af}" // FNV-1a of "acme"; config pins the hash
	want := []string{
		tag + "3:api1:23:org4:acme4:path9:/api/runs12:fixed_window8:60000000",
		tag + "3:api1:13:org4:acme12:fixed_window8:60000000",
		tag + "3:api1:23:org4:acme11:concurrency4:runs11:concurrency10:1800000000",
	}
	for i, w := range want {
		if keys[i] != w {
			t.Errorf("key %d = %q, want %q", i, keys[i], w)
		}
	}
	if k := keys[3]; !strings.HasPrefix(k, "rl:3:api") || strings.ContainsAny(k, "{}") {
		t.Errorf("override key %q, want the untagged key after the prefix", k)
	}
}
