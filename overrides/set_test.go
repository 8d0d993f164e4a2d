package overrides_test

import (
	"fmt"
	"testing"

	"github.com/ratelimitd/ratelimitd/config"
	"github.com/ratelimitd/ratelimitd/overrides"
)

func TestLookup(t *testing.T) {
	key := limit(1, "api_key", "abc")
	keyPath := limit(2, "api_key", "abc", "path", "/x")
	keyMethod := limit(3, "api_key", "abc", "method", "GET") // ties with keyPath, whose id is smaller ("4:path" < "6:method")
	org := limit(4, "org", "o1")
	orgKey := limit(5, "org", "o1", "api_key", "abc")
	other := &overrides.Override{Domain: "web", Entries: e("api_key", "abc"), Kind: overrides.Unlimited}
	s := overrides.NewSet([]*overrides.Override{key, keyPath, keyMethod, org, orgKey, other})

	tests := []struct {
		name    string
		domain  string
		entries []config.Entry
		want    *overrides.Override
	}{
		{"exact", "api", e("api_key", "abc"), key},
		{"subset of the request", "api", e("api_key", "abc", "user", "u"), key},
		{"most entries wins", "api", e("api_key", "abc", "path", "/x"), keyPath},
		{"order does not matter", "api", e("path", "/x", "api_key", "abc"), keyPath},
		{"tie goes to the smallest id", "api", e("api_key", "abc", "path", "/x", "method", "GET"), keyPath},
		{"tie, in another order", "api", e("method", "GET", "path", "/x", "api_key", "abc"), keyPath},
		{"the other of the tie", "api", e("method", "GET", "api_key", "abc"), keyMethod},
		{"other key", "api", e("org", "o1"), org},
		{"two entries across levels", "api", e("org", "o1", "path", "/y", "api_key", "abc"), orgKey},
		{"value differs", "api", e("api_key", "abd"), nil},
		{"key differs", "api", e("apikey", "abc"), nil},
		{"missing entry", "api", e("path", "/x"), nil},
		{"other domain", "web", e("api_key", "abc", "path", "/x"), other},
		{"unknown domain", "nope", e("api_key", "abc"), nil},
		{"no entries", "api", nil, nil},
	}
	for _, tt := range tests {
		if got := s.Lookup(tt.domain, tt.entries); got != tt.want {
			t.Errorf("%s: Lookup(%q, %v) = %+v, want %+v", tt.name, tt.domain, tt.entries, got, tt.want)
		}
	}

	var empty *overrides.Set
	if empty.Lookup("api", e("api_key", "abc")) != nil || overrides.NewSet(nil).Lookup("api", e("api_key", "abc")) != nil {
		t.Error("an empty set found something")
	}
}

// TestLookupCommonEntry: overrides sharing a common entry are all found,
// whichever entry they are filed under.
func TestLookupCommonEntry(t *testing.T) {
	var list []*overrides.Override
	for i := range 50 {
		list = append(list, limit(uint32(i+1), "tier", "pro", "api_key", fmt.Sprint(i)))
	}
	tierOnly := limit(1000, "tier", "pro")
	list = append(list, tierOnly)
	s := overrides.NewSet(list)
	for i := range 50 {
		if got := s.Lookup("api", e("tier", "pro", "api_key", fmt.Sprint(i))); got != list[i] {
			t.Fatalf("api_key %d: got %+v", i, got)
		}
	}
	if got := s.Lookup("api", e("tier", "pro", "api_key", "x")); got != tierOnly {
		t.Fatalf("unknown api_key: got %+v, want the tier's", got)
	}
}

func TestSetGetListLen(t *testing.T) {
	a := limit(1, "k", "a")
	b := limit(2, "k", "b")
	ab := limit(3, "k", "a", "j", "b")
	w := &overrides.Override{Domain: "web", Entries: e("k", "a"), Kind: overrides.Unlimited}
	replaced := limit(9, "k", "b")
	s := overrides.NewSet([]*overrides.Override{replaced, b, nil, ab, w, a})

	if s.Len() != 4 {
		t.Errorf("Len = %d, want 4 (nil skipped, the later of two with one id kept)", s.Len())
	}
	if got := s.Get("api", e("k", "b")); got != b {
		t.Errorf("Get(k=b) = %+v, want the later one", got)
	}
	if got := s.Get("api", e("j", "b", "k", "a")); got != ab {
		t.Errorf("Get in another order = %+v", got)
	}
	if got := s.Get("api", e("k", "a", "x", "y")); got != nil {
		t.Errorf("Get is exact, found %+v", got)
	}
	if got := s.Get("web", e("k", "b")); got != nil {
		t.Errorf("Get(web, k=b) = %+v", got)
	}

	// Sorted by id: "3:api1:j1:b1:k1:a" < "3:api1:k1:a" < "3:api1:k1:b" < "3:web...".
	check := func(domain string, want ...*overrides.Override) {
		t.Helper()
		got := s.List(domain)
		if len(got) != len(want) {
			t.Fatalf("List(%q) has %d overrides, want %d", domain, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("List(%q)[%d] = %+v, want %+v", domain, i, got[i], want[i])
			}
		}
	}
	check("", ab, a, b, w)
	check("api", ab, a, b)
	check("web", w)
	check("nope")
	s.List("")[0] = nil // the caller's copy
	check("", ab, a, b, w)

	var empty *overrides.Set
	if empty.Len() != 0 || empty.List("") != nil || empty.Get("api", e("k", "a")) != nil {
		t.Error("a nil Set is not empty")
	}
}

// lookupSet is a set of n overrides on one domain, and a request that
// matches one of them at the deepest level.
func lookupSet(n int) (*overrides.Set, []config.Entry) {
	var list []*overrides.Override
	for i := range n {
		list = append(list, limit(1, "api_key", fmt.Sprint(i)), limit(2, "api_key", fmt.Sprint(i), "path", "/x"))
	}
	return overrides.NewSet(list), e("tier_free", "x", "api_key", fmt.Sprint(n/2), "path", "/x", "method", "GET")
}

func TestLookupDoesNotAllocate(t *testing.T) {
	s, req := lookupSet(1000)
	miss := e("api_key", "none", "path", "/x")
	empty := overrides.NewSet(nil)
	for name, f := range map[string]func(){
		"hit":            func() { s.Lookup("api", req) },
		"miss":           func() { s.Lookup("api", miss) },
		"unknown domain": func() { s.Lookup("web", req) },
		"empty set":      func() { empty.Lookup("api", req) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: Lookup allocates %v times", name, n)
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	s, req := lookupSet(1000)
	empty := overrides.NewSet(nil)
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.Lookup("api", req)
		}
	})
	b.Run("unknown domain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.Lookup("web", req)
		}
	})
	b.Run("empty set", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			empty.Lookup("api", req)
		}
	})
}

func ExampleSet_Lookup() {
	s := overrides.NewSet([]*overrides.Override{
		{Domain: "api", Entries: []config.Entry{{Key: "api_key", Value: "abc"}}, Kind: overrides.Limit, RequestsPerUnit: 500, Unit: config.Minute},
		{Domain: "api", Entries: []config.Entry{{Key: "api_key", Value: "abc"}, {Key: "path", Value: "/admin"}}, Kind: overrides.Unlimited},
	})
	for _, path := range []string{"/runs", "/admin"} {
		o := s.Lookup("api", []config.Entry{{Key: "api_key", Value: "abc"}, {Key: "path", Value: path}})
		fmt.Println(path, o.Kind, o.RequestsPerUnit, o.Unit)
	}
	fmt.Println(s.Lookup("api", []config.Entry{{Key: "api_key", Value: "xyz"}}))
	// Output:
	// /runs limit 500 minute
	// /admin unlimited 0 unknown
	// <nil>
}
