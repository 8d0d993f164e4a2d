package server

// What the proxy returns to the client: the rate-limit headers added to
// answers (response_headers_to_add) and the raw_body of OVER_LIMIT answers.
// Both describe one limit, the most restrictive of the call (a limitView);
// docs/responses.md shows every style and body with examples.
//
// The headers run on every answer when enabled, so they are built with
// strconv appends into a few exact-size allocations; the bodies, built only
// on refusals, go through encoding/json with structs for a fixed field
// order.

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/config"
)

// HeaderStyle says which rate-limit headers the server adds to answers.
type HeaderStyle uint8

const (
	// HeadersOff adds no headers.
	HeadersOff HeaderStyle = iota
	// HeadersReference adds envoyproxy/ratelimit's three headers, named by
	// responseOptions.HeaderLimit, HeaderRemaining and HeaderReset
	// (RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset by default):
	// the limit, the remaining budget and the seconds until reset. No
	// Retry-After, so that it is a drop-in.
	HeadersReference
	// HeadersDraft03 adds X-RateLimit-Limit, X-RateLimit-Remaining and
	// X-RateLimit-Reset (seconds until reset or, with ResetUnix, the Unix
	// time of the reset in seconds), plus Retry-After on OVER_LIMIT.
	HeadersDraft03
	// HeadersIETF adds the structured fields of the IETF httpapi draft
	// (draft-ietf-httpapi-ratelimit-headers): RateLimit-Policy and
	// RateLimit, plus Retry-After on OVER_LIMIT.
	HeadersIETF
	// HeadersBoth adds the HeadersDraft03 and the HeadersIETF headers, with
	// one Retry-After.
	HeadersBoth
)

var headerStyleNames = [...]string{"off", "reference", "draft03", "ietf", "both"}

// String returns the style's name as ParseHeaderStyle reads it, or
// "unknown".
func (h HeaderStyle) String() string {
	if int(h) < len(headerStyleNames) {
		return headerStyleNames[h]
	}
	return "unknown"
}

// ParseHeaderStyle returns the style named s ("off", "reference",
// "draft03", "ietf" or "both"), case-insensitively.
func ParseHeaderStyle(s string) (HeaderStyle, error) {
	for i, n := range headerStyleNames {
		if strings.EqualFold(n, s) {
			return HeaderStyle(i), nil
		}
	}
	return HeadersOff, fmt.Errorf("server: header style %q is not one of %s", s, strings.Join(headerStyleNames[:], ", "))
}

// BodyFormat is the raw_body of OVER_LIMIT answers.
type BodyFormat uint8

const (
	// BodyOff sends no body: Envoy answers its own (empty by default).
	BodyOff BodyFormat = iota
	// BodyProblemJSON sends an RFC 9457 problem, application/problem+json.
	BodyProblemJSON
	// BodyJSON sends {"error": {...}}, application/json, in the shape
	// most API clients already parse.
	BodyJSON
)

var bodyFormatNames = [...]string{"off", "problem+json", "json"}

// String returns the format's name as ParseBodyFormat reads it, or
// "unknown".
func (b BodyFormat) String() string {
	if int(b) < len(bodyFormatNames) {
		return bodyFormatNames[b]
	}
	return "unknown"
}

// ParseBodyFormat returns the format named s ("off", "problem+json" or
// "json"), case-insensitively.
func ParseBodyFormat(s string) (BodyFormat, error) {
	for i, n := range bodyFormatNames {
		if strings.EqualFold(n, s) {
			return BodyFormat(i), nil
		}
	}
	return BodyOff, fmt.Errorf("server: body format %q is not one of %s", s, strings.Join(bodyFormatNames[:], ", "))
}

// DefaultProblemType is the "type" of problem+json bodies when
// responseOptions.ProblemType is empty: the section of docs/responses.md
// that describes them.
const DefaultProblemType = "https://github.com/ratelimitd/ratelimitd/blob/main/docs/responses.md#rate-limit-exceeded"

// Header names and values of the draft03 and ietf styles.
const (
	hdrXLimit        = "X-RateLimit-Limit"
	hdrXRemaining    = "X-RateLimit-Remaining"
	hdrXReset        = "X-RateLimit-Reset"
	hdrPolicy        = "RateLimit-Policy"
	hdrRateLimit     = "RateLimit"
	hdrRetryAfter    = "Retry-After"
	ctypeProblemJSON = "application/problem+json"
	ctypeJSON        = "application/json"
	problemTitle     = "Rate limit exceeded"
)

// limitView is what the headers and body describe: the most restrictive
// descriptor's effective limit and decision.
type limitView struct {
	// Policy names the limit in headers and body: the rule's name, else
	// its StatKey-derived name.
	Policy string
	// Limit is the effective limit (tier-scaled, override applied). The
	// quota is Limit.Limit.Rate, per window Limit.Limit.Period; Unit and
	// UnitMultiplier name the period in the bodies' text.
	Limit config.RuleLimit
	// Decision is the bucket's: Remaining, ResetAfter (µs) and RetryAfter
	// (µs, -1 never).
	Decision algorithms.Decision
	// Over reports that the answer is OVER_LIMIT.
	Over bool
}

// responseOptions say which headers and body answers carry.
type responseOptions struct {
	Style HeaderStyle
	// ResetUnix makes X-RateLimit-Reset the Unix time of the reset, in
	// seconds, rather than the seconds until it.
	ResetUnix bool
	Body      BodyFormat
	// ProblemType is the "type" of problem+json bodies; empty means
	// DefaultProblemType.
	ProblemType string
	// Names of the HeadersReference headers; empty means DefaultHeaderLimit,
	// DefaultHeaderRemaining, DefaultHeaderReset.
	HeaderLimit, HeaderRemaining, HeaderReset string
}

// appendClientHeaders appends the headers of v, in style o.Style, to dst and
// returns it; now is the instant of the answer, for ResetUnix. Retry-After
// (whole seconds, rounded up, at least 1) comes on Over answers in the
// draft03, ietf and both styles: v.Decision.RetryAfter, or, when that is
// unknown (-1: these hits never fit; 0), the time until reset; omitted when
// neither is known. On an Over answer the ietf t parameter is the
// Retry-After value, so that Retry-After is never earlier than the end of
// the effective window (draft-ietf-httpapi-ratelimit-headers §6). Odd input
// (negative Remaining, zero or negative times) never panics: negative
// amounts and durations count as 0.
func appendClientHeaders(dst []*corev3.HeaderValue, o *responseOptions, v *limitView, now time.Time) []*corev3.HeaderValue {
	n := 0
	switch o.Style {
	case HeadersReference, HeadersDraft03:
		n = 3
	case HeadersIETF:
		n = 2
	case HeadersBoth:
		n = 5
	default:
		return dst
	}
	retry := int64(0)
	if v.Over && o.Style != HeadersReference {
		retry = retryAfterSeconds(&v.Decision)
		if retry > 0 {
			n++
		}
	}
	hv := make([]corev3.HeaderValue, n)
	i := 0
	add := func(k, val string) {
		hv[i].Key, hv[i].Value = k, val
		dst = append(dst, &hv[i])
		i++
	}

	q := quotaOf(&v.Limit)
	rem := max(v.Decision.Remaining, 0)
	reset := ceilSeconds(v.Decision.ResetAfter)
	switch o.Style {
	case HeadersReference:
		// As envoyproxy/ratelimit: current_limit.requests_per_unit,
		// limit_remaining and duration_until_reset, in decimal.
		add(orDefault(o.HeaderLimit, DefaultHeaderLimit), strconv.FormatInt(q, 10))
		add(orDefault(o.HeaderRemaining, DefaultHeaderRemaining), strconv.FormatInt(min(rem, math.MaxUint32), 10))
		add(orDefault(o.HeaderReset, DefaultHeaderReset), strconv.FormatInt(reset, 10))
		return dst
	case HeadersDraft03, HeadersBoth:
		add(hdrXLimit, strconv.FormatInt(q, 10))
		add(hdrXRemaining, strconv.FormatInt(rem, 10))
		if o.ResetUnix {
			add(hdrXReset, strconv.FormatInt(unixSecondsUp(now, v.Decision.ResetAfter), 10))
		} else {
			add(hdrXReset, strconv.FormatInt(reset, 10))
		}
	}
	if o.Style == HeadersIETF || o.Style == HeadersBoth {
		conc := v.Limit.Limit.Algorithm == algorithms.Concurrency
		// One buffer for both fields: the name is quoted once.
		buf := make([]byte, 0, 2*len(v.Policy)+64)
		buf = appendSFString(buf, v.Policy)
		nameEnd := len(buf)
		buf = append(buf, ";q="...)
		buf = strconv.AppendInt(buf, q, 10)
		if conc {
			buf = append(buf, `;qu="concurrent-requests"`...)
		} else if w := ceilSeconds(windowOf(&v.Limit)); w > 0 {
			buf = append(buf, ";w="...)
			buf = strconv.AppendInt(buf, w, 10)
		}
		policy := string(buf)
		buf = append(buf[:0], policy[:nameEnd]...)
		buf = append(buf, ";r="...)
		buf = strconv.AppendInt(buf, rem, 10)
		// t: the seconds within which the client can use no more than r.
		// Refused: until the retry. A concurrency slot frees when a
		// request ends, not on a timer: no t while allowed.
		switch {
		case retry > 0:
			buf = append(buf, ";t="...)
			buf = strconv.AppendInt(buf, retry, 10)
		case !conc:
			buf = append(buf, ";t="...)
			buf = strconv.AppendInt(buf, reset, 10)
		}
		add(hdrPolicy, policy)
		add(hdrRateLimit, string(buf))
	}
	if retry > 0 {
		add(hdrRetryAfter, strconv.FormatInt(retry, 10))
	}
	return dst
}

// overLimitBody returns the raw_body of an OVER_LIMIT answer describing v
// and the value of its content-type header; nil and "" for BodyOff (or an
// unknown format).
func overLimitBody(o *responseOptions, v *limitView) (body []byte, contentType string) {
	var err error
	switch o.Body {
	case BodyProblemJSON:
		p := problemBody{
			Type:             orDefault(o.ProblemType, DefaultProblemType),
			Title:            problemTitle,
			Status:           429,
			Detail:           detailText(&v.Limit),
			Policy:           v.Policy,
			ViolatedPolicies: []string{v.Policy},
			RetryAfter:       retryAfterSeconds(&v.Decision),
		}
		body, err = json.Marshal(&p)
		contentType = ctypeProblemJSON
	case BodyJSON:
		e := errorBody{Error: errorDetail{
			Message:    detailText(&v.Limit),
			Type:       "rate_limit_error",
			Code:       "rate_limit_exceeded",
			RetryAfter: retryAfterSeconds(&v.Decision),
		}}
		body, err = json.Marshal(&e)
		contentType = ctypeJSON
	default:
		return nil, ""
	}
	if err != nil {
		// Strings and integers always encode (invalid UTF-8 becomes
		// U+FFFD); this is not reached.
		return nil, ""
	}
	return body, contentType
}

// problemBody is an RFC 9457 problem. violated-policies is the extension
// member of the draft's quota-exceeded problem type, so that ProblemType
// may be set to https://iana.org/assignments/http-problem-types#quota-exceeded.
type problemBody struct {
	Type             string   `json:"type"`
	Title            string   `json:"title"`
	Status           int      `json:"status"`
	Detail           string   `json:"detail"`
	Policy           string   `json:"policy"`
	ViolatedPolicies []string `json:"violated-policies"`
	RetryAfter       int64    `json:"retry_after,omitempty"`
}

// errorBody is the BodyJSON body.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message    string `json:"message"`
	Type       string `json:"type"`
	Code       string `json:"code"`
	RetryAfter int64  `json:"retry_after,omitempty"`
}

// quotaOf is the number of hits l allows per window (in flight for
// concurrency): the enforced rate, Limit.Rate, which for a multi-unit
// period (period: 90m, unit_multiplier) is already per whole period, and
// which a tier multiplier may take beyond RequestsPerUnit's uint32.
func quotaOf(l *config.RuleLimit) int64 {
	return max(l.Limit.Rate, 0)
}

// windowOf is the window of l in microseconds, 0 when it has none
// (concurrency) or it is unknown: the calendar window of the moment when
// the limit carries one, else the period, else Unit × UnitMultiplier.
func windowOf(l *config.RuleLimit) int64 {
	lim := &l.Limit
	switch {
	case lim.Algorithm == algorithms.Concurrency:
		return 0
	case lim.WindowEnd > lim.WindowStart:
		return lim.WindowEnd - lim.WindowStart
	case lim.Period > 0:
		return lim.Period
	}
	return config.UnitPeriod(l.Unit) * int64(max(l.UnitMultiplier, 1))
}

// unitNames are the units of the detail text, largest first, with their
// lengths in seconds.
var unitNames = [...]struct {
	name string
	secs int64
}{{"day", 86400}, {"hour", 3600}, {"minute", 60}, {"second", 1}}

// detailText is the human-readable text of the bodies: "Rate limit
// exceeded: 500 per 1 minute", "... 1000 per 90 minutes", "... 50
// concurrent requests". The period is said in the configured unit (as
// Envoy's current_limit reports it), else in the largest of day, hour,
// minute, second that divides it.
func detailText(l *config.RuleLimit) string {
	b := make([]byte, 0, 64)
	b = append(b, problemTitle...)
	q := quotaOf(l)
	if l.Limit.Algorithm == algorithms.Concurrency {
		b = append(b, ": "...)
		b = strconv.AppendInt(b, q, 10)
		b = append(b, " concurrent requests"...)
		return string(b)
	}
	var count int64
	var unit string
	mult := int64(max(l.UnitMultiplier, 1))
	if u := l.Unit.String(); u != "unknown" && (l.Limit.Period == 0 || l.Limit.Period == config.UnitPeriod(l.Unit)*mult) {
		count, unit = mult, u
	} else if w := ceilSeconds(windowOf(l)); w > 0 {
		for _, un := range unitNames {
			if w%un.secs == 0 {
				count, unit = w/un.secs, un.name
				break
			}
		}
	}
	if unit == "" {
		return string(b) // no window known: the title alone
	}
	b = append(b, ": "...)
	b = strconv.AppendInt(b, q, 10)
	b = append(b, " per "...)
	b = strconv.AppendInt(b, count, 10)
	b = append(b, ' ')
	b = append(b, unit...)
	if count != 1 {
		b = append(b, 's')
	}
	return string(b)
}

// retryAfterSeconds is the Retry-After of a refusal in whole seconds,
// rounded up and at least 1: d.RetryAfter when known (> 0), else the time
// until reset; 0 when neither is known.
func retryAfterSeconds(d *algorithms.Decision) int64 {
	switch {
	case d.RetryAfter > 0:
		return max(ceilSeconds(d.RetryAfter), 1)
	case d.ResetAfter > 0:
		return max(ceilSeconds(d.ResetAfter), 1)
	}
	return 0
}

// unixSecondsUp is the Unix time, in seconds rounded up, of now plus after
// microseconds (after <= 0 counts as 0). It saturates instead of
// overflowing.
func unixSecondsUp(now time.Time, after int64) int64 {
	after = max(after, 0)
	sec := now.Unix()                      // floor: Nanosecond is never negative
	frac := int64(now.Nanosecond()) / 1000 // [0, 1e6)
	d := math.MaxInt64/algorithms.Second + 1
	if after <= math.MaxInt64-frac {
		d = ceilSeconds(frac + after)
	}
	if sec > 0 && d > math.MaxInt64-sec {
		return math.MaxInt64
	}
	return sec + d
}

// appendSFString appends s to dst as an RFC 8941 sf-string: quoted, with "
// and \ escaped. Bytes an sf-string cannot hold (controls, DEL, non-ASCII)
// are replaced by '?', one per UTF-8 sequence.
func appendSFString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c >= 0x20 && c < 0x7f:
			dst = append(dst, c)
		case c >= utf8.RuneSelf:
			_, size := utf8.DecodeRuneInString(s[i:])
			dst = append(dst, '?')
			i += size
			continue
		default:
			dst = append(dst, '?')
		}
		i++
	}
	return append(dst, '"')
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
