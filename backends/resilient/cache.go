package resilient

// Design. The cache remembers facts of the form "bucket K under limit L
// refuses any call of at least H hits until T", learnt from the wrapped
// backend's own refusals: a decision with Allowed false and RetryAfter > 0
// for a request with H = Hits > 0 gives T = now + RetryAfter. While a fact
// holds, a call that would hit it is answered locally.
//
// When a fact is true. RetryAfter is the time until a call with the same
// hits could be allowed if nothing else happened to the bucket. Other
// calls can only consume more (every algorithm's usage grows with hits and
// only time frees budget), so the refusal holds at least until T for H hits
// or more, on every replica, provided that:
//
//   - the limit is the same: facts are keyed on key AND limit, so a config
//     reload or an override that changes the limit starts from no fact;
//   - nobody gives budget back: a refund (Hits < 0) frees budget before T.
//     A refund that passes through this cache drops the facts of its key,
//     but a refund made through another replica is not seen here, so a
//     bucket refunded elsewhere may be refused until T although it has
//     room. Concurrency limits, whose releases are refunds by design, are
//     never cached; for other limits that receive is_negative_hits, weigh
//     that before enabling the cache;
//   - the bucket's state is not dropped early in the store (a Redis FLUSH,
//     an eviction, ratelimitctl reset): the cache keeps refusing until T.
//     A Reset that passes through this cache drops the facts of its keys;
//     one made through another replica is not seen here.
//
// T is computed from the local clock read before the call went out plus a
// duration measured by the store, so it can only be early (by the round
// trip), never late, whatever the skew between the local clock and the
// store's (Redis TIME).
//
// Which calls are answered. Only requests with Hits > 0 on non-shadow
// buckets consult the cache. Under AllOrNothing and StopWhenOver, a call
// with one such request covered by a fact is refused as a whole without
// calling the backend: the backend would refuse it and charge nothing
// anyway. The other buckets of that call were not read; their decisions say
// Allowed (not charged) as a fresh bucket would, which is only what a
// response header may show. Under ChargeAlways, the covered requests are
// answered from the cache and not sent (so not charged, as
// envoyproxy/ratelimit's local cache does), the rest of the call goes to
// the backend. Facts are learnt only from the first request on a key in a
// call: a later one on the same key saw the earlier one's tentative hits.
//
// Storage: Shards maps keyed by bucket key, each behind a mutex, holding a
// few (limit, fact) entries per key; at most Size entries in all. A full
// shard first drops expired entries among a small sample, else the sampled
// entry that expires first (a dropped fact only costs a backend call).

import (
	"bytes"
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
)

const (
	cacheShards      = 16
	cacheEvictSample = 8
)

// CacheOptions configure a Cache.
type CacheOptions struct {
	// Size is the most facts kept; it must be positive.
	Size int
}

// CacheStats is a snapshot of a Cache, for metrics.
type CacheStats struct {
	// Hits counts the bucket decisions answered from the cache.
	Hits int64
	// Calls counts the Apply calls answered without calling the backend.
	Calls int64
	// Entries is the number of facts held (expired ones included until
	// they are dropped).
	Entries int64
	// Evictions counts unexpired facts dropped to stay within Size.
	Evictions int64
}

// Cache answers requests on buckets known to be over their limit from local
// memory, without calling its backend (see the design notes in cache.go for
// when that is exact). Create it with NewCache; it is safe for concurrent
// use.
type Cache struct {
	inner    backends.Backend
	seed     maphash.Seed
	shards   []cacheShard
	perShard int

	hits, calls, entries, evictions atomic.Int64
}

var _ backends.Backend = (*Cache)(nil)

type cacheShard struct {
	mu sync.Mutex
	m  map[string][]fact
	n  int // entries in m
	_  [40]byte
}

// fact: the bucket under limit refuses hits >= minHits until until; at the
// time it was learnt it reset at reset and had count used.
type fact struct {
	limit                 algorithms.Limit
	until, reset, minHits int64
	count                 int64
}

// NewCache returns a Cache of o.Size facts around inner; a Size below 1 is
// taken as 1.
func NewCache(inner backends.Backend, o CacheOptions) *Cache {
	size := max(o.Size, 1)
	n := cacheShards
	for n > size {
		n /= 2
	}
	c := &Cache{inner: inner, seed: maphash.MakeSeed(), shards: make([]cacheShard, n), perShard: size / n}
	for i := range c.shards {
		c.shards[i].m = make(map[string][]fact)
	}
	return c
}

func (c *Cache) shard(key []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, key)&uint64(len(c.shards)-1)]
}

// lookup returns the fact that covers r at now, if any.
func (c *Cache) lookup(r *backends.Request, now int64) (fact, bool) {
	if r.Hits <= 0 || r.Shadow {
		return fact{}, false
	}
	s := c.shard(r.Key)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.m[string(r.Key)] {
		if f.limit == r.Limit && now < f.until && r.Hits >= f.minHits {
			return f, true
		}
	}
	return fact{}, false
}

// forget drops the facts of key under limit.
func (c *Cache) forget(key []byte, limit algorithms.Limit) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	fs, ok := s.m[string(key)]
	if !ok {
		return
	}
	c.removeLocked(s, string(key), fs, func(f fact) bool { return f.limit == limit })
}

// removeLocked removes from key's facts those for which drop is true and
// returns how many it removed.
func (c *Cache) removeLocked(s *cacheShard, key string, fs []fact, drop func(fact) bool) int {
	kept := fs[:0]
	for _, f := range fs {
		if !drop(f) {
			kept = append(kept, f)
		}
	}
	n := len(fs) - len(kept)
	s.n -= n
	c.entries.Add(int64(-n))
	if len(kept) == 0 {
		delete(s.m, key)
	} else {
		s.m[key] = kept
	}
	return n
}

// learn records the fact that r, decided d at now, gives, if any.
func (c *Cache) learn(r *backends.Request, d *algorithms.Decision, now int64) {
	if r.Hits <= 0 || r.Shadow || d.Allowed || d.RetryAfter <= 0 || r.Limit.Algorithm == algorithms.Concurrency {
		return
	}
	f := fact{limit: r.Limit, until: now + d.RetryAfter, reset: now + d.ResetAfter, minHits: r.Hits, count: d.Count}
	s := c.shard(r.Key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if fs, ok := s.m[string(r.Key)]; ok {
		for i := range fs {
			if fs[i].limit == r.Limit {
				fs[i] = f // the newest fact replaces the older: each alone is true
				return
			}
		}
	}
	if s.n >= c.perShard {
		c.evictLocked(s, now)
	}
	key := string(r.Key)
	s.m[key] = append(s.m[key], f)
	s.n++
	c.entries.Add(1)
}

// evictLocked makes room for one fact in s: it drops the expired facts of a
// sample of keys or, when none is expired, the sampled fact that expires
// first.
func (c *Cache) evictLocked(s *cacheShard, now int64) {
	var victim string
	victimUntil := int64(0)
	removed, seen := 0, 0
	for k, fs := range s.m { // map order is random: a sample
		removed += c.removeLocked(s, k, fs, func(f fact) bool { return now >= f.until })
		for _, f := range s.m[k] {
			if victim == "" || f.until < victimUntil {
				victim, victimUntil = k, f.until
			}
		}
		if seen++; seen >= cacheEvictSample {
			break
		}
	}
	if removed > 0 || victim == "" {
		return
	}
	first := true
	if c.removeLocked(s, victim, s.m[victim], func(f fact) bool {
		drop := first && f.until == victimUntil
		if drop {
			first = false
		}
		return drop
	}) > 0 {
		c.evictions.Add(1)
	}
}

// firstOnKey reports whether reqs[i] is the first request of reqs on its key.
func firstOnKey(reqs []backends.Request, i int) bool {
	for j := range i {
		if bytes.Equal(reqs[j].Key, reqs[i].Key) {
			return false
		}
	}
	return true
}

// cached is the decision of a request covered by f at now.
func cached(f fact, now int64) algorithms.Decision {
	return algorithms.Decision{
		Allowed:    false,
		Remaining:  0,
		ResetAfter: max(f.reset-now, 1),
		RetryAfter: f.until - now,
		Count:      f.count,
	}
}

// Apply answers from the cache what it can (see the design notes) and asks
// the backend for the rest.
func (c *Cache) Apply(ctx context.Context, now int64, mode backends.Mode, reqs []backends.Request, out []algorithms.Decision) error {
	if mode == backends.ChargeAlways {
		return c.applyCharging(ctx, now, reqs, out)
	}
	var stack [16]bool
	covered := stack[:0]
	if len(reqs) > len(stack) {
		covered = make([]bool, 0, len(reqs))
	}
	hit := false
	for i := range reqs {
		f, ok := c.lookup(&reqs[i], now)
		covered = append(covered, ok)
		if ok {
			out[i] = cached(f, now)
			hit = true
		}
	}
	if hit {
		// Refused as a whole, and nothing would be charged. The other
		// buckets were not read: answer them as a fresh bucket would, not
		// charged.
		for j := range reqs {
			if covered[j] {
				c.hits.Add(1)
				continue
			}
			r := &reqs[j]
			d, _ := algorithms.Decide(r.Limit, algorithms.State{}, now, max(r.Hits, 0))
			if d.Allowed {
				d, _ = algorithms.Decide(r.Limit, algorithms.State{}, now, 0)
			}
			out[j] = d
		}
		c.calls.Add(1)
		return nil
	}
	c.forgetRefunds(reqs)
	if err := c.inner.Apply(ctx, now, mode, reqs, out); err != nil {
		return err
	}
	for i := range reqs {
		if firstOnKey(reqs, i) {
			c.learn(&reqs[i], &out[i], now)
		}
	}
	return nil
}

// forgetRefunds drops the facts that the refunds among reqs make untrue.
func (c *Cache) forgetRefunds(reqs []backends.Request) {
	for i := range reqs {
		if reqs[i].Hits < 0 {
			c.forget(reqs[i].Key, reqs[i].Limit)
		}
	}
}

// applyCharging is Apply under ChargeAlways: covered requests are answered
// from the cache and not charged, the others go to the backend.
func (c *Cache) applyCharging(ctx context.Context, now int64, reqs []backends.Request, out []algorithms.Decision) error {
	var stackIdx [16]int
	rest := stackIdx[:0] // indexes of the requests sent to the backend
	hits := 0
	for i := range reqs {
		if f, ok := c.lookup(&reqs[i], now); ok {
			out[i] = cached(f, now)
			hits++
			continue
		}
		rest = append(rest, i)
	}
	if hits == 0 {
		c.forgetRefunds(reqs)
		if err := c.inner.Apply(ctx, now, backends.ChargeAlways, reqs, out); err != nil {
			return err
		}
		for i := range reqs {
			if firstOnKey(reqs, i) {
				c.learn(&reqs[i], &out[i], now)
			}
		}
		return nil
	}
	if len(rest) == 0 {
		c.hits.Add(int64(hits))
		c.calls.Add(1)
		return nil
	}
	sub := make([]backends.Request, len(rest))
	subOut := make([]algorithms.Decision, len(rest))
	for k, i := range rest {
		sub[k] = reqs[i]
	}
	c.forgetRefunds(sub)
	if err := c.inner.Apply(ctx, now, backends.ChargeAlways, sub, subOut); err != nil {
		return err
	}
	c.hits.Add(int64(hits))
	for k, i := range rest {
		out[i] = subOut[k]
		if firstOnKey(sub, k) {
			c.learn(&sub[k], &subOut[k], now)
		}
	}
	return nil
}

// Stats returns a snapshot of the cache's counters.
func (c *Cache) Stats() CacheStats {
	return CacheStats{Hits: c.hits.Load(), Calls: c.calls.Load(), Entries: c.entries.Load(), Evictions: c.evictions.Load()}
}

// Close closes the wrapped backend.
func (c *Cache) Close() error { return c.inner.Close() }
