package envoyconf_test

import (
	"slices"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/ratelimitd/ratelimitd/examples/envoy/envoyconf"
)

// filterYAML is an HTTP connection manager (an Any) whose route carries a
// RateLimitPerRoute (an Any inside that Any) with one action.
const filterYAML = `
name: envoy.filters.network.http_connection_manager
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
  stat_prefix: test
  route_config:
    virtual_hosts:
      - name: test
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: c}
            typed_per_filter_config:
              envoy.filters.http.ratelimit:
                "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute
                rate_limits:
                  - actions: [{generic_key: {descriptor_value: VALUE}}]
  http_filters:
    - name: envoy.filters.http.router
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`

func TestValidateUnpacksNestedAnys(t *testing.T) {
	f := &listenerv3.Filter{}
	if err := envoyconf.Unmarshal([]byte(strings.Replace(filterYAML, "VALUE", "v", 1)), f); err != nil {
		t.Fatal(err)
	}
	got, err := envoyconf.Validate(f)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range got {
		names = append(names, string(m.ProtoReflect().Descriptor().Name()))
	}
	if want := []string{"HttpConnectionManager", "RateLimitPerRoute", "Router"}; !slices.Equal(names, want) {
		t.Errorf("unpacked %q, want %q", names, want)
	}
}

func TestValidateFindsAnErrorTwoAnysDeep(t *testing.T) {
	f := &listenerv3.Filter{}
	// An empty descriptor_value: valid YAML, valid protojson, refused by
	// Envoy's rules inside the RateLimitPerRoute.
	if err := envoyconf.Unmarshal([]byte(strings.Replace(filterYAML, "VALUE", `""`, 1)), f); err != nil {
		t.Fatal(err)
	}
	if err := f.ValidateAll(); err != nil {
		t.Fatalf("the Filter alone should pass, as ValidateAll does not unpack Anys: %v", err)
	}
	_, err := envoyconf.Validate(f)
	if err == nil || !strings.Contains(err.Error(), "DescriptorValue") || !strings.Contains(err.Error(), "typed_per_filter_config[envoy.filters.http.ratelimit]") {
		t.Errorf("Validate: %v, want the descriptor_value error and where it is", err)
	}
}

func TestValidateAnysSkipsTheIncompleteMessage(t *testing.T) {
	// A route without match nor action, as an Istio MERGE patch carries.
	rt := &routev3.Route{}
	err := envoyconf.Unmarshal([]byte(`
typed_per_filter_config:
  envoy.filters.http.ratelimit:
    "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute
    rate_limits: [{actions: [{generic_key: {descriptor_value: v}}]}]
`), rt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envoyconf.Validate(rt); err == nil {
		t.Error("Validate passed a route without match")
	}
	if got, err := envoyconf.ValidateAnys(rt); err != nil || len(got) != 1 {
		t.Errorf("ValidateAnys: %d unpacked, %v; want 1, nil", len(got), err)
	}
}

func TestUnmarshalNamesAMissingType(t *testing.T) {
	err := envoyconf.Unmarshal([]byte(`
name: f
typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.nosuch.v3.NoSuch}
`), &listenerv3.Filter{})
	if err == nil || !strings.Contains(err.Error(), "nosuch.v3.NoSuch") || !strings.Contains(err.Error(), "blank import") {
		t.Errorf("Unmarshal: %v, want the missing type named", err)
	}
}

func TestUnmarshalRefusesUnknownFields(t *testing.T) {
	if err := envoyconf.Unmarshal([]byte("nmae: f\n"), &listenerv3.Filter{}); err == nil {
		t.Error("Unmarshal accepted an unknown field")
	}
}
