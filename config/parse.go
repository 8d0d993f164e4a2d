package config

// The parser walks yaml.Node trees by hand instead of decoding into structs:
// that is what lets it report every error of a load at once, each with its
// descriptor path and line, accept what envoyproxy/ratelimit's yaml.v2
// decoding accepts (any scalar as a string, YAML 1.1 booleans), and reject
// unknown and repeated keys. It builds the lookup tree as it goes.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

const (
	// maxDepth bounds descriptor nesting, maxDescriptors the descriptors
	// of one file and maxMetadataNodes the nodes of one metadata mapping:
	// YAML aliases can make a small file expand enormously.
	maxDepth         = 64
	maxDescriptors   = 100000
	maxMetadataNodes = 10000
	// maxWildcards bounds the wildcard values of one level: matching
	// tries them in order, so they bound the work of every request.
	maxWildcards = 1000
)

type parser struct {
	opts    Options
	errs    Errors
	domains map[string]*domainState
	// states are every domain state in creation order: the live ones of
	// domains, and the scratch ones of files whose domain cannot be used,
	// whose own settings and descriptors are still checked.
	states []*domainState
}

// domainState is one domain being built.
type domainState struct {
	root  *node
	file  string // first file that declared it
	rules []*Rule

	settings    *Domain
	setIn       map[string]string // domain-level setting -> file that set it
	tierKey     string            // the tiers key, when valid ("" for none)
	idemKey     string            // the idempotency key, likewise
	policyFile  map[string]string // policy name -> file that declared it
	badPolicy   map[string]bool   // policies declared with errors
	badPolicies bool              // policies not a mapping, or a bad name
	uses        []keyUse          // every descriptor, for finish
}

// newState returns a new domain state, recorded in p.states.
func (p *parser) newState(name, file string) *domainState {
	st := &domainState{
		root:       &node{},
		file:       file,
		settings:   &Domain{Name: name},
		setIn:      map[string]string{},
		policyFile: map[string]string{},
		badPolicy:  map[string]bool{},
	}
	p.states = append(p.states, st)
	return st
}

// fileParser parses one file.
type fileParser struct {
	p      *parser
	file   string
	domain string
	ds     *domainState  // the domain's state, live or scratch: settings and checks
	count  int           // descriptors seen, against maxDescriptors
	tags   []*tagSetting // the file's hash_tag settings, checked for use at the end
	// entry prefixes every message while an entry of a rate_limits list is
	// parsed ("rate_limits[1]: "), so that messages name the entry.
	entry string
}

// tagSetting is one hash_tag setting, of the domain or of a descriptor. It
// applies to the rules at its level and below until a descriptor sets its
// own; a rule is tagged when its path has an entry with the key.
type tagSetting struct {
	key  string // the entry key whose value is the tag; "" for none
	path string // where it was set, for errors
	node *yaml.Node
	used bool // some descriptor at, above or below the setting has key
	top  bool // set at the domain level
}

// inherited is what a descriptor level passes to the levels below it.
type inherited struct {
	shares   []string    // share_threshold pattern per level, or ""
	keys     []string    // entry key per level
	levels   []Level     // key and value per level
	toMetric bool        // value_to_metric at this level or above
	tag      *tagSetting // the hash_tag in force, nil for none
}

func (fp *fileParser) errorf(path string, n *yaml.Node, format string, args ...any) {
	e := &Error{File: fp.file, Path: path, Message: fp.entry + fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line = n.Line
	}
	fp.p.errs = append(fp.p.errs, e)
}

func (p *parser) parseFile(f File) {
	fp := &fileParser{p: p, file: f.Name}
	dec := yaml.NewDecoder(bytes.NewReader(f.Data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			fp.errorf("", nil, "file is empty: want a mapping with domain and descriptors")
			return
		}
		fp.syntaxError(err)
		return
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		if extra.Kind == yaml.DocumentNode && len(extra.Content) > 0 {
			fp.errorf(fmt.Sprintf("line %d", extra.Line), &extra, "file holds more than one YAML document: put each domain in its own file")
		}
	} else if !errors.Is(err, io.EOF) {
		fp.syntaxError(err)
		return
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			fp.errorf("", nil, "file is empty: want a mapping with domain and descriptors")
			return
		}
		root = root.Content[0]
	}
	root = deref(root)
	if root.Kind != yaml.MappingNode {
		if isNull(root) {
			fp.errorf("", nil, "file is empty: want a mapping with domain and descriptors")
			return
		}
		fp.errorf(fmt.Sprintf("line %d", root.Line), root, "want a mapping with domain and descriptors, found %s", kindName(root))
		return
	}

	var domainNode, descNode, tagNode *yaml.Node
	var tiersNode, disabledNode, idemNode, policiesNode *yaml.Node
	var unknown []*yaml.Node
	fp.fields(root, "", func(k string, key, v *yaml.Node) {
		switch k {
		case "domain":
			domainNode = v
		case "descriptors":
			descNode = v
		case "hash_tag":
			tagNode = v
		case "tiers":
			tiersNode = v
		case "disabled":
			disabledNode = v
		case "idempotency":
			idemNode = v
		case "policies":
			policiesNode = v
		default:
			unknown = append(unknown, key)
		}
	})
	domain, isStr := scalarString(domainNode)
	switch {
	case !isStr:
		fp.errorf("domain", domainNode, "domain must be a string, found %s", kindName(domainNode))
	case domain == "":
		fp.errorf("domain", firstNonNil(domainNode, root), "missing or empty; every file needs a domain")
	}
	fp.domain = domain
	where := orWhere("", domain)
	for _, k := range unknown {
		fp.errorf(where, k, "unknown key %q (want domain, descriptors, hash_tag, tiers, disabled, idempotency, policies)", k.Value)
	}

	// Pick the tree the descriptors go into. A domain that cannot be used
	// (empty, or a duplicate without MergeDomains) is still walked, into a
	// scratch tree, so that every error of the file is reported.
	var st *domainState // nil when the domain cannot be used
	if fp.domain != "" {
		if d, ok := p.domains[fp.domain]; ok {
			if p.opts.MergeDomains {
				st = d
			} else {
				fp.errorf(fp.domain, domainNode, "domain %q is already declared in %s; put its descriptors in one file or let files merge (ratelimitd -merge-domains, MERGE_DOMAIN_CONFIG=true)", fp.domain, d.file)
			}
		} else {
			st = p.newState(fp.domain, f.Name)
			p.domains[fp.domain] = st
		}
	}
	fp.ds = st
	if st == nil {
		fp.ds = p.newState(fp.domain, f.Name)
	}
	target := fp.ds.root
	fp.domainSettings(fp.ds, where, tiersNode, disabledNode, idemNode, policiesNode)
	var in inherited
	if tagNode != nil {
		in.tag = fp.hashTag(where, tagNode, true)
	}
	if descNode != nil {
		fp.descriptors(st, target, fp.domain, fp.domain, descNode, in, 1)
	}
	for _, t := range fp.tags {
		if t.used || t.key == "" {
			continue
		}
		if t.top {
			fp.errorf(t.path, t.node, "hash_tag %q would never apply: no descriptor of the domain has key %q", t.key, t.key)
		} else {
			fp.errorf(t.path, t.node, "hash_tag %q would never apply: no descriptor here, above or below has key %q", t.key, t.key)
		}
	}
}

// hashTag reads a hash_tag setting at path (top for the domain's): the
// key of a descriptor entry, or "" (or null) for none. Braces are refused:
// the key is written between braces, and Redis Cluster would cut the tag
// at the first '}'. A bad setting reports its error and turns tagging off.
func (fp *fileParser) hashTag(path string, n *yaml.Node, top bool) *tagSetting {
	s, isStr := scalarString(n)
	switch {
	case !isStr:
		fp.errorf(path, n, "hash_tag must be a descriptor key such as org (or \"\" for none), found %s", kindName(n))
		return &tagSetting{}
	case strings.ContainsAny(s, "{}"):
		fp.errorf(path, n, "hash_tag %q must be a descriptor key without { or }: ratelimitd writes the braces", s)
		return &tagSetting{}
	}
	t := &tagSetting{key: s, path: path, node: n, top: top}
	fp.tags = append(fp.tags, t)
	return t
}

// syntaxError reports a YAML decoding error: "yaml: line 3: message"
// becomes path "line 3", message "message".
func (fp *fileParser) syntaxError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	path, line := "", 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ": "); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				path, line, msg = "line "+rest[:i], n, rest[i+2:]
			}
		}
	}
	fp.p.errs = append(fp.p.errs, &Error{File: fp.file, Path: path, Message: "invalid YAML: " + msg, Line: line})
}

// fields calls f for each key of mapping m, reporting non-string and
// repeated keys (yaml.v3 leaves repetition to struct decoding).
func (fp *fileParser) fields(m *yaml.Node, path string, f func(k string, key, v *yaml.Node)) {
	seen := make(map[string]int, len(m.Content)/2)
	for i := 0; i+1 < len(m.Content); i += 2 {
		key, v := deref(m.Content[i]), m.Content[i+1]
		if key.Kind != yaml.ScalarNode {
			fp.errorf(orWhere(path, fp.domain), key, "keys must be strings, found %s", kindName(key))
			continue
		}
		if line, dup := seen[key.Value]; dup {
			fp.errorf(orWhere(path, fp.domain), key, "key %q appears twice (first at line %d)", key.Value, line)
			continue
		}
		seen[key.Value] = key.Line
		f(key.Value, key, v)
	}
}

func orWhere(path, domain string) string {
	if path != "" {
		return path
	}
	if domain != "" {
		return domain
	}
	return "domain"
}

// descriptorFields are the YAML nodes of one descriptor and what was read
// from them.
type descriptorFields struct {
	key, value, rateLimit, descriptors       *yaml.Node
	rateLimits                               *yaml.Node
	shadow, quota, detailed, toMetric, share *yaml.Node
	metadata, hashTag                        *yaml.Node
	policy, meter, maxOverride, chargeAlways *yaml.Node
	unknown                                  []*yaml.Node

	keyText, valueText                    string
	keyOK, valueOK                        bool
	shadowMode, quotaMode, detailedMetric bool
	valueToMetric, shareThreshold         bool
	metadataValue                         map[string]any
}

// descriptors walks a descriptors list into parent. st is the live domain
// (nil for a scratch tree, whose rules are not kept); path and stat are the
// parent's Path and StatKey; in what the levels above pass down.
func (fp *fileParser) descriptors(st *domainState, parent *node, path, stat string, list *yaml.Node, in inherited, depth int) {
	list = deref(list)
	if isNull(list) {
		return
	}
	where := orWhere(path, fp.domain)
	if list.Kind != yaml.SequenceNode {
		fp.errorf(where, list, "descriptors must be a list, found %s", kindName(list))
		return
	}
	if depth > maxDepth {
		fp.errorf(where, list, "descriptors are nested deeper than %d levels", maxDepth)
		return
	}
	for i, item := range list.Content {
		item = deref(item)
		if fp.count++; fp.count > maxDescriptors {
			if fp.count == maxDescriptors+1 {
				fp.errorf(where, item, "file has more than %d descriptors", maxDescriptors)
			}
			return
		}
		if item.Kind != yaml.MappingNode {
			fp.errorf(joinPath(path, fmt.Sprintf("descriptors[%d]", i)), item, "descriptor must be a mapping with key, value, rate_limit..., found %s", kindName(item))
			continue
		}
		fp.descriptor(st, parent, path, stat, item, i, in, depth)
	}
}

func joinPath(parent, part string) string {
	if parent == "" {
		return part
	}
	return parent + "." + part
}

func (fp *fileParser) descriptor(st *domainState, parent *node, parentPath, parentStat string, m *yaml.Node, index int, in inherited, depth int) {
	var d descriptorFields
	fp.fields(m, joinPath(parentPath, fmt.Sprintf("descriptors[%d]", index)), func(k string, key, v *yaml.Node) {
		switch k {
		case "key":
			d.key = v
		case "value":
			d.value = v
		case "rate_limit":
			d.rateLimit = v
		case "rate_limits":
			d.rateLimits = v
		case "descriptors":
			d.descriptors = v
		case "shadow_mode":
			d.shadow = v
		case "quota_mode":
			d.quota = v
		case "detailed_metric":
			d.detailed = v
		case "value_to_metric":
			d.toMetric = v
		case "share_threshold":
			d.share = v
		case "metadata":
			d.metadata = v
		case "hash_tag":
			d.hashTag = v
		case "policy":
			d.policy = v
		case "meter":
			d.meter = v
		case "max_override":
			d.maxOverride = v
		case "charge_always":
			d.chargeAlways = v
		default:
			d.unknown = append(d.unknown, key)
		}
	})

	// The path first: every other message needs it.
	d.keyText, d.keyOK = scalarString(d.key)
	d.valueText, d.valueOK = scalarString(d.value)
	var path, stat string
	switch {
	case d.keyText == "":
		path = joinPath(parentPath, fmt.Sprintf("descriptors[%d]", index))
	case d.valueText == "":
		path = joinPath(parentPath, d.keyText)
	default:
		path = joinPath(parentPath, d.keyText+"="+d.valueText)
	}
	stat = parentStat + "." + d.keyText
	if d.valueText != "" {
		stat += "_" + d.valueText
	}
	valid := true
	if !d.keyOK {
		fp.errorf(path, d.key, "key must be a string, found %s", kindName(d.key))
		valid = false
	} else if d.keyText == "" {
		fp.errorf(path, firstNonNil(d.key, m), "key is missing or empty")
		valid = false
	}
	if !d.valueOK {
		fp.errorf(path, d.value, "value must be a string, found %s", kindName(d.value))
		valid = false
	}
	for _, k := range d.unknown {
		fp.errorf(path, k, "unknown key %q (want key, value, rate_limit, rate_limits, descriptors, shadow_mode, quota_mode, detailed_metric, value_to_metric, share_threshold, metadata, hash_tag, policy, meter, max_override, charge_always)", k.Value)
	}

	d.shadowMode = fp.boolField(path, "shadow_mode", d.shadow)
	d.quotaMode = fp.boolField(path, "quota_mode", d.quota)
	d.detailedMetric = fp.boolField(path, "detailed_metric", d.detailed)
	d.valueToMetric = fp.boolField(path, "value_to_metric", d.toMetric) || in.toMetric
	d.shareThreshold = fp.boolField(path, "share_threshold", d.share)
	wildcard := strings.Contains(d.valueText, "*")
	if fp.p.opts.TrailingWildcardsOnly {
		wildcard = strings.HasSuffix(d.valueText, "*")
	}
	if d.shareThreshold && !wildcard {
		if d.valueText == "" {
			fp.errorf(path, d.share, "share_threshold needs a value with a * wildcard, found no value")
		} else {
			fp.errorf(path, d.share, "share_threshold needs a value with a * wildcard, found %q", d.valueText)
		}
	}
	if d.metadata != nil {
		d.metadataValue = fp.metadata(path, d.metadata)
	}

	// Where this level sits in the tree.
	level := append(in.shares[:len(in.shares):len(in.shares)], "")
	if d.shareThreshold && wildcard {
		level[len(level)-1] = d.valueText
	}
	keys := append(in.keys[:len(in.keys):len(in.keys)], d.keyText)
	levels := append(in.levels[:len(in.levels):len(in.levels)], Level{Key: d.keyText, Value: d.valueText})
	tag := in.tag
	if d.hashTag != nil {
		tag = fp.hashTag(path, d.hashTag, false)
	}
	tagAt := -1 // the level whose entry value tags this level's keys
	if tag != nil && tag.key != "" {
		if tagAt = slices.Index(keys, tag.key); tagAt >= 0 {
			tag.used = true
		}
	}

	var rule *Rule
	hasOne := d.rateLimit != nil && !isNull(deref(d.rateLimit))
	hasList := d.rateLimits != nil && !isNull(deref(d.rateLimits))
	switch {
	case hasOne && hasList:
		fp.errorf(path, d.rateLimits, "set rate_limit or rate_limits, not both")
	case hasOne:
		rule = fp.rateLimit(path, deref(d.rateLimit))
	case hasList:
		rule = fp.rateLimits(path, deref(d.rateLimits))
	}
	ref := fp.policyRule(path, &d, hasOne, hasList)
	if ref != nil {
		rule = ref.rule
	}
	if !fp.ruleExtras(path, &d, rule, ref, hasOne || hasList || present(d.policy)) {
		rule = nil
	}
	if rule != nil {
		rule.Domain = fp.domain
		rule.Path = path
		rule.StatKey = stat
		rule.ShadowMode = d.shadowMode
		rule.QuotaMode = d.quotaMode
		rule.DetailedMetric = d.detailedMetric
		rule.ValueToMetric = d.valueToMetric
		rule.Metadata = d.metadataValue
		rule.File = fp.file
		rule.Line = m.Line
		for _, s := range level {
			if s != "" {
				rule.share = level
				break
			}
		}
		if tagAt >= 0 {
			rule.HashTag = tag.key
			rule.tag = tagAt + 1
		}
		rule.Levels = levels
	}
	if d.keyText != "" {
		fp.ds.uses = append(fp.ds.uses, keyUse{key: d.keyText, path: path, file: fp.file, node: d.key, ref: ref})
	}

	child := &node{rule: rule, file: fp.file, line: m.Line}
	if valid {
		if prev := parent.lookup(d.keyText, d.valueText); prev != nil {
			at := fmt.Sprintf("line %d", prev.line)
			if prev.file != fp.file {
				at = prev.file + " line " + strconv.Itoa(prev.line)
			}
			fp.errorf(path, m, "duplicate descriptor: the same key and value are already declared at this level (%s)", at)
			st = nil // walk the children for errors, keep nothing
		} else if wildcard && len(parent.wild) >= maxWildcards {
			fp.errorf(path, d.value, "more than %d wildcard values at one level: a request tries them one after another; match a shorter prefix, or split the values over a level below", maxWildcards)
			st = nil
		} else {
			parent.insert(d.keyText, d.valueText, child, fp.p.opts.TrailingWildcardsOnly)
			if st != nil && rule != nil {
				st.rules = append(st.rules, rule)
			}
		}
	} else {
		st = nil
	}
	if d.descriptors != nil {
		fp.descriptors(st, child, path, stat, d.descriptors, inherited{shares: level, keys: keys, levels: levels, toMetric: d.valueToMetric, tag: tag}, depth+1)
	}
}

// present reports whether an optional field is set and not null.
func present(n *yaml.Node) bool { return n != nil && !isNull(deref(n)) }

// policyRule reads a descriptor's policy and meter. It returns the rule
// to resolve once every file is parsed (see parser.finish), or nil when
// the descriptor has no policy or an error.
func (fp *fileParser) policyRule(path string, d *descriptorFields, hasOne, hasList bool) *policyRef {
	if !present(d.policy) {
		if present(d.meter) {
			fp.errorf(path, d.meter, "meter applies only with policy")
		}
		return nil
	}
	ok := true
	name, isStr := scalarString(d.policy)
	switch {
	case !isStr:
		fp.errorf(path, d.policy, "policy must be a string, found %s", kindName(d.policy))
		ok = false
	case name == "":
		fp.errorf(path, d.policy, "policy is empty: name one of the domain's policies")
		ok = false
	}
	meter := defaultMeter
	if present(d.meter) {
		m, isStr := scalarString(d.meter)
		switch {
		case !isStr:
			fp.errorf(path, d.meter, "meter must be a string, found %s", kindName(d.meter))
			ok = false
		case m == "":
			fp.errorf(path, d.meter, "meter is empty: name one of the policy's meters, or leave meter out for %s", defaultMeter)
			ok = false
		default:
			meter = m
		}
	}
	if hasOne {
		fp.errorf(path, d.policy, "set policy or rate_limit, not both")
	}
	if hasList {
		fp.errorf(path, d.policy, "set policy or rate_limits, not both")
	}
	if !ok || hasOne || hasList {
		return nil
	}
	return &policyRef{rule: &Rule{Policy: name, Meter: meter}, policyNode: d.policy, meterNode: d.meter}
}

// ruleExtras reads a descriptor's max_override and charge_always into r
// (nil when the descriptor has no usable rule; declared tells whether it
// declares limits at all). A policy rule's extras are checked against
// its limits by parser.finish, the others' here. It reports false on any
// error.
func (fp *fileParser) ruleExtras(path string, d *descriptorFields, r *Rule, ref *policyRef, declared bool) bool {
	before := len(fp.p.errs)
	var x ruleExtras
	ca := fp.boolField(path, "charge_always", d.chargeAlways)
	if ca {
		x.chargeAlways = d.chargeAlways
	}
	var mo *RuleLimit
	if present(d.maxOverride) {
		mo = fp.maxOverride(path, deref(d.maxOverride))
		x.maxOverride = d.maxOverride
	}
	switch {
	case !declared:
		if x.maxOverride != nil {
			fp.errorf(path, x.maxOverride, "max_override needs a limit on the descriptor: rate_limit, rate_limits or policy")
		}
		if ca {
			fp.errorf(path, x.chargeAlways, "charge_always needs a limit on the descriptor: rate_limit, rate_limits or policy")
		}
	case r == nil:
	case ref != nil:
		r.ChargeAlways, r.MaxOverride = ca, mo
		ref.extras = x
	default:
		r.ChargeAlways, r.MaxOverride = ca, mo
		checkExtras(r, x, func(n *yaml.Node, format string, args ...any) { fp.errorf(path, n, format, args...) })
	}
	return len(fp.p.errs) == before
}

// maxOverride parses a max_override mapping: a rate, as a limit's
// requests_per_unit, unit, unit_multiplier and period. It returns nil
// when the mapping has errors (they are reported).
func (fp *fileParser) maxOverride(path string, m *yaml.Node) *RuleLimit {
	if m.Kind != yaml.MappingNode {
		fp.errorf(path, m, "max_override must be a mapping with requests_per_unit and unit, found %s", kindName(m))
		return nil
	}
	var ln limitNodes
	ok := true
	fp.fields(m, path, func(k string, key, v *yaml.Node) {
		switch k {
		case "requests_per_unit", "unit", "unit_multiplier", "period":
			ln.set(k, v)
		default:
			fp.errorf(path, key, "unknown key %q in max_override (want requests_per_unit, unit, unit_multiplier, period)", k)
			ok = false
		}
	})
	fp.entry = "max_override: "
	l, lOK := fp.limit(path, m, &ln)
	fp.entry = ""
	if !ok || !lOK {
		return nil
	}
	return &l
}

// rateLimit parses a rate_limit mapping. It returns nil when the mapping
// has errors (they are reported).
func (fp *fileParser) rateLimit(path string, m *yaml.Node) *Rule {
	if m.Kind != yaml.MappingNode {
		fp.errorf(path, m, "rate_limit must be a mapping with unit and requests_per_unit, found %s", kindName(m))
		return nil
	}
	ok := true
	var ln limitNodes
	var unlimitedNode, replacesNode *yaml.Node
	fp.fields(m, path, func(k string, key, v *yaml.Node) {
		switch k {
		case "unlimited":
			unlimitedNode = v
		case "replaces":
			replacesNode = v
		default:
			if !ln.set(k, v) {
				fp.errorf(path, key, "unknown key %q in rate_limit (want unit, requests_per_unit, unlimited, name, replaces, algorithm, burst, burst_multiplier, period, unit_multiplier, alignment, timezone, max_in_flight, lease)", k)
				ok = false
			}
		}
	})
	r := &Rule{}
	r.Unlimited = fp.boolField(path, "unlimited", unlimitedNode)

	name, isStr := scalarString(ln.name)
	if !isStr {
		fp.errorf(path, ln.name, "name must be a string, found %s", kindName(ln.name))
		ok = false
	}
	r.Name = name

	if r.Unlimited {
		unitText, isStr := scalarString(ln.unit)
		switch {
		case !isStr:
			fp.errorf(path, ln.unit, "unit must be a string, found %s", kindName(ln.unit))
			ok = false
		case unitText != "":
			fp.errorf(path, ln.unit, "unlimited: true cannot have a unit (found %q): an unlimited rule has no window", unitText)
			ok = false
		}
		if _, rpuOK := fp.uint32Field(path, "requests_per_unit", ln.rpu); !rpuOK {
			ok = false
		}
		if ext := ln.extensions(); len(ext) > 0 {
			fp.errorf(path, m, "unlimited: true cannot have %s: an unlimited rule has no limit", strings.Join(ext, ", "))
			ok = false
		}
	} else if isStr {
		l, lOK := fp.limit(path, m, &ln)
		ok = ok && lOK
		r.Limits = []RuleLimit{l}
	}

	if replacesNode != nil {
		rn := deref(replacesNode)
		switch {
		case isNull(rn):
		case rn.Kind != yaml.SequenceNode:
			fp.errorf(path, rn, "replaces must be a list of {name: ...}, found %s", kindName(rn))
			ok = false
		default:
			for i, item := range rn.Content {
				item = deref(item)
				if item.Kind != yaml.MappingNode {
					fp.errorf(path, item, "replaces[%d] must be a mapping {name: ...}, found %s", i, kindName(item))
					ok = false
					continue
				}
				var nm *yaml.Node
				itemOK := true
				fp.fields(item, path, func(k string, key, v *yaml.Node) {
					if k == "name" {
						nm = v
						return
					}
					fp.errorf(path, key, "unknown key %q in replaces[%d] (want name)", k, i)
					itemOK = false
				})
				s, isStr := scalarString(nm)
				switch {
				case !itemOK:
					ok = false
				case !isStr:
					fp.errorf(path, nm, "replaces[%d].name must be a string, found %s", i, kindName(nm))
					ok = false
				case s == "":
					fp.errorf(path, firstNonNil(nm, item), "replaces[%d] has an empty name", i)
					ok = false
				case s == r.Name:
					fp.errorf(path, nm, "replaces[%d] names the rule itself (%q)", i, s)
					ok = false
				default:
					r.Replaces = append(r.Replaces, s)
				}
			}
		}
	}
	if !ok {
		return nil
	}
	if !r.Unlimited {
		r.setPrimary()
	}
	return r
}

// boolField reads an optional boolean; absent and null are false. Like
// yaml.v2 (which envoyproxy/ratelimit uses) it takes YAML 1.1's unquoted
// yes/no/on/off too.
func (fp *fileParser) boolField(path, name string, n *yaml.Node) bool {
	if n == nil {
		return false
	}
	n = deref(n)
	if isNull(n) {
		return false
	}
	if n.Kind == yaml.ScalarNode {
		if n.Tag == "!!bool" {
			var b bool
			if n.Decode(&b) == nil {
				return b
			}
		}
		if n.Style == 0 || n.Style == yaml.TaggedStyle {
			switch n.Value {
			case "y", "Y", "yes", "Yes", "YES", "on", "On", "ON":
				return true
			case "n", "N", "no", "No", "NO", "off", "Off", "OFF":
				return false
			}
		}
		fp.errorf(path, n, "%s must be true or false, found %q", name, n.Value)
		return false
	}
	fp.errorf(path, n, "%s must be true or false, found %s", name, kindName(n))
	return false
}

// uint32Field reads an optional non-negative integer; absent and null are 0.
func (fp *fileParser) uint32Field(path, name string, n *yaml.Node) (uint32, bool) {
	if n == nil {
		return 0, true
	}
	n = deref(n)
	if isNull(n) {
		return 0, true
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		var v int64
		if n.Decode(&v) == nil && v >= 0 && v <= math.MaxUint32 {
			return uint32(v), true
		}
	}
	what := kindName(n)
	if n.Kind == yaml.ScalarNode {
		what = strconv.Quote(n.Value)
	}
	fp.errorf(path, n, "%s must be an integer from 0 to %d, found %s", name, uint32(math.MaxUint32), what)
	return 0, false
}

// metadata converts a metadata mapping to plain Go values.
func (fp *fileParser) metadata(path string, n *yaml.Node) map[string]any {
	n = deref(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		fp.errorf(path, n, "metadata must be a mapping, found %s", kindName(n))
		return nil
	}
	budget := maxMetadataNodes
	v, ok := plainValue(n, &budget)
	if !ok {
		fp.errorf(path, n, "metadata has more than %d nodes", maxMetadataNodes)
		return nil
	}
	m, _ := v.(map[string]any)
	return m
}

func plainValue(n *yaml.Node, budget *int) (any, bool) {
	n = deref(n)
	*budget--
	if *budget < 0 {
		return nil, false
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			v, ok := plainValue(n.Content[i+1], budget)
			if !ok {
				return nil, false
			}
			m[deref(n.Content[i]).Value] = v
		}
		return m, true
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, ok := plainValue(c, budget)
			if !ok {
				return nil, false
			}
			s = append(s, v)
		}
		return s, true
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return nil, true
		case "!!bool":
			var b bool
			if n.Decode(&b) == nil {
				return b, true
			}
		case "!!int":
			var i int64
			if n.Decode(&i) == nil {
				return i, true
			}
		case "!!float":
			var f float64
			if n.Decode(&f) == nil {
				return f, true
			}
		}
		return n.Value, true
	}
	return nil, true
}

// deref follows aliases to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// scalarString returns a scalar's text, as yaml.v2 decodes any scalar into
// a string field (value: 30 is "30"). Absent and null are "". It reports
// false for mappings and lists.
func scalarString(n *yaml.Node) (string, bool) {
	n = deref(n)
	if isNull(n) {
		return "", true
	}
	if n.Kind != yaml.ScalarNode {
		return "", false
	}
	return n.Value, true
}

func kindName(n *yaml.Node) string {
	n = deref(n)
	switch {
	case n == nil:
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case isNull(n):
		return "null"
	case n.Kind == yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "an unexpected node"
}

func firstNonNil(ns ...*yaml.Node) *yaml.Node {
	for _, n := range ns {
		if n != nil {
			return n
		}
	}
	return nil
}
