package config

import "testing"

// TestTrailingWildcardsOnly: with the option, values match as in
// envoyproxy/ratelimit (its test/config/wildcard.yaml): only a final `*`
// is a wildcard, a `*` elsewhere is a literal character. Without it, `*`
// matches anywhere.
func TestTrailingWildcardsOnly(t *testing.T) {
	const yaml = `
domain: test-domain
descriptors:
  - key: wild
    value: foo*
    rate_limit: {unit: minute, requests_per_unit: 20}
  - key: midWildcard
    value: bar*b
    rate_limit: {unit: minute, requests_per_unit: 20}
  - key: both
    value: a*b*
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 20}
`
	for _, tt := range []struct {
		trailingOnly bool
		key, value   string
		match        bool
	}{
		{true, "wild", "foo1", true},
		{true, "wild", "foo", true},
		{true, "wild", "bar", false},
		{true, "midWildcard", "barab", false}, // the reference: no limit
		{true, "midWildcard", "bar*b", true},  // the literal value
		{true, "both", "a*bcd", true},         // prefix "a*b", the inner * literal
		{true, "both", "axbcd", false},
		{false, "midWildcard", "barab", true},
		{false, "both", "axbcd", true},
	} {
		c, err := Parse([]File{{Name: "wildcard.yaml", Data: []byte(yaml)}}, Options{TrailingWildcardsOnly: tt.trailingOnly})
		if err != nil {
			t.Fatal(err)
		}
		got := c.Match("test-domain", []Entry{{tt.key, tt.value}}) != nil
		if got != tt.match {
			t.Errorf("trailing-only %v: %s=%s matched %v, want %v", tt.trailingOnly, tt.key, tt.value, got, tt.match)
		}
	}
}
