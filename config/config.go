// Package config turns descriptor YAML (envoyproxy/ratelimit's format, plus
// ratelimitd's extensions) into a validated, immutable *Config, compiled once
// into a lookup tree so that matching a descriptor is a few map lookups.
//
// A *Config is safe for concurrent use; it never changes after Load/Parse.
// The *Rule values it hands out are shared and must not be modified.
package config

import (
	"fmt"
	"strings"

	"github.com/ratelimitd/ratelimitd/algorithms"
)

// Unit is a rate-limit unit. Its values are those of Envoy's
// RateLimitResponse.RateLimit.Unit so that the server can convert directly.
type Unit int32

const (
	UnitUnknown Unit = 0
	Second      Unit = 1
	Minute      Unit = 2
	Hour        Unit = 3
	Day         Unit = 4
	Month       Unit = 5
	Year        Unit = 6
	Week        Unit = 7
)

// unitList is "second, minute, hour, day, week, month, year".
const unitList = "second, minute, hour, day, week, month, year"

// String returns the unit's name as written in config files ("minute"),
// or "unknown".
func (u Unit) String() string {
	switch u {
	case Second:
		return "second"
	case Minute:
		return "minute"
	case Hour:
		return "hour"
	case Day:
		return "day"
	case Week:
		return "week"
	case Month:
		return "month"
	case Year:
		return "year"
	}
	return "unknown"
}

// ParseUnit returns the unit named s, case-insensitively ("minute",
// "MINUTE"). "unknown" and anything else is an error.
func ParseUnit(s string) (Unit, error) {
	for u := Second; u <= Week; u++ {
		if strings.EqualFold(u.String(), s) {
			return u, nil
		}
	}
	return UnitUnknown, fmt.Errorf("config: unit %q is not one of %s", s, unitList)
}

// UnitPeriod returns the length of one unit in microseconds, as
// envoyproxy/ratelimit counts it: a week is 7 days, a month 30 days and a
// year 365 days. It returns 0 for UnitUnknown and any other value.
func UnitPeriod(u Unit) int64 {
	switch u {
	case Second:
		return algorithms.Second
	case Minute:
		return algorithms.Minute
	case Hour:
		return algorithms.Hour
	case Day:
		return algorithms.Day
	case Week:
		return 7 * algorithms.Day
	case Month:
		return 30 * algorithms.Day
	case Year:
		return 365 * algorithms.Day
	}
	return 0
}

// Entry is one key/value pair of a request descriptor.
type Entry struct {
	Key, Value string
}

// File is one config document to parse; Name is used in error messages.
type File struct {
	Name string
	Data []byte
}

// Options change how files are loaded.
type Options struct {
	// MergeDomains lets several files declare the same domain; their
	// descriptors are merged (a duplicate descriptor is then an error).
	// Without it a second file with the same domain is an error, as in
	// envoyproxy/ratelimit.
	MergeDomains bool
	// TrailingWildcardsOnly matches values as envoyproxy/ratelimit does: a
	// `*` is a wildcard only at the end of a value (a prefix match), and a
	// `*` anywhere else is a literal character. By default a `*` anywhere
	// in a value matches any run of characters.
	TrailingWildcardsOnly bool
}

// Level is one descriptor level of a rule's path, as written in the
// config: Value is "" for a key-only (default) level, and a pattern with
// `*` for a wildcard level.
type Level struct {
	Key, Value string
}

// Rule is one compiled rate_limit of the config, or of a descriptor's
// `limit` override (see OverrideRule). Rules are shared by every request
// that matches them: treat them as read-only.
type Rule struct {
	// Domain is the rule's domain.
	Domain string
	// Path is the rule's place in the config, "domain.key=value.key",
	// as used in error messages and by ratelimitd -validate.
	Path string
	// StatKey is envoyproxy/ratelimit's key for the rule,
	// "domain.key_value.key": bounded by the config, fit for metric labels.
	// Wildcard levels keep their pattern ("domain.path_/api/*").
	StatKey string
	// Name is the rule's `name`, reported in current_limit (for a
	// rate_limits list, the first limit's).
	Name string
	// Unlimited rules never touch the backend. Their Unit is UnitUnknown,
	// their RequestsPerUnit 0 and their Limit the zero Limit.
	Unlimited bool
	// RequestsPerUnit and Unit as configured (for a rate_limits list, the
	// first limit's; see Limits).
	RequestsPerUnit uint32
	Unit            Unit
	// ShadowMode rules are counted but always answer OK.
	ShadowMode bool
	// QuotaMode rules are counted; over the limit they answer OK and the
	// violation is reported in the response's dynamic metadata.
	QuotaMode bool
	// DetailedMetric asks for metrics per descriptor value. ratelimitd never
	// puts raw values in metric labels; the flag is kept for the server to
	// decide what it can honour.
	DetailedMetric bool
	// ValueToMetric is set when a descriptor on the rule's path (the
	// rule's own or a parent) has value_to_metric, which asks for runtime
	// values in metric names (same caveat as DetailedMetric).
	ValueToMetric bool
	// Replaces lists the names of rules this rule replaces.
	Replaces []string
	// Metadata is the descriptor's `metadata` mapping, converted to plain
	// Go values (map[string]any, []any, string, int64, float64, bool, nil)
	// ready for structpb. Nil when absent.
	Metadata map[string]any
	// Limit is the compiled limit the backend applies: Limits[0].Limit.
	Limit algorithms.Limit
	// Limits are every limit of the rule, all of which must pass: one for
	// a rate_limit (or a `limit` override), one per entry of a
	// rate_limits list, in config order. Empty for unlimited rules. Each
	// is one bucket, keyed by AppendLimitKey.
	Limits []RuleLimit
	// HashTag is the key of the descriptor entry whose value tags the
	// rule's bucket keys for Redis Cluster (see AppendLimitKey): the
	// hash_tag in force at the rule's descriptor, when the rule's path has
	// an entry with that key. "" when the keys carry no tag, as for
	// override rules.
	HashTag string
	// File and Line locate the descriptor in its config file; empty and 0
	// for override rules.
	File string
	Line int
	// Levels are the descriptor levels of the rule's path, from the top:
	// the key and value of each, as written in the config. Nil for
	// override rules.
	Levels []Level
	// Policy and Meter name the entry of the domain's policies that the
	// rule's Limits come from (`policy:` and `meter:`, whose default is
	// "requests"); both "" when the rule has its own rate_limit or
	// rate_limits. Limits, Limit and the other single-limit fields hold
	// the policy's limits either way.
	Policy, Meter string
	// MaxOverride is the ceiling of a runtime override of the rule
	// (`max_override`): an override whose limit is Above it is refused.
	// A fixed_window RuleLimit at least the rule's first limit (see
	// Above); nil when the rule has none.
	MaxOverride *RuleLimit
	// ChargeAlways rules count their hits even when they are over the
	// limit (`charge_always`): the hits are usage that already happened,
	// such as the tokens of an LLM response reported at the end of the
	// stream. The answer is still OVER_LIMIT when the limit is passed.
	ChargeAlways bool

	// share holds, per descriptor level, the share_threshold wildcard
	// pattern that replaces the value in the bucket key, or "".
	// Nil when no level shares.
	share []string
	// tag is 1 + the index of the HashTag entry among the rule's levels,
	// 0 for none.
	tag int
}
