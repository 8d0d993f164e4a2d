// Package overrides holds the runtime limits operators set per descriptor
// through the admin API ("overrides"): in domain api, the descriptors with
// api_key=abc get 500 per minute, or no limit, or the limits of the named
// policy pro, whatever the config says.
//
// An Override is validated (Validate) and encoded (Marshal) once, by the
// replica that receives the admin call, and stored in a Store under its ID:
// a Redis hash (backends/redis) or a JSON file (FileStore). Every replica
// runs a Watcher that polls the store's version every DefaultInterval and
// reloads on change, so a change made through any replica is seen by all
// of them within a second, and survives restarts. The current overrides
// are an immutable, indexed Set, looked up on every request without
// allocating.
//
// The package knows nothing about rules: applying an override to the rule
// a descriptor matched (the rule's algorithm when Algorithm is "", the
// policy's limits) is the caller's business.
package overrides

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/config"
)

// Bounds checked by Validate.
const (
	// MaxEntries is the most entries an override names.
	MaxEntries = 16
	// MaxLen bounds the length in bytes of every string of an override:
	// domain, entry keys and values, policy, reason and author.
	MaxLen = 1024
	// maxPeriod is the longest period of a Limit override: ten years, the
	// bound of config files.
	maxPeriod = 10 * 365 * algorithms.Day
)

// FormatVersion is the value of the "version" field Marshal writes.
// Unmarshal refuses any other: a change that older replicas must not
// misread bumps it, so that they skip such overrides (and say so) rather
// than apply them wrongly. Fields added in a way older replicas may ignore
// keep it.
const FormatVersion = 1

// Kind of an override.
type Kind uint8

const (
	// Limit replaces the rule's limit by the override's rate.
	Limit Kind = iota + 1
	// Unlimited lets every request through, without touching the backend.
	Unlimited
	// Policy applies the limits of a policy defined in the config.
	Policy
)

// The zero Kind is invalid, so that an override whose kind was forgotten
// fails Validate.

// String returns "limit", "unlimited", "policy", or "unknown".
func (k Kind) String() string {
	switch k {
	case Limit:
		return "limit"
	case Unlimited:
		return "unlimited"
	case Policy:
		return "policy"
	}
	return "unknown"
}

// ParseKind returns the kind named s, as String writes it.
func ParseKind(s string) (Kind, error) {
	for _, k := range []Kind{Limit, Unlimited, Policy} {
		if k.String() == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("overrides: kind %q is not one of limit, unlimited, policy", s)
}

// MarshalText writes the kind's name; an unknown kind is an error.
func (k Kind) MarshalText() ([]byte, error) {
	if k < Limit || k > Policy {
		return nil, fmt.Errorf("overrides: unknown kind %d", k)
	}
	return []byte(k.String()), nil
}

// UnmarshalText is ParseKind.
func (k *Kind) UnmarshalText(b []byte) error {
	v, err := ParseKind(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// Override is one runtime limit for the descriptors of Domain that contain
// all of Entries (see Set.Lookup). Overrides held by a Set, or returned by
// its methods, are shared: treat them as read-only.
//
// Its JSON form (Marshal, and json.Marshal alike) is
//
//	{"version":1,"domain":"api","entries":[{"key":"api_key","value":"abc"}],
//	 "kind":"limit","requests_per_unit":500,"unit":"minute",
//	 "reason":"…","author":"…","updated":"2026-01-02T03:04:05Z"}
//
// with the fields that do not apply (zero) left out.
type Override struct {
	Domain  string
	Entries []config.Entry
	Kind    Kind

	// Limit kind: the rate, RequestsPerUnit per UnitMultiplier Units (0 is
	// 1). Algorithm "" means the matched rule's own algorithm, Burst 0 the
	// rule's burst (token_bucket and gcra only).
	RequestsPerUnit uint32
	Unit            config.Unit
	UnitMultiplier  uint32
	Algorithm       string
	Burst           int64

	// Policy kind: the name of a policy of the config.
	Policy string

	// Reason is free text from the operator; Author who set it (a token
	// name or a client certificate's subject); Updated when.
	Reason  string
	Author  string
	Updated time.Time
}

// ID returns the storage id of the override for domain and entries: the
// fields domain, then each entry's key and value, entries sorted by key
// then value (so that their order does not matter), each written as its
// length, ':' and its bytes with every byte outside printable ASCII, and
// '%', written %XX (the length is that of the escaped field):
// "3:api7:api_key3:abc". It is unambiguous and printable. It does not
// modify entries.
func ID(domain string, entries []config.Entry) string {
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, compareEntries)
	b := make([]byte, 0, 16+len(domain)+len(entries)*16)
	b = appendIDField(b, domain)
	for _, e := range sorted {
		b = appendIDField(b, e.Key)
		b = appendIDField(b, e.Value)
	}
	return string(b)
}

func compareEntries(a, b config.Entry) int {
	if c := strings.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	return strings.Compare(a.Value, b.Value)
}

const hexDigits = "0123456789ABCDEF"

func idEscaped(c byte) bool { return c < 0x21 || c > 0x7e || c == '%' }

func appendIDField(b []byte, s string) []byte {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if idEscaped(s[i]) {
			n += 2
		}
	}
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, ':')
	for i := 0; i < len(s); i++ {
		if c := s[i]; idEscaped(c) {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
		} else {
			b = append(b, c)
		}
	}
	return b
}

// ID returns ID(o.Domain, o.Entries).
func (o *Override) ID() string { return ID(o.Domain, o.Entries) }

// Validate checks the override's own fields: a domain; 1 to MaxEntries
// entries with non-empty, distinct keys; strings of at most MaxLen bytes
// of valid UTF-8 (JSON could not keep other bytes); a known kind; for
// Limit, RequestsPerUnit of at least 1, a known unit, a period of at most
// ten years, a known algorithm other than concurrency (whose lease an
// override cannot give) or "", a burst from 0 to algorithms.MaxAmount and
// only where a burst applies; for Policy, a policy name; and no field of
// another kind. It cannot check what depends on the config (that the
// policy exists, that the rule's algorithm takes a burst).
func (o *Override) Validate() error {
	if o == nil {
		return errors.New("overrides: no override")
	}
	if err := checkString("domain", o.Domain, true); err != nil {
		return err
	}
	switch n := len(o.Entries); {
	case n == 0:
		return errors.New("overrides: no entries: an override names at least one descriptor entry")
	case n > MaxEntries:
		return fmt.Errorf("overrides: %d entries, more than %d", n, MaxEntries)
	}
	for i, e := range o.Entries {
		if err := checkString(fmt.Sprintf("entry %d: key", i+1), e.Key, true); err != nil {
			return err
		}
		if err := checkString(fmt.Sprintf("entry %d (%s): value", i+1, e.Key), e.Value, false); err != nil {
			return err
		}
		for _, f := range o.Entries[:i] {
			if f.Key == e.Key {
				return fmt.Errorf("overrides: entry key %q appears twice", e.Key)
			}
		}
	}
	for _, f := range []struct{ name, v string }{{"reason", o.Reason}, {"author", o.Author}} {
		if err := checkString(f.name, f.v, false); err != nil {
			return err
		}
	}

	rateSet := o.RequestsPerUnit != 0 || o.Unit != config.UnitUnknown || o.UnitMultiplier != 0 || o.Algorithm != "" || o.Burst != 0
	switch o.Kind {
	case Limit:
		if o.Policy != "" {
			return errors.New("overrides: policy applies only to kind policy")
		}
		return o.validateRate()
	case Unlimited:
		if rateSet {
			return errors.New("overrides: kind unlimited takes no rate (requests_per_unit, unit, unit_multiplier, algorithm, burst)")
		}
		if o.Policy != "" {
			return errors.New("overrides: policy applies only to kind policy")
		}
	case Policy:
		if o.Policy == "" {
			return errors.New("overrides: kind policy needs a policy name")
		}
		if err := checkString("policy", o.Policy, true); err != nil {
			return err
		}
		if rateSet {
			return errors.New("overrides: kind policy takes no rate (requests_per_unit, unit, unit_multiplier, algorithm, burst): the policy gives it")
		}
	case 0:
		return errors.New("overrides: kind is missing: want limit, unlimited or policy")
	default:
		return fmt.Errorf("overrides: unknown kind %d: want limit, unlimited or policy", o.Kind)
	}
	return nil
}

// validateRate checks the fields of a Limit override.
func (o *Override) validateRate() error {
	if o.RequestsPerUnit == 0 {
		return errors.New("overrides: kind limit needs requests_per_unit of at least 1 (use kind unlimited for no limit)")
	}
	switch {
	case o.Unit == config.UnitUnknown:
		return errors.New("overrides: kind limit needs a unit: second, minute, hour, day, week, month or year")
	case config.UnitPeriod(o.Unit) == 0:
		return fmt.Errorf("overrides: unit %d is not one of second, minute, hour, day, week, month, year", o.Unit)
	}
	if p := config.UnitPeriod(o.Unit) * int64(max(o.UnitMultiplier, 1)); p > maxPeriod {
		return fmt.Errorf("overrides: the period, %d %ss, is longer than 10 years", o.UnitMultiplier, o.Unit)
	}
	bursty := true
	if o.Algorithm != "" {
		a, ok := algorithms.ParseAlgorithm(o.Algorithm)
		switch {
		case !ok:
			return fmt.Errorf("overrides: algorithm %q is not one of fixed_window, sliding_window, token_bucket, gcra (or empty for the rule's own)", o.Algorithm)
		case a == algorithms.Concurrency:
			return errors.New("overrides: algorithm concurrency cannot be set by an override (it needs a lease): leave algorithm empty to keep the rule's")
		}
		bursty = a == algorithms.TokenBucket || a == algorithms.GCRA
	}
	switch {
	case o.Burst < 0 || o.Burst > algorithms.MaxAmount:
		return fmt.Errorf("overrides: burst must be from 0 (the rule's) to %d, found %d", algorithms.MaxAmount, o.Burst)
	case o.Burst > 0 && !bursty:
		return fmt.Errorf("overrides: burst applies only to algorithms token_bucket and gcra, not %s", o.Algorithm)
	}
	return nil
}

func checkString(name, v string, required bool) error {
	switch {
	case required && v == "":
		return fmt.Errorf("overrides: %s is empty", name)
	case len(v) > MaxLen:
		return fmt.Errorf("overrides: %s is %d bytes long, more than %d", name, len(v), MaxLen)
	case !utf8.ValidString(v):
		return fmt.Errorf("overrides: %s %q is not valid UTF-8", name, v)
	}
	return nil
}

// wire is the JSON form of an Override.
type wire struct {
	Version         int         `json:"version"`
	Domain          string      `json:"domain"`
	Entries         []wireEntry `json:"entries"`
	Kind            Kind        `json:"kind"`
	RequestsPerUnit uint32      `json:"requests_per_unit,omitempty"`
	Unit            string      `json:"unit,omitempty"`
	UnitMultiplier  uint32      `json:"unit_multiplier,omitempty"`
	Algorithm       string      `json:"algorithm,omitempty"`
	Burst           int64       `json:"burst,omitempty"`
	Policy          string      `json:"policy,omitempty"`
	Reason          string      `json:"reason,omitempty"`
	Author          string      `json:"author,omitempty"`
	Updated         time.Time   `json:"updated,omitzero"`
}

type wireEntry struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// MarshalJSON writes the override's JSON form (see Override), without
// validating it. An unknown kind or unit is an error.
func (o Override) MarshalJSON() ([]byte, error) {
	w := wire{
		Version: FormatVersion, Domain: o.Domain, Kind: o.Kind,
		Entries:         make([]wireEntry, len(o.Entries)),
		RequestsPerUnit: o.RequestsPerUnit, UnitMultiplier: o.UnitMultiplier,
		Algorithm: o.Algorithm, Burst: o.Burst, Policy: o.Policy,
		Reason: o.Reason, Author: o.Author, Updated: o.Updated,
	}
	for i, e := range o.Entries {
		w.Entries[i] = wireEntry(e)
	}
	if o.Unit != config.UnitUnknown {
		if config.UnitPeriod(o.Unit) == 0 {
			return nil, fmt.Errorf("overrides: unknown unit %d", o.Unit)
		}
		w.Unit = o.Unit.String()
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the override's JSON form, without validating it. A
// "version" other than FormatVersion is an error; an absent one is taken
// as FormatVersion, for hand-written input. Unknown fields are ignored.
func (o *Override) UnmarshalJSON(b []byte) error {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	if w.Version != 0 && w.Version != FormatVersion {
		return fmt.Errorf("overrides: format version %d is not %d (written by a newer ratelimitd?)", w.Version, FormatVersion)
	}
	u := config.UnitUnknown
	if w.Unit != "" {
		var err error
		if u, err = config.ParseUnit(w.Unit); err != nil {
			return err
		}
	}
	*o = Override{
		Domain: w.Domain, Kind: w.Kind,
		RequestsPerUnit: w.RequestsPerUnit, Unit: u, UnitMultiplier: w.UnitMultiplier,
		Algorithm: w.Algorithm, Burst: w.Burst, Policy: w.Policy,
		Reason: w.Reason, Author: w.Author, Updated: w.Updated,
	}
	if w.Entries != nil {
		o.Entries = make([]config.Entry, len(w.Entries))
		for i, e := range w.Entries {
			o.Entries[i] = config.Entry(e)
		}
	}
	return nil
}

// Marshal validates o and returns its stored form: its JSON (see
// Override), with "version" FormatVersion.
func Marshal(o *Override) ([]byte, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(o)
}

// Unmarshal decodes and validates a stored override. It refuses a
// "version" other than FormatVersion, an absent one included.
func Unmarshal(b []byte) (*Override, error) {
	var v struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("overrides: decode: %w", err)
	}
	switch {
	case v.Version == nil:
		return nil, errors.New("overrides: decode: no format version")
	case *v.Version != FormatVersion:
		return nil, fmt.Errorf("overrides: decode: format version %d is not %d (written by a newer ratelimitd?)", *v.Version, FormatVersion)
	}
	o := new(Override)
	if err := json.Unmarshal(b, o); err != nil {
		return nil, fmt.Errorf("overrides: decode: %w", err)
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return o, nil
}
