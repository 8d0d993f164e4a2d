// The checks of examples/envoy/envoy.yaml: Envoy would accept it (every
// message, every typed_config inside, validated with Envoy's own rules), it
// says what README.md says about failures, timeouts, headers and HTTP/2,
// and its routes are still those of the scenarios, whose own tests prove
// the descriptors they send.
package envoy_test

import (
	"os"
	"slices"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	headertometadatav3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_to_metadata/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/ratelimitd/ratelimitd/config"
	"github.com/ratelimitd/ratelimitd/examples/envoy/envoyconf"
)

const (
	bootstrapFile = "envoy.yaml"

	// maxTimeout is the longest call to ratelimitd Envoy may wait for: its
	// default, which ratelimitd's own deadlines are sized for.
	maxTimeout = 20 * time.Millisecond
	// backendTimeout is cmd/ratelimitd's -backend-timeout default. Envoy's
	// timeout must exceed it, so that a slow Redis gives UNAVAILABLE from
	// ratelimitd before Envoy gives up on the call.
	backendTimeout = 10 * time.Millisecond
	// minKeepalive is the shortest HTTP/2 ping interval ratelimitd's gRPC
	// server accepts (grpc-go's default enforcement policy); a client that
	// pings more often is disconnected.
	minKeepalive = 5 * time.Minute

	rateLimitFilter = "envoy.filters.http.ratelimit"
	routerFilter    = "envoy.filters.http.router"
	demoFilter      = "envoy.filters.http.header_to_metadata"
	extAuthz        = "envoy.filters.http.ext_authz"
	protocolOptions = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// scenario is the example a virtual host of envoy.yaml runs.
type scenario struct {
	// config is the example's config, as ratelimitd -config takes it.
	config string
	// routes is the file its routes are copied from: a RouteConfiguration
	// (envoy-routes.yaml) or a Bootstrap (the concurrency example's).
	routes string
}

// scenarios maps every virtual host of envoy.yaml to its scenario.
var scenarios = map[string]scenario{
	"internal-key":  {"../internal-key/config", "../internal-key/envoy-routes.yaml"},
	"burst-per-key": {"../burst-per-key/config", "../burst-per-key/envoy-routes.yaml"},
	"virtual-keys":  {"../virtual-keys/config", "../virtual-keys/envoy-routes.yaml"},
	"platform-runs": {"../platform-runs/config", "../platform-runs/envoy-routes.yaml"},
	"tiers":         {"../tiers/config", "../tiers/envoy-routes.yaml"},
	"concurrency":   {"../concurrency/config", "../concurrency/envoy.yaml"},
}

// parsed is envoy.yaml, with the messages the tests look at unpacked.
type parsed struct {
	bootstrap *bootstrapv3.Bootstrap
	unpacked  []proto.Message
	hcm       *hcmv3.HttpConnectionManager
	rateLimit *ratelimitv3.RateLimit
	clusters  map[string]*clusterv3.Cluster
}

// load reads envoy.yaml and checks it as Envoy would at startup.
func load(t *testing.T) *parsed {
	t.Helper()
	bs := readBootstrap(t, bootstrapFile)
	unpacked, err := envoyconf.Validate(bs)
	if err != nil {
		t.Fatalf("%s: %v", bootstrapFile, err)
	}
	p := &parsed{bootstrap: bs, unpacked: unpacked, clusters: map[string]*clusterv3.Cluster{}}
	p.hcm = onlyHCM(t, bootstrapFile, bs)
	for _, f := range p.hcm.GetHttpFilters() {
		if f.GetName() == rateLimitFilter {
			p.rateLimit = &ratelimitv3.RateLimit{}
			if err := f.GetTypedConfig().UnmarshalTo(p.rateLimit); err != nil {
				t.Fatalf("%s: %s: %v", bootstrapFile, rateLimitFilter, err)
			}
		}
	}
	if p.rateLimit == nil {
		t.Fatalf("%s: no %s filter", bootstrapFile, rateLimitFilter)
	}
	for _, c := range bs.GetStaticResources().GetClusters() {
		if _, dup := p.clusters[c.GetName()]; dup {
			t.Fatalf("%s: two clusters named %s", bootstrapFile, c.GetName())
		}
		p.clusters[c.GetName()] = c
	}
	return p
}

func readBootstrap(t *testing.T, path string) *bootstrapv3.Bootstrap {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bs := &bootstrapv3.Bootstrap{}
	if err := envoyconf.Unmarshal(data, bs); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return bs
}

// onlyHCM returns the HTTP connection manager of bs's one listener.
func onlyHCM(t *testing.T, path string, bs *bootstrapv3.Bootstrap) *hcmv3.HttpConnectionManager {
	t.Helper()
	ls := bs.GetStaticResources().GetListeners()
	if len(ls) != 1 || len(ls[0].GetFilterChains()) != 1 || len(ls[0].GetFilterChains()[0].GetFilters()) != 1 {
		t.Fatalf("%s: want one listener with one filter chain of one filter", path)
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := ls[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatalf("%s: the listener's filter is not an HTTP connection manager: %v", path, err)
	}
	return hcm
}

// perRoute returns rt's rate limit filter config.
func perRoute(t *testing.T, rt *routev3.Route) *ratelimitv3.RateLimitPerRoute {
	t.Helper()
	a := rt.GetTypedPerFilterConfig()[rateLimitFilter]
	if a == nil {
		t.Fatalf("route %q has no typed_per_filter_config for %s", rt.GetName(), rateLimitFilter)
	}
	per := &ratelimitv3.RateLimitPerRoute{}
	if err := a.UnmarshalTo(per); err != nil {
		t.Fatalf("route %q: %s config: %v", rt.GetName(), rateLimitFilter, err)
	}
	return per
}

// TestBootstrapValid: envoy.yaml decodes into Envoy's Bootstrap with every
// field known, passes its validation rules, and so does every typed_config
// inside it (Validate unpacks each Any); the types listed are all among
// them.
func TestBootstrapValid(t *testing.T) {
	p := load(t)
	var got []string
	for _, m := range p.unpacked {
		got = append(got, string(m.ProtoReflect().Descriptor().FullName()))
	}
	for _, want := range []string{
		"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		"envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
		"envoy.extensions.filters.http.header_to_metadata.v3.Config",
		"envoy.extensions.filters.http.ratelimit.v3.RateLimit",
		"envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute",
		"envoy.extensions.filters.http.router.v3.Router",
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("%s: no %s was unpacked and validated (got %q)", bootstrapFile, want, got)
		}
	}
}

// TestFilterChain: the demo identity filter, then the rate limit filter,
// then the router, last, as Envoy requires.
func TestFilterChain(t *testing.T) {
	p := load(t)
	var names []string
	for _, f := range p.hcm.GetHttpFilters() {
		names = append(names, f.GetName())
	}
	if want := []string{demoFilter, rateLimitFilter, routerFilter}; !slices.Equal(names, want) {
		t.Errorf("%s: http_filters %q, want %q", bootstrapFile, names, want)
	}
}

// TestRateLimitFilter: the filter settings README.md explains.
func TestRateLimitFilter(t *testing.T) {
	rl := load(t).rateLimit
	if !rl.GetFailureModeDeny() {
		t.Error("failure_mode_deny is false: ratelimitd answers UNAVAILABLE when it cannot decide, and this example fails closed on it")
	}
	if rl.GetFailureModeDenyPercent() != nil {
		t.Error("failure_mode_deny_percent overrides failure_mode_deny: leave it out")
	}
	if rl.GetStatusOnError().GetCode() != 503 {
		t.Errorf("status_on_error %v, want ServiceUnavailable (503)", rl.GetStatusOnError().GetCode())
	}
	if rl.GetTimeout() == nil {
		t.Error("timeout unset: write it out")
	} else if d := rl.GetTimeout().AsDuration(); d <= backendTimeout || d > maxTimeout {
		t.Errorf("timeout %v, want above ratelimitd's -backend-timeout (%v) and at most %v (0 would disable it)", d, backendTimeout, maxTimeout)
	}
	if !rl.GetRateLimitedAsResourceExhausted() {
		t.Error("rate_limited_as_resource_exhausted is false: gRPC clients would retry their refusals at once")
	}
	if h := rl.GetEnableXRatelimitHeaders(); h != ratelimitv3.RateLimit_OFF {
		t.Errorf("enable_x_ratelimit_headers %v: README.md runs ratelimitd with -header-style, and both together send X-RateLimit-* twice", h)
	}
	svc := rl.GetRateLimitService()
	if svc.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("rate_limit_service transport_api_version %v, want V3", svc.GetTransportApiVersion())
	}
	if svc.GetGrpcService().GetEnvoyGrpc().GetClusterName() == "" {
		t.Error("rate_limit_service: want envoy_grpc with a cluster_name")
	}
}

// TestRateLimitCluster: the filter calls a cluster that exists, speaks
// HTTP/2 (gRPC needs it), does not ping more often than ratelimitd allows,
// and checks ratelimitd's health on a name it reports.
func TestRateLimitCluster(t *testing.T) {
	p := load(t)
	name := p.rateLimit.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName()
	c := p.clusters[name]
	if c == nil {
		t.Fatalf("the rate limit filter calls cluster %q, which is not defined", name)
	}
	a := c.GetTypedExtensionProtocolOptions()[protocolOptions]
	if a == nil {
		t.Fatalf("cluster %s has no %s: Envoy would speak HTTP/1.1 to a gRPC server", name, protocolOptions)
	}
	opts := &httpv3.HttpProtocolOptions{}
	if err := a.UnmarshalTo(opts); err != nil {
		t.Fatal(err)
	}
	h2 := opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions()
	if h2 == nil {
		t.Fatalf("cluster %s: want explicit_http_config with http2_protocol_options", name)
	}
	if ka := h2.GetConnectionKeepalive(); ka != nil && ka.GetInterval().AsDuration() < minKeepalive {
		t.Errorf("cluster %s: HTTP/2 keepalive every %v: ratelimitd disconnects clients that ping more often than every %v",
			name, ka.GetInterval().AsDuration(), minKeepalive)
	}
	// The names server.Server reports gRPC health on.
	healthNames := []string{"", rlsv3.RateLimitService_ServiceDesc.ServiceName, "ratelimit"}
	var grpcChecks int
	for _, hc := range c.GetHealthChecks() {
		if g := hc.GetGrpcHealthCheck(); g != nil {
			grpcChecks++
			if !slices.Contains(healthNames, g.GetServiceName()) {
				t.Errorf("cluster %s: gRPC health check of service %q, which ratelimitd does not report (it reports %q)", name, g.GetServiceName(), healthNames)
			}
		}
	}
	if grpcChecks != 1 {
		t.Errorf("cluster %s: %d gRPC health checks, want 1", name, grpcChecks)
	}
}

// TestRoutes: one virtual host per scenario; every route sends a domain
// of its scenario's config and goes to a cluster that exists; and the
// routes equal, field for field, those of the scenario's own Envoy
// config, which its test runs through the harness. Change one, copy it to
// the other.
func TestRoutes(t *testing.T) {
	p := load(t)
	seen := map[string]bool{}
	for _, vh := range p.hcm.GetRouteConfig().GetVirtualHosts() {
		sc, ok := scenarios[vh.GetName()]
		if !ok {
			t.Errorf("virtual host %s is not one of the scenarios", vh.GetName())
			continue
		}
		seen[vh.GetName()] = true
		cfg, err := config.Load(sc.config, config.Options{})
		if err != nil {
			t.Fatalf("%s: %v", sc.config, err)
		}
		for _, rt := range vh.GetRoutes() {
			per := perRoute(t, rt)
			domain := per.GetDomain()
			if domain == "" {
				domain = p.rateLimit.GetDomain()
			}
			if !cfg.HasDomain(domain) {
				t.Errorf("virtual host %s, route %q: domain %q is not one of %s's %q", vh.GetName(), rt.GetName(), domain, sc.config, cfg.Domains())
			}
			if len(per.GetRateLimits()) == 0 {
				t.Errorf("virtual host %s, route %q: no rate_limits", vh.GetName(), rt.GetName())
			}
			if cl := rt.GetRoute().GetCluster(); p.clusters[cl] == nil {
				t.Errorf("virtual host %s, route %q: cluster %q is not defined", vh.GetName(), rt.GetName(), cl)
			}
		}
		want := scenarioRoutes(t, sc.routes)
		if diff := cmp.Diff(want, vh.GetRoutes(), protocmp.Transform()); diff != "" {
			t.Errorf("virtual host %s has drifted from %s (-there +here):\n%s", vh.GetName(), sc.routes, diff)
		}
	}
	for name := range scenarios {
		if !seen[name] {
			t.Errorf("%s: no virtual host %s", bootstrapFile, name)
		}
	}
}

// scenarioRoutes returns the routes of the one virtual host of path.
func scenarioRoutes(t *testing.T, path string) []*routev3.Route {
	t.Helper()
	var vhs []*routev3.VirtualHost
	if path == scenarios["concurrency"].routes {
		vhs = onlyHCM(t, path, readBootstrap(t, path)).GetRouteConfig().GetVirtualHosts()
	} else {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rc := &routev3.RouteConfiguration{}
		if err := envoyconf.Unmarshal(data, rc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		vhs = rc.GetVirtualHosts()
	}
	if len(vhs) != 1 {
		t.Fatalf("%s: %d virtual hosts, want 1", path, len(vhs))
	}
	return vhs[0].GetRoutes()
}

// TestDemoIdentity: every ext_authz metadata key a route reads is written
// by the demo stand-in, so that every scenario can be tried with curl.
func TestDemoIdentity(t *testing.T) {
	p := load(t)
	written := map[string]bool{}
	for _, f := range p.hcm.GetHttpFilters() {
		if f.GetName() != demoFilter {
			continue
		}
		h := &headertometadatav3.Config{}
		if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
			t.Fatal(err)
		}
		for _, r := range h.GetRequestRules() {
			kv := r.GetOnHeaderPresent()
			if kv.GetMetadataNamespace() != extAuthz {
				t.Errorf("demo rule for %s writes into %q, want %s", r.GetHeader(), kv.GetMetadataNamespace(), extAuthz)
			}
			if !r.GetRemove() {
				t.Errorf("demo rule for %s keeps the header: the upstream should not see it", r.GetHeader())
			}
			written[kv.GetKey()] = true
		}
	}
	for _, vh := range p.hcm.GetRouteConfig().GetVirtualHosts() {
		for _, rt := range vh.GetRoutes() {
			for _, rl := range perRoute(t, rt).GetRateLimits() {
				for _, a := range rl.GetActions() {
					mk := a.GetMetadata().GetMetadataKey()
					if mk.GetKey() != extAuthz {
						continue
					}
					if len(mk.GetPath()) != 1 || !written[mk.GetPath()[0].GetKey()] {
						t.Errorf("virtual host %s, route %q reads %s metadata %v, which the demo filter does not write",
							vh.GetName(), rt.GetName(), extAuthz, mk.GetPath())
					}
				}
			}
		}
	}
}
