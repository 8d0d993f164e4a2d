// Package envoyconf reads the Envoy configuration of the examples (a
// bootstrap, an Istio EnvoyFilter patch) the way Envoy reads it: YAML,
// decoded into go-control-plane's proto types with protojson, and checked
// with Envoy's own validation rules (protoc-gen-validate's ValidateAll).
//
// ValidateAll stops at every google.protobuf.Any: a Bootstrap validates its
// listeners, but not the HttpConnectionManager in a listener's typed_config,
// nor the filters and per-route configs inside that. Validate goes further:
// it unpacks every Any it finds, at any depth, validates the message inside
// and looks for Anys in it in turn, so a typo three Anys deep fails as
// Envoy would refuse it at startup.
//
// An Any can only be decoded when its message type is linked into the
// binary. The extensions the examples use are imported below; a "@type"
// without a Go type makes Unmarshal fail with the name of the type to
// import, before protojson's own, vaguer, message.
package envoyconf

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	// The typed_config types of examples/envoy/envoy.yaml and of the
	// patches of examples/istio. Add the package of any new "@type" here.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_to_metadata/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// ReadYAML decodes one YAML document into a generic value (maps, lists,
// scalars), as json.Marshal accepts it.
func ReadYAML(data []byte) (any, error) {
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("envoyconf: yaml: %w", err)
	}
	return doc, nil
}

// Unmarshal decodes the YAML document data into m, as Envoy would: field
// names as in the .proto files, unknown fields refused, every Any resolved.
func Unmarshal(data []byte, m proto.Message) error {
	doc, err := ReadYAML(data)
	if err != nil {
		return err
	}
	return FromValue(doc, m)
}

// FromValue decodes v, a generic value as ReadYAML returns, into m.
func FromValue(v any, m proto.Message) error {
	if err := CheckTypes(v); err != nil {
		return err
	}
	js, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("envoyconf: to json: %w", err)
	}
	if err := protojson.Unmarshal(js, m); err != nil {
		return fmt.Errorf("envoyconf: decode %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}

// CheckTypes returns an error naming every "@type" in v that has no Go
// type linked in, and so cannot be decoded.
func CheckTypes(v any) error {
	var missing []string
	for _, url := range TypeURLs(v) {
		if _, err := protoregistry.GlobalTypes.FindMessageByURL(url); err != nil {
			missing = append(missing, url)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("envoyconf: no Go type for %s: add a blank import of its go-control-plane package to examples/envoy/envoyconf",
			strings.Join(missing, ", "))
	}
	return nil
}

// TypeURLs returns the "@type" values found anywhere in v, sorted, without
// duplicates.
func TypeURLs(v any) []string {
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if s, ok := x["@type"].(string); ok {
				out = append(out, s)
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	slices.Sort(out)
	return slices.Compact(out)
}

// validator is what protoc-gen-validate generates for every Envoy message.
type validator interface{ ValidateAll() error }

// Validate checks m with its ValidateAll, then every Any inside it, at any
// depth, as ValidateAnys does. It returns the messages unpacked from those
// Anys, outermost first.
func Validate(m proto.Message) ([]proto.Message, error) {
	if err := validateOne(m); err != nil {
		return nil, err
	}
	return ValidateAnys(m)
}

// ValidateAnys unpacks every Any inside m, at any depth (Anys inside
// unpacked messages included), and checks each unpacked message with its
// ValidateAll; m itself is not checked. It is for messages that are not
// complete on their own, such as the value of an Istio MERGE patch, whose
// required fields come from the config it is merged into. It returns the
// unpacked messages, outermost first.
func ValidateAnys(m proto.Message) ([]proto.Message, error) {
	var out []proto.Message
	var errs []error
	var visit func(where string, msg protoreflect.Message)
	visit = func(where string, msg protoreflect.Message) {
		if msg.Descriptor().FullName() == "google.protobuf.Any" {
			a, ok := msg.Interface().(*anypb.Any)
			if !ok {
				errs = append(errs, fmt.Errorf("envoyconf: %s: an Any of type %T", where, msg.Interface()))
				return
			}
			inner, err := a.UnmarshalNew()
			if err != nil {
				errs = append(errs, fmt.Errorf("envoyconf: %s: unpack %s: %w", where, a.GetTypeUrl(), err))
				return
			}
			if err := validateOne(inner); err != nil {
				errs = append(errs, fmt.Errorf("%w (at %s)", err, where))
				return
			}
			out = append(out, inner)
			where += "(" + string(inner.ProtoReflect().Descriptor().FullName()) + ")"
			msg = inner.ProtoReflect()
		}
		msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			name := where + "." + string(fd.Name())
			switch {
			case fd.IsMap():
				if fd.MapValue().Message() == nil {
					return true
				}
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					visit(name+"["+k.String()+"]", mv.Message())
					return true
				})
			case fd.Message() == nil:
			case fd.IsList():
				for i := range v.List().Len() {
					visit(fmt.Sprintf("%s[%d]", name, i), v.List().Get(i).Message())
				}
			default:
				visit(name, v.Message())
			}
			return true
		})
	}
	visit(string(m.ProtoReflect().Descriptor().Name()), m.ProtoReflect())
	return out, errors.Join(errs...)
}

func validateOne(m proto.Message) error {
	v, ok := m.(validator)
	if !ok {
		return fmt.Errorf("envoyconf: %s has no validation rules", m.ProtoReflect().Descriptor().FullName())
	}
	if err := v.ValidateAll(); err != nil {
		return fmt.Errorf("envoyconf: Envoy would refuse this %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}
