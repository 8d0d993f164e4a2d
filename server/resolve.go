package server

// What a matched rule allows for one descriptor: its own limits, or a
// runtime override's, or a policy's, scaled by the caller's tier. The
// order, and why:
//
//  1. A tier multiplier of 0 blocks the descriptor, whatever else applies.
//  2. An override (overrides.Set.Lookup: the most specific one whose
//     entries the descriptor has) replaces the rule's limits. A limit
//     override is an operator's exact number for a key and is not scaled
//     by the tier; it is capped by the rule's max_override (the admin API
//     refuses higher values, and a config reload may lower the ceiling
//     later). An unlimited override lifts the limit, or, under a
//     max_override, sets it to the ceiling. A policy override takes the
//     policy's limits for the rule's meter.
//  3. The rule's own limits otherwise (a policy rule's are its policy's).
//  4. Config-defined limits (the rule's, a policy's) are scaled by the
//     tier multiplier: rate and burst.

import (
	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/config"
	"github.com/ratelimitd/ratelimitd/overrides"
)

// resolution is what resolve decides for one descriptor.
type resolution uint8

const (
	resCounted   resolution = iota // limits to decide
	resUnlimited                   // not limited
	resBlocked                     // tier multiplier 0: refused without a backend call
)

// resolve appends to dst the effective limits of rule r for a descriptor
// whose tier multiplier is mult and to which override o (nil for none)
// applies, in domain d (nil when the domain has no settings). It returns
// dst and what to do. It allocates nothing when dst has room.
func resolve(dst []config.RuleLimit, r *config.Rule, o *overrides.Override, d *config.Domain, mult float64) ([]config.RuleLimit, resolution) {
	if mult == 0 {
		return dst, resBlocked
	}
	if o != nil {
		switch o.Kind {
		case overrides.Unlimited:
			if r.MaxOverride == nil {
				return dst, resUnlimited
			}
			return append(dst, ceilingLimit(r, *r.MaxOverride)), resCounted
		case overrides.Limit:
			l := overrideLimit(r, o)
			if r.MaxOverride != nil && config.Above(&l, r.MaxOverride) {
				l = ceilingLimit(r, *r.MaxOverride)
			}
			return append(dst, l), resCounted
		case overrides.Policy:
			if d != nil {
				if p := d.Policies[o.Policy]; p != nil {
					if ls := p.Meters[meterOf(r)]; len(ls) > 0 {
						return appendScaled(dst, ls, mult), resCounted
					}
				}
			}
			// The policy is gone from the config (or lacks the rule's
			// meter): the rule's own limits apply.
		}
	}
	if r.Unlimited {
		return dst, resUnlimited
	}
	return appendScaled(dst, r.Limits, mult), resCounted
}

func appendScaled(dst, ls []config.RuleLimit, mult float64) []config.RuleLimit {
	for i := range ls {
		dst = append(dst, config.ScaleLimit(ls[i], mult))
	}
	return dst
}

// meterOf is the rule's policy meter, "requests" by default.
func meterOf(r *config.Rule) string {
	if r.Meter != "" {
		return r.Meter
	}
	return "requests"
}

// baseLimit is the limit an override stands in for: the rule's first, or
// for an unlimited rule a fixed window.
func baseLimit(r *config.Rule) config.RuleLimit {
	if len(r.Limits) > 0 {
		return r.Limits[0]
	}
	return config.RuleLimit{Name: r.Name}
}

// overrideLimit is the limit of override o (kind Limit) on rule r: o's rate
// and period, o's algorithm or the rule's, o's burst or the rule's. On a
// concurrency rule the rate is max_in_flight and the lease stays the
// rule's.
func overrideLimit(r *config.Rule, o *overrides.Override) config.RuleLimit {
	base := baseLimit(r)
	l := overrideRate(o)
	l.Name = base.Name
	if _, ok := algorithms.ParseAlgorithm(o.Algorithm); !ok {
		l.Limit.Algorithm = base.Limit.Algorithm
	}
	if o.Burst <= 0 {
		l.Limit.Burst = base.Limit.Burst
	}
	if l.Limit.Algorithm == algorithms.Concurrency {
		l.Unit, l.UnitMultiplier = config.UnitUnknown, 0
		if base.Limit.Algorithm == algorithms.Concurrency && base.Limit.Period != 0 {
			l.Limit.Period = base.Limit.Period
		}
	} else if base.Calendar != nil && base.Unit == l.Unit && base.UnitMultiplier == l.UnitMultiplier {
		l.Calendar = base.Calendar
	}
	return l
}

// overrideRate is override o's own limit (kind Limit), without what it
// takes from a rule: its rate and period, its algorithm when it names one,
// its burst.
func overrideRate(o *overrides.Override) config.RuleLimit {
	um := max(o.UnitMultiplier, 1)
	l := config.RuleLimit{RequestsPerUnit: o.RequestsPerUnit, Unit: o.Unit, UnitMultiplier: um,
		Limit: algorithms.Limit{Rate: int64(o.RequestsPerUnit), Period: config.UnitPeriod(o.Unit) * int64(um), Burst: o.Burst}}
	if a, ok := algorithms.ParseAlgorithm(o.Algorithm); ok {
		l.Limit.Algorithm = a
		if a == algorithms.Concurrency {
			l.Unit, l.UnitMultiplier = config.UnitUnknown, 0
		}
	}
	return l
}

// ceilingLimit is the rule's max_override as a limit with the rule's
// algorithm and burst.
func ceilingLimit(r *config.Rule, ceil config.RuleLimit) config.RuleLimit {
	base := baseLimit(r)
	l := ceil
	l.Name = base.Name
	l.Limit.Algorithm = base.Limit.Algorithm
	l.Limit.Burst = base.Limit.Burst
	if base.Limit.Algorithm == algorithms.Concurrency {
		l.Limit.Period = base.Limit.Period
		l.Unit, l.UnitMultiplier = config.UnitUnknown, 0
	}
	return l
}
