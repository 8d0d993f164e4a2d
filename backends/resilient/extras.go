package resilient

// Reset and Memo through the wrappers. Every wrapper implements
// backends.Resetter and backends.Memo whatever it wraps, so that the server
// finds them with a type assertion on the outermost wrapper, and forwards
// the call inwards. The innermost wrapper whose backend lacks the
// capability answers with an error wrapping errors.ErrUnsupported (see
// unsupported), which the wrappers around it pass on unchanged: it is not a
// failure of the store, so the breaker does not count it and the fallback
// does not answer in its place.
//
// Breaker: the calls go through the breaker as Apply does: a failure
// (wrapping backends.ErrUnavailable) counts towards opening it, a success
// resets the count, and while it is open they are answered at once with
// ErrOpen. A call may be the breaker's probe.
//
// Cache: Reset also drops the cache's facts about the keys (every limit),
// since a reset bucket has its whole budget again; memos pass through.
//
// Fallback: Reset and memos pass through, failures included: an admin reset
// or a memo decided on one replica's memory would mislead the others. Under
// the Local policy, Reset also resets the keys in the local backend, so
// that the next outage does not start from stale local buckets.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ratelimitd/ratelimitd/backends"
)

var (
	_ backends.Resetter = (*Breaker)(nil)
	_ backends.Memo     = (*Breaker)(nil)
	_ backends.Resetter = (*Cache)(nil)
	_ backends.Memo     = (*Cache)(nil)
	_ backends.Resetter = (*Fallback)(nil)
	_ backends.Memo     = (*Fallback)(nil)
)

// unsupported is the error of a wrapper asked for op, a method of
// interface iface that its backend inner does not implement.
func unsupported(op, iface string, inner backends.Backend) error {
	return fmt.Errorf("resilient: %s: %T does not implement %s: %w", op, inner, iface, errors.ErrUnsupported)
}

// through runs call on the wrapped backend as the breaker runs Apply.
func (b *Breaker) through(ctx context.Context, call func() error) error {
	probe, err := b.admit()
	if err != nil {
		return err
	}
	err = call()
	b.record(ctx, probe, err)
	return err
}

// Reset forwards to the wrapped backend's Reset through the breaker (see
// the notes in extras.go). It fails with an error wrapping
// errors.ErrUnsupported when the wrapped backend is not a
// backends.Resetter, and with ErrOpen while the breaker is open.
func (b *Breaker) Reset(ctx context.Context, keys [][]byte) (int, error) {
	r, ok := b.inner.(backends.Resetter)
	if !ok {
		return 0, unsupported("reset", "backends.Resetter", b.inner)
	}
	var n int
	err := b.through(ctx, func() (err error) {
		n, err = r.Reset(ctx, keys)
		return err
	})
	return n, err
}

// Recall forwards to the wrapped backend's Recall through the breaker. It
// fails with an error wrapping errors.ErrUnsupported when the wrapped
// backend is not a backends.Memo, and with ErrOpen while the breaker is
// open.
func (b *Breaker) Recall(ctx context.Context, key []byte) ([]byte, bool, error) {
	m, ok := b.inner.(backends.Memo)
	if !ok {
		return nil, false, unsupported("recall", "backends.Memo", b.inner)
	}
	var (
		v     []byte
		found bool
	)
	err := b.through(ctx, func() (err error) {
		v, found, err = m.Recall(ctx, key)
		return err
	})
	return v, found, err
}

// Remember forwards to the wrapped backend's Remember through the breaker.
// It fails with an error wrapping errors.ErrUnsupported when the wrapped
// backend is not a backends.Memo, and with ErrOpen while the breaker is
// open.
func (b *Breaker) Remember(ctx context.Context, key, value []byte, ttl time.Duration) ([]byte, error) {
	m, ok := b.inner.(backends.Memo)
	if !ok {
		return nil, unsupported("remember", "backends.Memo", b.inner)
	}
	var stored []byte
	err := b.through(ctx, func() (err error) {
		stored, err = m.Remember(ctx, key, value, ttl)
		return err
	})
	return stored, err
}

// Reset forwards to the wrapped backend's Reset, then drops the cache's
// facts about keys (also when the backend failed: the reset may have
// happened). It fails with an error wrapping errors.ErrUnsupported when
// the wrapped backend is not a backends.Resetter.
func (c *Cache) Reset(ctx context.Context, keys [][]byte) (int, error) {
	r, ok := c.inner.(backends.Resetter)
	if !ok {
		return 0, unsupported("reset", "backends.Resetter", c.inner)
	}
	n, err := r.Reset(ctx, keys)
	for _, k := range keys {
		c.forgetKey(k)
	}
	return n, err
}

// forgetKey drops every fact about key.
func (c *Cache) forgetKey(key []byte) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if fs, ok := s.m[string(key)]; ok {
		c.removeLocked(s, string(key), fs, func(fact) bool { return true })
	}
}

// Recall forwards to the wrapped backend's Recall. It fails with an error
// wrapping errors.ErrUnsupported when the wrapped backend is not a
// backends.Memo.
func (c *Cache) Recall(ctx context.Context, key []byte) ([]byte, bool, error) {
	m, ok := c.inner.(backends.Memo)
	if !ok {
		return nil, false, unsupported("recall", "backends.Memo", c.inner)
	}
	return m.Recall(ctx, key)
}

// Remember forwards to the wrapped backend's Remember. It fails with an
// error wrapping errors.ErrUnsupported when the wrapped backend is not a
// backends.Memo.
func (c *Cache) Remember(ctx context.Context, key, value []byte, ttl time.Duration) ([]byte, error) {
	m, ok := c.inner.(backends.Memo)
	if !ok {
		return nil, unsupported("remember", "backends.Memo", c.inner)
	}
	return m.Remember(ctx, key, value, ttl)
}

// Reset forwards to the wrapped backend's Reset and returns its count and
// error, whatever the policy; under the Local policy it resets keys in the
// local backend as well (when that is a backends.Resetter). It fails with
// an error wrapping errors.ErrUnsupported when the wrapped backend is not a
// backends.Resetter.
func (f *Fallback) Reset(ctx context.Context, keys [][]byte) (int, error) {
	r, ok := f.inner.(backends.Resetter)
	if !ok {
		return 0, unsupported("reset", "backends.Resetter", f.inner)
	}
	n, err := r.Reset(ctx, keys)
	if lr, ok := f.local.(backends.Resetter); ok {
		// No I/O: the caller's deadline, which may be what failed the
		// backend, is not needed.
		if _, lerr := lr.Reset(context.WithoutCancel(ctx), keys); lerr != nil && err == nil {
			err = fmt.Errorf("resilient: reset: local fallback: %w", lerr)
		}
	}
	return n, err
}

// Recall forwards to the wrapped backend's Recall; its failures are passed
// on whatever the policy. It fails with an error wrapping
// errors.ErrUnsupported when the wrapped backend is not a backends.Memo.
func (f *Fallback) Recall(ctx context.Context, key []byte) ([]byte, bool, error) {
	m, ok := f.inner.(backends.Memo)
	if !ok {
		return nil, false, unsupported("recall", "backends.Memo", f.inner)
	}
	return m.Recall(ctx, key)
}

// Remember forwards to the wrapped backend's Remember; its failures are
// passed on whatever the policy. It fails with an error wrapping
// errors.ErrUnsupported when the wrapped backend is not a backends.Memo.
func (f *Fallback) Remember(ctx context.Context, key, value []byte, ttl time.Duration) ([]byte, error) {
	m, ok := f.inner.(backends.Memo)
	if !ok {
		return nil, unsupported("remember", "backends.Memo", f.inner)
	}
	return m.Remember(ctx, key, value, ttl)
}
