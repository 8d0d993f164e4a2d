// Package backends defines the contract between the server and the places
// where bucket state lives (memory, Redis), and the errors they share.
//
// A backend decides every bucket of one ShouldRateLimit call in one Apply:
// one lock pass in memory, one round trip to Redis. The conformance suite in
// backends/backendtest checks that every backend behaves the same.
package backends

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ratelimitd/ratelimitd/algorithms"
)

// ErrUnavailable is wrapped by every error a backend returns when it could
// not decide (storage down, deadline passed). The server answers such calls
// with gRPC UNAVAILABLE so that Envoy's failure_mode_deny decides.
var ErrUnavailable = errors.New("backend unavailable")

// Mode says what a call charges when some of its buckets are over limit.
type Mode uint8

const (
	// AllOrNothing charges nothing when any enforcing (non-Shadow) bucket of
	// the call refuses its hits: a refused request consumes no budget,
	// shadow-mode buckets included. Otherwise every bucket that allows its
	// hits is charged; a Shadow bucket that refuses them lets the call pass
	// but is not charged itself, as if it were enforcing. This is
	// ratelimitd's default.
	AllOrNothing Mode = iota
	// ChargeAlways charges every bucket whatever the decisions, over-limit
	// hits included: envoyproxy/ratelimit's default behaviour.
	ChargeAlways
	// StopWhenOver charges nothing when any bucket of the call, shadow-mode
	// buckets included, refuses its hits, and every bucket otherwise:
	// envoyproxy/ratelimit's STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT
	// behaviour.
	StopWhenOver
)

// String returns the mode's setting name.
func (m Mode) String() string {
	switch m {
	case AllOrNothing:
		return "all_or_nothing"
	case ChargeAlways:
		return "charge_always"
	case StopWhenOver:
		return "stop_when_over"
	}
	return "unknown"
}

// ParseMode is the inverse of Mode.String.
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{AllOrNothing, ChargeAlways, StopWhenOver} {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, errors.New("backends: unknown charge mode " + s + " (want all_or_nothing, charge_always or stop_when_over)")
}

// Request is one bucket to decide.
type Request struct {
	// Key names the bucket. Equal keys are the same bucket; a call may name
	// one key twice, and then the second sees the first's hits. The backend
	// copies the key if it keeps it: the caller may reuse the memory after
	// Apply returns.
	Key []byte
	// Limit is what the bucket allows now. A bucket's limit may change
	// between calls (config reload, overrides); the state is kept.
	Limit algorithms.Limit
	// Hits to take: > 0 consume, 0 check without consuming, < 0 give back.
	Hits int64
	// Shadow marks a bucket whose refusal does not block the request
	// (shadow mode): under AllOrNothing it does not veto the call, but a
	// call vetoed by an enforcing bucket does not charge it either.
	Shadow bool
}

// Backend stores bucket state and decides.
//
// Implementations are safe for concurrent use.
type Backend interface {
	// Apply decides reqs at now (microseconds since the Unix epoch) under
	// mode and writes the decision for reqs[i] into out[i]; len(out) must
	// be at least len(reqs). Each decision is algorithms.Decide's for the
	// request against its bucket's state after the call's earlier requests
	// (in order) on the same key. Decisions reflect what was charged: a
	// request that allowed its hits but was not charged (vetoed by another)
	// reports Allowed with its bucket as it stands, without its hits (as
	// Decide with hits 0 gives it); a refused request that was not charged
	// reports its refusal (Remaining 0) with Count the amount actually used.
	//
	// It returns an error wrapping ErrUnavailable when it cannot decide
	// within ctx; out is then meaningless.
	Apply(ctx context.Context, now int64, mode Mode, reqs []Request, out []algorithms.Decision) error
	// Close releases the backend's resources and stops its goroutines.
	Close() error
}

// Resetter is implemented by backends that can forget buckets (the admin
// API's reset). Find it with a type assertion on a Backend. The wrappers of
// backends/resilient implement it whatever they wrap, and answer with an
// error wrapping errors.ErrUnsupported when the backend they wrap does not.
//
// Implementations are safe for concurrent use.
type Resetter interface {
	// Reset removes the buckets named by keys, so that the next Apply on
	// one of them starts from an empty bucket; it returns how many existed
	// (a key named twice counts once). Reset is not atomic across keys:
	// calls running meanwhile may see some keys reset and not others. It
	// returns an error wrapping ErrUnavailable when the storage cannot
	// answer within ctx; the count is then the keys known to be removed,
	// and others may have been removed as well.
	Reset(ctx context.Context, keys [][]byte) (int, error)
}

// Memo stores the answers of idempotent requests, so that a replay within a
// TTL gets the first answer and consumes nothing. Its keys are a namespace
// of their own: they never name a bucket. Find it with a type assertion on
// a Backend; the wrappers of backends/resilient implement it whatever they
// wrap, and answer with an error wrapping errors.ErrUnsupported when the
// backend they wrap does not.
//
// Expiry follows the store's clock (the Redis server's, the memory
// backend's Options.Now), not Apply's now. A bounded store (the memory
// backend) may forget an entry before its TTL to make room.
//
// Implementations are safe for concurrent use, copy key and value if they
// keep them, and return values the caller may modify. Errors wrap
// ErrUnavailable when the storage cannot answer (ctx done, Redis down).
type Memo interface {
	// Recall returns the value stored under key; ok is false when there is
	// none or it expired.
	Recall(ctx context.Context, key []byte) (value []byte, ok bool, err error)
	// Remember stores value under key for ttl unless a value is already
	// stored there; it returns the value stored after the call: value
	// itself, or the earlier one. Of concurrent calls on one key, one
	// stores its value and the others return it. An expired value counts
	// as none. ttl must be positive (a backend may round it up to
	// its resolution, a millisecond for Redis); otherwise Remember fails
	// with an error that does not wrap ErrUnavailable.
	Remember(ctx context.Context, key, value []byte, ttl time.Duration) (stored []byte, err error)
}

// CheckTTL returns the error for a Remember ttl no backend can serve (not
// positive). Backends wrap it with their own prefix.
func CheckTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("ttl %v is not positive", ttl)
	}
	return nil
}

// CheckArgs returns the error for Apply arguments no backend can serve: an
// unknown mode, or fewer decisions than requests. Backends wrap it with
// their own prefix.
func CheckArgs(mode Mode, reqs []Request, out []algorithms.Decision) error {
	if mode > StopWhenOver {
		return fmt.Errorf("unknown mode %d", mode)
	}
	if len(out) < len(reqs) {
		return fmt.Errorf("%d decisions for %d requests", len(out), len(reqs))
	}
	return nil
}
