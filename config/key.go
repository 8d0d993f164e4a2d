package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ratelimitd/ratelimitd/algorithms"
)

// AppendKey appends the rule's bucket key for entries to dst: unambiguous
// (every field length-prefixed), and the same for all values that share
// a share_threshold wildcard.
//
// The key is the sequence of fields domain, entry count, then each entry's
// key and value, then the limit's algorithm and period, each written as
// its decimal length, ':' and its bytes: "3:api1:16:api_key3:abc12:fixed_window8:60000000".
// At a level whose descriptor has share_threshold the wildcard pattern
// stands for the value, as envoyproxy/ratelimit does, so that every value
// matching it counts against one bucket. The period is part of the key so
// that changing a rule's unit starts a fresh bucket.
//
// A rule with a HashTag starts its keys with a Redis Cluster hash tag:
// '{', the 8 lower-case hex digits of the 32-bit FNV-1a hash of the
// HashTag entry's value (as written in the key: the pattern under
// share_threshold), '}'. Every key tagged by one value is then in one
// cluster slot, whatever the rule, and the tag itself never holds a brace.
// The fields follow unchanged, so tagged keys stay unambiguous, and a rule
// without HashTag has the same keys as before hash tags existed.
//
// entries are the request descriptor's entries that Match was given for
// the rule. It does not allocate when dst has room for the key. It is
// AppendLimitKey for the rule's first limit.
func (r *Rule) AppendKey(dst []byte, entries []Entry) []byte {
	return r.AppendLimitKey(dst, entries, 0)
}

// AppendLimitKey appends the bucket key of the rule's limit i (an index
// into Limits) for entries: AppendKey's fields with the limit's algorithm
// and period, then, for a calendar-aligned limit, a field "calendar:" and
// its time zone, and for every limit but the first of a rate_limits list
// its index. So the limits of one list never share a bucket, nor do limits
// that differ in algorithm, period or alignment; and the first limit's key
// is the single rate_limit's, which keeps its bucket when a rate_limit
// becomes the first of a list.
func (r *Rule) AppendLimitKey(dst []byte, entries []Entry, i int) []byte {
	if i >= 0 && i < len(r.Limits) {
		return r.AppendLimitKeyFor(dst, entries, &r.Limits[i], i)
	}
	// A rule without that limit (unlimited, or built by hand): r.Limit,
	// with the calendar zone of the last limit, if any.
	l := RuleLimit{Limit: r.Limit}
	if n := len(r.Limits); n > 0 {
		l.Calendar = r.Limits[n-1].Calendar
	}
	return r.AppendLimitKeyFor(dst, entries, &l, i)
}

// AppendLimitKeyFor is AppendLimitKey for limit l, which need not be one
// of r.Limits (a runtime override, a tier-scaled limit or a policy's
// limit standing in for the rule's limit i): the same fields, with l's
// algorithm, period and calendar zone, and i's index field as
// AppendLimitKey writes it. So a limit that keeps the algorithm, period
// and alignment of limit i keeps its bucket (ScaleLimit's result does),
// and one that changes them starts a fresh one. l must not be nil. It
// does not allocate when dst has room for the key.
func (r *Rule) AppendLimitKeyFor(dst []byte, entries []Entry, l *RuleLimit, i int) []byte {
	if t := r.tag - 1; t >= 0 && t < len(entries) {
		dst = appendTag(dst, r.keyValue(entries, t))
	}
	dst = appendField(dst, r.Domain)
	dst = appendIntField(dst, int64(len(entries)))
	for i, e := range entries {
		dst = appendField(dst, e.Key)
		dst = appendField(dst, r.keyValue(entries, i))
	}
	dst = appendField(dst, l.Limit.Algorithm.String())
	dst = appendIntField(dst, l.Limit.Period)
	if loc := l.Calendar; loc != nil {
		cal := loc.String()
		dst = strconv.AppendInt(dst, int64(len("calendar:")+len(cal)), 10)
		dst = append(dst, ":calendar:"...)
		dst = append(dst, cal...)
	}
	if i > 0 {
		dst = appendIntField(dst, int64(i))
	}
	return dst
}

// keyValue is the value the key holds for entries[i]: the entry's, or the
// share_threshold pattern of its level.
func (r *Rule) keyValue(entries []Entry, i int) string {
	if i < len(r.share) && r.share[i] != "" {
		return r.share[i]
	}
	return entries[i].Value
}

// appendTag appends the hash tag of value: "{" + 8 hex digits of its
// FNV-1a hash + "}". A hash, not the value itself, so that the tag is
// never empty (Redis ignores "{}"), never holds a '}' (Redis ends the tag
// at the first one) and stays short whatever the value's length.
func appendTag(dst []byte, value string) []byte {
	const hex = "0123456789abcdef"
	h := uint32(2166136261) // FNV-1a, 32 bits
	for i := 0; i < len(value); i++ {
		h ^= uint32(value[i])
		h *= 16777619
	}
	dst = append(dst, '{')
	for shift := 28; shift >= 0; shift -= 4 {
		dst = append(dst, hex[h>>shift&0xf])
	}
	return append(dst, '}')
}

func appendField(dst []byte, s string) []byte {
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	return append(dst, s...)
}

func appendIntField(dst []byte, v int64) []byte {
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], v, 10)
	dst = strconv.AppendInt(dst, int64(len(d)), 10)
	dst = append(dst, ':')
	return append(dst, d...)
}

// OverrideRule is the rule for a descriptor's `limit` override (an Envoy
// RateLimitOverride) in domain. As in envoyproxy/ratelimit it replaces
// whatever the config would match: it is counted (never shadow, quota or
// unlimited), has no name and no replaces, and its StatKey is
// "domain.key_value.key" built from the request's entries. Its bucket key
// (AppendKey) holds the period, so overrides with different units never
// share a bucket. The server should apply it only when the config declares
// domain (envoyproxy/ratelimit answers OK for an unknown domain first).
//
// It returns an error for an unknown unit.
func OverrideRule(domain string, entries []Entry, requestsPerUnit uint32, unit Unit) (*Rule, error) {
	period := UnitPeriod(unit)
	if period == 0 {
		return nil, fmt.Errorf("config: override limit: unit %d is not one of %s", int32(unit), unitList)
	}
	var path, stat strings.Builder
	path.WriteString(domain)
	stat.WriteString(domain)
	for _, e := range entries {
		path.WriteByte('.')
		path.WriteString(e.Key)
		stat.WriteByte('.')
		stat.WriteString(e.Key)
		if e.Value != "" {
			path.WriteByte('=')
			path.WriteString(e.Value)
			stat.WriteByte('_')
			stat.WriteString(e.Value)
		}
	}
	if len(entries) == 0 {
		stat.WriteByte('.') // the reference's domain + "." + ""
	}
	l := RuleLimit{RequestsPerUnit: requestsPerUnit, Unit: unit, UnitMultiplier: 1, Limit: algorithms.Limit{Algorithm: algorithms.FixedWindow, Rate: int64(requestsPerUnit), Period: period}}
	return &Rule{
		Domain:          domain,
		Path:            path.String(),
		StatKey:         stat.String(),
		RequestsPerUnit: requestsPerUnit,
		Unit:            unit,
		Limit:           l.Limit,
		Limits:          []RuleLimit{l},
	}, nil
}

// ShareThreshold reports whether a share_threshold wildcard at some level
// of the rule makes every matching value share one bucket.
func (r *Rule) ShareThreshold() bool {
	for _, p := range r.share {
		if p != "" {
			return true
		}
	}
	return false
}
