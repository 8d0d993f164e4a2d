package overrides_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/ratelimitd/ratelimitd/config"
	"github.com/ratelimitd/ratelimitd/overrides"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// e is shorthand for entries: e("k1", "v1", "k2", "v2").
func e(kv ...string) []config.Entry {
	var out []config.Entry
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, config.Entry{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

// limit returns a valid Limit override of domain api.
func limit(rpu uint32, entries ...string) *overrides.Override {
	return &overrides.Override{Domain: "api", Entries: e(entries...), Kind: overrides.Limit, RequestsPerUnit: rpu, Unit: config.Minute}
}

func TestKind(t *testing.T) {
	for _, k := range []overrides.Kind{overrides.Limit, overrides.Unlimited, overrides.Policy} {
		got, err := overrides.ParseKind(k.String())
		if err != nil || got != k {
			t.Errorf("ParseKind(%q) = %v, %v", k.String(), got, err)
		}
	}
	if _, err := overrides.ParseKind("Limit"); err == nil || !strings.Contains(err.Error(), "not one of limit, unlimited, policy") {
		t.Errorf("ParseKind(Limit) error = %v", err)
	}
	if s := overrides.Kind(0).String(); s != "unknown" {
		t.Errorf("Kind(0).String() = %q", s)
	}
	if _, err := overrides.Kind(9).MarshalText(); err == nil {
		t.Error("Kind(9).MarshalText: no error")
	}
}

func TestID(t *testing.T) {
	tests := []struct {
		domain  string
		entries []config.Entry
		want    string
	}{
		{"api", e("api_key", "abc"), "3:api7:api_key3:abc"},
		{"api", e("path", "/x", "api_key", "abc"), "3:api7:api_key3:abc4:path2:/x"}, // sorted by key
		{"api", e("k", ""), "3:api1:k0:"},
		{"a b", e("k", "%\n\xff"), "5:a%20b1:k9:%25%0A%FF"}, // escaped, the length counts the escapes
		{"é", e("k", "v"), "6:%C3%A91:k1:v"},
	}
	for _, tt := range tests {
		if got := overrides.ID(tt.domain, tt.entries); got != tt.want {
			t.Errorf("ID(%q, %v) = %q, want %q", tt.domain, tt.entries, got, tt.want)
		}
	}

	// Order does not matter, and the caller's slice is left alone.
	in := e("b", "2", "a", "1", "c", "3")
	if a, b := overrides.ID("d", in), overrides.ID("d", e("c", "3", "a", "1", "b", "2")); a != b {
		t.Errorf("entry order changes the id: %q, %q", a, b)
	}
	if in[0].Key != "b" {
		t.Errorf("ID sorted its argument: %v", in)
	}

	// Unambiguous: inputs that a plain join would confuse differ.
	ids := map[string]string{}
	for _, c := range []struct {
		domain  string
		entries []config.Entry
	}{
		{"a", e("b_c", "d")}, {"a_b", e("c", "d")}, {"a", e("b", "c_d")},
		{"a", e("b", "c", "d", "e")}, {"a", e("b", "c:1:d", "e", "")},
		{"a", e("b", "%41")}, {"a", e("b", "A")},
		{"1:a", e("b", "c")}, {"a", e("1:b", "c")},
	} {
		id := overrides.ID(c.domain, c.entries)
		key := fmt.Sprintf("%q %q", c.domain, c.entries)
		if prev, dup := ids[id]; dup {
			t.Errorf("%s and %s share the id %q", prev, key, id)
		}
		ids[id] = key
		for _, r := range id {
			if r < 0x21 || r > 0x7e {
				t.Errorf("id %q holds %q, not printable ASCII", id, r)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	long := strings.Repeat("x", overrides.MaxLen+1)
	many := make([]string, 0, 2*(overrides.MaxEntries+1))
	for i := range overrides.MaxEntries + 1 {
		many = append(many, string(rune('a'+i)), "v")
	}
	tests := []struct {
		name string
		edit func(o *overrides.Override)
		want string // substring of the error; "" for none
	}{
		{"valid limit", func(o *overrides.Override) {}, ""},
		{"valid with extras", func(o *overrides.Override) {
			o.UnitMultiplier, o.Algorithm, o.Burst = 5, "gcra", 50
			o.Reason, o.Author, o.Updated = "incident 42", "alice", time.Unix(1, 0)
		}, ""},
		{"valid unlimited", func(o *overrides.Override) {
			*o = overrides.Override{Domain: "api", Entries: e("k", "v"), Kind: overrides.Unlimited}
		}, ""},
		{"valid policy", func(o *overrides.Override) {
			*o = overrides.Override{Domain: "api", Entries: e("k", "v"), Kind: overrides.Policy, Policy: "pro"}
		}, ""},
		{"empty value", func(o *overrides.Override) { o.Entries = e("k", "") }, ""},
		{"no domain", func(o *overrides.Override) { o.Domain = "" }, "overrides: domain is empty"},
		{"long domain", func(o *overrides.Override) { o.Domain = long }, "domain is 1025 bytes long, more than 1024"},
		{"no entries", func(o *overrides.Override) { o.Entries = nil }, "no entries"},
		{"too many entries", func(o *overrides.Override) { o.Entries = e(many...) }, "17 entries, more than 16"},
		{"empty key", func(o *overrides.Override) { o.Entries = e("a", "1", "", "2") }, "entry 2: key is empty"},
		{"long value", func(o *overrides.Override) { o.Entries = e("k", long) }, "entry 1 (k): value is 1025 bytes long"},
		{"bad utf-8", func(o *overrides.Override) { o.Entries = e("k", "\xff") }, `entry 1 (k): value "\xff" is not valid UTF-8`},
		{"duplicate key", func(o *overrides.Override) { o.Entries = e("k", "1", "j", "2", "k", "3") }, `entry key "k" appears twice`},
		{"long reason", func(o *overrides.Override) { o.Reason = long }, "reason is 1025 bytes long"},
		{"long author", func(o *overrides.Override) { o.Author = long }, "author is 1025 bytes long"},
		{"no kind", func(o *overrides.Override) { o.Kind = 0 }, "kind is missing: want limit, unlimited or policy"},
		{"unknown kind", func(o *overrides.Override) { o.Kind = 7 }, "unknown kind 7"},
		{"zero rate", func(o *overrides.Override) { o.RequestsPerUnit = 0 }, "kind limit needs requests_per_unit of at least 1"},
		{"no unit", func(o *overrides.Override) { o.Unit = config.UnitUnknown }, "kind limit needs a unit"},
		{"unknown unit", func(o *overrides.Override) { o.Unit = 42 }, "unit 42 is not one of"},
		{"long period", func(o *overrides.Override) { o.Unit, o.UnitMultiplier = config.Year, 11 }, "longer than 10 years"},
		{"unknown algorithm", func(o *overrides.Override) { o.Algorithm = "leaky" }, `algorithm "leaky" is not one of`},
		{"concurrency", func(o *overrides.Override) { o.Algorithm = "concurrency" }, "algorithm concurrency cannot be set by an override"},
		{"negative burst", func(o *overrides.Override) { o.Burst = -1 }, "burst must be from 0"},
		{"burst without a bucket", func(o *overrides.Override) { o.Algorithm, o.Burst = "fixed_window", 5 }, "burst applies only to algorithms token_bucket and gcra, not fixed_window"},
		{"limit with policy", func(o *overrides.Override) { o.Policy = "pro" }, "policy applies only to kind policy"},
		{"unlimited with a rate", func(o *overrides.Override) { o.Kind = overrides.Unlimited }, "kind unlimited takes no rate"},
		{"unlimited with policy", func(o *overrides.Override) {
			*o = overrides.Override{Domain: "api", Entries: e("k", "v"), Kind: overrides.Unlimited, Policy: "pro"}
		}, "policy applies only to kind policy"},
		{"policy without a name", func(o *overrides.Override) {
			*o = overrides.Override{Domain: "api", Entries: e("k", "v"), Kind: overrides.Policy}
		}, "kind policy needs a policy name"},
		{"policy with a rate", func(o *overrides.Override) { o.Kind, o.Policy = overrides.Policy, "pro" }, "kind policy takes no rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := limit(500, "api_key", "abc")
			tt.edit(o)
			err := o.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate() = nil, want %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Validate() = %q, want it to contain %q", err, tt.want)
			case err != nil && !strings.HasPrefix(err.Error(), "overrides: "):
				t.Fatalf("Validate() = %q, want the prefix overrides: ", err)
			}
		})
	}
	if err := (*overrides.Override)(nil).Validate(); err == nil {
		t.Error("nil Validate: no error")
	}
}

func TestMarshal(t *testing.T) {
	o := &overrides.Override{
		Domain: "api", Entries: e("api_key", "abc", "path", "/x"), Kind: overrides.Limit,
		RequestsPerUnit: 500, Unit: config.Minute, UnitMultiplier: 2, Algorithm: "token_bucket", Burst: 50,
		Reason: "load test", Author: "alice", Updated: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
	}
	b, err := overrides.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":1,"domain":"api","entries":[{"key":"api_key","value":"abc"},{"key":"path","value":"/x"}],` +
		`"kind":"limit","requests_per_unit":500,"unit":"minute","unit_multiplier":2,"algorithm":"token_bucket","burst":50,` +
		`"reason":"load test","author":"alice","updated":"2026-01-02T03:04:05.000000006Z"}`
	if string(b) != want {
		t.Errorf("Marshal =\n%s\nwant\n%s", b, want)
	}
	got, err := overrides.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(o, got); d != "" {
		t.Errorf("Unmarshal(Marshal(o)) differs (-want +got):\n%s", d)
	}
	// json.Marshal of an Override (an API answer) is the same form.
	if jb, err := json.Marshal(o); err != nil || string(jb) != want {
		t.Errorf("json.Marshal = %s, %v", jb, err)
	}

	// The other kinds leave the rate out.
	for _, tc := range []struct {
		o    *overrides.Override
		want string
	}{
		{&overrides.Override{Domain: "d", Entries: e("k", "v"), Kind: overrides.Unlimited},
			`{"version":1,"domain":"d","entries":[{"key":"k","value":"v"}],"kind":"unlimited"}`},
		{&overrides.Override{Domain: "d", Entries: e("k", "v"), Kind: overrides.Policy, Policy: "pro"},
			`{"version":1,"domain":"d","entries":[{"key":"k","value":"v"}],"kind":"policy","policy":"pro"}`},
	} {
		b, err := overrides.Marshal(tc.o)
		if err != nil || string(b) != tc.want {
			t.Errorf("Marshal = %s, %v; want %s", b, err, tc.want)
		}
		if got, err := overrides.Unmarshal(b); err != nil || !cmp.Equal(got, tc.o) {
			t.Errorf("Unmarshal(%s) = %+v, %v", b, got, err)
		}
	}

	if _, err := overrides.Marshal(&overrides.Override{Domain: "d"}); err == nil || !strings.Contains(err.Error(), "no entries") {
		t.Errorf("Marshal of an invalid override: %v", err)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	valid := `"domain":"d","entries":[{"key":"k","value":"v"}],"kind":"unlimited"`
	tests := []struct {
		in, want string
	}{
		{`{"version":1,` + valid + `}`, ""},
		{`{"version":1,` + valid + `,"future":true}`, ""}, // unknown fields are ignored
		{`{` + valid + `}`, "no format version"},
		{`{"version":2,` + valid + `}`, "format version 2 is not 1"},
		{`{"version":1,"domain":"d","entries":[{"key":"k","value":"v"}],"kind":"huge"}`, `kind "huge" is not one of`},
		{`{"version":1,"domain":"d","entries":[{"key":"k","value":"v"}],"kind":"limit","requests_per_unit":1,"unit":"fortnight"}`, `unit "fortnight" is not one of`},
		{`{"version":1,"domain":"d","entries":[],"kind":"unlimited"}`, "no entries"},
		{`{"version":1,`, "overrides: decode: unexpected end of JSON input"},
		{`[]`, "overrides: decode:"},
	}
	for _, tt := range tests {
		_, err := overrides.Unmarshal([]byte(tt.in))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Unmarshal(%s) = %v", tt.in, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Unmarshal(%s) = %v, want an error containing %q", tt.in, err, tt.want)
		}
	}

	// json.Unmarshal of hand-written input may omit the version.
	var o overrides.Override
	if err := json.Unmarshal([]byte(`{`+valid+`}`), &o); err != nil || o.Kind != overrides.Unlimited {
		t.Errorf("json.Unmarshal without version = %+v, %v", o, err)
	}
	if err := json.Unmarshal([]byte(`{"version":3,`+valid+`}`), &o); err == nil {
		t.Error("json.Unmarshal of version 3: no error")
	}
}
