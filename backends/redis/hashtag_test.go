package redis_test

// The config's hash_tag against a real Cluster: the buckets of one org,
// keyed by config as the server keys them, are decided by one script on
// one slot, so a vetoed call needs no refund. (Tests may import config;
// the backend itself never does.)

import (
	"context"
	"testing"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/backendtest"
	"github.com/ratelimitd/ratelimitd/backends/redis"
	"github.com/ratelimitd/ratelimitd/config"
	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

// orgRules are three buckets of one org: per endpoint, org-wide and the
// org's runs in flight.
const orgRules = `
descriptors:
  - key: org
    rate_limit: {unit: minute, requests_per_unit: 100}
    descriptors:
      - key: path
        rate_limit: {unit: minute, requests_per_unit: 10}
      - key: concurrency
        value: runs
        rate_limit: {algorithm: concurrency, max_in_flight: 2, lease: 30m}
`

// orgCall is one request of org: its three descriptors, matched and keyed
// as the server does (prefix, then the rule's key), with one hit each.
func orgCall(t *testing.T, c *config.Config, prefix, org string, now int64) []backends.Request {
	t.Helper()
	var reqs []backends.Request
	for _, es := range [][]config.Entry{
		{{Key: "org", Value: org}, {Key: "path", Value: "/api/runs"}},
		{{Key: "org", Value: org}},
		{{Key: "org", Value: org}, {Key: "concurrency", Value: "runs"}},
	} {
		r := c.Match("api", es)
		if r == nil {
			t.Fatalf("no rule for %v", es)
		}
		for i := range r.Limits {
			key := r.AppendLimitKey([]byte(prefix), es, i)
			reqs = append(reqs, backends.Request{Key: key, Limit: r.Limits[i].At(now), Hits: 1})
		}
	}
	return reqs
}

func slotsOf(reqs []backends.Request) map[int]bool {
	slots := map[int]bool{}
	for _, r := range reqs {
		slots[redis.Slot(string(r.Key))] = true
	}
	return slots
}

func TestClusterHashTag(t *testing.T) {
	cl := redistest.Cluster(t)
	cc := cl.Client(t)
	b := newBackend(t, redis.Options{Topology: redis.Cluster, Addrs: cl.Addrs, ClientTime: true})
	ctx := context.Background()
	parse := func(yml string) *config.Config {
		t.Helper()
		c, err := config.Parse([]config.File{{Name: "org.yaml", Data: []byte(yml)}}, config.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tagged := parse("domain: api\nhash_tag: org\n" + orgRules)
	plain := parse("domain: api\n" + orgRules)
	counters := func(reqs []backends.Request) []string {
		t.Helper()
		var out []string
		for _, r := range reqs {
			v, err := cc.Get(ctx, string(r.Key)).Result()
			if err != nil {
				t.Fatalf("GET %q: %v", r.Key, err)
			}
			out = append(out, v)
		}
		return out
	}
	// run fills the org's concurrency (2 calls, all charged), then makes a
	// third call that concurrency vetoes, and returns the refunds that
	// third call needed. Every counter must be as the second call left it.
	run := func(t *testing.T, reqs []backends.Request) uint64 {
		t.Helper()
		now := backendtest.Base
		for call := 1; call <= 2; call++ {
			for i, d := range apply(t, b, now, aon, reqs...) {
				if !d.Allowed || d.Count != int64(call) {
					t.Fatalf("call %d, %s: %+v, want allowed with count %d", call, reqs[i].Key, d, call)
				}
			}
		}
		before := counters(reqs)
		refunds := b.Stats().Refunds
		out := apply(t, b, now, aon, reqs...)
		want := []algorithms.Decision{
			{Allowed: true, Remaining: 8, ResetAfter: minute, Count: 2},
			{Allowed: true, Remaining: 98, ResetAfter: minute, Count: 2},
		}
		for i := range want {
			if out[i].Allowed != want[i].Allowed || out[i].Remaining != want[i].Remaining || out[i].Count != want[i].Count {
				t.Errorf("vetoed call, %s: %+v, want %+v (not charged)", reqs[i].Key, out[i], want[i])
			}
		}
		if out[2].Allowed {
			t.Errorf("vetoed call, %s: %+v, want refused", reqs[2].Key, out[2])
		}
		after := counters(reqs)
		for i := range reqs {
			if after[i] != before[i] {
				t.Errorf("%s = %q after a vetoed call, want %q", reqs[i].Key, after[i], before[i])
			}
		}
		if st := b.Stats(); st.RefundErrors != 0 {
			t.Errorf("RefundErrors %d", st.RefundErrors)
		}
		return b.Stats().Refunds - refunds
	}

	t.Run("tagged", func(t *testing.T) {
		reqs := orgCall(t, tagged, "rl:", "acme", backendtest.Base)
		if s := slotsOf(reqs); len(s) != 1 {
			t.Fatalf("one org's keys on slots %v, want one", s)
		}
		for _, r := range reqs {
			if r.Key[3] != '{' {
				t.Fatalf("key %q does not start with its hash tag after the prefix", r.Key)
			}
			if got, err := cc.ClusterKeySlot(ctx, string(r.Key)).Result(); err != nil || int(got) != redis.Slot(string(r.Key)) {
				t.Fatalf("CLUSTER KEYSLOT %q = %d, %v; want %d", r.Key, got, err, redis.Slot(string(r.Key)))
			}
		}
		if n := run(t, reqs); n != 0 {
			t.Errorf("a call on one org's buckets needed %d refunds, want 0", n)
		}
	})
	t.Run("untagged", func(t *testing.T) {
		// The same buckets without hash_tag: spread over slots, so the
		// vetoed call charges the other slots and refunds them.
		reqs := orgCall(t, plain, "rl:", "acme", backendtest.Base)
		if s := slotsOf(reqs); len(s) < 2 {
			t.Fatalf("untagged keys on slots %v: pick an org whose keys spread", s)
		}
		if n := run(t, reqs); n != 1 {
			t.Errorf("the vetoed call across slots made %d refunds, want 1", n)
		}
	})
	t.Run("two orgs", func(t *testing.T) {
		// Another org's buckets are together in a slot of their own; the
		// org's value alone decides it, not the (brace-free) prefix.
		a, g := orgCall(t, tagged, "x:", "acme", backendtest.Base), orgCall(t, tagged, "rl:", "globex", backendtest.Base)
		if s := slotsOf(append(a, g...)); len(s) != 2 {
			t.Errorf("acme and globex keys on slots %v, want two", s)
		}
	})
}
