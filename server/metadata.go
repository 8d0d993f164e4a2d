package server

import (
	"strconv"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ratelimitd/ratelimitd/config"
)

// dynamicMetadata builds the response's dynamic_metadata in
// envoyproxy/ratelimit's format (ratelimitToMetadata, with the quota-mode
// fields of its TestRatelimitToMetadata):
//
//	domain               the request's domain
//	descriptors          one struct per descriptor: entries ["key=value", ...],
//	                     limit (the override in text form) and hitsAddend when set
//	hitsAddend           the request's hits_addend, when not 0
//	metadata             the `metadata` of the rules of descriptors not over their
//	                     limit, merged (nested mappings merged, first rule wins a
//	                     conflict), when any; as the newest reference
//	quotaModeViolations  indices of quota-mode descriptors over their limit, when any
//	quotaModeEnabled     whether a rule decided in this call is in quota mode
//
// passed lists the rules whose metadata is merged, in descriptor order.
func dynamicMetadata(req *rlsv3.RateLimitRequest, passed []*config.Rule, quotaViolations []int, quotaEnabled bool) *structpb.Struct {
	fields := make(map[string]*structpb.Value, 5)
	fields["domain"] = structpb.NewStringValue(req.GetDomain())
	ds := make([]*structpb.Value, 0, len(req.GetDescriptors()))
	for _, d := range req.GetDescriptors() {
		if d == nil {
			continue
		}
		ds = append(ds, structpb.NewStructValue(descriptorStruct(d)))
	}
	fields["descriptors"] = structpb.NewListValue(&structpb.ListValue{Values: ds})
	if h := req.GetHitsAddend(); h != 0 {
		fields["hitsAddend"] = structpb.NewNumberValue(float64(h))
	}
	var md *structpb.Struct
	for _, r := range passed {
		if len(r.Metadata) == 0 {
			continue
		}
		src, err := structpb.NewStruct(r.Metadata)
		if err != nil {
			continue // config guarantees plain values; never fail the call
		}
		if md == nil {
			md = &structpb.Struct{Fields: make(map[string]*structpb.Value)}
		}
		mergeStruct(md, src)
	}
	if md != nil && len(md.Fields) > 0 {
		fields["metadata"] = structpb.NewStructValue(md)
	}
	if len(quotaViolations) > 0 {
		vs := make([]*structpb.Value, len(quotaViolations))
		for i, v := range quotaViolations {
			vs[i] = structpb.NewNumberValue(float64(v))
		}
		fields["quotaModeViolations"] = structpb.NewListValue(&structpb.ListValue{Values: vs})
	}
	fields["quotaModeEnabled"] = structpb.NewBoolValue(quotaEnabled)
	return &structpb.Struct{Fields: fields}
}

// mergeStruct adds src's fields to dst: fields both hold as mappings are
// merged recursively, any other conflict keeps dst's value.
func mergeStruct(dst, src *structpb.Struct) {
	for k, v := range src.GetFields() {
		old, ok := dst.Fields[k]
		if !ok {
			dst.Fields[k] = v
			continue
		}
		if a, b := old.GetStructValue(), v.GetStructValue(); a != nil && b != nil {
			mergeStruct(a, b)
		}
	}
}

func descriptorStruct(d *commonv3.RateLimitDescriptor) *structpb.Struct {
	fields := make(map[string]*structpb.Value, 3)
	es := make([]*structpb.Value, 0, len(d.GetEntries()))
	for _, e := range d.GetEntries() {
		es = append(es, structpb.NewStringValue(e.GetKey()+"="+e.GetValue()))
	}
	fields["entries"] = structpb.NewListValue(&structpb.ListValue{Values: es})
	if l := d.GetLimit(); l != nil {
		fields["limit"] = structpb.NewStringValue(overrideText(l))
	}
	if h := d.GetHitsAddend(); h != nil {
		fields["hitsAddend"] = structpb.NewNumberValue(float64(h.GetValue()))
	}
	return &structpb.Struct{Fields: fields}
}

// overrideText is the override in protobuf text form, as the reference's
// Limit.String(), but stable: prototext deliberately randomizes its spacing.
func overrideText(l *commonv3.RateLimitDescriptor_RateLimitOverride) string {
	var b []byte
	if v := l.GetRequestsPerUnit(); v != 0 {
		b = append(b, "requests_per_unit:"...)
		b = strconv.AppendUint(b, uint64(v), 10)
	}
	if u := l.GetUnit(); u != 0 {
		if len(b) > 0 {
			b = append(b, ' ')
		}
		b = append(b, "unit:"...)
		b = append(b, u.String()...)
	}
	if m := l.GetUnitMultiplier(); m != nil {
		if len(b) > 0 {
			b = append(b, ' ')
		}
		b = append(b, "unit_multiplier:{value:"...)
		b = strconv.AppendUint(b, uint64(m.GetValue()), 10)
		b = append(b, '}')
	}
	return string(b)
}
