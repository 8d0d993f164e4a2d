package config

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"os"
	"strings"
	"testing"
)

// wantTag is the hash tag AppendKey writes for value, computed with the
// standard library's FNV-1a.
func wantTag(value string) string {
	h := fnv.New32a()
	h.Write([]byte(value))
	return fmt.Sprintf("{%08x}", h.Sum32())
}

// redisTag is what Redis Cluster hashes of key: the content of the first
// '{' up to the next '}', when not empty; else the whole key.
func redisTag(key string) string {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			return key[s+1 : s+1+e]
		}
	}
	return key
}

func TestHashTagRules(t *testing.T) {
	c := mustLoad(t, "testdata/extensions/hash_tag.yaml")
	got := map[string]string{}
	for _, r := range c.Rules() {
		got[r.Path] = r.HashTag
	}
	want := map[string]string{
		"api.org":                  "org",  // domain level, the rule's own entry
		"api.org.path":             "org",  // inherited, the parent's entry
		"api.org.concurrency=runs": "org",  // inherited
		"api.org.user":             "user", // the descriptor's own setting wins
		"api.org.files=files/*":    "org",
		"api.api_key":              "", // no org entry on the path
		"api.region.org":           "", // hash_tag: "" turns it off below
		"api.tenant=t-*.org":       "tenant",
	}
	for path, tag := range want {
		if g, ok := got[path]; !ok || g != tag {
			t.Errorf("%s: HashTag %q (found %v), want %q", path, g, ok, tag)
		}
	}
	if len(got) != len(want) {
		t.Errorf("rules %v, want %v", got, want)
	}
}

func TestHashTagKeys(t *testing.T) {
	c := mustLoad(t, "testdata/extensions/hash_tag.yaml")
	key := func(es []Entry, limit int) string {
		t.Helper()
		r := c.Match("api", es)
		if r == nil {
			t.Fatalf("Match(%v) = nil", es)
		}
		return string(r.AppendLimitKey(nil, es, limit))
	}
	acme := entries("org", "acme")

	// The exact form: the tag, then the untagged fields.
	if got, want := key(acme, 0), wantTag("acme")+"3:api1:13:org4:acme12:fixed_window8:60000000"; got != want {
		t.Errorf("org-wide key %q, want %q", got, want)
	}
	if wantTag("acme") != "{45fd71af}" {
		t.Errorf("tag of acme is %s: the tag function changed, and with it every tagged key", wantTag("acme"))
	}

	// One org's buckets share the tag, whatever the rule; another org's
	// have their own.
	orgKeys := []string{
		key(acme, 0),
		key(entries("org", "acme", "path", "/api/runs"), 0),
		key(entries("org", "acme", "concurrency", "runs"), 0),
		key(entries("org", "acme", "files", "files/a.pdf"), 0),
	}
	for _, k := range orgKeys {
		if redisTag(k) != redisTag(orgKeys[0]) || !strings.HasPrefix(k, wantTag("acme")) {
			t.Errorf("key %q: Redis tag %q, want %q", k, redisTag(k), redisTag(orgKeys[0]))
		}
	}
	if other := key(entries("org", "globex", "path", "/api/runs"), 0); redisTag(other) == redisTag(orgKeys[0]) {
		t.Errorf("orgs acme and globex share a tag: %q %q", other, orgKeys[0])
	}

	// An override takes its own entry's value.
	if k := key(entries("org", "acme", "user", "bob"), 0); !strings.HasPrefix(k, wantTag("bob")) {
		t.Errorf("user key %q is not tagged by the user", k)
	}
	// No org on the path, or tagging turned off: the untagged key.
	if got, want := key(entries("api_key", "k1"), 0), "3:api1:17:api_key2:k112:fixed_window8:60000000"; got != want {
		t.Errorf("api_key key %q, want %q", got, want)
	}
	if k := key(entries("region", "eu", "org", "acme"), 0); strings.ContainsAny(k, "{}") {
		t.Errorf("key %q is tagged under hash_tag: \"\"", k)
	}
	// share_threshold: the tag is the pattern's, so that every value
	// matching it still has one bucket.
	t1 := key(entries("tenant", "t-1", "org", "acme"), 0)
	t2 := key(entries("tenant", "t-2", "org", "acme"), 0)
	if t1 != t2 || !strings.HasPrefix(t1, wantTag("t-*")) {
		t.Errorf("shared tenant keys %q %q, want one key tagged %s", t1, t2, wantTag("t-*"))
	}

	// Braces and empty values never leak into the tag: it is always the 8
	// hex digits of the first brace pair.
	for _, v := range []string{"a}b{c", "{acme}", "}", "{", "", strings.Repeat("x", 1000)} {
		k := key(entries("org", v, "path", "/p{1}"), 0)
		if tag := wantTag(v); redisTag(k) != tag[1:9] || !strings.HasPrefix(k, tag) {
			t.Errorf("org %q: key %q, Redis tag %q, want %q", v, k, redisTag(k), tag[1:9])
		}
	}
}

// TestHashTagKeepsUntaggedKeys: a tagged key is the tag followed by the
// very key the rule has without hash_tag, so adding hash_tag changes
// nothing else, and unambiguity is kept.
func TestHashTagKeepsUntaggedKeys(t *testing.T) {
	const body = `
descriptors:
  - key: org
    rate_limits:
      - {unit: minute, requests_per_unit: 100}
      - {unit: day, requests_per_unit: 1000, alignment: calendar, timezone: Europe/Paris}
    descriptors:
      - key: path
        value: "/api/*"
        share_threshold: true
        rate_limit: {unit: second, requests_per_unit: 10, algorithm: gcra, burst: 5}
`
	plain, err := Parse([]File{{Name: "plain.yaml", Data: []byte("domain: api" + body)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tagged, err := Parse([]File{{Name: "tagged.yaml", Data: []byte("domain: api\nhash_tag: org" + body)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, es := range [][]Entry{
		entries("org", "acme"),
		entries("org", "acme", "path", "/api/x"),
		entries("org", "a_b", "path", "/api/c"),
		entries("org", "a", "path", "/api/b_c"),
	} {
		p, tg := plain.Match("api", es), tagged.Match("api", es)
		for i := range p.Limits {
			pk, tk := p.AppendLimitKey(nil, es, i), tg.AppendLimitKey(nil, es, i)
			if want := append([]byte(wantTag(es[0].Value)), pk...); !bytes.Equal(tk, want) {
				t.Errorf("%v limit %d: tagged key %q, want %q", es, i, tk, want)
			}
		}
	}
}

func TestHashTagSettings(t *testing.T) {
	parse := func(yml string) *Config {
		t.Helper()
		c, err := Parse([]File{{Name: "t.yaml", Data: []byte(yml)}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// hash_tag with no value is "" (none), not an inherited setting.
	c := parse(`domain: d
hash_tag: org
descriptors:
  - key: org
    rate_limit: {unit: second, requests_per_unit: 1}
    descriptors:
      - key: path
        hash_tag:
        rate_limit: {unit: second, requests_per_unit: 1}
`)
	if r := c.Match("d", entries("org", "x", "path", "/")); r.HashTag != "" {
		t.Errorf("hash_tag: (null) gave %q, want none", r.HashTag)
	}
	// The setting may name a key below it, or above it.
	c = parse(`domain: d
descriptors:
  - key: org
    descriptors:
      - key: team
        hash_tag: org
        descriptors:
          - key: user
            rate_limit: {unit: second, requests_per_unit: 1}
  - key: site
    hash_tag: user
    descriptors:
      - key: user
        rate_limit: {unit: second, requests_per_unit: 1}
`)
	if r := c.Match("d", entries("org", "o", "team", "t", "user", "u")); r.HashTag != "org" || !strings.HasPrefix(string(r.AppendKey(nil, entries("org", "o", "team", "t", "user", "u"))), wantTag("o")) {
		t.Errorf("org.team.user: HashTag %q, want org", r.HashTag)
	}
	if r := c.Match("d", entries("site", "s", "user", "u")); r.HashTag != "user" || !strings.HasPrefix(string(r.AppendKey(nil, entries("site", "s", "user", "u"))), wantTag("u")) {
		t.Errorf("site.user: HashTag %q, want user", r.HashTag)
	}
	// A file's top-level hash_tag applies to that file's descriptors, also
	// when merged into a domain with others.
	c, err := Parse([]File{
		{Name: "a.yaml", Data: []byte("domain: d\nhash_tag: org\ndescriptors:\n  - key: org\n    rate_limit: {unit: second, requests_per_unit: 1}\n")},
		{Name: "b.yaml", Data: []byte("domain: d\ndescriptors:\n  - key: org\n    value: vip\n    rate_limit: {unit: second, requests_per_unit: 1}\n")},
	}, Options{MergeDomains: true})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := c.Match("d", entries("org", "x")), c.Match("d", entries("org", "vip")); a.HashTag != "org" || b.HashTag != "" {
		t.Errorf("merged: a.yaml's rule %q, b.yaml's %q; want org and none", a.HashTag, b.HashTag)
	}
}

func TestHashTagKeyDoesNotAllocate(t *testing.T) {
	c := mustLoad(t, "testdata/extensions/hash_tag.yaml")
	es := entries("org", "acme", "path", "/api/runs")
	r := c.Match("api", es)
	if r == nil || r.HashTag == "" {
		t.Fatalf("rule %+v is not tagged", r)
	}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = r.AppendKey(buf[:0], es) }); n != 0 {
		t.Errorf("AppendKey allocates %v times with a tag, want 0", n)
	}
}

// TestDocsHashTag keeps the hash_tag section of docs/config.md honest: its
// example loads, tags as the text says, and the key shown is the key.
func TestDocsHashTag(t *testing.T) {
	c := docsExample(t, "## Hash tags for Redis Cluster")
	tests := []struct {
		entries []Entry
		tag     string // the value tagging the key, "" for none
	}{
		{entries("org", "acme", "path", "/api/runs"), "acme"},
		{entries("org", "acme"), "acme"},
		{entries("org", "acme", "concurrency", "runs"), "acme"},
		{entries("org", "acme", "user", "bob"), "bob"},
		{entries("api_key", "k"), ""},
		{entries("health", "h", "org", "acme"), ""},
	}
	for _, tt := range tests {
		r := c.Match("api", tt.entries)
		if r == nil {
			t.Fatalf("Match(%v) = nil", tt.entries)
		}
		k := string(r.AppendKey(nil, tt.entries))
		if tt.tag == "" && strings.ContainsAny(k, "{}") || tt.tag != "" && !strings.HasPrefix(k, wantTag(tt.tag)) {
			t.Errorf("Match(%v) key %q, want tag of %q", tt.entries, k, tt.tag)
		}
	}
	es := entries("org", "acme")
	doc, _ := os.ReadFile("../docs/config.md")
	if k := string(c.Match("api", es).AppendKey(nil, es)); !strings.Contains(string(doc), "\n"+k+"\n") {
		t.Errorf("docs key example is out of date; the key is %q", k)
	}
}
