package memory

// The bucket table. Each shard keeps its buckets in tables of its own
// rather than in Go maps, for three reasons. Memory: a Go map splits a
// full 1024-slot table in two half-full ones, and the allocator rounds the
// 58 KiB of such a table's slots up to 64 KiB, so a bucket of 56 bytes
// (key and state) costs 73 to 146 bytes in a map, 134 measured at a
// million buckets; this table grows by half its size and never fills
// beyond 4/5, so it costs 70 to 105 bytes, and no more than a shard's
// bound needs. Speed: a lookup returns the slot, which the commit then
// writes in place, where a map needs a second lookup to store. Floods:
// deleting shifts the following slots back (no tombstones), so replacing
// buckets in a full shard never grows it, and the sweeper shrinks a table
// that expiry left mostly empty.
//
// It is open addressing with linear probing in Robin Hood order: a key's
// home slot is the high bits of its slot word times the table size,
// and a key never sits farther from its home than the key before it,
// relative to that one's home, plus one. So a lookup stops at the first
// slot holding a key nearer its home than the sought key would be, and a
// deletion shifts the run after the slot back by one until a key at its
// home or an empty slot. Keys are keyed hashes with secret seeds, so
// nobody can pick keys that pile up on one home; the zero hashKey marks an
// empty slot (Backend.hash never returns it).

import (
	"math"
	"math/bits"
	"math/rand/v2"
)

const (
	// minTable is the size of a table's first allocation.
	minTable = 8
	// maxPerShard bounds the buckets of a shard (New raises the shard
	// count to keep it), so that growing a table, which rehashes it under
	// the shard's lock, stays short: at most 10240 slots (560 KiB), about
	// 0.3 ms.
	maxPerShard = 1 << 13
)

// expiring is a stored value with an expiry.
type expiring interface{ expiresAt() int64 }

// table is an open-addressing hash table of values V keyed by hashKey. Its
// zero value is an empty table. It is not safe for concurrent use: the
// shard's mutex guards it.
type table[V expiring] struct {
	slots []slot[V]
	n     int // keys held
}

// slot is one entry of a table; the zero key marks an empty one.
type slot[V expiring] struct {
	key hashKey
	val V
}

// A table is never more than maxLoadNum/maxLoadDen full. Linear probing
// slows down quickly above that: a new key passes ½(1+1/(1-load)²) slots
// on average, 13 at 4/5 but 32 at 7/8.
const maxLoadNum, maxLoadDen = 4, 5

// tableSize is the smallest table size that holds n keys.
func tableSize(n int) int { return (n*maxLoadDen + maxLoadNum - 1) / maxLoadNum }

// home returns the slot where k would be without collisions.
func (t *table[V]) home(k hashKey) int {
	hi, _ := bits.Mul64(k.slot, uint64(len(t.slots)))
	return int(hi)
}

// dist returns how far the key k in slot i is from its home.
func (t *table[V]) dist(i int, k hashKey) int {
	d := i - t.home(k)
	if d < 0 {
		d += len(t.slots)
	}
	return d
}

// find returns the slot holding k, or -1.
func (t *table[V]) find(k hashKey) int {
	if t.n == 0 {
		return -1
	}
	i := t.home(k)
	for d := 0; ; d++ {
		s := &t.slots[i]
		if s.key == k {
			return i
		}
		if s.key == (hashKey{}) || t.dist(i, s.key) < d {
			return -1
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
}

// insert adds k, which must not be in t, with v. limit is the most keys
// t will ever need to hold: it grows no larger than that needs.
func (t *table[V]) insert(k hashKey, v V, limit int) {
	if (t.n+1)*maxLoadDen > len(t.slots)*maxLoadNum {
		size := max(minTable, len(t.slots)+len(t.slots)/2)
		t.resize(max(min(size, tableSize(limit)), tableSize(t.n+1)))
	}
	t.place(slot[V]{key: k, val: v})
	t.n++
}

// next returns the slot after i.
func (t *table[V]) next(i int) int {
	if i++; i == len(t.slots) {
		return 0
	}
	return i
}

// place puts s into t, which has room for it, in Robin Hood order: before
// the first key nearer its home than s would be there, shifting that key
// and the rest of its run forward by one (the same order as swapping s
// into place key by key, for fewer copies).
func (t *table[V]) place(s slot[V]) {
	i := t.home(s.key)
	for d := 0; ; d++ {
		if k := t.slots[i].key; k == (hashKey{}) || t.dist(i, k) < d {
			break
		}
		i = t.next(i)
	}
	e := i
	for t.slots[e].key != (hashKey{}) {
		e = t.next(e)
	}
	// Shift the slots from i up to the empty slot e forward by one.
	if e < i { // the run wraps around the end
		copy(t.slots[1:e+1], t.slots[:e])
		t.slots[0] = t.slots[len(t.slots)-1]
		e = len(t.slots) - 1
	}
	copy(t.slots[i+1:e+1], t.slots[i:e])
	t.slots[i] = s
}

// remove empties slot i, which holds a key, shifting the rest of its run
// (up to an empty slot or a key at its home) back by one.
func (t *table[V]) remove(i int) {
	j := t.next(i)
	for {
		if k := t.slots[j].key; k == (hashKey{}) || t.dist(j, k) == 0 {
			break
		}
		j = t.next(j)
	}
	// Shift the slots after i up to j back by one, and empty the last.
	if j <= i { // the run wraps around the end
		copy(t.slots[i:], t.slots[i+1:])
		if j == 0 {
			t.slots[len(t.slots)-1] = slot[V]{}
			t.n--
			return
		}
		t.slots[len(t.slots)-1] = t.slots[0]
		i = 0
	}
	copy(t.slots[i:j-1], t.slots[i+1:j])
	t.slots[j-1] = slot[V]{}
	t.n--
}

// resize rehashes t into a table of size slots (0: none), which must hold
// its keys.
func (t *table[V]) resize(size int) {
	old := t.slots
	t.slots = nil
	if size > 0 {
		t.slots = make([]slot[V], size)
	}
	for _, s := range old {
		if s.key != (hashKey{}) {
			t.place(s)
		}
	}
}

// removeExpired removes the keys expired at now and returns how many it
// removed; a table left less than a quarter full then shrinks to half
// full (no allocation at all when empty).
func (t *table[V]) removeExpired(now int64) int {
	before := t.n
	for i := 0; i < len(t.slots); {
		if s := &t.slots[i]; s.key != (hashKey{}) && s.val.expiresAt() <= now {
			t.remove(i) // slot i now holds the next key of the run, if any
		} else {
			i++
		}
	}
	switch {
	case t.n == 0:
		t.slots = nil
	case len(t.slots) > minTable && t.n*4 < len(t.slots):
		t.resize(max(minTable, t.n*2))
	}
	return before - t.n
}

// sample looks at up to evictSample keys from a random slot on, removes
// the expired ones and reports whether there were any (freed). When there
// were none, victim is the slot of the sampled key expiring first, at
// earliest, or -1 when t is empty.
func (t *table[V]) sample(now int64) (victim int, earliest int64, freed bool) {
	victim, earliest = -1, math.MaxInt64
	if t.n == 0 {
		return victim, earliest, false
	}
	i := rand.IntN(len(t.slots))
	for seen, steps := 0, 0; seen < evictSample && steps < len(t.slots) && t.n > 0; {
		if s := &t.slots[i]; s.key != (hashKey{}) {
			seen++
			if e := s.val.expiresAt(); e <= now {
				t.remove(i) // slot i now holds the next key of the run, if any
				freed = true
				continue
			} else if e <= earliest {
				victim, earliest = i, e
			}
		}
		if i++; i == len(t.slots) {
			i = 0
		}
		steps++
	}
	return victim, earliest, freed
}
