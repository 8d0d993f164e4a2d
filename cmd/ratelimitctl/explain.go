package main

// explain: what ratelimitd would do with one descriptor, from the config
// files alone. It follows the server's steps (server/rls.go decide and
// server/resolve.go): the domain's tiers and idempotency entries are taken
// out, the rest is matched, the rule's limits are scaled by the tier's
// multiplier, and each limit has its bucket key. Runtime overrides live in
// the server: `inspect` shows them.

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/config"
)

const explainHelp = `Loads the config as ratelimitd does and explains one descriptor of
domain D (-domain may be left out when the config has one domain): the
tiers and idempotency entries it removes first, the rule that matches,
the limits after the tier's multiplier, the policy and meter,
max_override, the mode (shadow_mode, quota_mode) and each bucket key
(with -key-prefix, as ratelimitd's). Runtime overrides are not seen:
use inspect against the server for those.

Exits 3 when no rule matches ("no rule matches: ... (closest: ...)").

-o json prints {"domain", "entries": [{"key", "value"}] (as given),
"removed": [{"key", "value", "as"}], "descriptor" (the entries matched),
"matched", "reason", "closest", "rule":
{"path", "file", "line", "name"}, "tier", "tier_multiplier", "blocked",
"unlimited", "shadow_mode", "quota_mode", "charge_always", "policy",
"meter", "max_override", "replaces", "limits": [{"text", "name",
"requests_per_unit", "unit", "unit_multiplier", "algorithm", "burst",
"period_seconds", "key", "key_base64"}]}. "key" is the bucket key with
non-printable bytes escaped as Go's %q does (without the quotes);
"key_base64" is its exact bytes.
`

// entryJSON is one descriptor entry.
type entryJSON struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// removedJSON is an entry the server takes out before matching.
type removedJSON struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	As    string `json:"as"` // "tier" or "idempotency"
}

type ruleRefJSON struct {
	Path string `json:"path"`
	File string `json:"file"`
	Line int    `json:"line"`
	Name string `json:"name,omitempty"`
}

// limitJSON is one effective limit and its bucket.
type limitJSON struct {
	Text            string  `json:"text"`
	Name            string  `json:"name,omitempty"`
	RequestsPerUnit uint32  `json:"requests_per_unit"`
	Unit            string  `json:"unit,omitempty"`
	UnitMultiplier  uint32  `json:"unit_multiplier,omitempty"`
	Algorithm       string  `json:"algorithm"`
	Burst           int64   `json:"burst,omitempty"`
	PeriodSeconds   float64 `json:"period_seconds"`
	Key             string  `json:"key"`
	KeyBase64       string  `json:"key_base64"`
}

// explanation is explain's answer, and its JSON.
type explanation struct {
	Domain         string        `json:"domain"`
	Entries        []entryJSON   `json:"entries"`
	Removed        []removedJSON `json:"removed"`
	Descriptor     []entryJSON   `json:"descriptor"`
	Matched        bool          `json:"matched"`
	Reason         string        `json:"reason,omitempty"`
	Closest        string        `json:"closest,omitempty"`
	Rule           *ruleRefJSON  `json:"rule,omitempty"`
	Tier           string        `json:"tier,omitempty"`
	TierMultiplier float64       `json:"tier_multiplier"`
	Blocked        bool          `json:"blocked"`
	Unlimited      bool          `json:"unlimited"`
	ShadowMode     bool          `json:"shadow_mode"`
	QuotaMode      bool          `json:"quota_mode"`
	ChargeAlways   bool          `json:"charge_always"`
	Policy         string        `json:"policy,omitempty"`
	Meter          string        `json:"meter,omitempty"`
	MaxOverride    string        `json:"max_override,omitempty"`
	Replaces       []string      `json:"replaces,omitempty"`
	Limits         []limitJSON   `json:"limits"`
}

// explain is the explain command.
func (c *cli) explain(args []string) int {
	fs := c.flagSet()
	path := fs.String("config", "", "config `path`: a YAML file or a directory, as ratelimitd's -config (required)")
	domain := fs.String("domain", "", "the descriptor's `domain` (default: the config's only domain)")
	prefix := fs.String("key-prefix", "", "`prefix` of bucket keys, as ratelimitd's -key-prefix")
	opts := addConfigOptions(fs)
	out := addOutput(fs)
	pos, code, ok := c.parse(fs, args, false)
	if !ok {
		return code
	}
	if *path == "" {
		return c.usagef("-config is required")
	}
	if len(pos) == 0 {
		return c.usagef("want the descriptor's entries: key=value...")
	}
	entries, err := parseEntries(pos)
	if err != nil {
		return c.usagef("%v", err)
	}
	cfg, err := config.Load(*path, *opts)
	if err != nil {
		c.printConfigErrors(*path, err)
		return exitError
	}
	if *domain == "" {
		ds := cfg.Domains()
		if len(ds) != 1 {
			return c.usagef("-domain is required: the config has domains %s", domainsText(ds))
		}
		*domain = ds[0]
	}
	ex := explainDescriptor(cfg, *domain, entries, *prefix, opts.TrailingWildcardsOnly)
	code = exitOK
	if !ex.Matched {
		code = exitNotFound
	}
	if out.json {
		writeJSON(c.stdout, ex)
		return code
	}
	if !ex.Matched {
		msg := "no rule matches: " + ex.Reason
		if ex.Closest != "" {
			msg += " (closest: " + ex.Closest + ")"
		}
		return c.failf(exitNotFound, "%s", msg)
	}
	c.printExplanation(ex)
	return exitOK
}

// explainDescriptor resolves entries of domain in cfg as the server does,
// without overrides.
func explainDescriptor(cfg *config.Config, domain string, in []config.Entry, prefix string, trailingOnly bool) *explanation {
	ex := &explanation{Domain: domain, Entries: []entryJSON{}, Removed: []removedJSON{}, Descriptor: []entryJSON{}, Limits: []limitJSON{}, TierMultiplier: 1}
	for _, e := range in {
		ex.Entries = append(ex.Entries, entryJSON{e.Key, e.Value})
	}
	if !cfg.HasDomain(domain) {
		ex.Reason = fmt.Sprintf("domain %q is not in the config (domains: %s); ratelimitd answers OK to an unknown domain", domain, domainsText(cfg.Domains()))
		return ex
	}
	dom := cfg.Domain(domain)
	if dom != nil && dom.Disabled {
		ex.Reason = fmt.Sprintf("domain %q is disabled: ratelimitd answers OK to all of it and counts nothing", domain)
		return ex
	}
	// The tier and idempotency entries: the last tier entry counts, as in
	// the server's loop.
	var entries []config.Entry
	tierVal := ""
	for _, e := range in {
		switch {
		case dom != nil && dom.Tiers != nil && e.Key == dom.Tiers.Key:
			tierVal = e.Value
			ex.Removed = append(ex.Removed, removedJSON{e.Key, e.Value, "tier"})
		case dom != nil && dom.Idempotency != nil && e.Key == dom.Idempotency.Key:
			ex.Removed = append(ex.Removed, removedJSON{e.Key, e.Value, "idempotency"})
		default:
			entries = append(entries, e)
			ex.Descriptor = append(ex.Descriptor, entryJSON{e.Key, e.Value})
		}
	}
	if dom != nil && dom.Tiers != nil {
		ex.TierMultiplier, ex.Tier = dom.Tiers.Multiplier(tierVal)
	}
	if len(entries) == 0 {
		ex.Reason = "the descriptor has no entries once the tiers and idempotency entries are removed; ratelimitd answers it OK"
		return ex
	}
	r := cfg.Match(domain, entries)
	if r == nil {
		ex.Reason = fmt.Sprintf("no rule of domain %s matches %s", domain, entriesText(entries))
		ex.Closest = closestRule(cfg, domain, entries, trailingOnly)
		return ex
	}
	ex.Matched = true
	ex.Rule = &ruleRefJSON{Path: r.Path, File: r.File, Line: r.Line, Name: r.Name}
	ex.Unlimited, ex.ShadowMode, ex.QuotaMode, ex.ChargeAlways = r.Unlimited, r.ShadowMode, r.QuotaMode, r.ChargeAlways
	ex.Policy = r.Policy
	if r.Policy != "" {
		ex.Meter = cmpOr(r.Meter, "requests")
	}
	if r.MaxOverride != nil {
		ex.MaxOverride = r.MaxOverride.String()
	}
	ex.Replaces = r.Replaces
	switch {
	case ex.TierMultiplier == 0:
		ex.Blocked = true
	case r.Unlimited:
	default:
		for i := range r.Limits {
			l := config.ScaleLimit(r.Limits[i], ex.TierMultiplier)
			key := r.AppendLimitKeyFor([]byte(prefix), entries, &l, i)
			ex.Limits = append(ex.Limits, limitToJSON(l, key))
		}
	}
	return ex
}

func limitToJSON(l config.RuleLimit, key []byte) limitJSON {
	j := limitJSON{
		Text:            l.String(),
		Name:            l.Name,
		RequestsPerUnit: l.RequestsPerUnit,
		UnitMultiplier:  l.UnitMultiplier,
		Algorithm:       l.Limit.Algorithm.String(),
		Burst:           l.Limit.Burst,
		PeriodSeconds:   float64(l.Limit.Period) / float64(algorithms.Second),
		KeyBase64:       base64.StdEncoding.EncodeToString(key),
	}
	if l.Unit != config.UnitUnknown {
		j.Unit = l.Unit.String()
	}
	q := strconv.Quote(string(key))
	j.Key = q[1 : len(q)-1]
	return j
}

// closestRule names the rule of domain that comes closest to matching
// entries, and why it does not, or "" when none shares a first level. It
// compares each rule's levels with the entries from the top: the most
// leading levels accepted wins, then the depth nearest the entries',
// then config order. A hint, not the matcher: the matcher's preference of
// exact over wildcard over key-only values is not replayed.
func closestRule(cfg *config.Config, domain string, entries []config.Entry, trailingOnly bool) string {
	var best *config.Rule
	bestN, bestGap := 0, 0
	for _, r := range cfg.Rules() {
		if r.Domain != domain {
			continue
		}
		n := 0
		for n < len(r.Levels) && n < len(entries) && levelAccepts(r.Levels[n], entries[n], trailingOnly) {
			n++
		}
		gap := abs(len(r.Levels) - len(entries))
		if n > bestN || (n == bestN && n > 0 && gap < bestGap) {
			best, bestN, bestGap = r, n, gap
		}
	}
	if best == nil {
		return ""
	}
	where := best.Path
	if fl := fileLine(best.File, best.Line); fl != "" {
		where += " at " + fl
	}
	switch {
	case bestN == len(best.Levels):
		return fmt.Sprintf("%s, which matches the first %d of the %d entries; a rule applies only at a descriptor's last entry", where, bestN, len(entries))
	case bestN == len(entries):
		return fmt.Sprintf("%s, which needs %d entries: %s", where, len(best.Levels), levelsText(best.Levels))
	}
	e, l := entries[bestN], best.Levels[bestN]
	return fmt.Sprintf("%s, whose level %d is %s where the descriptor has %s=%s", where, bestN+1, levelText(l), e.Key, e.Value)
}

// levelAccepts reports whether level l takes entry e: same key, and a
// key-only level, the same value, or a wildcard that matches it.
func levelAccepts(l config.Level, e config.Entry, trailingOnly bool) bool {
	switch {
	case l.Key != e.Key:
		return false
	case l.Value == "" || l.Value == e.Value:
		return true
	case trailingOnly:
		p, ok := strings.CutSuffix(l.Value, "*")
		return ok && strings.HasPrefix(e.Value, p)
	case strings.Contains(l.Value, "*"):
		return glob(strings.Split(l.Value, "*"), e.Value)
	}
	return false
}

// glob reports whether s matches the pattern split at each * into parts.
func glob(parts []string, s string) bool {
	first, last := parts[0], parts[len(parts)-1]
	if len(s) < len(first)+len(last) || !strings.HasPrefix(s, first) || !strings.HasSuffix(s, last) {
		return false
	}
	s = s[len(first) : len(s)-len(last)]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return true
}

func levelText(l config.Level) string {
	if l.Value == "" {
		return l.Key + " (any value)"
	}
	return l.Key + "=" + l.Value
}

func levelsText(ls []config.Level) string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = levelText(l)
	}
	return strings.Join(parts, ", ")
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// printExplanation writes a matched explanation as a table.
func (c *cli) printExplanation(ex *explanation) {
	t := newTable(c.stdout)
	t.row("domain", ex.Domain)
	var kept []string
	for _, e := range ex.Descriptor {
		kept = append(kept, e.Key+"="+e.Value)
	}
	t.row("descriptor", strings.Join(kept, ", "))
	for _, r := range ex.Removed {
		t.row("removed", r.Key+"="+r.Value+" ("+r.As+" entry, taken out before matching)")
	}
	rule := ex.Rule.Path
	if fl := fileLine(ex.Rule.File, ex.Rule.Line); fl != "" {
		rule += " (" + fl + ")"
	}
	t.row("rule", rule)
	if ex.Rule.Name != "" {
		t.row("name", ex.Rule.Name)
	}
	if ex.Tier != "" {
		t.row("tier", ex.Tier+" (multiplier "+strconv.FormatFloat(ex.TierMultiplier, 'g', -1, 64)+")")
	}
	if ex.Policy != "" {
		t.row("policy", ex.Policy+" (meter "+ex.Meter+")")
	}
	mode := "counted"
	switch {
	case ex.Blocked:
		mode = "blocked: the tier's multiplier is 0, every request is answered OVER_LIMIT"
	case ex.Unlimited:
		mode = "unlimited: never counted"
	case ex.ShadowMode:
		mode = "shadow_mode: counted, always answered OK"
	case ex.QuotaMode:
		mode = "quota_mode: counted, answered OK, violations in dynamic metadata"
	}
	t.row("mode", mode)
	if ex.ChargeAlways {
		t.row("charge_always", "yes: hits are counted even over the limit")
	}
	if ex.MaxOverride != "" {
		t.row("max_override", ex.MaxOverride)
	} else if !ex.Unlimited {
		t.row("max_override", "none")
	}
	if len(ex.Replaces) > 0 {
		t.row("replaces", strings.Join(ex.Replaces, ", "))
	}
	t.flush()
	if len(ex.Limits) == 0 {
		return
	}
	fmt.Fprintln(c.stdout)
	t.row("#", "LIMIT", "NAME", "KEY")
	for i, l := range ex.Limits {
		key, _ := base64.StdEncoding.DecodeString(l.KeyBase64)
		t.row(strconv.Itoa(i), l.Text, cmpOr(l.Name, "-"), printable(key))
	}
	t.flush()
}
