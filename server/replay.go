package server

// Idempotent replays. A domain with `idempotency: {key: K, ttl: T}` treats
// the value of a descriptor entry K as the request's idempotency key: the
// first call's answer is stored in the backend (backends.Memo) for T, and a
// call with the same key within T gets that answer back and consumes
// nothing. The entry is taken out of its descriptor before matching, so it
// never becomes part of a bucket key.
//
// Two first calls with one key that race each other both consume; the
// later one's answer is replaced by the one stored first, so every caller
// sees one answer. The memo costs a second backend round trip, for calls
// that carry a key only.

import (
	"context"
	"errors"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"

	"github.com/ratelimitd/ratelimitd/backends"
)

// appendMemoKey appends the memo key of an idempotency key in domain:
// length-prefixed like bucket keys, after the key prefix and "idem".
func appendMemoKey(dst []byte, prefix, domain, key string) []byte {
	dst = append(dst, prefix...)
	dst = appendLP(dst, "idem")
	dst = appendLP(dst, domain)
	return appendLP(dst, key)
}

func appendLP(dst []byte, s string) []byte {
	var digits [20]byte
	n := len(s)
	i := len(digits)
	for {
		i--
		digits[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	dst = append(dst, digits[i:]...)
	dst = append(dst, ':')
	return append(dst, s...)
}

// recall returns the stored answer of key, if any, under the backend
// deadline.
func (s *Server) recall(ctx context.Context, memo backends.Memo, key []byte) (*rlsv3.RateLimitResponse, bool, error) {
	ctx, cancel := s.backendContext(ctx)
	defer cancel()
	b, ok, err := memo.Recall(ctx, key)
	if errors.Is(err, errors.ErrUnsupported) {
		return nil, false, nil // a wrapper over a backend without memos
	}
	if err != nil {
		s.m.backendErrs.Inc()
		return nil, false, &backendError{err: err}
	}
	if !ok {
		return nil, false, nil
	}
	resp := new(rlsv3.RateLimitResponse)
	if err := proto.Unmarshal(b, resp); err != nil {
		// Not ours (or corrupt): decide afresh rather than fail the call.
		s.log.Warn("idempotency: stored answer does not decode; deciding again", "error", err.Error())
		return nil, false, nil
	}
	return resp, true, nil
}

// remember stores resp as key's answer for ttl and returns the answer that
// is stored: resp, or the one a racing first call stored earlier. A failure
// to store is logged and resp returned: the decision was made and charged.
func (s *Server) remember(ctx context.Context, memo backends.Memo, key []byte, resp *rlsv3.RateLimitResponse, ttl time.Duration) *rlsv3.RateLimitResponse {
	b, err := proto.Marshal(resp)
	if err != nil {
		s.log.Warn("idempotency: answer does not encode", "error", err.Error())
		return resp
	}
	ctx, cancel := s.backendContext(ctx)
	defer cancel()
	stored, err := memo.Remember(ctx, key, b, ttl)
	if errors.Is(err, errors.ErrUnsupported) {
		return resp
	}
	if err != nil {
		s.m.backendErrs.Inc()
		s.log.Warn("idempotency: answer not stored; a replay will be decided again", "error", err.Error())
		return resp
	}
	if string(stored) != string(b) {
		first := new(rlsv3.RateLimitResponse)
		if proto.Unmarshal(stored, first) == nil {
			return first
		}
	}
	return resp
}

// backendContext bounds ctx by the backend deadline.
func (s *Server) backendContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.o.BackendTimeout <= 0 {
		return ctx, func() {}
	}
	deadline := time.Now().Add(s.o.BackendTimeout)
	if d, ok := ctx.Deadline(); ok && !d.After(deadline) {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, deadline)
}
