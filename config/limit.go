package config

// Parsing of one limit: the fields of a rate_limit mapping, or of an entry
// of a rate_limits list, beyond envoyproxy/ratelimit's unit and
// requests_per_unit: algorithm, burst, burst_multiplier, period,
// unit_multiplier, alignment, timezone, max_in_flight and lease.

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // calendar time zones must load in minimal containers too

	"go.yaml.in/yaml/v3"

	"github.com/ratelimitd/ratelimitd/algorithms"
)

// Bounds of the extension fields. maxPeriod keeps every instant the
// algorithms compute below 2^53 µs (see algorithms.MaxAmount).
const (
	maxPeriod     = 10 * 365 * algorithms.Day
	maxMultiplier = 1_000_000
)

// RuleLimit is one limit of a rule. A rule has one (rate_limit) or several
// (rate_limits, all of which must pass).
type RuleLimit struct {
	// Name is the limit's `name` (for rate_limit, the rule's), reported in
	// current_limit.
	Name string
	// RequestsPerUnit is the configured rate, per UnitMultiplier Units;
	// for concurrency, max_in_flight.
	RequestsPerUnit uint32
	// Unit and UnitMultiplier are the period in Envoy's terms: the unit
	// configured (or, for a bare period, the largest of second, minute,
	// hour and day that divides it) and the number of units in a period,
	// 1 unless period or unit_multiplier say otherwise. For concurrency
	// Unit is UnitUnknown.
	Unit           Unit
	UnitMultiplier uint32
	// Limit is the compiled limit; for a calendar-aligned limit, use At to
	// get the window of the moment.
	Limit algorithms.Limit
	// Calendar is the time zone of calendar alignment, nil for the default
	// epoch alignment.
	Calendar *time.Location
}

// At returns the limit to apply at now (microseconds since the epoch):
// Limit, with the calendar window containing now when the limit is
// calendar-aligned (the hour, day, week from Monday, month or year in the
// Calendar time zone). It does not allocate.
func (l *RuleLimit) At(now int64) algorithms.Limit {
	lim := l.Limit
	if l.Calendar == nil {
		return lim
	}
	start, end := calendarWindow(l.Unit, l.Calendar, now)
	if start <= now && now < end {
		lim.WindowStart, lim.WindowEnd = start, end
	}
	return lim
}

// calendarWindow is the local hour, day, week (from Monday), month or year
// containing now in loc, in microseconds. Days are 23 to 25 hours long
// across daylight-saving changes, months 28 to 31 days.
func calendarWindow(u Unit, loc *time.Location, now int64) (start, end int64) {
	t := time.UnixMicro(now).In(loc)
	y, m, d := t.Date()
	var s, e time.Time
	switch u {
	case Hour:
		// The local hour: the offset in force now tells where it starts,
		// also in the hour repeated when clocks go back.
		_, off := t.Zone()
		local := now + int64(off)*algorithms.Second
		st := now - (local - local/algorithms.Hour*algorithms.Hour)
		if local < 0 {
			st = now - (local - (local/algorithms.Hour-1)*algorithms.Hour)
		}
		return st, st + algorithms.Hour
	case Day:
		s, e = time.Date(y, m, d, 0, 0, 0, 0, loc), time.Date(y, m, d+1, 0, 0, 0, 0, loc)
	case Week:
		back := (int(t.Weekday()) + 6) % 7 // days since Monday
		s, e = time.Date(y, m, d-back, 0, 0, 0, 0, loc), time.Date(y, m, d-back+7, 0, 0, 0, 0, loc)
	case Month:
		s, e = time.Date(y, m, 1, 0, 0, 0, 0, loc), time.Date(y, m+1, 1, 0, 0, 0, 0, loc)
	case Year:
		s, e = time.Date(y, 1, 1, 0, 0, 0, 0, loc), time.Date(y+1, 1, 1, 0, 0, 0, 0, loc)
	default:
		return 0, 0
	}
	return s.UnixMicro(), e.UnixMicro()
}

// limitNodes are the YAML nodes of one limit mapping.
type limitNodes struct {
	unit, rpu, name                               *yaml.Node
	algorithm, burst, burstMultiplier, period     *yaml.Node
	unitMultiplier, alignment, timezone, inFlight *yaml.Node
	lease                                         *yaml.Node
}

// limitKeys lists the keys of a limit, for messages.
const limitKeys = "unit, requests_per_unit, name, algorithm, burst, burst_multiplier, period, unit_multiplier, alignment, timezone, max_in_flight, lease"

// set records the node of an extension key; false for a key it does not know.
func (n *limitNodes) set(k string, v *yaml.Node) bool {
	switch k {
	case "unit":
		n.unit = v
	case "requests_per_unit":
		n.rpu = v
	case "name":
		n.name = v
	case "algorithm":
		n.algorithm = v
	case "burst":
		n.burst = v
	case "burst_multiplier":
		n.burstMultiplier = v
	case "period":
		n.period = v
	case "unit_multiplier":
		n.unitMultiplier = v
	case "alignment":
		n.alignment = v
	case "timezone":
		n.timezone = v
	case "max_in_flight":
		n.inFlight = v
	case "lease":
		n.lease = v
	default:
		return false
	}
	return true
}

// extensions names the extension keys that are set, for unlimited rules.
func (n *limitNodes) extensions() []string {
	var s []string
	for _, f := range []struct {
		name string
		n    *yaml.Node
	}{
		{"algorithm", n.algorithm}, {"burst", n.burst}, {"burst_multiplier", n.burstMultiplier},
		{"period", n.period}, {"unit_multiplier", n.unitMultiplier}, {"alignment", n.alignment},
		{"timezone", n.timezone}, {"max_in_flight", n.inFlight}, {"lease", n.lease},
	} {
		if f.n != nil && !isNull(deref(f.n)) {
			s = append(s, f.name)
		}
	}
	return s
}

// limit validates and compiles the limit of nodes n, reporting every error
// at path; m is the mapping, for errors about missing keys.
func (fp *fileParser) limit(path string, m *yaml.Node, n *limitNodes) (RuleLimit, bool) {
	ok := true
	var l RuleLimit
	name, isStr := scalarString(n.name)
	if !isStr {
		fp.errorf(path, n.name, "name must be a string, found %s", kindName(n.name))
		ok = false
	}
	l.Name = name

	alg := algorithms.FixedWindow
	if text, isStr := scalarString(n.algorithm); !isStr {
		fp.errorf(path, n.algorithm, "algorithm must be a string, found %s", kindName(n.algorithm))
		return l, false
	} else if text != "" {
		a, known := algorithms.ParseAlgorithm(text)
		if !known {
			fp.errorf(path, n.algorithm, "algorithm %q is not one of fixed_window, sliding_window, token_bucket, gcra, concurrency", text)
			return l, false
		}
		alg = a
	}
	l.Limit.Algorithm = alg
	present := func(x *yaml.Node) bool { return x != nil && !isNull(deref(x)) }

	if alg == algorithms.Concurrency {
		for _, f := range []struct {
			key string
			n   *yaml.Node
		}{{"unit", n.unit}, {"requests_per_unit", n.rpu}, {"burst", n.burst}, {"burst_multiplier", n.burstMultiplier}, {"period", n.period}, {"unit_multiplier", n.unitMultiplier}, {"alignment", n.alignment}, {"timezone", n.timezone}} {
			if present(f.n) {
				fp.errorf(path, f.n, "%s does not apply to algorithm concurrency: it takes max_in_flight and lease", f.key)
				ok = false
			}
		}
		inFlight, inOK := fp.uint32Field(path, "max_in_flight", n.inFlight)
		switch {
		case !inOK:
			ok = false
		case inFlight == 0:
			fp.errorf(path, firstNonNil(n.inFlight, m), "algorithm concurrency needs max_in_flight greater than 0")
			ok = false
		}
		lease, leaseOK := fp.duration(path, "lease", n.lease)
		switch {
		case !leaseOK:
			ok = false
		case lease == 0:
			fp.errorf(path, firstNonNil(n.lease, m), "algorithm concurrency needs a lease (how long an acquisition lasts when its release is lost), such as 30m")
			ok = false
		}
		l.RequestsPerUnit = inFlight
		l.Limit.Rate, l.Limit.Period = int64(inFlight), lease
		return l, ok
	}
	for _, f := range []struct {
		key string
		n   *yaml.Node
	}{{"max_in_flight", n.inFlight}, {"lease", n.lease}} {
		if present(f.n) {
			fp.errorf(path, f.n, "%s applies only to algorithm concurrency", f.key)
			ok = false
		}
	}

	// The rate and its period.
	rpu, rpuOK := fp.uint32Field(path, "requests_per_unit", n.rpu)
	ok = ok && rpuOK
	if rpuOK && rpu == 0 && alg != algorithms.FixedWindow {
		fp.errorf(path, firstNonNil(n.rpu, m), "algorithm %s needs requests_per_unit greater than 0", alg)
		ok = false
	}
	l.RequestsPerUnit = rpu

	unitText, isStr := scalarString(n.unit)
	unit := UnitUnknown
	switch {
	case !isStr:
		fp.errorf(path, n.unit, "unit must be a string, found %s", kindName(n.unit))
		ok = false
	case unitText == "" && !present(n.period):
		fp.errorf(path, firstNonNil(n.unit, m), "unit is missing: want one of %s", unitList)
		ok = false
	case unitText != "":
		u, err := ParseUnit(unitText)
		if err != nil {
			fp.errorf(path, n.unit, "unit %q is not one of %s", unitText, unitList)
			ok = false
		}
		unit = u
	}
	mult := uint32(1)
	if present(n.unitMultiplier) {
		v, vOK := fp.uint32Field(path, "unit_multiplier", n.unitMultiplier)
		switch {
		case !vOK:
			ok = false
		case v == 0:
			fp.errorf(path, n.unitMultiplier, "unit_multiplier must be greater than 0")
			ok = false
		case present(n.period):
			fp.errorf(path, n.unitMultiplier, "set period or unit_multiplier, not both")
			ok = false
		default:
			mult = v
		}
	}
	period := UnitPeriod(unit) * int64(mult)
	if present(n.period) {
		p, pOK := fp.duration(path, "period", n.period)
		switch {
		case !pOK:
			ok = false
		case p == 0:
			fp.errorf(path, n.period, "period must be greater than 0")
			ok = false
		case p%algorithms.Second != 0:
			fp.errorf(path, n.period, "period %s is not a whole number of seconds (the smallest unit Envoy reports)", n.period.Value)
			ok = false
		case unit != UnitUnknown && p%UnitPeriod(unit) != 0:
			fp.errorf(path, n.period, "period %s is not a whole number of %ss: drop unit (the reported unit is then derived from the period) or pick a smaller one", n.period.Value, unit)
			ok = false
		default:
			if unit == UnitUnknown {
				for _, u := range []Unit{Day, Hour, Minute, Second} {
					if p%UnitPeriod(u) == 0 {
						unit = u
						break
					}
				}
			}
			if p/UnitPeriod(unit) > math.MaxUint32 {
				fp.errorf(path, n.period, "period %s is longer than %d years", n.period.Value, maxPeriod/(365*algorithms.Day))
				ok = false
			} else {
				mult = uint32(p / UnitPeriod(unit))
				period = p
			}
		}
	}
	if period > maxPeriod {
		fp.errorf(path, firstNonNil(n.period, n.unitMultiplier, n.unit), "the period is longer than %d years", maxPeriod/(365*algorithms.Day))
		ok = false
	}
	l.Unit, l.UnitMultiplier = unit, mult
	l.Limit.Rate, l.Limit.Period = int64(rpu), period

	// Burst.
	bursty := alg == algorithms.TokenBucket || alg == algorithms.GCRA
	switch {
	case present(n.burst) && present(n.burstMultiplier):
		fp.errorf(path, n.burstMultiplier, "set burst or burst_multiplier, not both")
		ok = false
	case (present(n.burst) || present(n.burstMultiplier)) && !bursty:
		fp.errorf(path, firstNonNil(n.burst, n.burstMultiplier), "burst applies only to algorithms token_bucket and gcra, not %s", alg)
		ok = false
	case present(n.burst):
		b, bOK := fp.int64Field(path, "burst", n.burst, algorithms.MaxAmount)
		if !bOK {
			ok = false
		}
		l.Limit.Burst = b
	case present(n.burstMultiplier):
		f, fOK := fp.positiveNumber(path, "burst_multiplier", n.burstMultiplier)
		switch {
		case !fOK:
			ok = false
		case f > maxMultiplier:
			fp.errorf(path, n.burstMultiplier, "burst_multiplier must be at most %d, found %s", maxMultiplier, n.burstMultiplier.Value)
			ok = false
		default:
			b := int64(math.Floor(float64(rpu) * f))
			switch {
			case rpuOK && rpu > 0 && b < 1:
				fp.errorf(path, n.burstMultiplier, "burst_multiplier %s gives a burst of 0 with requests_per_unit %d", n.burstMultiplier.Value, rpu)
				ok = false
			case b > algorithms.MaxAmount: // the bound of burst
				fp.errorf(path, n.burstMultiplier, "burst_multiplier %s gives a burst of %d with requests_per_unit %d, above the largest burst, %d", n.burstMultiplier.Value, b, rpu, algorithms.MaxAmount)
				ok = false
			}
			l.Limit.Burst = b
		}
	}

	// Alignment.
	align, isStr := scalarString(n.alignment)
	if !isStr {
		fp.errorf(path, n.alignment, "alignment must be a string, found %s", kindName(n.alignment))
		return l, false
	}
	zone, isStr := scalarString(n.timezone)
	if !isStr {
		fp.errorf(path, n.timezone, "timezone must be a string, found %s", kindName(n.timezone))
		return l, false
	}
	switch align {
	case "", "epoch":
		if zone != "" {
			fp.errorf(path, n.timezone, "timezone applies only with alignment: calendar")
			ok = false
		}
	case "calendar":
		switch {
		case alg != algorithms.FixedWindow && alg != algorithms.SlidingWindow:
			fp.errorf(path, n.alignment, "alignment: calendar applies only to algorithms fixed_window and sliding_window, not %s", alg)
			ok = false
		case present(n.period) || mult != 1 || (unit != Hour && unit != Day && unit != Week && unit != Month && unit != Year):
			fp.errorf(path, n.alignment, "alignment: calendar needs a unit of hour, day, week, month or year, without period or unit_multiplier")
			ok = false
		}
		loc := time.UTC
		if zone != "" {
			z, err := time.LoadLocation(zone)
			if err != nil || strings.EqualFold(zone, "local") {
				fp.errorf(path, n.timezone, "timezone %q is not a known IANA time zone (such as Europe/Paris or UTC)", zone)
				ok = false
			} else {
				loc = z
			}
		}
		l.Calendar = loc
	default:
		fp.errorf(path, n.alignment, "alignment %q is not one of epoch, calendar", align)
		ok = false
	}
	return l, ok
}

// duration reads an optional duration ("30s", "5m", "90m", "1h30m", or an
// integer of seconds) as microseconds; absent and null are 0.
func (fp *fileParser) duration(path, name string, n *yaml.Node) (int64, bool) {
	return fp.durationUpTo(path, name, n, maxPeriod, fmt.Sprintf("%d years", maxPeriod/(365*algorithms.Day)))
}

// durationUpTo is duration with a bound of hi microseconds, written
// hiText in messages.
func (fp *fileParser) durationUpTo(path, name string, n *yaml.Node, hi int64, hiText string) (int64, bool) {
	n = deref(n)
	if isNull(n) {
		return 0, true
	}
	if n.Kind == yaml.ScalarNode {
		if n.Tag == "!!int" {
			if s, err := strconv.ParseInt(n.Value, 10, 64); err == nil && s >= 0 && s <= hi/algorithms.Second {
				return s * algorithms.Second, true
			}
		} else if d, err := time.ParseDuration(n.Value); err == nil && d >= 0 && d.Microseconds() <= hi {
			if d%time.Microsecond != 0 {
				fp.errorf(path, n, "%s %s is not a whole number of microseconds", name, n.Value)
				return 0, false
			}
			return d.Microseconds(), true
		}
	}
	what := kindName(n)
	if n.Kind == yaml.ScalarNode {
		what = strconv.Quote(n.Value)
	}
	fp.errorf(path, n, "%s must be a duration such as 30s, 5m or 90m, at most %s, found %s", name, hiText, what)
	return 0, false
}

// int64Field reads a required integer from 1 to hi.
func (fp *fileParser) int64Field(path, name string, n *yaml.Node, hi int64) (int64, bool) {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		var v int64
		if n.Decode(&v) == nil && v >= 1 && v <= hi {
			return v, true
		}
	}
	what := kindName(n)
	if n.Kind == yaml.ScalarNode {
		what = strconv.Quote(n.Value)
	}
	fp.errorf(path, n, "%s must be an integer from 1 to %d, found %s", name, hi, what)
	return 0, false
}

// positiveNumber reads a number greater than 0.
func (fp *fileParser) positiveNumber(path, name string, n *yaml.Node) (float64, bool) {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && (n.Tag == "!!int" || n.Tag == "!!float") {
		var v float64
		if n.Decode(&v) == nil && v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) {
			return v, true
		}
	}
	what := kindName(n)
	if n.Kind == yaml.ScalarNode {
		what = strconv.Quote(n.Value)
	}
	fp.errorf(path, n, "%s must be a number greater than 0, found %s", name, what)
	return 0, false
}

// rateLimits parses a rate_limits list: several limits on one descriptor,
// all of which must pass. It returns nil when the list has errors.
func (fp *fileParser) rateLimits(path string, list *yaml.Node) *Rule {
	if list.Kind != yaml.SequenceNode {
		fp.errorf(path, list, "rate_limits must be a list of limits, found %s", kindName(list))
		return nil
	}
	if len(list.Content) == 0 {
		fp.errorf(path, list, "rate_limits is empty: give at least one limit")
		return nil
	}
	r := &Rule{}
	ok := true
	for i, item := range list.Content {
		item = deref(item)
		fp.entry = fmt.Sprintf("rate_limits[%d]: ", i)
		if item.Kind != yaml.MappingNode {
			fp.errorf(path, item, "must be a mapping with unit and requests_per_unit, found %s", kindName(item))
			ok = false
			continue
		}
		var ln limitNodes
		itemOK := true
		fp.fields(item, path, func(k string, key, v *yaml.Node) {
			if !ln.set(k, v) {
				fp.errorf(path, key, "unknown key %q (want %s; unlimited and replaces belong to a single rate_limit)", k, limitKeys)
				itemOK = false
			}
		})
		l, lOK := fp.limit(path, item, &ln)
		// A release (negative hits) is applied to every limit of the
		// list: it would refund the others.
		if l.Limit.Algorithm == algorithms.Concurrency && len(list.Content) > 1 {
			fp.errorf(path, firstNonNil(ln.algorithm, item), "concurrency cannot share a rate_limits list with other limits: give it its own descriptor")
			lOK = false
		}
		if !itemOK || !lOK {
			ok = false
			continue
		}
		r.Limits = append(r.Limits, l)
	}
	fp.entry = ""
	if !ok {
		return nil
	}
	r.setPrimary()
	return r
}

// setPrimary fills the rule's single-limit fields from Limits[0].
func (r *Rule) setPrimary() {
	l := &r.Limits[0]
	r.Name = l.Name
	r.RequestsPerUnit = l.RequestsPerUnit
	r.Unit = l.Unit
	r.Limit = l.Limit
}
