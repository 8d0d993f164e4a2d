package config

// The lookup tree mirrors envoyproxy/ratelimit's descriptor tree, with the
// three kinds of children kept apart so that matching needs no string
// building: exact (key, value) pairs in a map keyed by a struct of the two
// strings (hashing it allocates nothing), wildcard values in config order,
// and key-only defaults in a map by key.

import "strings"

type node struct {
	exact map[pair]*node   // key=value children, wildcards included (a literal "*" value matches exactly)
	wild  []wildChild      // children whose value has a *, in config order
	byKey map[string]*node // key-only (default) children
	n     int              // number of children

	rule *Rule // nil when the descriptor has no rate_limit
	file string
	line int
}

type pair struct{ key, value string }

type wildChild struct {
	key   string
	parts []string // the value split at each *: len >= 2
	child *node
}

// lookup returns the child declared with exactly key and value, or nil.
func (n *node) lookup(key, value string) *node {
	if value == "" {
		return n.byKey[key]
	}
	return n.exact[pair{key, value}]
}

// insert adds child under key=value. A value with a `*` becomes a
// wildcard child too; with trailingOnly only a final `*` makes one, and
// what precedes it is matched literally as a prefix.
func (n *node) insert(key, value string, child *node, trailingOnly bool) {
	n.n++
	if value == "" {
		if n.byKey == nil {
			n.byKey = map[string]*node{}
		}
		n.byKey[key] = child
		return
	}
	if n.exact == nil {
		n.exact = map[pair]*node{}
	}
	n.exact[pair{key, value}] = child
	switch {
	case trailingOnly && strings.HasSuffix(value, "*"):
		n.wild = append(n.wild, wildChild{key: key, parts: []string{value[:len(value)-1], ""}, child: child})
	case !trailingOnly && strings.Contains(value, "*"):
		n.wild = append(n.wild, wildChild{key: key, parts: strings.Split(value, "*"), child: child})
	}
}

// next returns the child an entry leads to: the exact key=value child, else
// the first wildcard child (in config order) whose pattern matches the
// value, else the key-only child.
func (n *node) next(e Entry) *node {
	if e.Value != "" {
		if c := n.exact[pair{e.Key, e.Value}]; c != nil {
			return c
		}
	}
	for i := range n.wild {
		w := &n.wild[i]
		if w.key == e.Key && globMatch(w.parts, e.Value) {
			return w.child
		}
	}
	return n.byKey[e.Key]
}

// globMatch reports whether s matches the pattern whose literal parts,
// split at each *, are parts: every * matches any run of bytes, the empty
// run included.
func globMatch(parts []string, s string) bool {
	first, last := parts[0], parts[len(parts)-1]
	if len(s) < len(first)+len(last) || !strings.HasPrefix(s, first) || !strings.HasSuffix(s, last) {
		return false
	}
	s = s[len(first) : len(s)-len(last)]
	// Leftmost matching of the middle parts is optimal for * (no ?), since
	// consuming less never helps the parts after.
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return true
}

// Match returns the rule that applies to a descriptor of domain, or nil.
// It matches exactly as envoyproxy/ratelimit: entries left to right, at
// each level the exact key_value, else the first matching wildcard in
// config order, else the key-only default; the rule applies only at the
// last entry (a request shorter or longer than the config path gets nil,
// never a shallower rule). An unknown domain and an empty descriptor give
// nil. It does not allocate.
func (c *Config) Match(domain string, entries []Entry) *Rule {
	if c == nil {
		return nil
	}
	n := c.domains[domain]
	if n == nil {
		return nil
	}
	for i, e := range entries {
		n = n.next(e)
		if n == nil {
			return nil
		}
		if i == len(entries)-1 {
			return n.rule
		}
		if n.n == 0 {
			return nil
		}
	}
	return nil
}
