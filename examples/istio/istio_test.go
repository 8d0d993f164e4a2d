// The checks of examples/istio: the EnvoyFilters have the shape Istio
// expects (decoded generically: no istio.io dependency), every patch value
// decodes into the Envoy type its applyTo implies and passes Envoy's
// validation rules, and the patches agree with each other, with
// gateway.yaml, with the burst-per-key scenario and with the Kubernetes
// Service of examples/kubernetes.
package istio_test

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/ratelimitd/ratelimitd/config"
	"github.com/ratelimitd/ratelimitd/examples/envoy/envoyconf"
)

const (
	filtersFile = "envoyfilter.yaml"
	gatewayFile = "gateway.yaml"

	// The scenario the route patch applies, and its route.
	scenarioConfig = "../burst-per-key/config"
	scenarioRoutes = "../burst-per-key/envoy-routes.yaml"
	scenarioRoute  = "api"

	// The Kubernetes Service of ratelimitd (examples/kubernetes).
	kubernetesDir = "../kubernetes"
	serviceName   = "ratelimitd"
	serviceNS     = "ratelimit"
	grpcPort      = 8081
	serviceHost   = serviceName + "." + serviceNS + ".svc.cluster.local"

	maxTimeout     = 20 * time.Millisecond // Envoy's default
	backendTimeout = 10 * time.Millisecond // cmd/ratelimitd's -backend-timeout default

	rateLimitFilter = "envoy.filters.http.ratelimit"
	protocolOptions = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// gatewayLabels select the ingress gateway's pods.
var gatewayLabels = map[string]any{"istio": "ingressgateway"}

// readDocs decodes every YAML document of path generically.
func readDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	docs, err := decodeAll(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no documents", path)
	}
	return docs
}

func decodeAll(path string) ([]map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

// get walks v by map keys; nil when a key is missing.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any, keys ...string) string {
	s, _ := get(v, keys...).(string)
	return s
}

// onlyKeys reports the keys of v (a map) outside allowed: a misspelt field
// that Istio would refuse.
func onlyKeys(t *testing.T, where string, v any, allowed ...string) {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Errorf("%s: not a map", where)
		return
	}
	for k := range m {
		if !slices.Contains(allowed, k) {
			t.Errorf("%s: unknown field %q (known: %q)", where, k, allowed)
		}
	}
}

// patch is one decoded configPatch.
type patch struct {
	where    string
	applyTo  string
	op       string
	match    map[string]any
	value    proto.Message
	unpacked []proto.Message
}

// envoyTypes is the Envoy message each applyTo patches.
var envoyTypes = map[string]func() proto.Message{
	"HTTP_FILTER":  func() proto.Message { return &hcmv3.HttpFilter{} },
	"CLUSTER":      func() proto.Message { return &clusterv3.Cluster{} },
	"VIRTUAL_HOST": func() proto.Message { return &routev3.VirtualHost{} },
	"HTTP_ROUTE":   func() proto.Message { return &routev3.Route{} },
}

// Operations whose value is a whole message (added or inserted as it is),
// and MERGE, whose value is merged into a message the gateway already has.
var (
	wholeOps = []string{"ADD", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE"}
	mergeOp  = "MERGE"
)

// loadPatches checks the shape of every EnvoyFilter of filtersFile and
// decodes its patches.
//
// A whole value is validated like any Envoy config (envoyconf.Validate). A
// MERGE value is only part of a message: a route patch carries its
// typed_per_filter_config but not the match and action the route already
// has, so the route's own rules (match is required) would refuse it
// although the merged route is fine. It is decoded (so every field name
// and type is checked) and every Any inside it is validated in full
// (envoyconf.ValidateAnys), but not the partial message itself.
func loadPatches(t *testing.T) []patch {
	t.Helper()
	var out []patch
	for i, d := range readDocs(t, filtersFile) {
		name := str(d, "metadata", "name")
		where := fmt.Sprintf("%s: document %d (%s)", filtersFile, i+1, name)
		onlyKeys(t, where, d, "apiVersion", "kind", "metadata", "spec")
		if av, k := str(d, "apiVersion"), str(d, "kind"); av != "networking.istio.io/v1alpha3" || k != "EnvoyFilter" {
			t.Errorf("%s: %s %s, want networking.istio.io/v1alpha3 EnvoyFilter", where, av, k)
		}
		if name == "" || str(d, "metadata", "namespace") != "istio-system" {
			t.Errorf("%s: want a name and namespace istio-system (the gateway's)", where)
		}
		spec := get(d, "spec")
		onlyKeys(t, where+": spec", spec, "workloadSelector", "configPatches", "priority")
		onlyKeys(t, where+": spec.workloadSelector", get(spec, "workloadSelector"), "labels")
		if l, _ := get(spec, "workloadSelector", "labels").(map[string]any); !maps.Equal(l, gatewayLabels) {
			t.Errorf("%s: workloadSelector labels %v, want %v", where, l, gatewayLabels)
		}
		cps, _ := get(spec, "configPatches").([]any)
		if len(cps) == 0 {
			t.Errorf("%s: no configPatches", where)
		}
		for j, cp := range cps {
			pw := fmt.Sprintf("%s: configPatches[%d]", where, j)
			onlyKeys(t, pw, cp, "applyTo", "match", "patch")
			onlyKeys(t, pw+".match", get(cp, "match"), "context", "proxy", "listener", "routeConfiguration", "cluster")
			onlyKeys(t, pw+".patch", get(cp, "patch"), "operation", "value", "filterClass")
			p := patch{where: pw, applyTo: str(cp, "applyTo"), op: str(cp, "patch", "operation")}
			p.match, _ = get(cp, "match").(map[string]any)
			if ctx := str(p.match, "context"); ctx != "GATEWAY" {
				t.Errorf("%s: match.context %q, want GATEWAY", pw, ctx)
			}
			newMsg := envoyTypes[p.applyTo]
			if newMsg == nil {
				t.Errorf("%s: applyTo %q: the test knows %q", pw, p.applyTo, slices.Sorted(maps.Keys(envoyTypes)))
				continue
			}
			p.value = newMsg()
			if err := envoyconf.FromValue(get(cp, "patch", "value"), p.value); err != nil {
				t.Errorf("%s: value: %v", pw, err)
				continue
			}
			var err error
			switch {
			case slices.Contains(wholeOps, p.op):
				p.unpacked, err = envoyconf.Validate(p.value)
			case p.op == mergeOp:
				p.unpacked, err = envoyconf.ValidateAnys(p.value)
			default:
				t.Errorf("%s: operation %q: want one of %q or %s", pw, p.op, wholeOps, mergeOp)
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", pw, err)
				continue
			}
			out = append(out, p)
		}
	}
	return out
}

// one returns the one patch with applyTo.
func one(t *testing.T, ps []patch, applyTo string) patch {
	t.Helper()
	var found []patch
	for _, p := range ps {
		if p.applyTo == applyTo {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d %s patches, want 1", filtersFile, len(found), applyTo)
	}
	return found[0]
}

// TestPatchesValid: every patch decodes and validates (loadPatches), and
// the three the README describes are there.
func TestPatchesValid(t *testing.T) {
	ps := loadPatches(t)
	var got []string
	for _, p := range ps {
		got = append(got, p.applyTo+" "+p.op)
	}
	slices.Sort(got)
	if want := []string{"CLUSTER ADD", "HTTP_FILTER INSERT_BEFORE", "HTTP_ROUTE MERGE"}; !slices.Equal(got, want) {
		t.Errorf("%s: patches %q, want %q", filtersFile, got, want)
	}
}

// TestFilterPatch: the rate limit filter goes before the router of the
// HTTP connection manager, fails closed within Envoy's default timeout,
// and calls the cluster the cluster patch adds.
func TestFilterPatch(t *testing.T) {
	ps := loadPatches(t)
	p := one(t, ps, "HTTP_FILTER")
	fc := get(p.match, "listener", "filterChain", "filter")
	if n := str(fc, "name"); n != "envoy.filters.network.http_connection_manager" {
		t.Errorf("%s: filter %q, want the HTTP connection manager", p.where, n)
	}
	if p.op != "INSERT_BEFORE" || str(fc, "subFilter", "name") != "envoy.filters.http.router" {
		t.Errorf("%s: want INSERT_BEFORE envoy.filters.http.router (the router must stay last)", p.where)
	}
	f := p.value.(*hcmv3.HttpFilter)
	if f.GetName() != rateLimitFilter {
		t.Fatalf("%s: filter %q, want %s", p.where, f.GetName(), rateLimitFilter)
	}
	rl := &ratelimitv3.RateLimit{}
	if err := f.GetTypedConfig().UnmarshalTo(rl); err != nil {
		t.Fatalf("%s: %v", p.where, err)
	}
	if !rl.GetFailureModeDeny() {
		t.Errorf("%s: failure_mode_deny is false", p.where)
	}
	if d := rl.GetTimeout().AsDuration(); rl.GetTimeout() == nil || d <= backendTimeout || d > maxTimeout {
		t.Errorf("%s: timeout %v, want above %v and at most %v", p.where, d, backendTimeout, maxTimeout)
	}
	if rl.GetEnableXRatelimitHeaders() != ratelimitv3.RateLimit_OFF {
		t.Errorf("%s: enable_x_ratelimit_headers on: ratelimitd sends the headers (-header-style)", p.where)
	}
	if v := rl.GetRateLimitService().GetTransportApiVersion(); v != corev3.ApiVersion_V3 {
		t.Errorf("%s: transport_api_version %v, want V3", p.where, v)
	}
	cl := one(t, ps, "CLUSTER").value.(*clusterv3.Cluster)
	if got := rl.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != cl.GetName() {
		t.Errorf("%s: calls cluster %q, but the cluster patch adds %q", p.where, got, cl.GetName())
	}
}

// TestClusterPatch: the cluster resolves ratelimitd's Service, speaks
// HTTP/2 to its gRPC port and checks its health on a name it reports.
func TestClusterPatch(t *testing.T) {
	p := one(t, loadPatches(t), "CLUSTER")
	c := p.value.(*clusterv3.Cluster)
	if c.GetType() != clusterv3.Cluster_STRICT_DNS {
		t.Errorf("%s: type %v, want STRICT_DNS", p.where, c.GetType())
	}
	opts := &httpv3.HttpProtocolOptions{}
	if a := c.GetTypedExtensionProtocolOptions()[protocolOptions]; a == nil || a.UnmarshalTo(opts) != nil {
		t.Fatalf("%s: no %s", p.where, protocolOptions)
	}
	if h2 := opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions(); h2 == nil {
		t.Errorf("%s: want explicit_http_config with http2_protocol_options", p.where)
	} else if h2.GetConnectionKeepalive() != nil {
		t.Errorf("%s: HTTP/2 keepalive set: ratelimitd disconnects clients that ping more often than every 5 minutes", p.where)
	}
	var addrs []string
	for _, e := range c.GetLoadAssignment().GetEndpoints() {
		for _, lb := range e.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			addrs = append(addrs, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
		}
	}
	if want := []string{fmt.Sprintf("%s:%d", serviceHost, grpcPort)}; !slices.Equal(addrs, want) {
		t.Errorf("%s: endpoints %q, want %q", p.where, addrs, want)
	}
	healthNames := []string{"", rlsv3.RateLimitService_ServiceDesc.ServiceName, "ratelimit"}
	hcs := c.GetHealthChecks()
	if len(hcs) != 1 || hcs[0].GetGrpcHealthCheck() == nil || !slices.Contains(healthNames, hcs[0].GetGrpcHealthCheck().GetServiceName()) {
		t.Errorf("%s: want one gRPC health check of a service ratelimitd reports (%q)", p.where, healthNames)
	}
}

// TestRoutePatch: the route patch merges the burst-per-key scenario's
// RateLimitPerRoute, unchanged, into the route gateway.yaml declares, and
// its domain is one of the scenario's config.
func TestRoutePatch(t *testing.T) {
	p := one(t, loadPatches(t), "HTTP_ROUTE")
	got := perRoute(t, p.where, p.value.(*routev3.Route))

	data, err := os.ReadFile(scenarioRoutes)
	if err != nil {
		t.Fatal(err)
	}
	rc := &routev3.RouteConfiguration{}
	if err := envoyconf.Unmarshal(data, rc); err != nil {
		t.Fatalf("%s: %v", scenarioRoutes, err)
	}
	var want *ratelimitv3.RateLimitPerRoute
	for _, vh := range rc.GetVirtualHosts() {
		for _, rt := range vh.GetRoutes() {
			if rt.GetName() == scenarioRoute {
				want = perRoute(t, scenarioRoutes, rt)
			}
		}
	}
	if want == nil {
		t.Fatalf("%s: no route %s", scenarioRoutes, scenarioRoute)
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("%s: the rate limits have drifted from %s route %s (-there +here):\n%s", p.where, scenarioRoutes, scenarioRoute, diff)
	}
	cfg, err := config.Load(scenarioConfig, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.HasDomain(got.GetDomain()) {
		t.Errorf("%s: domain %q is not one of %s's %q", p.where, got.GetDomain(), scenarioConfig, cfg.Domains())
	}

	// The names Istio gives the gateway's virtual host and route.
	vhost := str(p.match, "routeConfiguration", "vhost", "name")
	route := str(p.match, "routeConfiguration", "vhost", "route", "name")
	var gw, vs map[string]any
	for _, d := range readDocs(t, gatewayFile) {
		switch str(d, "kind") {
		case "Gateway":
			gw = d
		case "VirtualService":
			vs = d
		}
	}
	if gw == nil || vs == nil {
		t.Fatalf("%s: want a Gateway and a VirtualService", gatewayFile)
	}
	if l, _ := get(gw, "spec", "selector").(map[string]any); !maps.Equal(l, gatewayLabels) {
		t.Errorf("%s: Gateway selector %v, want the EnvoyFilters' workloadSelector %v", gatewayFile, l, gatewayLabels)
	}
	var vhosts []string
	servers, _ := get(gw, "spec", "servers").([]any)
	for _, s := range servers {
		hosts, _ := get(s, "hosts").([]any)
		port, _ := get(s, "port", "number").(int)
		for _, h := range hosts {
			vhosts = append(vhosts, fmt.Sprintf("%v:%d", h, port))
		}
	}
	if !slices.Contains(vhosts, vhost) {
		t.Errorf("%s: matches virtual host %q; %s's Gateway makes %q", p.where, vhost, gatewayFile, vhosts)
	}
	gws, _ := get(vs, "spec", "gateways").([]any)
	if !slices.Contains(gws, any(str(gw, "metadata", "name"))) {
		t.Errorf("%s: the VirtualService is not bound to Gateway %s", gatewayFile, str(gw, "metadata", "name"))
	}
	var routes []string
	https, _ := get(vs, "spec", "http").([]any)
	for _, h := range https {
		routes = append(routes, str(h, "name"))
	}
	if !slices.Contains(routes, route) {
		t.Errorf("%s: matches route %q; %s's VirtualService has http routes %q", p.where, route, gatewayFile, routes)
	}
}

func perRoute(t *testing.T, where string, rt *routev3.Route) *ratelimitv3.RateLimitPerRoute {
	t.Helper()
	per := &ratelimitv3.RateLimitPerRoute{}
	a := rt.GetTypedPerFilterConfig()[rateLimitFilter]
	if a == nil || a.UnmarshalTo(per) != nil {
		t.Fatalf("%s: no RateLimitPerRoute for %s", where, rateLimitFilter)
	}
	return per
}

// TestKubernetesService: the cluster patch's address is the Service
// examples/kubernetes declares: ratelimitd in namespace ratelimit, its
// gRPC port 8081 named grpc. Skipped while that example does not exist.
func TestKubernetesService(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(kubernetesDir, "*.y*ml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Skipf("no %s manifests yet", kubernetesDir)
	}
	var svcs []string
	for _, f := range files {
		docs, err := decodeAll(f)
		if err != nil {
			t.Logf("skipping %s: %v", f, err) // a template, not a manifest
			continue
		}
		for _, d := range docs {
			if str(d, "kind") != "Service" {
				continue
			}
			name, ns := str(d, "metadata", "name"), str(d, "metadata", "namespace")
			svcs = append(svcs, ns+"/"+name)
			if name != serviceName || (ns != "" && ns != serviceNS) {
				continue
			}
			ports, _ := get(d, "spec", "ports").([]any)
			for _, p := range ports {
				if n, _ := get(p, "port").(int); n == grpcPort && str(p, "name") == "grpc" {
					return
				}
			}
			t.Errorf("%s: Service %s has no port %d named grpc", f, serviceName, grpcPort)
			return
		}
	}
	t.Errorf("%s: no Service %s in namespace %s (found %q); %s points at %s:%s",
		kubernetesDir, serviceName, serviceNS, svcs, filtersFile, serviceHost, strconv.Itoa(grpcPort))
}
