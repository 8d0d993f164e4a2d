package redis

// The override store (the Store of package overrides, which this package
// does not import: the method set is all it takes). The overrides are the
// fields of one hash, id → value; a counter beside it, the version, is
// incremented by every change, in the same script as the change, so that
// replicas polling it (one GET) know when to load the hash again. Both
// keys are in one Cluster slot (see OverrideStore), so that a script may
// touch both and Load reads both in one MULTI.
//
// A version key that does not exist (a new store, or a Redis that lost its
// data) starts at the Redis TIME in microseconds rather than at 0: a Redis
// that restarted empty and took a few writes must not come back to a
// version a replica already saw, or that replica would keep its old set.

import (
	"context"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ratelimitd/ratelimitd/backends"
)

// DefaultOverrideKey is the hash of the override store when
// OverrideStore's name is "". Its hash tag keeps the version key on its
// slot.
const DefaultOverrideKey = "ratelimitd:{overrides}"

// overrideBump sets the version key KEYS[2] to Redis TIME in microseconds
// if it does not exist, then increments it.
const overrideBump = `
local function bump()
  if redis.call('EXISTS', KEYS[2]) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', KEYS[2], t[1] .. string.format('%06d', tonumber(t[2])))
  end
  return redis.call('INCR', KEYS[2])
end
`

// Scripts of the override store: KEYS[1] the hash, KEYS[2] the version;
// ARGV[1] the id, ARGV[2] (put) the value. Both return the previous value,
// or nil.
var (
	overridePut = goredis.NewScript(overrideBump + `
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
bump()
return old
`)
	overrideDelete = goredis.NewScript(overrideBump + `
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  redis.call('HDEL', KEYS[1], ARGV[1])
  bump()
end
return old
`)
)

// OverrideStore keeps the runtime overrides of package overrides in Redis:
// it implements overrides.Store. Every replica's store over one Redis
// sees the others' writes. Errors wrap backends.ErrUnavailable. It is safe
// for concurrent use, and lives as long as its Backend. Write through it
// only: a field set by hand (redis-cli HSET) does not change the version,
// so replicas see it only with the next change.
type OverrideStore struct {
	b             *Backend
	hash, version string
}

// OverrideStore returns the override store in the hash name
// (DefaultOverrideKey when ""), with its version in name + ":version". The
// Backend applies no key prefix of its own: a caller with one passes
// prefix + DefaultOverrideKey. When name has no hash tag and name +
// ":version" would be on another Cluster slot, the version key is
// "{" + name + "}:version", on name's slot; Keys tells which.
func (b *Backend) OverrideStore(name string) *OverrideStore {
	if name == "" {
		name = DefaultOverrideKey
	}
	version := name + ":version"
	if Slot(version) != Slot(name) {
		if v := "{" + name + "}:version"; Slot(v) == Slot(name) {
			version = v
		}
		// Else name holds a '}' but no hash tag: Cluster refuses the
		// scripts (CROSSSLOT); standalone and Sentinel do not care.
	}
	return &OverrideStore{b: b, hash: name, version: version}
}

// Keys returns the Redis keys of the store: the hash and the version.
func (s *OverrideStore) Keys() (hash, version string) { return s.hash, s.version }

// overrideErr wraps err, a failure of operation op, as unavailable.
func overrideErr(op string, err error) error {
	return fmt.Errorf("redis: overrides: %s: %w: %w", op, backends.ErrUnavailable, err)
}

// start returns the error of an operation op that cannot start.
func (s *OverrideStore) start(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return overrideErr(op, err)
	}
	if s.b.closed.Load() {
		return fmt.Errorf("redis: overrides: %s: backend closed: %w", op, backends.ErrUnavailable)
	}
	return nil
}

// Load returns every override (id → value) and the version, read in one
// MULTI so that they agree.
func (s *OverrideStore) Load(ctx context.Context) (map[string][]byte, int64, error) {
	if err := s.start(ctx, "load"); err != nil {
		return nil, 0, err
	}
	var ver *goredis.StringCmd
	var all *goredis.MapStringStringCmd
	_, err := s.b.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		ver = p.Get(ctx, s.version)
		all = p.HGetAll(ctx, s.hash)
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, 0, overrideErr("load", err)
	}
	v, err := versionOf(ver)
	if err != nil {
		return nil, 0, overrideErr("load", err)
	}
	fields, err := all.Result()
	if err != nil {
		return nil, 0, overrideErr("load", err)
	}
	m := make(map[string][]byte, len(fields))
	for id, value := range fields {
		m[id] = []byte(value)
	}
	return m, v, nil
}

// versionOf reads a GET of the version: 0 when the key does not exist.
func versionOf(c *goredis.StringCmd) (int64, error) {
	v, err := c.Int64()
	if errors.Is(err, goredis.Nil) {
		return 0, nil
	}
	return v, err
}

// Version returns the store's version (one GET): it changes whenever the
// stored set changes. It is 0 for a store never written.
func (s *OverrideStore) Version(ctx context.Context) (int64, error) {
	if err := s.start(ctx, "version"); err != nil {
		return 0, err
	}
	v, err := versionOf(s.b.c.Get(ctx, s.version))
	if err != nil {
		return 0, overrideErr("version", err)
	}
	return v, nil
}

// Put stores value under id and increments the version, atomically, and
// returns the previous value (nil when none).
func (s *OverrideStore) Put(ctx context.Context, id string, value []byte) ([]byte, error) {
	if err := s.start(ctx, "put"); err != nil {
		return nil, err
	}
	return s.run(ctx, "put", overridePut, id, value)
}

// Delete removes id and, when it was there, increments the version,
// atomically; it returns the previous value (nil when none).
func (s *OverrideStore) Delete(ctx context.Context, id string) ([]byte, error) {
	if err := s.start(ctx, "delete"); err != nil {
		return nil, err
	}
	return s.run(ctx, "delete", overrideDelete, id)
}

// run runs a script of the store (EVALSHA, then EVAL on NOSCRIPT) and
// returns its reply: the previous value or nil.
func (s *OverrideStore) run(ctx context.Context, op string, sc *goredis.Script, args ...any) ([]byte, error) {
	old, err := sc.Run(ctx, s.b.c, []string{s.hash, s.version}, args...).Text()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, overrideErr(op, err)
	}
	return []byte(old), nil
}
