package config

// Domain-level settings (tiers, disabled, idempotency, policies) and the
// checks that need a whole domain: a descriptor must not use the tiers or
// idempotency key, and a descriptor's policy must name one of the domain's
// policies. With MergeDomains a domain's files may declare its settings
// and its descriptors in any order, so these checks run once every file
// is parsed (parser.finish), each reported with its descriptor's file,
// path and line.

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ratelimitd/ratelimitd/algorithms"
)

// Bounds of the domain-level settings.
const (
	defaultIdempotencyTTL = 24 * time.Hour
	maxIdempotencyTTL     = 7 * algorithms.Day
	defaultMeter          = "requests"
)

// Domain is a domain's settings beyond its descriptors. Like the rest of
// a *Config it is shared and read-only.
type Domain struct {
	Name string
	// Disabled domains are answered OK for everything and count nothing
	// (`disabled: true`).
	Disabled bool
	// Tiers scale every limit of the domain by the caller's tier; nil when
	// the domain has none.
	Tiers *Tiers
	// Idempotency is the domain's idempotency setting; nil when none.
	Idempotency *Idempotency
	// Policies are the domain's named sets of limits, by name; nil when
	// none.
	Policies map[string]*Policy

	rules []*Rule // the domain's rules, in config order
}

// Tiers is a domain's `tiers` block: the descriptor entry Key carries the
// caller's tier, which multiplies every limit of the domain. The server
// removes that entry from a descriptor before matching and keying, so no
// descriptor of the config has Key.
type Tiers struct {
	// Key is the descriptor entry key that carries the tier.
	Key string
	// Default is the tier of descriptors without a Key entry or with a
	// tier not in Multipliers. It is always a key of Multipliers.
	Default string
	// Multipliers are the multiplier of each tier: finite, >= 0. 0 blocks
	// the tier; 1 leaves limits as configured (see ScaleLimit).
	Multipliers map[string]float64
}

// Multiplier returns the multiplier of tier (the default tier's when tier
// is "" or not in Multipliers) and the name of the tier used. A nil *Tiers
// gives 1 and "". It does not allocate.
func (t *Tiers) Multiplier(tier string) (m float64, name string) {
	if t == nil {
		return 1, ""
	}
	if m, ok := t.Multipliers[tier]; ok && tier != "" {
		return m, tier
	}
	return t.Multipliers[t.Default], t.Default
}

// Idempotency is a domain's `idempotency` block: the descriptor entry Key
// carries a client's idempotency key, remembered for TTL. The server
// removes that entry before matching and keying, as the tiers key.
type Idempotency struct {
	Key string
	// TTL is at most 7 days; 24 hours when the config omits it.
	TTL time.Duration
}

// Policy is one entry of a domain's `policies`: limits by meter name
// ("requests", "tokens"). A rule with `policy:` takes the limits of one
// of its meters.
type Policy struct {
	Name string
	// Meters holds one or more limits per meter, in config order; a
	// concurrency limit is alone in its meter.
	Meters map[string][]RuleLimit
}

// Domain returns the settings of domain, or nil when the config does not
// declare it. A declared domain without extensions has a Domain with only
// Name set.
func (c *Config) Domain(name string) *Domain {
	if c == nil {
		return nil
	}
	return c.settings[name]
}

// RulesWith returns the rules of domain that an override naming entries
// could apply to: rules whose path has, for every entry, a level with
// that key whose value accepts the entry's value (equal, wildcard-matching
// under the config's wildcard option, or a key-only level). Unlimited
// rules included; no entries give every rule of the domain. Config order.
// Empty (nil) for an unknown domain. The slice is the caller's; the rules
// are shared.
func (c *Config) RulesWith(domain string, entries []Entry) []*Rule {
	d := c.Domain(domain)
	if d == nil {
		return nil
	}
	var out []*Rule
	for _, r := range d.rules {
		if r.hasLevels(entries, c.trailingOnly) {
			out = append(out, r)
		}
	}
	return out
}

// hasLevels reports whether every entry has a level of the rule's path
// that accepts it.
func (r *Rule) hasLevels(entries []Entry, trailingOnly bool) bool {
	for _, e := range entries {
		if !slices.ContainsFunc(r.Levels, func(l Level) bool { return l.accepts(e, trailingOnly) }) {
			return false
		}
	}
	return true
}

// accepts reports whether the level would match entry e: same key, and a
// key-only level, the same value or a wildcard matching it.
func (l Level) accepts(e Entry, trailingOnly bool) bool {
	switch {
	case l.Key != e.Key:
		return false
	case l.Value == "" || l.Value == e.Value:
		return true
	case trailingOnly:
		return strings.HasSuffix(l.Value, "*") && strings.HasPrefix(e.Value, l.Value[:len(l.Value)-1])
	case strings.Contains(l.Value, "*"):
		return globMatch(strings.Split(l.Value, "*"), e.Value)
	}
	return false
}

// keyUse is one descriptor of a domain, for the checks of finish.
type keyUse struct {
	key, path, file string
	node            *yaml.Node // the descriptor's key node, for its line
	ref             *policyRef // its policy, nil for none
}

// policyRef is a rule whose limits come from a policy: resolved by finish.
type policyRef struct {
	rule                  *Rule
	policyNode, meterNode *yaml.Node
	extras                ruleExtras
}

// ruleExtras are a rule's max_override and charge_always, checked against
// its limits once they are known.
type ruleExtras struct {
	maxOverride, chargeAlways *yaml.Node
}

// domainSettings parses the domain-level settings of a file into st. A
// setting given by two files of a merged domain is an error, but for
// policies, which merge by name.
func (fp *fileParser) domainSettings(st *domainState, where string, tiers, disabled, idem, policies *yaml.Node) {
	set := func(name string, n *yaml.Node) bool {
		if n == nil || isNull(deref(n)) {
			return false
		}
		if prev, ok := st.setIn[name]; ok {
			fp.errorf(joinPath(where, name), n, "%s is already set in %s: set it in one file of the domain", name, prev)
			return false
		}
		st.setIn[name] = fp.file
		return true
	}
	if set("disabled", disabled) {
		st.settings.Disabled = fp.boolField(where, "disabled", disabled)
	}
	if set("tiers", tiers) {
		st.settings.Tiers, st.tierKey = fp.tiers(joinPath(where, "tiers"), deref(tiers))
	}
	if set("idempotency", idem) {
		st.settings.Idempotency, st.idemKey = fp.idempotency(joinPath(where, "idempotency"), deref(idem))
		if st.idemKey != "" && st.idemKey == st.tierKey {
			fp.errorf(joinPath(where, "idempotency"), idem, "tiers and idempotency use the same key %q: give each its own", st.idemKey)
		}
	}
	if policies != nil && !isNull(deref(policies)) {
		fp.policies(st, joinPath(where, "policies"), deref(policies))
	}
}

// tiers parses a tiers block at path. It returns nil on any error, and
// the key whenever the key itself is valid (descriptors are checked
// against it even when the rest of the block is wrong).
func (fp *fileParser) tiers(path string, m *yaml.Node) (*Tiers, string) {
	if m.Kind != yaml.MappingNode {
		fp.errorf(path, m, "tiers must be a mapping with key, default and multipliers, found %s", kindName(m))
		return nil, ""
	}
	var keyNode, defNode, multNode *yaml.Node
	ok := true
	fp.fields(m, path, func(k string, key, v *yaml.Node) {
		switch k {
		case "key":
			keyNode = v
		case "default":
			defNode = v
		case "multipliers":
			multNode = v
		default:
			fp.errorf(path, key, "unknown key %q in tiers (want key, default, multipliers)", k)
			ok = false
		}
	})
	t := &Tiers{}
	key, keyOK := fp.entryKey(path, "key", keyNode, m, "the descriptor entry key that carries the tier, such as tier")
	ok = ok && keyOK
	t.Key = key

	var names []string
	mn := deref(multNode)
	switch {
	case isNull(mn) || (mn.Kind == yaml.MappingNode && len(mn.Content) == 0):
		fp.errorf(path, firstNonNil(multNode, m), "multipliers is missing or empty: want a mapping of tier name to multiplier, such as {user: 1, admin: 10}")
		ok = false
	case mn.Kind != yaml.MappingNode:
		fp.errorf(path, mn, "multipliers must be a mapping of tier name to multiplier, found %s", kindName(mn))
		ok = false
	default:
		t.Multipliers = make(map[string]float64, len(mn.Content)/2)
		fp.fields(mn, path, func(k string, key, v *yaml.Node) {
			if k == "" {
				fp.errorf(path, key, "multipliers has an empty tier name")
				ok = false
				return
			}
			names = append(names, k)
			f, fOK := fp.multiplier(path, "multipliers."+k, v)
			if !fOK {
				ok = false
				return
			}
			t.Multipliers[k] = f
		})
		if len(mn.Content) != 2*len(t.Multipliers) {
			ok = false // a repeated or non-string key, reported by fields
		}
	}

	def, isStr := scalarString(defNode)
	switch {
	case !isStr:
		fp.errorf(path, defNode, "default must be a string, found %s", kindName(defNode))
		ok = false
	case def == "":
		fp.errorf(path, firstNonNil(defNode, m), "default is missing: want the tier of descriptors without one, one of the multipliers' tiers")
		ok = false
	case len(names) > 0 && !slices.Contains(names, def):
		fp.errorf(path, defNode, "default %q is not one of the multipliers' tiers (%s)", def, strings.Join(names, ", "))
		ok = false
	}
	t.Default = def
	if !ok {
		return nil, key
	}
	return t, key
}

// entryKey reads a required descriptor entry key (of tiers or
// idempotency); what describes it in the error of a missing key.
func (fp *fileParser) entryKey(path, name string, n, m *yaml.Node, what string) (string, bool) {
	s, isStr := scalarString(n)
	switch {
	case !isStr:
		fp.errorf(path, n, "%s must be a string, found %s", name, kindName(n))
		return "", false
	case s == "":
		fp.errorf(path, firstNonNil(n, m), "%s is missing or empty: want %s", name, what)
		return "", false
	}
	return s, true
}

// multiplier reads a tier multiplier: a finite number >= 0.
func (fp *fileParser) multiplier(path, name string, n *yaml.Node) (float64, bool) {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && (n.Tag == "!!int" || n.Tag == "!!float") {
		var v float64
		if n.Decode(&v) == nil && v >= 0 && !math.IsInf(v, 0) && !math.IsNaN(v) {
			return v, true
		}
	}
	what := kindName(n)
	if n.Kind == yaml.ScalarNode {
		what = strconv.Quote(n.Value)
	}
	fp.errorf(path, n, "%s must be a number of 0 or more, found %s", name, what)
	return 0, false
}

// idempotency parses an idempotency block at path, like tiers.
func (fp *fileParser) idempotency(path string, m *yaml.Node) (*Idempotency, string) {
	if m.Kind != yaml.MappingNode {
		fp.errorf(path, m, "idempotency must be a mapping with key and ttl, found %s", kindName(m))
		return nil, ""
	}
	var keyNode, ttlNode *yaml.Node
	ok := true
	fp.fields(m, path, func(k string, key, v *yaml.Node) {
		switch k {
		case "key":
			keyNode = v
		case "ttl":
			ttlNode = v
		default:
			fp.errorf(path, key, "unknown key %q in idempotency (want key, ttl)", k)
			ok = false
		}
	})
	key, keyOK := fp.entryKey(path, "key", keyNode, m, "the descriptor entry key that carries the idempotency key, such as idempotency_key")
	ok = ok && keyOK
	idem := &Idempotency{Key: key, TTL: defaultIdempotencyTTL}
	if ttlNode != nil && !isNull(deref(ttlNode)) {
		ttl, tOK := fp.durationUpTo(path, "ttl", ttlNode, maxIdempotencyTTL, "7 days")
		switch {
		case !tOK:
			ok = false
		case ttl == 0:
			fp.errorf(path, ttlNode, "ttl must be greater than 0")
			ok = false
		default:
			idem.TTL = time.Duration(ttl) * time.Microsecond
		}
	}
	if !ok {
		return nil, key
	}
	return idem, key
}

// validName reports whether s is a policy or meter name: one or more of
// A-Z, a-z, 0-9, '_', '.' and '-'.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// policies parses a policies mapping at path into st.
func (fp *fileParser) policies(st *domainState, path string, m *yaml.Node) {
	if m.Kind != yaml.MappingNode {
		fp.errorf(path, m, "policies must be a mapping of policy name to meters, found %s", kindName(m))
		st.badPolicies = true
		return
	}
	fp.fields(m, path, func(name string, key, v *yaml.Node) {
		if !validName(name) {
			fp.errorf(path, key, "policy name %q must be one or more of A-Z, a-z, 0-9, _, . and -", name)
			st.badPolicies = true
			return
		}
		where := joinPath(path, name)
		if prev, dup := st.policyFile[name]; dup {
			fp.errorf(where, key, "policy %q is already declared in %s", name, prev)
			return
		}
		st.policyFile[name] = fp.file
		pol, ok := fp.policy(where, name, deref(v))
		if !ok {
			st.badPolicy[name] = true
			return
		}
		if st.settings.Policies == nil {
			st.settings.Policies = map[string]*Policy{}
		}
		st.settings.Policies[name] = pol
	})
}

// policy parses one policy's meters. It reports false on any error.
func (fp *fileParser) policy(path, name string, m *yaml.Node) (*Policy, bool) {
	if isNull(m) || (m.Kind == yaml.MappingNode && len(m.Content) == 0) {
		fp.errorf(path, m, "has no meters: give at least one, such as requests: {requests_per_unit: 1000, unit: hour}")
		return nil, false
	}
	if m.Kind != yaml.MappingNode {
		fp.errorf(path, m, "want a mapping of meter name to limits, found %s", kindName(m))
		return nil, false
	}
	pol := &Policy{Name: name, Meters: make(map[string][]RuleLimit, len(m.Content)/2)}
	ok := true
	fp.fields(m, path, func(meter string, key, v *yaml.Node) {
		if !validName(meter) {
			fp.errorf(path, key, "meter name %q must be one or more of A-Z, a-z, 0-9, _, . and -", meter)
			ok = false
			return
		}
		limits, lOK := fp.meter(path, meter, deref(v))
		if !lOK {
			ok = false
			return
		}
		pol.Meters[meter] = limits
	})
	if len(m.Content) != 2*len(pol.Meters) {
		ok = false // a repeated or non-string key, reported by fields
	}
	return pol, ok
}

// meter parses a meter's limits: one limit mapping, or a list of them.
func (fp *fileParser) meter(path, meter string, n *yaml.Node) ([]RuleLimit, bool) {
	defer func() { fp.entry = "" }()
	one := func(m *yaml.Node, shared bool) (RuleLimit, bool) {
		var ln limitNodes
		ok := true
		fp.fields(m, path, func(k string, key, v *yaml.Node) {
			if !ln.set(k, v) {
				fp.errorf(path, key, "unknown key %q (want %s; unlimited and replaces are not allowed in policies)", k, limitKeys)
				ok = false
			}
		})
		l, lOK := fp.limit(path, m, &ln)
		if l.Limit.Algorithm == algorithms.Concurrency && shared {
			fp.errorf(path, firstNonNil(ln.algorithm, m), "concurrency cannot share a meter's list with other limits: give it its own meter")
			lOK = false
		}
		return l, ok && lOK
	}
	switch n.Kind {
	case yaml.MappingNode:
		fp.entry = meter + ": "
		l, ok := one(n, false)
		return []RuleLimit{l}, ok
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			fp.entry = meter + ": "
			fp.errorf(path, n, "is an empty list: give at least one limit")
			return nil, false
		}
		ok := true
		limits := make([]RuleLimit, 0, len(n.Content))
		for i, item := range n.Content {
			item = deref(item)
			fp.entry = fmt.Sprintf("%s[%d]: ", meter, i)
			if item.Kind != yaml.MappingNode {
				fp.errorf(path, item, "must be a mapping with unit and requests_per_unit, found %s", kindName(item))
				ok = false
				continue
			}
			l, lOK := one(item, len(n.Content) > 1)
			ok = ok && lOK
			limits = append(limits, l)
		}
		return limits, ok
	}
	fp.entry = meter + ": "
	fp.errorf(path, n, "must be a limit mapping or a list of limits, found %s", kindName(n))
	return nil, false
}

// finish runs the checks that need every file of a domain: descriptors
// using the tiers or idempotency key, policy references, and the
// max_override and charge_always of policy rules.
func (p *parser) finish() {
	for _, st := range p.states {
		for i := range st.uses {
			u := &st.uses[i]
			report := func(n *yaml.Node, format string, args ...any) {
				e := &Error{File: u.file, Path: u.path, Message: fmt.Sprintf(format, args...)}
				if n != nil {
					e.Line = n.Line
				}
				p.errs = append(p.errs, e)
			}
			switch u.key {
			case "":
			case st.tierKey:
				report(u.node, "descriptor key %s is the tiers key: the server removes it before matching", u.key)
			case st.idemKey:
				report(u.node, "descriptor key %s is the idempotency key: the server removes it before matching", u.key)
			}
			if u.ref != nil {
				st.resolve(u.ref, report)
			}
		}
	}
}

// resolve fills a policy rule's limits from the domain's policies, or
// reports why it cannot.
func (st *domainState) resolve(ref *policyRef, report func(n *yaml.Node, format string, args ...any)) {
	r := ref.rule
	pol := st.settings.Policies[r.Policy]
	if pol == nil {
		if st.badPolicies || st.badPolicy[r.Policy] {
			return // the policy's own error is reported
		}
		names := slices.Sorted(maps.Keys(st.policyFile))
		list := "it declares none"
		if len(names) > 0 {
			list = strings.Join(names, ", ")
		}
		report(ref.policyNode, "policy %q is not one of the domain's policies (%s)", r.Policy, list)
		return
	}
	limits, ok := pol.Meters[r.Meter]
	if !ok {
		report(firstNonNil(ref.meterNode, ref.policyNode), "policy %q has no meter %q (%s)", r.Policy, r.Meter, strings.Join(slices.Sorted(maps.Keys(pol.Meters)), ", "))
		return
	}
	r.Limits = slices.Clone(limits)
	r.setPrimary()
	checkExtras(r, ref.extras, report)
}

// checkExtras checks a rule's max_override and charge_always against its
// limits.
func checkExtras(r *Rule, x ruleExtras, report func(n *yaml.Node, format string, args ...any)) {
	if x.maxOverride != nil {
		switch {
		case r.Unlimited:
			// Unlimited until an operator sets a limit, which the
			// ceiling caps.
		case r.Limits[0].Limit.Algorithm == algorithms.Concurrency:
			report(x.maxOverride, "max_override does not apply to algorithm concurrency: it caps a rate, not max_in_flight")
			r.MaxOverride = nil
		case r.MaxOverride != nil && Above(&r.Limits[0], r.MaxOverride):
			report(x.maxOverride, "max_override %s is below the rule's own limit %s", r.MaxOverride, r.Limits[0])
		}
	}
	if x.chargeAlways != nil && r.ChargeAlways {
		switch {
		case r.Unlimited:
			report(x.chargeAlways, "charge_always does not apply to an unlimited rule")
		case slices.ContainsFunc(r.Limits, func(l RuleLimit) bool { return l.Limit.Algorithm == algorithms.Concurrency }):
			report(x.chargeAlways, "charge_always does not apply to algorithm concurrency: an acquisition over max_in_flight must be refused")
		}
	}
}
