// Package memory is ratelimitd's embedded default backend: bucket state in
// the process's own memory, nothing to install, exact within one replica.
package memory

// Design. Buckets live in Shards tables (a power of two), each behind its
// own mutex; a key's shard is the low bits of its hash (below), so
// unrelated keys rarely contend. Apply takes one lock pass per call: it
// hashes every request, locks the distinct shards in ascending index order
// (every caller takes them in the same order, so two calls never
// deadlock), decides every request with algorithms.Decide on a per-call
// scratch (a stack array for up to stackReqs requests), where a key named
// twice carries its tentative state from one request to the next, then
// commits per the Mode and unlocks. Nothing reaches the tables until the
// decision of the whole call is known, so a refused call leaves no trace.
// Apply allocates nothing, for new keys either, but when a table grows.
//
// Keys. A bucket is not stored under its key but under a 128-bit keyed hash
// of it: two maphash values of the key with two random seeds of the
// Backend. So a bucket costs the same whatever its key's length, and
// storing one allocates nothing. Two keys with the same hash would share a
// bucket; with 128 random bits the chance that any two of n keys collide
// is about n²/2^129, for n = 10 million keys 10^14/2^129 ≈ 10^-25; a new
// key meets one of 2^20 buckets held with odds of 2^20/2^128 ≈ 3·10^-33,
// so a million new keys a second for a century make about 10^-17.
// maphash is not a cryptographic hash, but its seeds are secret and its
// values never leave the process, which is what Go's own maps count on
// against crafted collisions.
//
// State. Slots hold the state inline, no pointer. Fixed and sliding
// windows, token buckets and GCRA use at most State.A..D, so a shard keeps
// those in a table of 56-byte slots (key, A..D, expiry), and states that
// use E..H (concurrency leases spread over several slots) in a second
// table of 88-byte slots. A state moves between the two as its E..H become
// zero or not; a lookup tries the small table first. A table is at most
// 4/5 full and grows by half (table.go), so a bucket costs 70 to 105 bytes
// of heap (73 at a million buckets, BenchmarkFootprint), a full-state one
// 110 to 165.
//
// Bound. No shard holds more than MaxBuckets/Shards buckets, and its
// tables never grow past the size that needs. A new key in a full shard
// first removes the expired buckets among a small sample of each of its
// tables; if none is expired it evicts the sampled bucket that expires
// first. (The sample of the full-state table is as large as the other's
// however few buckets it holds: those are sampled more often, and evicted
// only when they expire first.) An evicted live bucket restarts from empty
// (its budget is whole again; a call naming more new keys than its shard
// has room for can even evict a bucket it has just charged), so size
// MaxBuckets above the working set and watch Stats().Evictions. A full
// shard replaces buckets in place, so a flood of new keys grows neither
// the bucket count nor the heap (TestFloodHeapFlat, BenchmarkFlood). A
// sweeper goroutine removes expired buckets every SweepInterval, one shard
// at a time so calls on other shards go on, shrinking tables that expiry
// left mostly empty, and expired memos likewise (memo.go); Close stops it
// and waits for it.
//
// Reset (backends.Resetter) locks one key's shard at a time and deletes the
// key. Memos (backends.Memo, memo.go) live in a store of their own, in Go
// maps keyed by the memo key itself, bounded apart from the buckets, on
// the Options.Now clock.

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
)

// Defaults for the zero Options.
const (
	DefaultShards        = 128
	DefaultMaxBuckets    = 1 << 20
	DefaultSweepInterval = 10 * time.Second
	// DefaultMemoMaxEntries bounds the memo store (backends.Memo).
	DefaultMemoMaxEntries = 100000

	maxShards = 1 << 16
	// stackReqs is how many requests a call decides on a stack scratch;
	// larger calls allocate one. Calls of one request, and of up to
	// smallReqs, use smaller scratches, which are quicker to clear.
	stackReqs = 16
	smallReqs = 4
	// evictSample is how many buckets a full shard looks at to make room.
	evictSample = 8
)

// errClosed is returned by Apply after Close.
var errClosed = fmt.Errorf("memory: apply: backend closed: %w", backends.ErrUnavailable)

// Options configures a Backend. The zero Options is the default.
type Options struct {
	// Shards is the number of independently locked tables, rounded up to
	// a power of two; default 128. It is lowered when MaxBuckets is
	// smaller, and raised so that no shard holds more than 8192 buckets
	// (see New).
	Shards int
	// MaxBuckets bounds the number of buckets kept; default 1<<20. Each
	// shard holds at most MaxBuckets/Shards (see New).
	MaxBuckets int
	// SweepInterval is how often expired buckets are removed; default 10s.
	SweepInterval time.Duration
	// Now is the clock the sweeper uses to find expired buckets, Reset to
	// tell them from live ones, and the memo store to expire memos;
	// default time.Now. Apply never reads it: decisions use Apply's now.
	Now func() time.Time
	// MemoMaxEntries bounds the memos kept (backends.Memo); default
	// 100000. A new memo in a full store first removes the expired memos
	// among a small sample, else the sampled memo expiring first. It
	// bounds the number of memos, not their size: the caller bounds that.
	MemoMaxEntries int
}

// Stats is a snapshot of a Backend's occupancy, for metrics.
type Stats struct {
	// Buckets is the number of buckets held now.
	Buckets int64
	// Evictions counts live (unexpired) buckets dropped to make room for
	// new keys since New. Expired buckets removed are not counted.
	Evictions int64
	// Memos is the number of memos held now (expired ones included until
	// they are swept); MemoEvictions counts the live memos dropped to make
	// room for new ones.
	Memos, MemoEvictions int64
}

// Backend is the in-memory backends.Backend. Create it with New and stop it
// with Close. It is safe for concurrent use.
type Backend struct {
	seeds     [2]maphash.Seed
	shards    []shard
	mask      uint64
	perShard  int
	evictions atomic.Int64
	memos     memoStore

	now      func() time.Time
	closed   atomic.Bool
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

var (
	_ backends.Backend  = (*Backend)(nil)
	_ backends.Resetter = (*Backend)(nil)
	_ backends.Memo     = (*Backend)(nil)
)

// hashKey is a bucket's identity: the 128-bit keyed hash of its key (see
// Backend.hash). The low bits of shard choose the shard, slot the slot in
// the shard's table. (A struct, not an array, so that it travels in
// registers.)
type hashKey struct{ shard, slot uint64 }

// shard is one locked pair of tables, padded to cache lines of its own. A
// key is in at most one of them: small holds the states whose E..H are
// zero, full the others.
type shard struct {
	mu    sync.Mutex
	small table[smallBucket]
	full  table[fullBucket]
	_     [56]byte
}

// smallBucket is the stored state of a bucket whose State.E..H are zero,
// and the instant it expires.
type smallBucket struct {
	a, b, c, d int64 // State.A..D
	expiry     int64
}

// fullBucket is the stored state of any bucket and the instant it expires.
type fullBucket struct {
	state  algorithms.State
	expiry int64
}

func (v smallBucket) expiresAt() int64 { return v.expiry }
func (v fullBucket) expiresAt() int64  { return v.expiry }

// small reports whether s fits a smallBucket.
func small(s *algorithms.State) bool { return s.E|s.F|s.G|s.H == 0 }

// place says where a key's state is stored.
type place uint8

const (
	nowhere place = iota // a new key
	inSmall
	inFull
)

// find returns where k is stored and its slot there (nowhere, -1 for a
// new key).
func (sh *shard) find(k hashKey) (place, int) {
	if i := sh.small.find(k); i >= 0 {
		return inSmall, i
	}
	if i := sh.full.find(k); i >= 0 {
		return inFull, i
	}
	return nowhere, -1
}

// state returns the state and expiry in slot i of the table p (the zero
// State for nowhere).
func (sh *shard) state(p place, i int) (algorithms.State, int64) {
	switch p {
	case inSmall:
		v := &sh.small.slots[i].val
		return algorithms.State{A: v.a, B: v.b, C: v.c, D: v.d}, v.expiry
	case inFull:
		v := &sh.full.slots[i].val
		return v.state, v.expiry
	}
	return algorithms.State{}, 0
}

// insert adds the new key k with state s expiring at expiry, in the table
// that fits s. limit is the shard's bound.
func (sh *shard) insert(k hashKey, s *algorithms.State, expiry int64, limit int) {
	if small(s) {
		sh.small.insert(k, smallBucket{a: s.A, b: s.B, c: s.C, d: s.D, expiry: expiry}, limit)
	} else {
		sh.full.insert(k, fullBucket{state: *s, expiry: expiry}, limit)
	}
}

// remove deletes the key in slot i of the table p.
func (sh *shard) remove(p place, i int) {
	switch p {
	case inSmall:
		sh.small.remove(i)
	case inFull:
		sh.full.remove(i)
	}
}

// len is the number of buckets in the shard.
func (sh *shard) len() int { return sh.small.n + sh.full.n }

// New returns a Backend with its sweeper started. Out-of-range options take
// their defaults (values <= 0) or are rounded (Shards up to a power of two,
// at most 65536). When MaxBuckets is below Shards the shard count is lowered
// to the largest power of two not above MaxBuckets, so that the total never
// exceeds MaxBuckets; when MaxBuckets/Shards is above 8192 it is raised
// until it is not (or reaches 65536), so that a shard's table grows in
// short steps (see table.go).
func New(opts Options) *Backend {
	shards := opts.Shards
	if shards <= 0 {
		shards = DefaultShards
	}
	shards = min(ceilPow2(shards), maxShards)
	maxBuckets := opts.MaxBuckets
	if maxBuckets <= 0 {
		maxBuckets = DefaultMaxBuckets
	}
	for shards > maxBuckets {
		shards /= 2
	}
	for shards < maxShards && maxBuckets/shards > maxPerShard {
		shards *= 2
	}
	interval := opts.SweepInterval
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	b := &Backend{
		seeds:    [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		shards:   make([]shard, shards),
		mask:     uint64(shards - 1),
		perShard: maxBuckets / shards,
		now:      now,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	b.memos.init(opts.MemoMaxEntries)
	go b.sweeper(interval)
	return b
}

// ceilPow2 is the smallest power of two >= n, for 0 < n <= maxShards*2.
func ceilPow2(n int) int {
	p := 1
	for p < n && p < maxShards {
		p *= 2
	}
	return p
}

// hash returns the identity of the bucket named k: two maphash values of
// k with the Backend's two seeds (see the package's design comment).
func (b *Backend) hash(k []byte) hashKey {
	h := hashKey{maphash.Bytes(b.seeds[0], k), maphash.Bytes(b.seeds[1], k)}
	if h == (hashKey{}) { // marks an empty slot: take the next value
		h.slot = 1
	}
	return h
}

// entry is the per-request scratch of one Apply call. Fields after first
// are used only in the entry of a key's first request.
type entry struct {
	key   hashKey
	shard uint32
	first int32 // index of the first request naming the same key

	last int32            // the last charged request of this slot (its limit gives the expiry), -1 for none
	slot int32            // the key's slot in the table at
	at   place            // where the key's state is stored
	hits bool             // some charged request has hits != 0 (a new key is stored only then)
	cur  algorithms.State // the state after the requests decided so far
}

// Apply implements backends.Backend. It decides reqs in one lock pass; see
// the package's design comment. After Close it returns an error wrapping
// backends.ErrUnavailable.
func (b *Backend) Apply(ctx context.Context, now int64, mode backends.Mode, reqs []backends.Request, out []algorithms.Decision) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: apply: %w: %w", backends.ErrUnavailable, err)
	}
	if b.closed.Load() {
		return errClosed
	}
	if err := backends.CheckArgs(mode, reqs, out); err != nil {
		return fmt.Errorf("memory: apply: %w", err)
	}
	switch n := len(reqs); {
	case n == 0:
	case n == 1:
		var sc [1]entry
		var locked [1]uint32
		b.apply(now, mode, reqs, out, sc[:0], locked[:0])
	case n <= smallReqs:
		var sc [smallReqs]entry
		var locked [smallReqs]uint32
		b.apply(now, mode, reqs, out, sc[:0], locked[:0])
	case n <= stackReqs:
		var sc [stackReqs]entry
		var locked [stackReqs]uint32
		b.apply(now, mode, reqs, out, sc[:0], locked[:0])
	default:
		b.apply(now, mode, reqs, out, make([]entry, 0, n), make([]uint32, 0, n))
	}
	return nil
}

// apply is Apply for valid arguments, on the empty scratches sc and
// locked, whose capacity is at least len(reqs) and whose spare capacity
// is zero.
func (b *Backend) apply(now int64, mode backends.Mode, reqs []backends.Request, out []algorithms.Decision, sc []entry, locked []uint32) {
	for i := range reqs {
		k := b.hash(reqs[i].Key)
		first := int32(i)
		for j := range i {
			if sc[j].key == k && sc[j].first == int32(j) {
				first = int32(j)
				break
			}
		}
		sc = sc[:i+1] // zero: the scratch is fresh
		e := &sc[i]
		e.key, e.shard, e.first, e.last = k, uint32(k.shard&b.mask), first, -1
		if first == int32(i) {
			locked = insertSorted(locked, e.shard)
		}
	}

	for _, s := range locked {
		b.shards[s].mu.Lock()
	}
	for i := range sc {
		if e := &sc[i]; e.first == int32(i) {
			sh := &b.shards[e.shard]
			at, slot := sh.find(e.key)
			e.at, e.slot = at, int32(slot)
			e.cur, _ = sh.state(at, slot)
		}
	}

	// Pass 1: every request with its hits, each key carrying its state.
	enforcingRefused, shadowRefused := false, false
	for i := range reqs {
		r, e := &reqs[i], &sc[sc[i].first]
		d, ns := algorithms.Decide(r.Limit, e.cur, now, r.Hits)
		out[i], e.cur = d, ns
		e.last = int32(i)
		e.hits = e.hits || r.Hits != 0
		if !d.Allowed {
			if r.Shadow {
				shadowRefused = true
			} else {
				enforcingRefused = true
			}
		}
	}
	if mode != backends.ChargeAlways && (enforcingRefused || shadowRefused) {
		vetoed := enforcingRefused || mode == backends.StopWhenOver
		b.recharge(sc, reqs, out, now, !vetoed)
	}
	b.commit(sc, reqs, now)

	for _, s := range locked {
		b.shards[s].mu.Unlock()
	}
}

// recharge is pass 2, for a call that does not charge every request: it
// decides again from the stored states, charging, when charge is set, the requests
// that are allowed, and rewrites the decisions of the others to reflect the
// budget as it stands: an allowed request reports its bucket without its
// hits; a refused one keeps its refusal (Remaining 0) with the Count
// actually used.
func (b *Backend) recharge(sc []entry, reqs []backends.Request, out []algorithms.Decision, now int64, charge bool) {
	for i := range sc {
		if e := &sc[i]; e.first == int32(i) {
			e.cur, _ = b.shards[e.shard].state(e.at, int(e.slot))
			e.last, e.hits = -1, false
		}
	}
	for i := range reqs {
		r, e := &reqs[i], &sc[sc[i].first]
		if charge {
			d, ns := algorithms.Decide(r.Limit, e.cur, now, r.Hits)
			if d.Allowed {
				out[i], e.cur = d, ns
				e.last = int32(i)
				e.hits = e.hits || r.Hits != 0
				continue
			}
		}
		c, _ := algorithms.Decide(r.Limit, e.cur, now, 0)
		if out[i].Allowed {
			c.Allowed, c.RetryAfter = true, 0
			out[i] = c
		} else {
			out[i].Count = c.Count
		}
	}
}

// commit stores the state of every charged key: existing buckets first,
// so that making room for new keys cannot drop a bucket still to be
// written, and of those first the ones that stay in their table, written
// in the slots found before (removing a key shifts others).
func (b *Backend) commit(sc []entry, reqs []backends.Request, now int64) {
	moved := false
	for i := range sc {
		e := &sc[i]
		if e.first != int32(i) || e.last < 0 || e.at == nowhere {
			continue
		}
		sh, expiry := &b.shards[e.shard], algorithms.Expiry(reqs[e.last].Limit, e.cur)
		switch {
		case e.at == inSmall && small(&e.cur):
			sh.small.slots[e.slot].val = smallBucket{a: e.cur.A, b: e.cur.B, c: e.cur.C, d: e.cur.D, expiry: expiry}
		case e.at == inFull && !small(&e.cur):
			sh.full.slots[e.slot].val = fullBucket{state: e.cur, expiry: expiry}
		default:
			moved = true
		}
	}
	for i := range sc {
		e := &sc[i]
		if moved && e.first == int32(i) && e.last >= 0 && e.at != nowhere && small(&e.cur) != (e.at == inSmall) {
			sh := &b.shards[e.shard]
			at, slot := sh.find(e.key)
			sh.remove(at, slot)
			sh.insert(e.key, &e.cur, algorithms.Expiry(reqs[e.last].Limit, e.cur), b.perShard)
		}
	}
	for i := range sc {
		if e := &sc[i]; e.first == int32(i) && e.last >= 0 && e.at == nowhere && e.hits {
			sh := &b.shards[e.shard]
			if sh.len() >= b.perShard {
				b.makeRoom(sh, now)
			}
			sh.insert(e.key, &e.cur, algorithms.Expiry(reqs[e.last].Limit, e.cur), b.perShard)
		}
	}
}

// makeRoom frees at least one slot in the full, locked shard sh: it
// removes the expired buckets among evictSample of each of its tables or,
// when none is expired, the sampled bucket expiring first.
func (b *Backend) makeRoom(sh *shard, now int64) {
	si, se, sfreed := sh.small.sample(now)
	fi, fe, ffreed := sh.full.sample(now)
	switch {
	case sfreed || ffreed:
		return
	case fi >= 0 && (si < 0 || fe < se):
		sh.full.remove(fi)
	case si >= 0:
		sh.small.remove(si)
	default:
		return
	}
	b.evictions.Add(1)
}

// insertSorted adds v to the ascending, duplicate-free s.
func insertSorted(s []uint32, v uint32) []uint32 {
	i := 0
	for i < len(s) && s[i] < v {
		i++
	}
	if i == len(s) {
		return append(s, v)
	}
	if s[i] == v {
		return s
	}
	s = append(s, 0)
	copy(s[i+1:], s[i:])
	s[i] = v
	return s
}

// sweeper removes expired buckets every interval until Close.
func (b *Backend) sweeper(interval time.Duration) {
	defer close(b.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			now := b.now()
			b.sweep(now.UnixMicro())
			b.memos.sweep(now.UnixNano())
		}
	}
}

// sweep removes the buckets expired at now, one shard at a time, and
// returns how many it removed.
func (b *Backend) sweep(now int64) int {
	removed := 0
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		removed += sh.small.removeExpired(now) + sh.full.removeExpired(now)
		sh.mu.Unlock()
	}
	return removed
}

// Reset implements backends.Resetter: it deletes each key from its shard,
// under the shard's lock, and counts the keys that held a bucket not yet
// expired by the Options.Now clock. It does no I/O: it fails (wrapping
// backends.ErrUnavailable) only when ctx is done or after Close.
func (b *Backend) Reset(ctx context.Context, keys [][]byte) (int, error) {
	if err := b.usable(ctx, "reset"); err != nil {
		return 0, err
	}
	now := b.now().UnixMicro()
	n := 0
	for _, k := range keys {
		h := b.hash(k)
		sh := &b.shards[h.shard&b.mask]
		sh.mu.Lock()
		if at, slot := sh.find(h); at != nowhere {
			_, expiry := sh.state(at, slot)
			sh.remove(at, slot)
			if expiry > now {
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n, nil
}

// usable returns the error of an operation op that cannot run: ctx done or
// the backend closed.
func (b *Backend) usable(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: %s: %w: %w", op, backends.ErrUnavailable, err)
	}
	if b.closed.Load() {
		return fmt.Errorf("memory: %s: backend closed: %w", op, backends.ErrUnavailable)
	}
	return nil
}

// Stats returns the current bucket and memo counts and the evictions so far.
func (b *Backend) Stats() Stats {
	var n int64
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		n += int64(sh.len())
		sh.mu.Unlock()
	}
	return Stats{Buckets: n, Evictions: b.evictions.Load(), Memos: b.memos.len(), MemoEvictions: b.memos.evictions.Load()}
}

// Close stops the sweeper and waits for it to return. Apply, Reset, Recall
// and Remember fail after Close; Stats still works. Close may be called more than once.
func (b *Backend) Close() error {
	b.stopOnce.Do(func() {
		b.closed.Store(true)
		close(b.stop)
	})
	<-b.done
	return nil
}
