package server

// Idempotent replays. A domain with `idempotency: {key: K, ttl: T}` treats
// the value of a descriptor entry K as the request's idempotency key: the
// first call's answer is stored in the backend (backends.Memo) for T, and a
// call with the same key within T gets that answer back and consumes
// nothing. The entry is taken out of its descriptor before matching, so it
// never becomes part of a bucket key.
//
// The stored answer is the answer to one request: the memo key holds a
// digest of the request's content (hits, every descriptor's entries but
// the idempotency entry, hits_addend, is_negative_hits, limit), so a call
// that reuses the key with other descriptors (Envoy's stream-end call of
// the same request, counting tokens) is decided on its own, and a replay
// never gets an answer whose statuses do not fit its descriptors.
//
// Two first calls with one key that race each other both consume; the
// later one's answer is replaced by the one stored first, so every caller
// sees one answer. The memo costs a second backend round trip, for calls
// that carry a key only.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"strconv"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"

	"github.com/ratelimitd/ratelimitd/backends"
)

// appendMemoKey appends the memo key of an idempotency key in domain for
// req: length-prefixed like bucket keys, after the key prefix and "idem",
// then the hex SHA-256 of the request's content without the entries named
// idemKey.
func appendMemoKey(dst []byte, prefix, domain, key string, req *rlsv3.RateLimitRequest, idemKey string) []byte {
	dst = append(dst, prefix...)
	dst = appendLP(dst, "idem")
	dst = appendLP(dst, domain)
	dst = appendLP(dst, key)
	h := sha256.New()
	var buf []byte
	buf = strconv.AppendUint(buf, uint64(req.HitsAddend), 10)
	for _, d := range req.Descriptors {
		buf = append(buf, "|d"...)
		for _, e := range d.Entries {
			if e.Key == idemKey {
				continue
			}
			buf = appendLP(buf, e.Key)
			buf = appendLP(buf, e.Value)
		}
		if ha := d.GetHitsAddend(); ha != nil {
			buf = append(buf, "|h"...)
			buf = strconv.AppendUint(buf, ha.GetValue(), 10)
		}
		if d.GetIsNegativeHits() {
			buf = append(buf, "|n"...)
		}
		if l := d.GetLimit(); l != nil {
			buf = append(buf, "|l"...)
			buf = strconv.AppendUint(buf, uint64(l.GetRequestsPerUnit()), 10)
			buf = append(buf, '/')
			buf = strconv.AppendInt(buf, int64(l.GetUnit()), 10)
		}
		h.Write(buf)
		buf = buf[:0]
	}
	h.Write(buf)
	var sum [sha256.Size]byte
	return appendLP(dst, hex.EncodeToString(h.Sum(sum[:0])))
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
		return nil, false, s.backendFailed(ctx, err)
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
		s.backendFailed(ctx, err)
		s.warnFailure(s.now(), "idempotency: answer not stored; a replay will be decided again", slog.String("error", err.Error()))
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
