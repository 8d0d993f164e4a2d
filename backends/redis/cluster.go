package redis

import (
	"context"
	"strings"
	"time"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
)

// refundTimeout bounds a cross-slot refund (see crossSlot).
const refundTimeout = 2 * time.Second

// Slot returns the Redis Cluster hash slot of key: CRC16 (XMODEM) of the
// key, or of its hash tag (the part between the first '{' and the next '}',
// when not empty), modulo 16384.
func Slot(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	return int(crc16(key) % 16384)
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial 0), as Redis Cluster
// computes it.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// slotReply is one slot's detailed reply (see lua/apply.lua).
type slotReply struct {
	final, first []algorithms.Decision
	view         [][3]int64 // remaining, resetAfter, count with 0 hits on the stored state
	enf, shd     bool
	keys         []keyReply
}

// keyReply is what the script wrote to one key.
type keyReply struct {
	written       bool
	before, wrote string
	net           int64
}

// crossSlot finishes a Cluster call that spans several slots: it applies
// the call's veto across slots, reports the decisions of an uncharged call
// when vetoed, and refunds the slots that charged.
//
// Each slot's script decided and charged by its own buckets alone. Pass 1
// (every request with its hits) and the charge of a call that is not vetoed
// depend only on each key's own sequence of requests, so they are the same
// per slot as for the whole call. Only the veto is global: when any slot
// saw an enforcing bucket refuse (or, under StopWhenOver, any bucket), the
// whole call must charge nothing, so the slots that did charge are
// refunded. The refund is a second script invocation per such slot, one
// round trip later: for that short while other calls may see those buckets
// charged. A refund restores the exact previous state
// when nobody touched the key in between, and otherwise gives the net hits
// back with negative hits.
//
// When a slot answers with an error (its node timed out, is down, or the
// script failed), the call fails with ErrUnavailable, and the slots whose
// replies say they charged are refunded the same way: a failed call must
// not spend budget on the slots that did answer. (The failed slot itself
// may have run its script, or may run it later: that charge cannot be
// known, and is not refunded.)
//
// Apply waits for the refund, or for its context: the decisions stand
// either way, and a refund still running when Apply returns is finished in
// the background (Close waits for it).
func (b *Backend) crossSlot(ctx context.Context, t int64, mode backends.Mode, reqs []backends.Request, groups []group, out []algorithms.Decision) error {
	replies := make([]slotReply, len(groups))
	parsed := make([]bool, len(groups))
	var firstErr error
	enf, shd := false, false
	for g := range groups {
		r, err := b.slotReply(&groups[g])
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		replies[g], parsed[g] = r, true
		enf, shd = enf || r.enf, shd || r.shd
	}
	if firstErr != nil {
		b.refund(ctx, t, reqs, groups, replies, parsed)
		return firstErr // wraps ErrUnavailable (see reply and slotReply)
	}
	vetoed := mode != backends.ChargeAlways && (enf || (mode == backends.StopWhenOver && shd))
	for g := range groups {
		r := &replies[g]
		for n, i := range groups[g].reqs {
			if !vetoed {
				out[i] = r.final[n]
				continue
			}
			// As backends/memory reports an uncharged call.
			p, v := r.first[n], r.view[n]
			if p.Allowed {
				out[i] = algorithms.Decision{Allowed: true, Remaining: v[0], ResetAfter: v[1], Count: v[2]}
			} else {
				p.Count = v[2]
				out[i] = p
			}
		}
	}
	if vetoed {
		b.refund(ctx, t, reqs, groups, replies, parsed)
	}
	return nil
}

// refund gives back what the slots g with charged[g] wrote, per their
// replies (see crossSlot), and waits for it or for ctx.
func (b *Backend) refund(ctx context.Context, t int64, reqs []backends.Request, groups []group, replies []slotReply, charged []bool) {
	var invs []*invocation
	for g := range groups {
		if !charged[g] {
			continue
		}
		gr, r := &groups[g], &replies[g]
		var inv invocation
		for n := range gr.keys {
			kr := r.keys[n]
			if !kr.written || kr.before == kr.wrote {
				continue
			}
			// The limit of the key's last request decides a partial refund.
			var l algorithms.Limit
			for _, i := range gr.reqs {
				if string(reqs[i].Key) == gr.inv.keys[n] {
					l = reqs[i].Limit
				}
			}
			inv.keys = append(inv.keys, gr.inv.keys[n])
			inv.args = append(inv.args, kr.before, kr.wrote, kr.net, int64(l.Algorithm))
			inv.args = limitArgs(inv.args, l)
		}
		if len(inv.keys) > 0 {
			inv.script = b.scripts.refund
			inv.args = append([]any{t}, inv.args...)
			invs = append(invs, &inv)
		}
	}
	if len(invs) == 0 {
		return
	}
	b.refunds.Add(1)
	// The refund runs detached from ctx, so that a caller that gives up
	// does not leave the budget charged, and Apply waits for it (or for
	// ctx) so that the caller's next call sees it done.
	done := make(chan struct{})
	rctx := context.WithoutCancel(ctx)
	b.bg.Go(func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(rctx, refundTimeout)
		defer cancel()
		b.exec(ctx, invs)
		for _, inv := range invs {
			if inv.cmd.Err() != nil {
				b.refundErrors.Add(1)
				return
			}
		}
	})
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// slotReply parses one group's detailed reply.
func (b *Backend) slotReply(g *group) (slotReply, error) {
	v, err := b.reply(&g.inv)
	if err != nil {
		return slotReply{}, err
	}
	n, nk := len(g.reqs), len(g.keys)
	if len(v) != n*(resultFields+detailFields)+2+nk*4 {
		return slotReply{}, unavailable(errShortReply)
	}
	r := slotReply{
		final: make([]algorithms.Decision, n),
		first: make([]algorithms.Decision, n),
		view:  make([][3]int64, n),
		keys:  make([]keyReply, nk),
	}
	for i := range n {
		r.final[i] = decision(v[i*resultFields:])
	}
	d := v[n*resultFields:]
	for i := range n {
		x := d[i*detailFields:]
		r.first[i] = decision(x)
		r.view[i] = [3]int64{integer(x[5]), integer(x[6]), integer(x[7])}
	}
	d = d[n*detailFields:]
	r.enf, r.shd = integer(d[0]) == 1, integer(d[1]) == 1
	d = d[2:]
	for k := range nk {
		x := d[k*4:]
		r.keys[k] = keyReply{written: integer(x[0]) == 1, before: str(x[1]), wrote: str(x[2]), net: integer(x[3])}
	}
	return r, nil
}
