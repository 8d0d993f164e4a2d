package config

// Limits outside config files: scaled by a tier, compared with a ceiling,
// written and read by operators ("500/minute").

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"github.com/ratelimitd/ratelimitd/algorithms"
)

// ScaleLimit returns l with its rate and burst multiplied by m (a tier
// multiplier > 0): Limit.Rate and Limit.Burst rounded to nearest (halves
// away from zero), and at least 1 when the original was >= 1, so that a
// multiplier never makes a limit 0 or unlimited (a Burst of 0, which
// means Rate, stays 0). Both saturate at algorithms.MaxAmount.
// RequestsPerUnit is scaled the same way (saturating at MaxUint32) so that
// statuses report the effective limit. The algorithm, period and calendar
// are kept, so the scaled limit keeps its bucket (AppendLimitKeyFor).
//
// m == 1 returns l unchanged, and so do m <= 0 and NaN: a multiplier of 0
// blocks its tier, which the caller must do itself, before scaling. It
// does not allocate.
func ScaleLimit(l RuleLimit, m float64) RuleLimit {
	if m == 1 || !(m > 0) {
		return l
	}
	l.Limit.Rate = scaleAmount(l.Limit.Rate, m, algorithms.MaxAmount)
	l.Limit.Burst = scaleAmount(l.Limit.Burst, m, algorithms.MaxAmount)
	l.RequestsPerUnit = uint32(scaleAmount(int64(l.RequestsPerUnit), m, math.MaxUint32))
	return l
}

// scaleAmount is v × m rounded to nearest, from 1 (when v >= 1) to hi.
func scaleAmount(v int64, m float64, hi int64) int64 {
	if v < 1 {
		return v
	}
	f := math.Round(float64(v) * m)
	switch {
	case !(f < float64(hi)): // +Inf included
		return hi
	case f < 1:
		return 1
	}
	return int64(f)
}

// Above reports whether limit a allows more than limit b per unit of time:
// a.Limit.Rate/a.Limit.Period > b.Limit.Rate/b.Limit.Period, compared
// exactly by 128-bit cross-multiplication. When either is a concurrency
// limit it compares Rate (max_in_flight) alone. Burst, alignment and
// algorithm are not compared. Periods are taken to be > 0; negative
// values count as 0.
func Above(a, b *RuleLimit) bool {
	ar, br := max(a.Limit.Rate, 0), max(b.Limit.Rate, 0)
	if a.Limit.Algorithm == algorithms.Concurrency || b.Limit.Algorithm == algorithms.Concurrency {
		return ar > br
	}
	ap, bp := max(a.Limit.Period, 0), max(b.Limit.Period, 0)
	xh, xl := bits.Mul64(uint64(ar), uint64(bp))
	yh, yl := bits.Mul64(uint64(br), uint64(ap))
	return xh > yh || xh == yh && xl > yl
}

// ParseLimitSpec parses an operator's limit such as "500/minute",
// "500/min", "10/s", "1000/90m" or "50 concurrent" into a fixed_window
// RuleLimit (concurrency for "concurrent"; the caller sets another
// algorithm, and burst, itself): used by ratelimitctl and the admin API.
//
// The units are s, sec, second, m, min, minute, h, hour, d, day, week,
// month and year (case-insensitive), or a Go duration of whole seconds
// for several units: "1000/90m" is Rate 1000, Period 90m, Unit minute,
// UnitMultiplier 90, the same convention as `period:` in a config (the
// largest of day, hour, minute and second that divides the duration).
// The rate is an integer from 0 to 4294967295, as requests_per_unit.
//
// "N concurrent" is a concurrency limit of N > 0 in flight with Period
// (the lease) 0, for the caller to take from the limit it replaces; "N
// concurrent (lease 30m)", as String writes it, sets the lease.
//
// A malformed spec gives "config: limit \"x\": want <n>/<unit>, such as
// 500/minute"; a well-formed one out of bounds says which bound.
func ParseLimitSpec(s string) (RuleLimit, error) {
	bad := func(format string, args ...any) (RuleLimit, error) {
		return RuleLimit{}, fmt.Errorf("config: limit %q: %s", s, fmt.Sprintf(format, args...))
	}
	malformed := func() (RuleLimit, error) { return bad("want <n>/<unit>, such as 500/minute") }
	t := strings.TrimSpace(s)

	if num, rest, ok := strings.Cut(t, " "); ok && !strings.Contains(t, "/") {
		rest = strings.TrimSpace(rest)
		after, isConc := strings.CutPrefix(rest, "concurrent")
		if !isConc {
			return malformed()
		}
		n, err := strconv.ParseUint(num, 10, 32)
		if err != nil {
			return malformed()
		}
		if n == 0 {
			return bad("max_in_flight must be greater than 0")
		}
		l := RuleLimit{RequestsPerUnit: uint32(n), Limit: algorithms.Limit{Algorithm: algorithms.Concurrency, Rate: int64(n)}}
		after = strings.TrimSpace(after)
		if after == "" {
			return l, nil
		}
		inner, ok := strings.CutPrefix(after, "(")
		inner, ok2 := strings.CutSuffix(inner, ")")
		d, ok3 := strings.CutPrefix(strings.TrimSpace(inner), "lease ")
		if !ok || !ok2 || !ok3 {
			return malformed()
		}
		lease, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil || lease <= 0 || lease%time.Microsecond != 0 || lease.Microseconds() > maxPeriod {
			return bad("lease %s must be a duration greater than 0, such as 30m, at most %d years", strings.TrimSpace(d), maxPeriod/(365*algorithms.Day))
		}
		l.Limit.Period = lease.Microseconds()
		return l, nil
	}

	num, unitText, ok := strings.Cut(t, "/")
	if !ok {
		return malformed()
	}
	num, unitText = strings.TrimSpace(num), strings.TrimSpace(unitText)
	n, err := strconv.ParseUint(num, 10, 64)
	switch {
	case err != nil && num != "" && strings.Trim(num, "0123456789") == "":
		return bad("%s is not an integer from 0 to %d", num, uint32(math.MaxUint32))
	case err != nil:
		return malformed()
	case n > math.MaxUint32:
		return bad("%s is not an integer from 0 to %d", num, uint32(math.MaxUint32))
	}
	l := RuleLimit{RequestsPerUnit: uint32(n), UnitMultiplier: 1, Limit: algorithms.Limit{Rate: int64(n)}}
	unit := UnitUnknown
	switch strings.ToLower(unitText) {
	case "":
		return malformed()
	case "s", "sec":
		unit = Second
	case "m", "min":
		unit = Minute
	case "h":
		unit = Hour
	case "d":
		unit = Day
	default:
		if u, err := ParseUnit(unitText); err == nil {
			unit = u
		}
	}
	if unit != UnitUnknown {
		l.Unit, l.Limit.Period = unit, UnitPeriod(unit)
		return l, nil
	}
	d, err := time.ParseDuration(unitText)
	switch {
	case err != nil:
		return bad("unit %q is not one of s, sec, second, m, min, minute, h, hour, d, day, week, month, year, or a duration such as 90m", unitText)
	case d <= 0:
		return bad("period %s must be greater than 0", unitText)
	case d%time.Second != 0:
		return bad("period %s is not a whole number of seconds (the smallest unit Envoy reports)", unitText)
	case d.Microseconds() > maxPeriod:
		return bad("period %s is longer than %d years", unitText, maxPeriod/(365*algorithms.Day))
	}
	p := d.Microseconds()
	for _, u := range []Unit{Day, Hour, Minute, Second} {
		if p%UnitPeriod(u) == 0 {
			l.Unit, l.UnitMultiplier = u, uint32(p/UnitPeriod(u))
			break
		}
	}
	l.Limit.Period = p
	return l, nil
}

// String writes the limit for humans and error messages: "500 per
// minute", "1000 per 90 minutes", "50 concurrent (lease 30m)", with what
// else than a fixed window of the epoch in parentheses: "500 per minute
// (gcra, burst 50)", "1000 per day (calendar Europe/Paris)". The numbers
// are Limit.Rate and Limit.Period; Unit and UnitMultiplier name the
// period when they agree with it.
func (l RuleLimit) String() string {
	var b strings.Builder
	b.WriteString(strconv.FormatInt(l.Limit.Rate, 10))
	if l.Limit.Algorithm == algorithms.Concurrency {
		b.WriteString(" concurrent")
		if l.Limit.Period > 0 {
			b.WriteString(" (lease ")
			b.WriteString(shortDuration(l.Limit.Period))
			b.WriteByte(')')
		}
		return b.String()
	}
	b.WriteString(" per ")
	unit, mult := l.Unit, int64(max(l.UnitMultiplier, 1))
	if UnitPeriod(unit) == 0 || UnitPeriod(unit)*mult != l.Limit.Period {
		unit, mult = UnitUnknown, 0
		for _, u := range []Unit{Day, Hour, Minute, Second} {
			if p := l.Limit.Period; p > 0 && p%UnitPeriod(u) == 0 {
				unit, mult = u, p/UnitPeriod(u)
				break
			}
		}
	}
	switch {
	case unit == UnitUnknown:
		b.WriteString(shortDuration(l.Limit.Period))
	case mult == 1:
		b.WriteString(unit.String())
	default:
		b.WriteString(strconv.FormatInt(mult, 10))
		b.WriteByte(' ')
		b.WriteString(unit.String())
		b.WriteByte('s')
	}
	var extra []string
	if a := l.Limit.Algorithm; a != algorithms.FixedWindow {
		extra = append(extra, a.String())
	}
	if l.Limit.Burst > 0 {
		extra = append(extra, "burst "+strconv.FormatInt(l.Limit.Burst, 10))
	}
	if l.Calendar != nil {
		extra = append(extra, "calendar "+l.Calendar.String())
	}
	if len(extra) > 0 {
		b.WriteString(" (")
		b.WriteString(strings.Join(extra, ", "))
		b.WriteByte(')')
	}
	return b.String()
}

// shortDuration writes microseconds as a Go duration without trailing
// zero units: 30m, 1h, 1h30m, 90s is 1m30s.
func shortDuration(us int64) string {
	s := (time.Duration(us) * time.Microsecond).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
