package harness

// The Envoy side of an example: its envoy-routes.yaml, a RouteConfiguration
// whose routes carry the HTTP rate limit filter's per-route config
// (RateLimitPerRoute) with their rate_limits actions. LoadRoutes parses it
// with Envoy's own proto types and validation rules (protoc-gen-validate),
// so a typo in a field name or a missing required field fails the example's
// test; Descriptors then computes the descriptors Envoy would send for a
// request, following Envoy's populateDescriptors: each rate_limits entry of
// the phase (request, or stream done) yields one descriptor, its actions
// evaluated in order, and an action whose input is missing either drops the
// descriptor or, with skip_if_absent, just its entry.
//
// Only the actions the examples use are evaluated: request_headers,
// remote_address, generic_key, header_value_match (exact, prefix, suffix,
// contains and present matchers), masked_remote_address and metadata; and
// hits_addend as a number or a %DYNAMIC_METADATA(namespace:key)% format.
// Anything else fails the test rather than guess.

import (
	"encoding/json"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	ratelimitfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// rateLimitFilter is the HTTP rate limit filter's name, the key of its
// per-route config in typed_per_filter_config.
const rateLimitFilter = "envoy.filters.http.ratelimit"

// Phase says which of a route's rate_limits Envoy sends: those of the
// request (on its headers) or those with apply_on_stream_done.
type Phase int

const (
	// OnRequest is the call Envoy makes before forwarding the request;
	// its answer decides the request.
	OnRequest Phase = iota
	// OnStreamDone is the fire-and-forget call Envoy makes when the
	// stream is complete (apply_on_stream_done).
	OnStreamDone
)

// String names the phase in messages.
func (p Phase) String() string {
	if p == OnStreamDone {
		return "stream done"
	}
	return "request"
}

// Request is what Envoy knows about a request when it builds descriptors.
type Request struct {
	// Headers by lower-case name, pseudo-headers included (":method",
	// ":path").
	Headers map[string]string
	// RemoteAddr is the client's address as Envoy trusts it (the
	// downstream address, or from x-forwarded-for per xff_num_trusted_hops).
	RemoteAddr string
	// Metadata is the dynamic metadata of the stream (set by filters such
	// as ext_authz, or by the filter that reads the response's usage), by
	// "namespace:key" with nested keys joined by ".":
	// "envoy.filters.http.ext_authz:org_id".
	Metadata map[string]string
}

// Routes is a parsed envoy-routes.yaml.
type Routes struct {
	// Config is the file as Envoy reads it.
	Config *routev3.RouteConfiguration
	byName map[string]*ratelimitfilterv3.RateLimitPerRoute
}

// LoadRoutes reads the RouteConfiguration in path (YAML), checks it with
// Envoy's validation rules, and checks that every route has a name and a
// RateLimitPerRoute config for domain, which must be a domain of cfgDomains
// (the example's config).
func LoadRoutes(t testing.TB, path string, cfgDomains ...string) *Routes {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	rc := &routev3.RouteConfiguration{}
	if err := protojson.Unmarshal(js, rc); err != nil {
		t.Fatalf("%s: not an Envoy RouteConfiguration: %v", path, err)
	}
	if err := rc.ValidateAll(); err != nil {
		t.Fatalf("%s: Envoy would refuse it: %v", path, err)
	}
	r := &Routes{Config: rc, byName: map[string]*ratelimitfilterv3.RateLimitPerRoute{}}
	for _, vh := range rc.GetVirtualHosts() {
		for _, rt := range vh.GetRoutes() {
			name := rt.GetName()
			if name == "" {
				t.Fatalf("%s: virtual host %s has a route without a name", path, vh.GetName())
			}
			if _, dup := r.byName[name]; dup {
				t.Fatalf("%s: two routes are named %s", path, name)
			}
			anyCfg := rt.GetTypedPerFilterConfig()[rateLimitFilter]
			if anyCfg == nil {
				t.Fatalf("%s: route %s has no typed_per_filter_config for %s", path, name, rateLimitFilter)
			}
			per := &ratelimitfilterv3.RateLimitPerRoute{}
			if err := anyCfg.UnmarshalTo(per); err != nil {
				t.Fatalf("%s: route %s: %s config is not a RateLimitPerRoute: %v", path, name, rateLimitFilter, err)
			}
			if err := per.ValidateAll(); err != nil {
				t.Fatalf("%s: route %s: Envoy would refuse its rate limits: %v", path, name, err)
			}
			if !slices.Contains(cfgDomains, per.GetDomain()) {
				t.Fatalf("%s: route %s sends domain %q, not one of the config's %q", path, name, per.GetDomain(), cfgDomains)
			}
			if len(per.GetRateLimits()) == 0 {
				t.Fatalf("%s: route %s has no rate_limits", path, name)
			}
			r.byName[name] = per
		}
	}
	if len(r.byName) == 0 {
		t.Fatalf("%s: no routes", path)
	}
	return r
}

// Names returns the routes' names, sorted.
func (r *Routes) Names() []string {
	var out []string
	for n := range r.byName {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Domain returns the domain route sends.
func (r *Routes) Domain(t testing.TB, route string) string {
	t.Helper()
	return r.route(t, route).GetDomain()
}

func (r *Routes) route(t testing.TB, route string) *ratelimitfilterv3.RateLimitPerRoute {
	t.Helper()
	per := r.byName[route]
	if per == nil {
		t.Fatalf("envoy routes: no route named %s (routes: %s)", route, strings.Join(r.Names(), ", "))
	}
	return per
}

// Descriptors returns the descriptors Envoy sends for req on route in
// phase, in the order of the route's rate_limits; none when Envoy would
// not call.
func (r *Routes) Descriptors(t testing.TB, route string, req Request, phase Phase) []*commonv3.RateLimitDescriptor {
	t.Helper()
	var out []*commonv3.RateLimitDescriptor
	for i, rl := range r.route(t, route).GetRateLimits() {
		if rl.GetApplyOnStreamDone() != (phase == OnStreamDone) {
			continue
		}
		d, ok := descriptor(t, rl, req)
		if !ok {
			continue
		}
		if len(d.GetEntries()) == 0 {
			t.Fatalf("envoy routes: route %s rate_limits[%d] produced a descriptor without entries", route, i)
		}
		out = append(out, d)
	}
	return out
}

// Envoy sends what Envoy would for req on route in phase, and returns the
// answer. It fails the test when Envoy would send nothing.
func (e *Env) Envoy(r *Routes, route string, req Request, phase Phase) *rlsv3.RateLimitResponse {
	e.t.Helper()
	ds := r.Descriptors(e.t, route, req, phase)
	if len(ds) == 0 {
		e.t.Fatalf("envoy routes: route %s sends no descriptor for this request on %s", route, phase)
	}
	return e.Call(r.Domain(e.t, route), ds...)
}

// descriptor evaluates one rate_limits entry; ok is false when Envoy would
// not send it.
func descriptor(t testing.TB, rl *routev3.RateLimit, req Request) (*commonv3.RateLimitDescriptor, bool) {
	t.Helper()
	d := &commonv3.RateLimitDescriptor{}
	for _, a := range rl.GetActions() {
		key, value, ok := action(t, a, req)
		if !ok {
			return nil, false
		}
		if key != "" {
			d.Entries = append(d.Entries, &commonv3.RateLimitDescriptor_Entry{Key: key, Value: value})
		}
	}
	if ha := rl.GetHitsAddend(); ha != nil {
		switch {
		case ha.GetNumber() != nil:
			d.HitsAddend = wrapperspb.UInt64(ha.GetNumber().GetValue())
		case ha.GetFormat() != "":
			n, ok := hitsFormat(t, ha.GetFormat(), req)
			if !ok {
				return nil, false // Envoy ignores the descriptor
			}
			d.HitsAddend = wrapperspb.UInt64(n)
		}
		d.IsNegativeHits = ha.GetIsNegativeHits()
	}
	return d, true
}

// action evaluates one action: the entry it adds (key "" for none) and
// whether the descriptor survives it.
func action(t testing.TB, a *routev3.RateLimit_Action, req Request) (key, value string, ok bool) {
	t.Helper()
	switch s := a.GetActionSpecifier().(type) {
	case *routev3.RateLimit_Action_RequestHeaders_:
		h := s.RequestHeaders
		v, found := req.Headers[strings.ToLower(h.GetHeaderName())]
		if !found || v == "" {
			return "", "", h.GetSkipIfAbsent()
		}
		return h.GetDescriptorKey(), v, true
	case *routev3.RateLimit_Action_RemoteAddress_:
		if req.RemoteAddr == "" {
			return "", "", false
		}
		return "remote_address", req.RemoteAddr, true
	case *routev3.RateLimit_Action_GenericKey_:
		return cmpOr(s.GenericKey.GetDescriptorKey(), "generic_key"), s.GenericKey.GetDescriptorValue(), true
	case *routev3.RateLimit_Action_HeaderValueMatch_:
		m := s.HeaderValueMatch
		expect := m.GetExpectMatch() == nil || m.GetExpectMatch().GetValue()
		k := cmpOr(m.GetDescriptorKey(), "header_match")
		if headersMatch(t, m.GetHeaders(), req.Headers) == expect {
			return k, m.GetDescriptorValue(), true
		}
		if m.GetDefaultValue() != "" {
			return k, m.GetDefaultValue(), true
		}
		return "", "", false
	case *routev3.RateLimit_Action_MaskedRemoteAddress_:
		m := s.MaskedRemoteAddress
		addr, err := netip.ParseAddr(req.RemoteAddr)
		if err != nil {
			return "", "", false
		}
		bits := 32
		if v := m.GetV4PrefixMaskLen(); v != nil {
			bits = int(v.GetValue())
		}
		if addr.Is6() {
			bits = 128
			if v := m.GetV6PrefixMaskLen(); v != nil {
				bits = int(v.GetValue())
			}
		}
		p, err := addr.Prefix(bits)
		if err != nil {
			t.Fatalf("envoy routes: masked_remote_address: %v", err)
		}
		return "masked_remote_address", p.String(), true
	case *routev3.RateLimit_Action_Metadata:
		m := s.Metadata
		if m.GetSource() != routev3.RateLimit_Action_MetaData_DYNAMIC {
			t.Fatalf("envoy routes: metadata action with source %s: only DYNAMIC is evaluated here", m.GetSource())
		}
		mk := m.GetMetadataKey()
		var path []string
		for _, seg := range mk.GetPath() {
			path = append(path, seg.GetKey())
		}
		v := req.Metadata[mk.GetKey()+":"+strings.Join(path, ".")]
		if v == "" {
			v = m.GetDefaultValue()
		}
		if v == "" {
			return "", "", m.GetSkipIfAbsent()
		}
		return m.GetDescriptorKey(), v, true
	}
	t.Fatalf("envoy routes: action %T is not evaluated by the harness", a.GetActionSpecifier())
	return "", "", false
}

// headersMatch reports whether every matcher matches, as Envoy's
// HeaderUtility::matchHeaders.
func headersMatch(t testing.TB, ms []*routev3.HeaderMatcher, headers map[string]string) bool {
	t.Helper()
	for _, m := range ms {
		v, present := headers[strings.ToLower(m.GetName())]
		var match bool
		switch s := m.GetHeaderMatchSpecifier().(type) {
		case *routev3.HeaderMatcher_PresentMatch:
			match = present == s.PresentMatch
		case *routev3.HeaderMatcher_StringMatch:
			match = present && stringMatch(t, s.StringMatch, v)
		default:
			t.Fatalf("envoy routes: header matcher %T is not evaluated by the harness", s)
		}
		if match == m.GetInvertMatch() {
			return false
		}
	}
	return true
}

func stringMatch(t testing.TB, sm *matcherv3.StringMatcher, v string) bool {
	t.Helper()
	if sm.GetIgnoreCase() {
		v = strings.ToLower(v)
	}
	lower := func(s string) string {
		if sm.GetIgnoreCase() {
			return strings.ToLower(s)
		}
		return s
	}
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return v == lower(p.Exact)
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(v, lower(p.Prefix))
	case *matcherv3.StringMatcher_Suffix:
		return strings.HasSuffix(v, lower(p.Suffix))
	case *matcherv3.StringMatcher_Contains:
		return strings.Contains(v, lower(p.Contains))
	}
	t.Fatalf("envoy routes: string matcher %T is not evaluated by the harness", sm.GetMatchPattern())
	return false
}

// dynamicMetadataFormat is the one substitution format the harness reads.
var dynamicMetadataFormat = regexp.MustCompile(`^%DYNAMIC_METADATA\(([^:()]+):([^()]+)\)%$`)

// hitsFormat evaluates a hits_addend format: a non-negative integer up to
// 10^9, else Envoy ignores the descriptor (ok false).
func hitsFormat(t testing.TB, format string, req Request) (uint64, bool) {
	t.Helper()
	m := dynamicMetadataFormat.FindStringSubmatch(format)
	if m == nil {
		t.Fatalf("envoy routes: hits_addend format %q: only %%DYNAMIC_METADATA(namespace:key)%% is evaluated by the harness", format)
	}
	key := m[1] + ":" + strings.ReplaceAll(m[2], ":", ".")
	n, err := strconv.ParseUint(req.Metadata[key], 10, 64)
	if err != nil || n > 1_000_000_000 {
		return 0, false
	}
	return n, true
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
