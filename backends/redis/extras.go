package redis

// Reset and the memo store (backends.Resetter, backends.Memo).
//
// Reset is DEL of the bucket keys as Apply names them: one DEL with every
// key in standalone and Sentinel, one per hash slot in a Cluster (Apply's
// grouping), all in one pipeline, which go-redis splits per node. Memos are
// plain string keys, MemoPrefix followed by the caller's key, written with
// SET NX GET PX (Redis 7.0 or later: older servers answer a syntax error)
// and read with GET; Redis expires them on its own clock. Bucket keys built
// by package config start with a digit or a '{', so a memo key never names
// a bucket. Like Apply, every call honours the caller's context and is not
// retried; errors wrap backends.ErrUnavailable, except a bad ttl.

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ratelimitd/ratelimitd/backends"
)

// MemoPrefix starts the Redis key of every memo: the memo stored under key
// lives in the Redis key MemoPrefix + key.
const MemoPrefix = "memo:"

var (
	_ backends.Resetter = (*Backend)(nil)
	_ backends.Memo     = (*Backend)(nil)
)

// usable returns the error of an operation op that cannot start: ctx done
// or the backend closed.
func (b *Backend) usable(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis: %s: %w: %w", op, backends.ErrUnavailable, err)
	}
	if b.closed.Load() {
		return fmt.Errorf("redis: %s: backend closed: %w", op, backends.ErrUnavailable)
	}
	return nil
}

// Reset implements backends.Resetter: it deletes the keys (one DEL per hash
// slot in a Cluster, pipelined) and returns how many Redis deleted. A key
// still in Redis past its state's expiry (keys outlive it by TTLMargin)
// counts as existing. When some slots fail, the count is that of the slots
// that answered, and the error wraps backends.ErrUnavailable.
func (b *Backend) Reset(ctx context.Context, keys [][]byte) (int, error) {
	if err := b.usable(ctx, "reset"); err != nil {
		return 0, err
	}
	if len(keys) == 0 {
		return 0, nil
	}
	ks := make([]string, len(keys))
	for i, k := range keys {
		ks[i] = string(k)
	}
	groups := b.group(ks, nil)
	cmds := make([]*goredis.IntCmd, len(groups))
	args := func(g *group) []string {
		a := make([]string, len(g.keys))
		for n, k := range g.keys {
			a[n] = ks[k]
		}
		return a
	}
	if len(groups) == 1 {
		cmds[0] = b.c.Del(ctx, args(&groups[0])...)
	} else {
		pipe := b.c.Pipeline()
		for g := range groups {
			cmds[g] = pipe.Del(ctx, args(&groups[g])...)
		}
		pipe.Exec(ctx) // per-command errors are read below
	}
	n := 0
	var errs []error
	for _, c := range cmds {
		d, err := c.Result()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n += int(d)
	}
	if len(errs) > 0 {
		return n, fmt.Errorf("redis: reset: %w: %w", backends.ErrUnavailable, errors.Join(errs...))
	}
	return n, nil
}

// Recall implements backends.Memo with GET of MemoPrefix + key.
func (b *Backend) Recall(ctx context.Context, key []byte) ([]byte, bool, error) {
	if err := b.usable(ctx, "recall"); err != nil {
		return nil, false, err
	}
	v, err := b.c.Get(ctx, MemoPrefix+string(key)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("redis: recall: %w: %w", backends.ErrUnavailable, err)
	}
	return v, true, nil
}

// Remember implements backends.Memo with SET MemoPrefix+key value NX GET
// PX ttl, ttl rounded up to a whole millisecond and cut to ten years. It
// needs Redis 7.0 or later.
func (b *Backend) Remember(ctx context.Context, key, value []byte, ttl time.Duration) ([]byte, error) {
	if err := b.usable(ctx, "remember"); err != nil {
		return nil, err
	}
	if err := backends.CheckTTL(ttl); err != nil {
		return nil, fmt.Errorf("redis: remember: %w", err)
	}
	ms := ttl / time.Millisecond
	if ttl%time.Millisecond != 0 {
		ms++
	}
	ms = min(ms, maxTTL)
	old, err := b.c.Do(ctx, "set", MemoPrefix+string(key), value, "px", int64(ms), "nx", "get").Text()
	if errors.Is(err, goredis.Nil) {
		return value, nil // no earlier value: ours is stored
	}
	if err != nil {
		return nil, fmt.Errorf("redis: remember: %w: %w", backends.ErrUnavailable, err)
	}
	return []byte(old), nil
}
