// Package memory is ratelimitd's embedded default backend: bucket state in
// the process's own memory, nothing to install, exact within one replica.
package memory

// Design. Buckets live in Shards maps (a power of two), each behind its own
// mutex; a key's shard is its maphash (per-Backend seed) masked, so unrelated
// keys rarely contend. The maps are keyed by string and looked up with
// m[string(key)], which the compiler does without allocating: only a new
// bucket allocates, for the copy of its key and the bucket itself. Apply
// takes one lock pass per call: it hashes every request, locks the distinct
// shards in ascending index order (every caller takes them in the same
// order, so two calls never deadlock), decides every request with
// algorithms.Decide on a per-call scratch (a stack array for up to
// stackReqs requests, so deciding existing keys allocates nothing), where a
// key named twice carries its tentative state from one request to the next,
// then commits per the Mode and unlocks. Nothing reaches the maps until the
// decision of the whole call is known, so a refused call leaves no trace.
// Memory is bounded: no shard holds more than MaxBuckets/Shards buckets. A
// new key in a full shard first removes the expired buckets among a small
// sample of that shard; if none is expired it evicts the sampled bucket that
// expires first. An evicted live bucket restarts from empty (its budget is
// whole again; a call naming more new keys than its shard has room for can
// even evict a bucket it has just charged), so size MaxBuckets above the
// working set and watch Stats().Evictions. A sweeper goroutine removes expired buckets every
// SweepInterval, one shard at a time so calls on other shards go on, and
// expired memos likewise (memo.go); Close stops it and waits for it.
//
// Reset (backends.Resetter) locks one key's shard at a time and deletes the
// key. Memos (backends.Memo, memo.go) live in a store of their own, bounded
// apart from the buckets, on the Options.Now clock.

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
)

// Defaults for the zero Options.
const (
	DefaultShards        = 64
	DefaultMaxBuckets    = 1 << 20
	DefaultSweepInterval = 10 * time.Second
	// DefaultMemoMaxEntries bounds the memo store (backends.Memo).
	DefaultMemoMaxEntries = 100000

	maxShards = 1 << 16
	// stackReqs is how many requests a call decides on a stack scratch;
	// larger calls allocate one.
	stackReqs = 16
	// evictSample is how many buckets a full shard looks at to make room.
	evictSample = 8
)

// errClosed is returned by Apply after Close.
var errClosed = fmt.Errorf("memory: apply: backend closed: %w", backends.ErrUnavailable)

// Options configures a Backend. The zero Options is the default.
type Options struct {
	// Shards is the number of independently locked maps, rounded up to a
	// power of two; default 64. It is lowered when MaxBuckets is smaller.
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
	seed      maphash.Seed
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

// shard is one locked map, padded to its own cache line.
type shard struct {
	mu sync.Mutex
	m  map[string]*bucket
	_  [48]byte
}

// bucket is the stored state of one key and the instant it expires.
type bucket struct {
	state  algorithms.State
	expiry int64
}

// New returns a Backend with its sweeper started. Out-of-range options take
// their defaults (values <= 0) or are rounded (Shards up to a power of two,
// at most 65536). When MaxBuckets is below Shards the shard count is lowered
// to the largest power of two not above MaxBuckets, so that the total never
// exceeds MaxBuckets.
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
	interval := opts.SweepInterval
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	b := &Backend{
		seed:     maphash.MakeSeed(),
		shards:   make([]shard, shards),
		mask:     uint64(shards - 1),
		perShard: maxBuckets / shards,
		now:      now,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	for i := range b.shards {
		b.shards[i].m = make(map[string]*bucket)
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

// entry is the per-request scratch of one Apply call. Fields after first
// are used only in the entry of a key's first request (its slot).
type entry struct {
	hash  uint64
	shard uint32
	first int32 // index of the first request naming the same key

	b         *bucket // stored bucket, nil for a new key
	orig, cur algorithms.State
	lim       algorithms.Limit // limit of the last charged request
	charged   bool             // some request of this slot is charged
	hits      bool             // ... with hits != 0 (a new key is stored only then)
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
	if len(reqs) == 0 {
		return nil
	}

	var stack [stackReqs]entry
	var lockStack [stackReqs]uint32
	sc, locked := stack[:0], lockStack[:0]
	if len(reqs) > stackReqs {
		sc = make([]entry, 0, len(reqs))
		locked = make([]uint32, 0, len(reqs))
	}
	for i := range reqs {
		h := maphash.Bytes(b.seed, reqs[i].Key)
		e := entry{hash: h, shard: uint32(h & b.mask), first: int32(i)}
		for j := range i {
			if sc[j].hash == h && sc[j].first == int32(j) && bytes.Equal(reqs[j].Key, reqs[i].Key) {
				e.first = int32(j)
				break
			}
		}
		sc = append(sc, e)
		if e.first == int32(i) {
			locked = insertSorted(locked, e.shard)
		}
	}

	for _, s := range locked {
		b.shards[s].mu.Lock()
	}
	for i := range sc {
		if e := &sc[i]; e.first == int32(i) {
			if e.b = b.shards[e.shard].m[string(reqs[i].Key)]; e.b != nil {
				e.orig = e.b.state
			}
			e.cur = e.orig
		}
	}

	// Pass 1: every request with its hits, each key carrying its state.
	enforcingRefused, shadowRefused := false, false
	for i := range reqs {
		r, e := &reqs[i], &sc[sc[i].first]
		d, ns := algorithms.Decide(r.Limit, e.cur, now, r.Hits)
		out[i], e.cur = d, ns
		e.lim, e.charged = r.Limit, true
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
	return nil
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
			e.cur, e.charged, e.hits = e.orig, false, false
		}
	}
	for i := range reqs {
		r, e := &reqs[i], &sc[sc[i].first]
		if charge {
			d, ns := algorithms.Decide(r.Limit, e.cur, now, r.Hits)
			if d.Allowed {
				out[i], e.cur = d, ns
				e.lim, e.charged = r.Limit, true
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

// commit stores the state of every charged key: existing buckets first, so
// that making room for new keys cannot drop a bucket still to be written.
func (b *Backend) commit(sc []entry, reqs []backends.Request, now int64) {
	for i := range sc {
		if e := &sc[i]; e.first == int32(i) && e.charged && e.b != nil {
			e.b.state, e.b.expiry = e.cur, algorithms.Expiry(e.lim, e.cur)
		}
	}
	for i := range sc {
		if e := &sc[i]; e.first == int32(i) && e.charged && e.b == nil && e.hits {
			sh := &b.shards[e.shard]
			if len(sh.m) >= b.perShard {
				b.makeRoom(sh, now)
			}
			sh.m[string(reqs[i].Key)] = &bucket{state: e.cur, expiry: algorithms.Expiry(e.lim, e.cur)}
		}
	}
}

// makeRoom frees at least one slot in the full, locked shard sh (see
// makeRoomIn).
func (b *Backend) makeRoom(sh *shard, now int64) {
	if makeRoomIn(sh.m, now) {
		b.evictions.Add(1)
	}
}

// expiring is a stored value with an expiry: a bucket or a memo.
type expiring interface{ expiresAt() int64 }

func (b *bucket) expiresAt() int64 { return b.expiry }

// makeRoomIn frees at least one slot in the full map m: it removes the
// expired entries among evictSample of them (map iteration starts at a
// random place) or, when none is expired, the sampled entry expiring
// first, and reports whether it had to evict a live one.
func makeRoomIn[V expiring](m map[string]V, now int64) bool {
	victim, earliest, freed, n := "", int64(math.MaxInt64), false, 0
	for k, v := range m {
		if e := v.expiresAt(); e <= now {
			delete(m, k)
			freed = true
		} else if e <= earliest {
			victim, earliest = k, e
		}
		if n++; n == evictSample {
			break
		}
	}
	if !freed && len(m) > 0 {
		delete(m, victim)
		return true
	}
	return false
}

// removeExpired deletes the entries of m expired at now and returns how
// many it removed.
func removeExpired[V expiring](m map[string]V, now int64) int {
	removed := 0
	for k, v := range m {
		if v.expiresAt() <= now {
			delete(m, k)
			removed++
		}
	}
	return removed
}

// insertSorted adds v to the ascending, duplicate-free s.
func insertSorted(s []uint32, v uint32) []uint32 {
	i := 0
	for i < len(s) && s[i] < v {
		i++
	}
	if i < len(s) && s[i] == v {
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
		removed += removeExpired(sh.m, now)
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
		sh := &b.shards[maphash.Bytes(b.seed, k)&b.mask]
		sh.mu.Lock()
		if v, ok := sh.m[string(k)]; ok {
			delete(sh.m, string(k))
			if v.expiry > now {
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
		n += int64(len(sh.m))
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
