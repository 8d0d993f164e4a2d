package overrides

// The index. A Set maps each domain to its overrides; within a domain each
// override is filed under one of its (key, value) entries, in a map keyed
// by a struct of the two strings (hashing it allocates nothing). An
// override applies to a request only if all its entries are among the
// request's, so it is found by looking up each request entry in turn:
// filing it under a single entry is enough, and no candidate is examined
// twice. Among its entries it is filed under the one that the fewest
// overrides of its domain share, so that a common entry (tier=pro, say)
// does not put every override on one long candidate list. A request for a
// domain without overrides costs one map lookup; an empty Set, none.

import (
	"slices"

	"github.com/ratelimitd/ratelimitd/config"
)

// Set is an immutable snapshot of overrides, indexed for Lookup. Its
// methods are safe for concurrent use; a nil *Set is an empty Set.
type Set struct {
	domains map[string]*domainSet
	byID    map[string]*Override
	all     []*Override // sorted by ID
}

type domainSet struct {
	byEntry map[config.Entry][]candidate
	list    []*Override // sorted by ID
}

type candidate struct {
	o  *Override
	id string
	n  int // len(o.Entries)
}

// NewSet returns a Set of list. Nil overrides are skipped; of overrides
// with the same ID (domain and entries), the last in list is kept. The
// overrides should be valid (Validate), and they are not copied: do not
// modify them afterwards.
func NewSet(list []*Override) *Set {
	s := &Set{byID: make(map[string]*Override, len(list))}
	for _, o := range list {
		if o != nil {
			s.byID[ID(o.Domain, o.Entries)] = o
		}
	}
	ids := make([]string, 0, len(s.byID))
	for id := range s.byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	s.all = make([]*Override, len(ids))
	// How many overrides of each domain share each entry.
	shared := make(map[string]map[config.Entry]int)
	for i, id := range ids {
		o := s.byID[id]
		s.all[i] = o
		m := shared[o.Domain]
		if m == nil {
			m = make(map[config.Entry]int)
			shared[o.Domain] = m
		}
		for _, e := range o.Entries {
			m[e]++
		}
	}
	if len(ids) == 0 {
		return s
	}
	s.domains = make(map[string]*domainSet, len(shared))
	for i, id := range ids { // in ID order, so every candidate list is too
		o := s.all[i]
		d := s.domains[o.Domain]
		if d == nil {
			d = &domainSet{byEntry: make(map[config.Entry][]candidate)}
			s.domains[o.Domain] = d
		}
		d.list = append(d.list, o)
		if len(o.Entries) == 0 {
			continue // matches nothing (invalid)
		}
		m := shared[o.Domain]
		best := o.Entries[0]
		for _, e := range o.Entries[1:] {
			if m[e] < m[best] || m[e] == m[best] && compareEntries(e, best) < 0 {
				best = e
			}
		}
		d.byEntry[best] = append(d.byEntry[best], candidate{o: o, id: id, n: len(o.Entries)})
	}
	return s
}

// Lookup returns the override for a request descriptor of domain with
// entries (the tier entry already taken out): among the overrides of
// domain whose every entry is among entries (same key and value), the one
// with the most entries, ties going to the smallest ID. It returns nil
// when none applies. It does not allocate, and costs one map lookup when
// domain has no overrides.
func (s *Set) Lookup(domain string, entries []config.Entry) *Override {
	if s == nil || len(s.domains) == 0 {
		return nil
	}
	d := s.domains[domain]
	if d == nil {
		return nil
	}
	var best *candidate
	for _, e := range entries {
		cands := d.byEntry[e]
		for i := range cands {
			c := &cands[i]
			if best != nil && (c.n < best.n || c.n == best.n && c.id >= best.id) {
				continue
			}
			if containsAll(entries, c.o.Entries) {
				best = c
			}
		}
	}
	if best == nil {
		return nil
	}
	return best.o
}

// containsAll reports whether every entry of want is in have.
func containsAll(have, want []config.Entry) bool {
	if len(want) > len(have) {
		return false
	}
next:
	for _, w := range want {
		for _, h := range have {
			if h == w {
				continue next
			}
		}
		return false
	}
	return true
}

// Get returns the override of domain with exactly the entries of entries
// (in any order), or nil: the override stored under ID(domain, entries).
func (s *Set) Get(domain string, entries []config.Entry) *Override {
	if s == nil || len(s.byID) == 0 {
		return nil
	}
	return s.byID[ID(domain, entries)]
}

// List returns the overrides of domain, or every override when domain is
// "", sorted by ID. The slice is the caller's; the overrides are shared.
func (s *Set) List(domain string) []*Override {
	if s == nil {
		return nil
	}
	if domain == "" {
		return slices.Clone(s.all)
	}
	if d := s.domains[domain]; d != nil {
		return slices.Clone(d.list)
	}
	return nil
}

// Len returns the number of overrides in the set.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.all)
}
