// Package config turns descriptor YAML (envoyproxy/ratelimit's format, plus
// ratelimitd's extensions) into a validated, immutable *Config, compiled once
// into a lookup tree so that matching a descriptor is a few map lookups.
//
// A *Config is safe for concurrent use; it never changes after Load/Parse.
package config

import (
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
}

// Rule is one compiled rate_limit of the config.
type Rule struct {
	// Domain is the rule's domain.
	Domain string
	// Path is the rule's place in the config, "domain.key=value.key",
	// as used in error messages and by ratelimitd -validate.
	Path string
	// StatKey is envoyproxy/ratelimit's key for the rule,
	// "domain.key_value.key": bounded by the config, fit for metric labels.
	StatKey string
	// Name is the rule's `name`, reported in current_limit.
	Name string
	// Unlimited rules never touch the backend.
	Unlimited bool
	// RequestsPerUnit and Unit as configured.
	RequestsPerUnit uint32
	Unit            Unit
	ShadowMode      bool
	QuotaMode       bool
	DetailedMetric  bool
	// Replaces lists the names of rules this rule replaces.
	Replaces []string
	// Limit is the compiled limit the backend applies.
	Limit algorithms.Limit
}
