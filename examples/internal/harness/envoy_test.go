package harness_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ratelimitd/ratelimitd/examples/internal/harness"
)

// routesYAML exercises what the examples' routes do not: skip_if_absent,
// a header_value_match that expects no match, remote_address, and a
// hits_addend format whose metadata is missing.
const routesYAML = `
name: test
virtual_hosts:
  - name: test
    domains: ["*"]
    routes:
      - name: r
        match: {prefix: "/"}
        route: {cluster: c}
        typed_per_filter_config:
          envoy.filters.http.ratelimit:
            "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute
            domain: d
            rate_limits:
              - actions:
                  - request_headers: {header_name: x-a, descriptor_key: a, skip_if_absent: true}
                  - generic_key: {descriptor_value: g}
              - actions:
                  - request_headers: {header_name: x-b, descriptor_key: b}
              - actions:
                  - header_value_match:
                      descriptor_value: anonymous
                      expect_match: false
                      headers: [{name: authorization, present_match: true}]
                  - remote_address: {}
              - actions:
                  - generic_key: {descriptor_key: usage, descriptor_value: tokens}
                apply_on_stream_done: true
                hits_addend: {format: "%DYNAMIC_METADATA(ns:usage:total)%"}
`

func TestDescriptors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(path, []byte(routesYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	r := harness.LoadRoutes(t, path, "d")
	tests := []struct {
		name  string
		req   harness.Request
		phase harness.Phase
		want  string
	}{
		{"nothing set", harness.Request{RemoteAddr: "10.0.0.1"}, harness.OnRequest,
			"[generic_key=g] [header_match=anonymous, remote_address=10.0.0.1]"},
		{"headers set", harness.Request{Headers: map[string]string{"x-a": "1", "x-b": "2", "authorization": "Bearer x"}, RemoteAddr: "10.0.0.1"}, harness.OnRequest,
			"[a=1, generic_key=g] [b=2]"},
		{"stream done", harness.Request{Metadata: map[string]string{"ns:usage.total": "1500"}}, harness.OnStreamDone,
			"[usage=tokens hits 1500]"},
		{"stream done without a count", harness.Request{}, harness.OnStreamDone, ""},
	}
	for _, tt := range tests {
		if got := harness.Describe(r.Descriptors(t, "r", tt.req, tt.phase)...); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}
