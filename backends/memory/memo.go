package memory

// The memo store (backends.Memo) is apart from the buckets: its keys are a
// namespace of their own and its bound (Options.MemoMaxEntries) does not
// take room from buckets. It is sharded like the buckets, with fewer
// shards (memos are rarer than bucket decisions; a store of fewer than
// 128 memos has one), and it expires entries on
// the Options.Now clock, in nanoseconds, since a memo's TTL is a duration
// from the moment it is stored and Remember has no now argument. A full
// shard makes room as makeRoom does for buckets; the sweeper removes
// expired memos along with expired buckets.

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ratelimitd/ratelimitd/backends"
)

const (
	// memoShards is the most shards of the memo store.
	memoShards = 16
	// memoMinPerShard is the fewest memos a shard is sized for: a smaller
	// store has fewer shards, down to one.
	memoMinPerShard = 64
)

// memoStore is the bounded, sharded map of memos.
type memoStore struct {
	seed      maphash.Seed
	shards    []memoShard
	perShard  int
	evictions atomic.Int64
}

// memoShard is one locked map of memos, padded to its own cache line.
type memoShard struct {
	mu sync.Mutex
	m  map[string]memo
	_  [48]byte
}

// memo is a stored value and the instant (Unix nanoseconds) it expires.
type memo struct {
	value  string
	expiry int64
}

// init sizes the store for maxEntries memos (<= 0: the default), never
// more in total.
func (s *memoStore) init(maxEntries int) {
	if maxEntries <= 0 {
		maxEntries = DefaultMemoMaxEntries
	}
	n := memoShards
	for n > 1 && maxEntries/n < memoMinPerShard {
		n /= 2
	}
	s.seed = maphash.MakeSeed()
	s.shards = make([]memoShard, n)
	s.perShard = maxEntries / n
	for i := range s.shards {
		s.shards[i].m = make(map[string]memo)
	}
}

func (s *memoStore) shard(key []byte) *memoShard {
	return &s.shards[maphash.Bytes(s.seed, key)&uint64(len(s.shards)-1)]
}

// Recall implements backends.Memo. A memo expires at the Options.Now
// instant its TTL ends.
func (b *Backend) Recall(ctx context.Context, key []byte) ([]byte, bool, error) {
	if err := b.usable(ctx, "recall"); err != nil {
		return nil, false, err
	}
	now := b.now().UnixNano()
	sh := b.memos.shard(key)
	sh.mu.Lock()
	m, ok := sh.m[string(key)]
	if ok && m.expiry <= now {
		delete(sh.m, string(key))
		ok = false
	}
	sh.mu.Unlock()
	if !ok {
		return nil, false, nil
	}
	return []byte(m.value), true, nil
}

// Remember implements backends.Memo. The memo expires ttl after the
// Options.Now instant of the call. It fails with an error wrapping
// backends.ErrUnavailable only when ctx is done or after Close.
func (b *Backend) Remember(ctx context.Context, key, value []byte, ttl time.Duration) ([]byte, error) {
	if err := b.usable(ctx, "remember"); err != nil {
		return nil, err
	}
	if err := backends.CheckTTL(ttl); err != nil {
		return nil, fmt.Errorf("memory: remember: %w", err)
	}
	now := b.now().UnixNano()
	expiry := now + int64(ttl)
	if expiry < now {
		expiry = math.MaxInt64
	}
	s := &b.memos
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	m, ok := sh.m[string(key)]
	if ok && m.expiry > now {
		return []byte(m.value), nil
	}
	if !ok && len(sh.m) >= s.perShard {
		s.makeRoom(sh, now)
	}
	sh.m[string(key)] = memo{value: string(value), expiry: expiry}
	return value, nil
}

// makeRoom frees at least one slot in the full, locked shard sh, as
// Backend.makeRoom does for buckets.
func (s *memoStore) makeRoom(sh *memoShard, now int64) {
	if makeRoomIn(sh.m, now) {
		s.evictions.Add(1)
	}
}

// makeRoomIn frees at least one slot in the full map m: it removes the
// expired memos among evictSample of them (map iteration starts at a
// random place) or, when none is expired, the sampled memo expiring first,
// and reports whether it had to evict a live one.
func makeRoomIn(m map[string]memo, now int64) bool {
	victim, earliest, freed, n := "", int64(math.MaxInt64), false, 0
	for k, v := range m {
		if v.expiry <= now {
			delete(m, k)
			freed = true
		} else if v.expiry <= earliest {
			victim, earliest = k, v.expiry
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

// removeExpired deletes the memos of m expired at now and returns how
// many it removed.
func removeExpired(m map[string]memo, now int64) int {
	removed := 0
	for k, v := range m {
		if v.expiry <= now {
			delete(m, k)
			removed++
		}
	}
	return removed
}

// sweep removes the memos expired at now (Unix nanoseconds), one shard at
// a time, and returns how many it removed.
func (s *memoStore) sweep(now int64) int {
	removed := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		removed += removeExpired(sh.m, now)
		sh.mu.Unlock()
	}
	return removed
}

// len returns the number of memos held, expired ones included.
func (s *memoStore) len() int64 {
	var n int64
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += int64(len(sh.m))
		sh.mu.Unlock()
	}
	return n
}
