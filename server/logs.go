package server

// Logs. Besides start-up and shutdown lines (cmd/ratelimitd) and the admin
// API's audit lines ("admin change"), the server logs three kinds of
// events, two of which come in floods that must not fill a disk:
//
//   - config loads, one line each ("rate limit config loaded" or "rate
//     limit config load failed"), with what changed against the config in
//     use: rare, never sampled;
//   - refusals ("rate limit exceeded", one per refused descriptor);
//   - backend failures ("rate limit request failed", "idempotency: answer
//     not stored").
//
// Refusals and failures are as frequent as the traffic, so each kind goes
// through a sampler of its own, a token bucket of lines: at most logBurst
// lines at once and logRate per second after that. The lines dropped
// meanwhile are counted, and the count is written as "suppressed" with the
// next line that passes.
//
// A refusal line names the domain, the rule (its metric label), the
// descriptor's entry keys and the limit, never the entry values: they come
// from clients (API keys, addresses, paths). At debug level the values are
// added, for the operator who asked for them.
//
// The samplers take the instant as an argument (the call's decision
// instant), so tests step through fixed instants.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ratelimitd/ratelimitd/config"
)

// Sampling of refusal and failure lines, each kind on its own.
const (
	logRate  = 10 // lines per second, sustained
	logBurst = 20 // lines at once, after a quiet spell
)

// maxListed bounds the names a config load line lists per kind of change.
const maxListed = 20

// sampler is a token bucket of log lines: it holds up to burst tokens,
// gains rate tokens per second, and a line takes one. The zero value is
// not usable; create it with newSampler. It is safe for concurrent use.
type sampler struct {
	rate, burst float64

	mu         sync.Mutex
	tokens     float64
	last       time.Time // zero: never used
	suppressed int64     // lines refused since the last one allowed
}

func newSampler(rate, burst float64) *sampler {
	return &sampler{rate: rate, burst: burst}
}

// allow reports whether a line may be written at now. When it may, it also
// returns the number of lines refused since the last one allowed, and
// starts counting again from 0. An instant before the last one seen adds
// no tokens.
func (s *sampler) allow(now time.Time) (ok bool, suppressed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.last.IsZero():
		s.tokens, s.last = s.burst, now
	case now.After(s.last):
		s.tokens = min(s.burst, s.tokens+now.Sub(s.last).Seconds()*s.rate)
		s.last = now
	}
	if s.tokens < 1 {
		s.suppressed++
		return false, 0
	}
	s.tokens--
	suppressed, s.suppressed = s.suppressed, 0
	return true, suppressed
}

// logSamplers are the server's samplers, one per kind of line.
type logSamplers struct {
	refusals, failures *sampler
}

func newLogSamplers() logSamplers {
	return logSamplers{refusals: newSampler(logRate, logBurst), failures: newSampler(logRate, logBurst)}
}

// logRefusal logs a refused descriptor of domain, sampled: rule is its
// metric label, code how it was answered (over_limit, shadow_mode,
// quota_mode), ents the descriptor's entries and lim the limit that
// refused. now is the call's instant in microseconds.
func (s *Server) logRefusal(now int64, domain, rule, code string, ents []config.Entry, lim *config.RuleLimit) {
	ctx := context.Background()
	if !s.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	ok, suppressed := s.logs.refusals.allow(time.UnixMicro(now))
	if !ok {
		return
	}
	keys := make([]string, len(ents))
	for i, e := range ents {
		keys[i] = e.Key
	}
	attrs := []slog.Attr{
		slog.String("domain", domain),
		slog.String("rule", rule),
		slog.String("code", code),
		slog.String("keys", strings.Join(keys, ",")),
		slog.String("limit", lim.String()),
	}
	if s.log.Enabled(ctx, slog.LevelDebug) {
		attrs = append(attrs, slog.String("entries", entriesText(ents))) // raw values: debug only
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int64("suppressed", suppressed))
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "rate limit exceeded", attrs...)
}

// logFailure logs a call that failed with err (not an invalid request),
// sampled. The domain is named only when the config declares it: a
// request's domain is the client's text. now is the call's instant.
func (s *Server) logFailure(now time.Time, domain, code string, err error) {
	attrs := make([]slog.Attr, 0, 5)
	if s.Config().HasDomain(domain) {
		attrs = append(attrs, slog.String("domain", domain))
	}
	attrs = append(attrs, slog.String("code", code))
	var be *backendError
	if errors.As(err, &be) {
		attrs = append(attrs, slog.String("kind", be.kind))
	}
	attrs = append(attrs, slog.String("error", err.Error()))
	s.warnFailure(now, "rate limit request failed", attrs...)
}

// warnFailure logs msg at Warn level through the failures sampler, with
// the count of lines it dropped before, if any.
func (s *Server) warnFailure(now time.Time, msg string, attrs ...slog.Attr) {
	ctx := context.Background()
	if !s.log.Enabled(ctx, slog.LevelWarn) {
		return
	}
	ok, suppressed := s.logs.failures.allow(now)
	if !ok {
		return
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int64("suppressed", suppressed))
	}
	s.log.LogAttrs(ctx, slog.LevelWarn, msg, attrs...)
}

// configDiff is what changed between two configs: domains by name, rules
// by Path, a rule being changed when its ruleText differs and a domain
// when its domainText or any of its rules does. Names are sorted.
type configDiff struct {
	domainsAdded, domainsRemoved, domainsChanged []string
	rulesAdded, rulesRemoved, rulesChanged       []string
}

// diffConfigs compares next with prev; a nil prev is an empty config.
func diffConfigs(prev, next *config.Config) configDiff {
	var d configDiff
	before, after := ruleTexts(prev), ruleTexts(next)
	changedDomains := map[string]bool{}
	for path, text := range after {
		switch old, ok := before[path]; {
		case !ok:
			d.rulesAdded = append(d.rulesAdded, path)
		case old.text != text.text:
			d.rulesChanged = append(d.rulesChanged, path)
		default:
			continue
		}
		changedDomains[text.domain] = true
	}
	for path, old := range before {
		if _, ok := after[path]; !ok {
			d.rulesRemoved = append(d.rulesRemoved, path)
			changedDomains[old.domain] = true
		}
	}
	prevDomains := prev.Domains()
	for _, name := range next.Domains() {
		switch {
		case !prev.HasDomain(name):
			d.domainsAdded = append(d.domainsAdded, name)
		case changedDomains[name] || domainText(prev.Domain(name)) != domainText(next.Domain(name)):
			d.domainsChanged = append(d.domainsChanged, name)
		}
	}
	for _, name := range prevDomains {
		if !next.HasDomain(name) {
			d.domainsRemoved = append(d.domainsRemoved, name)
		}
	}
	for _, l := range [][]string{d.rulesAdded, d.rulesRemoved, d.rulesChanged, d.domainsAdded, d.domainsRemoved, d.domainsChanged} {
		slices.Sort(l)
	}
	return d
}

// attrs are the diff as log attributes: a count and a bounded list of
// names for each kind of change.
func (d configDiff) attrs() []any {
	return []any{
		"domains_added", listText(d.domainsAdded),
		"domains_removed", listText(d.domainsRemoved),
		"domains_changed", listText(d.domainsChanged),
		"rules_added", len(d.rulesAdded),
		"rules_removed", len(d.rulesRemoved),
		"rules_changed", len(d.rulesChanged),
		"rule_changes", changesText(d),
	}
}

// listText joins names with commas, at most maxListed of them.
func listText(names []string) string {
	if len(names) <= maxListed {
		return strings.Join(names, ",")
	}
	return strings.Join(names[:maxListed], ",") + ",... (" + strconv.Itoa(len(names)-maxListed) + " more)"
}

// changesText lists the rule paths that changed, each marked + (added),
// - (removed) or ~ (changed), at most maxListed of them.
func changesText(d configDiff) string {
	var parts []string
	for _, g := range []struct {
		mark  string
		paths []string
	}{{"+", d.rulesAdded}, {"-", d.rulesRemoved}, {"~", d.rulesChanged}} {
		for _, p := range g.paths {
			parts = append(parts, g.mark+p)
		}
	}
	return listText(parts)
}

type ruleEntry struct{ domain, text string }

// ruleTexts renders every rule of c by its Path. Two rules with one path
// (not possible in a valid config today) get #2, #3 after the path.
func ruleTexts(c *config.Config) map[string]ruleEntry {
	rules := c.Rules()
	m := make(map[string]ruleEntry, len(rules))
	for _, r := range rules {
		path := r.Path
		for n := 2; ; n++ {
			if _, dup := m[path]; !dup {
				break
			}
			path = r.Path + "#" + strconv.Itoa(n)
		}
		m[path] = ruleEntry{domain: r.Domain, text: ruleText(r)}
	}
	return m
}

// ruleText is a stable rendering of what a rule decides: its limits and
// every setting that changes an answer or a bucket. Equal texts mean
// equal behaviour; the text is for comparing, not for people.
func ruleText(r *config.Rule) string {
	var b strings.Builder
	if r.Unlimited {
		b.WriteString("unlimited")
	}
	for i := range r.Limits {
		l := &r.Limits[i]
		fmt.Fprintf(&b, "|%s name=%q rpu=%d unit=%d x%d", l.String(), l.Name, l.RequestsPerUnit, l.Unit, l.UnitMultiplier)
	}
	fmt.Fprintf(&b, "|name=%q shadow=%t quota=%t charge_always=%t hash_tag=%q policy=%q meter=%q share=%t replaces=%q",
		r.Name, r.ShadowMode, r.QuotaMode, r.ChargeAlways, r.HashTag, r.Policy, r.Meter, r.ShareThreshold(), r.Replaces)
	if r.MaxOverride != nil {
		b.WriteString("|max_override=" + r.MaxOverride.String())
	}
	if r.Metadata != nil {
		fmt.Fprintf(&b, "|metadata=%v", r.Metadata) // fmt prints maps sorted by key
	}
	return b.String()
}

// domainText is a stable rendering of a domain's settings beyond its
// rules; "" for nil.
func domainText(d *config.Domain) string {
	if d == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "disabled=%t", d.Disabled)
	if t := d.Tiers; t != nil {
		fmt.Fprintf(&b, "|tiers key=%q default=%q", t.Key, t.Default)
		for _, name := range slices.Sorted(maps.Keys(t.Multipliers)) {
			fmt.Fprintf(&b, " %q=%v", name, t.Multipliers[name])
		}
	}
	if i := d.Idempotency; i != nil {
		fmt.Fprintf(&b, "|idempotency key=%q ttl=%s", i.Key, i.TTL)
	}
	return b.String()
}

// configLoadedAttrs are the attributes of the "rate limit config loaded"
// line of next, loaded as version over prev (nil for the first load).
func configLoadedAttrs(prev, next *config.Config, version int64) []any {
	attrs := []any{
		"result", "success",
		"hash", next.Hash(),
		"version", version,
		"domains", len(next.Domains()),
		"rules", len(next.Rules()),
	}
	return append(attrs, diffConfigs(prev, next).attrs()...)
}

// blockedLimit is the limit a blocked descriptor (tier multiplier 0)
// reports: the rule's first, at 0.
func blockedLimit(r *config.Rule) config.RuleLimit {
	l := baseLimit(r)
	l.RequestsPerUnit, l.Limit.Rate = 0, 0
	return l
}
