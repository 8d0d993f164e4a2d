package redis

import (
	"crypto/sha1"
	_ "embed"
	"encoding/hex"
	"fmt"
	"reflect"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ratelimitd/ratelimitd/algorithms"
)

// The Lua sources: lib.lua (the algorithms' twins) is prepended to each
// script, after a prelude of constants Go and Lua must agree on.
var (
	//go:embed lua/lib.lua
	luaLib string
	//go:embed lua/apply.lua
	luaApply string
	//go:embed lua/refund.lua
	luaRefund string
)

// Layout of the scripts' arguments; see lua/apply.lua and lua/refund.lua.
const (
	// limitFields is the number of limit integers per request (limitArgs).
	limitFields = 5
	// applyStride is the number of ARGV fields per request in apply.lua.
	applyStride = 4 + limitFields
	// refundStride is the number of ARGV fields per key in refund.lua.
	refundStride = 4 + limitFields
	// applyHeader is the number of ARGV fields before the requests.
	applyHeader = 3
	// resultFields is the number of integers per decision in a result.
	resultFields = 5
	// detailFields is the number of integers per request in the details.
	detailFields = resultFields + 3
)

// TTLMargin is how long a key outlives the instant its state becomes
// worthless (algorithms.Expiry): a small allowance for clock differences
// between Redis nodes after a failover.
const TTLMargin = 1000 // milliseconds

// ClientTimeTTLMargin replaces TTLMargin under Options.ClientTime. Redis
// expires keys on its own clock, which does not follow the caller's: a
// caller that steps its clock (tests at fixed instants) could otherwise see
// a state vanish while its own time says the state is live. A longer life
// is always safe: a state past its Expiry decides as the zero State.
const ClientTimeTTLMargin = 3600 * 1000 // milliseconds

// maxTTL bounds a key's lifetime (milliseconds): 10 years.
const maxTTL = 10 * 365 * 24 * 3600 * 1000

// stateFields is the number of integers in algorithms.State, all stored.
var stateFields = reflect.TypeFor[algorithms.State]().NumField()

// maxExact is the largest magnitude a Lua number (a double) holds exactly.
const maxExact = 1<<53 - 1

// clampExact clamps v to [-maxExact, maxExact], the range in which the
// scripts compute exactly. Values beyond it (rates, periods or hits above
// 9e15) are far past any meaningful limit.
func clampExact(v int64) int64 {
	return min(max(v, -maxExact), maxExact)
}

// limitArgs appends l's integer fields in the order lib.lua reads them.
func limitArgs(args []any, l algorithms.Limit) []any {
	return append(args, clampExact(l.Rate), clampExact(l.Period), clampExact(l.Burst), clampExact(l.WindowStart), clampExact(l.WindowEnd))
}

// scripts is one compiled pair of the package's scripts, with their
// sources for the NOSCRIPT fallback inside pipelines, and the same code as
// a Redis Functions library (see library).
type scripts struct {
	apply, refund       *goredis.Script
	applySrc, refundSrc string
	// lib is the library's source for FUNCTION LOAD; applyFn and refundFn
	// the names of its functions, for FCALL.
	lib, applyFn, refundFn string
}

func newScripts(ttlMarginMS int64) *scripts {
	p := prelude(ttlMarginMS)
	sc := &scripts{applySrc: p + luaLib + luaApply, refundSrc: p + luaLib + luaRefund}
	sc.apply, sc.refund = goredis.NewScript(sc.applySrc), goredis.NewScript(sc.refundSrc)
	sc.lib, sc.applyFn, sc.refundFn = library(p)
	return sc
}

// source returns the source of s, one of sc's scripts.
func (sc *scripts) source(s *goredis.Script) string {
	if s == sc.refund {
		return sc.refundSrc
	}
	return sc.applySrc
}

// function returns the name of the library function that runs s, one of
// sc's scripts.
func (sc *scripts) function(s *goredis.Script) string {
	if s == sc.refund {
		return sc.refundFn
	}
	return sc.applyFn
}

// libName stands for the library's name in libTemplate.
const libName = "@LIB@"

// libTemplate wraps the scripts into a Redis Functions library (Redis 7.0
// or later), the prelude and lib.lua following the first line. An EVAL
// script runs its whole body on every call, so that each call of apply.lua
// defined lib.lua's forty functions and tables again, a third of its cost
// for one bucket; a library's top level runs once, when Redis loads it. But
// while it loads, Redis 7.0 gives it no globals except
// redis.register_function (not math, string, assert, unpack...), and
// lib.lua's top level reads some: so the top level only defines init, and
// the first call of either function (after FUNCTION LOAD, or after Redis
// restarts and loads its libraries again) runs lib.lua once inside it,
// keeping the functions it defines in init's upvalues. The scripts' bodies
// become functions of KEYS and ARGV, which FCALL passes as arguments:
// KEYS and ARGV are not globals in a library.
//
// Function names are global in Redis, not per library, so they carry the
// library's name, and with it the digest of the code.
const libTemplate = `#!lua name=` + libName + `
local apply, refund
local function init()
%s
apply = function(KEYS, ARGV)
%s
end
refund = function(KEYS, ARGV)
%s
end
end
redis.register_function('` + libName + `_apply', function(KEYS, ARGV)
  if not apply then init() end
  return apply(KEYS, ARGV)
end)
redis.register_function('` + libName + `_refund', function(KEYS, ARGV)
  if not refund then init() end
  return refund(KEYS, ARGV)
end)
`

// library returns the source of the Functions library holding lib.lua,
// apply.lua and refund.lua after prelude p, and its functions' names. The
// library is named ratelimitd_ and the first 16 hex digits of the SHA-1 of
// its source (with the name left out), so that two versions of ratelimitd
// (or the two clocks' variants, whose preludes differ) load two libraries
// side by side, and a library of a given name always holds the same code.
func library(p string) (src, applyFn, refundFn string) {
	for _, s := range []string{p, luaLib, luaApply, luaRefund} {
		if strings.Contains(s, libName) {
			panic("redis: lua source contains " + libName)
		}
	}
	src = fmt.Sprintf(libTemplate, p+luaLib, luaApply, luaRefund)
	sum := sha1.Sum([]byte(src))
	name := "ratelimitd_" + hex.EncodeToString(sum[:8])
	return strings.ReplaceAll(src, libName, name), name + "_apply", name + "_refund"
}

// Compiled scripts (package-level: they are immutable), for Redis TIME and
// for Options.ClientTime.
var (
	redisClockScripts  = newScripts(TTLMargin)
	clientClockScripts = newScripts(ClientTimeTTLMargin)
)

// prelude declares the constants shared by Go and Lua.
func prelude(ttlMarginMS int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "local NSTATE = %d\n", stateFields)
	fmt.Fprintf(&b, "local LIMIT_FIELDS = %d\n", limitFields)
	fmt.Fprintf(&b, "local STRIDE = %d\n", applyStride)
	fmt.Fprintf(&b, "local REFUND_STRIDE = %d\n", refundStride)
	fmt.Fprintf(&b, "local TTL_MARGIN_MS = %d\n", ttlMarginMS)
	fmt.Fprintf(&b, "local MAX_TTL_MS = %d\n", maxTTL)
	return b.String()
}
