// Package redis is the Redis backend of ratelimitd: bucket state in Redis
// (standalone, Sentinel or Cluster) so that many ratelimitd replicas share
// one budget.
//
// API is stable: Options, New, Backend.Apply, Ping, Stats and Close keep
// their signatures; new Options fields may be added.
package redis

// Design. Every Apply is one Lua script invocation (lua/apply.lua, with the
// twins of package algorithms in lua/lib.lua) that reads every bucket of the
// call, decides them exactly as algorithms.Decide does, charges them by the
// call's Mode with backends/memory's two-pass rules, and writes them back
// with a TTL, atomically and in one round trip.
//
// The scripts run as Redis Functions where Redis has them (7.0 or later):
// one library (see libTemplate in script.go) holds lib.lua, apply.lua and
// refund.lua, and each invocation is one FCALL. A library is set up once
// per Redis process, where an EVAL script runs lib.lua's top level again on
// every call: 64k of the 199k instructions Redis spent on a call deciding
// one bucket, 6 µs or more (docs/benchmarks.md, BenchmarkCallCost). The
// library is loaded lazily: an FCALL answered "Function not found" (a new
// or restarted Redis without persistence, FUNCTION FLUSH, a failover to a
// replica that lacks it, a Cluster master that never had it) is answered
// by FUNCTION LOAD (on every master, in a Cluster) and the same
// invocations sent again once. Functions replicate and persist in RDB and
// AOF, so that this happens about once per deployment. Where Redis has no
// Functions (before 7.0: "unknown command"), or may not load them (ACL:
// NOPERM), or the library does not load there, or Options.DisableFunctions
// is set, the scripts are sent with EVALSHA for good; a NOSCRIPT reply
// (Redis restarted, SCRIPT FLUSH, failover) is answered by sending the
// same invocations with EVAL, which loads the script again. A reply that
// says a function or script was missing means that it did not run, so
// sending it again cannot charge twice.
//
// In a Cluster, the call's keys are grouped by hash slot, one invocation
// per slot; all of them go into one pipeline, which go-redis splits per
// node and sends to the nodes in parallel: one round trip per node touched,
// never one per key. All or nothing across slots is restored afterwards:
// each slot's script charges by its own buckets' decisions and returns what
// it wrote; when another slot vetoed the call, the slots that charged are
// refunded (lua/refund.lua, see cluster.go) and the decisions reported are
// those of an uncharged call. Between the charge and the refund (one round
// trip) another call may see those buckets charged: the only inexactness
// the Cluster adds, and only for calls that span slots and are refused
// (rules can put one identity's buckets on one slot with a {hash tag}).
//
// Batching (batch.go, optional): concurrent Apply calls are collected for up
// to BatchWindow or BatchMax calls and written to Redis in one pipeline;
// each call stays its own script invocation, so atomicity is per call as
// before.
//
// Time: the script reads Redis TIME (in microseconds) so that replicas
// whose clocks differ decide alike; Options.ClientTime makes it use Apply's
// now instead (tests at fixed instants).
//
// Failures: every Redis call honours the caller's context (go-redis's
// ContextTimeoutEnabled), so a dead or hung Redis costs a caller no more
// than its deadline; errors wrap backends.ErrUnavailable. go-redis's retries
// are off everywhere: a script that timed out may have run, and running it
// again would charge (or refund) twice. MaxRetries -1 turns them off for
// standalone and Sentinel; the ClusterClient ignores MaxRetries and retries
// timeouts, EOF and connection resets (a failed pipeline read re-sends every
// command for that node) up to MaxRedirects times, so MaxRedirects is -1
// too. The price: a call that meets a MOVED or ASK reply (resharding, a
// replica promoted) fails with ErrUnavailable instead of following it.
// go-redis still schedules a reload of its slot map on MOVED (LazyReload in
// osscluster.go, with redirects off as well), so calls made once that
// reload has finished go to the new owner.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
)

// Topologies.
const (
	Standalone = "standalone"
	Sentinel   = "sentinel"
	Cluster    = "cluster"
)

// Defaults for zero Options fields.
const (
	DefaultDialTimeout  = 2 * time.Second
	DefaultReadTimeout  = time.Second
	DefaultWriteTimeout = time.Second
	// DefaultBatchMax is the most calls in one batch.
	DefaultBatchMax = 64
)

// Options configures a Backend.
type Options struct {
	// Topology is "standalone" (the default when empty), "sentinel" or
	// "cluster".
	Topology string
	// Addrs: standalone, one host:port or a unix socket path (starting with
	// "/"); sentinel, the sentinels' host:port; cluster, seed nodes.
	Addrs []string
	// MasterName is the Sentinel master name (sentinel only).
	MasterName string
	// SentinelUsername and SentinelPassword authenticate to the sentinels.
	SentinelUsername, SentinelPassword string
	// Username and Password authenticate to Redis (ACL or requirepass).
	Username, Password string
	// DB selects the database (standalone and sentinel).
	DB int
	// TLS, when set, connects over TLS with this configuration (CA,
	// client certificate, server name).
	TLS *tls.Config
	// PoolSize is the number of connections per node; 0 is go-redis's
	// default (10 per GOMAXPROCS).
	PoolSize int
	// DialTimeout, ReadTimeout and WriteTimeout bound each network
	// operation; defaults 2s, 1s and 1s. The caller's context deadline,
	// usually much shorter, applies as well.
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// BatchWindow > 0 turns batching on: calls that arrive while earlier
	// ones are in flight are written to Redis in shared pipelines, and
	// under load a batch waits up to BatchWindow for more calls (a window
	// of 1ns coalesces only the calls already waiting, adding no delay).
	// 0 (or < 0) sends every call on its own: the default, as batching did
	// not win on our measurements (docs/benchmarks.md).
	BatchWindow time.Duration
	// BatchMax is the most calls in one pipeline; 0 is DefaultBatchMax.
	BatchMax int
	// ClientTime decides at Apply's now instead of Redis TIME: for tests at
	// fixed instants. In production leave it false so that every replica
	// uses Redis's clock. Keys then live ClientTimeTTLMargin past their
	// expiry, since Redis expires them on its own clock.
	ClientTime bool
	// DisableFunctions sends the scripts with EVALSHA even to a Redis that
	// has Functions. By default the backend loads its library of functions
	// (named ratelimitd_ and a digest of its code; it replicates and
	// persists in RDB and AOF like data, and a new version of ratelimitd
	// loads a new one beside it: FUNCTION DELETE removes an old one) and
	// calls it with FCALL, which costs Redis less per call. Set it where
	// loading a library is not wanted.
	DisableFunctions bool
}

// Stats is a snapshot of a Backend's counters, for metrics.
type Stats struct {
	// Pool: connections found idle in the pool, connections dialled, waits
	// for a connection that timed out, and connections open and idle now
	// (summed over nodes).
	Hits, Misses, Timeouts uint32
	TotalConns, IdleConns  uint32
	// ScriptErrors counts invocations Redis answered with an error reply
	// other than NOSCRIPT (a script bug, a key of a foreign type, OOM).
	ScriptErrors uint64
	// NoscriptReloads counts invocations sent again with EVAL after
	// NOSCRIPT.
	NoscriptReloads uint64
	// FunctionLoads counts FUNCTION LOADs of the library after an FCALL was
	// answered "Function not found" (in a Cluster, one per load on every
	// master); FunctionReloads counts the invocations sent again after one.
	FunctionLoads, FunctionReloads uint64
	// Functions reports whether calls use FCALL: false once Redis said it
	// has no Functions (or that the user may not use them), or when
	// Options.DisableFunctions is set.
	Functions bool
	// Batches counts pipelines (or single commands) sent to Redis for
	// Apply; Calls counts Apply calls that reached Redis. Calls/Batches is
	// the mean batch size.
	Batches, Calls uint64
	// Refunds counts Cluster calls whose charged slots were refunded
	// (another slot vetoed the call, or failed); RefundErrors the refunds
	// that failed (budget left charged until the window ends).
	Refunds, RefundErrors uint64
}

// Backend is the Redis backends.Backend. Create it with New; it is safe for
// concurrent use.
type Backend struct {
	c          goredis.UniversalClient
	cluster    *goredis.ClusterClient // nil unless Topology is cluster
	clientTime bool
	scripts    *scripts // by clock: the TTL margin differs
	batch      *batcher // nil when batching is off

	// functions is true while invocations go as FCALL (see exec).
	functions atomic.Bool

	scriptErrors, noscript, batches, calls, refunds, refundErrors atomic.Uint64
	functionLoads, functionReloads                                atomic.Uint64

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	bg        sync.WaitGroup // refunds in flight
}

var _ backends.Backend = (*Backend)(nil)

// New returns a Backend for o. It does not contact Redis: a Redis that is
// down at start-up makes Apply and Ping fail until it is up.
func New(o Options) (*Backend, error) {
	topo := o.Topology
	if topo == "" {
		topo = Standalone
	}
	uo := &goredis.UniversalOptions{
		Addrs:                 o.Addrs,
		SentinelUsername:      o.SentinelUsername,
		SentinelPassword:      o.SentinelPassword,
		Username:              o.Username,
		Password:              o.Password,
		DB:                    o.DB,
		TLSConfig:             o.TLS,
		PoolSize:              o.PoolSize,
		DialTimeout:           orDefault(o.DialTimeout, DefaultDialTimeout),
		ReadTimeout:           orDefault(o.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:          orDefault(o.WriteTimeout, DefaultWriteTimeout),
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DisableIdentity:       true,
	}
	if len(o.Addrs) == 0 {
		return nil, errors.New("redis: new: no address")
	}
	b := &Backend{clientTime: o.ClientTime, scripts: redisClockScripts}
	if o.ClientTime {
		b.scripts = clientClockScripts
	}
	b.functions.Store(!o.DisableFunctions)
	switch topo {
	case Standalone:
		if len(o.Addrs) != 1 {
			return nil, fmt.Errorf("redis: new: standalone takes one address, got %d", len(o.Addrs))
		}
		b.c = goredis.NewClient(uo.Simple())
	case Sentinel:
		if o.MasterName == "" {
			return nil, errors.New("redis: new: sentinel needs a master name")
		}
		uo.MasterName = o.MasterName
		b.c = goredis.NewFailoverClient(uo.Failover())
	case Cluster:
		uo.IsClusterMode = true
		uo.MaxRedirects = -1 // no retries: see the design comment
		b.cluster = goredis.NewClusterClient(uo.Cluster())
		b.c = b.cluster
	default:
		return nil, fmt.Errorf("redis: new: unknown topology %q (want standalone, sentinel or cluster)", o.Topology)
	}
	if o.BatchWindow > 0 {
		b.batch = newBatcher(b, o.BatchWindow, orDefault(o.BatchMax, DefaultBatchMax), batchInFlight)
	}
	return b, nil
}

func orDefault[T comparable](v, d T) T {
	var zero T
	if v == zero {
		return d
	}
	return v
}

// unavailable wraps err as an Apply failure.
func unavailable(err error) error {
	return fmt.Errorf("redis: apply: %w: %w", backends.ErrUnavailable, err)
}

var errClosed = fmt.Errorf("redis: apply: backend closed: %w", backends.ErrUnavailable)

// invocation is one script call: its keys and arguments, and once sent, its
// command (holding the reply or the error).
type invocation struct {
	script *goredis.Script
	keys   []string
	args   []any
	cmd    *goredis.Cmd
}

// group is the part of a call that one invocation decides: the requests
// (indices into the call's reqs) whose keys share a slot.
type group struct {
	inv  invocation
	reqs []int // request indices, in call order
	keys []int // distinct key indices of the call, in KEYS order
}

// Apply implements backends.Backend: one script invocation decides every
// request (in a Cluster, one per hash slot, sent in one pipeline). Errors
// wrap backends.ErrUnavailable, except a bad mode or a short out.
func (b *Backend) Apply(ctx context.Context, now int64, mode backends.Mode, reqs []backends.Request, out []algorithms.Decision) error {
	if err := ctx.Err(); err != nil {
		return unavailable(err)
	}
	if b.closed.Load() {
		return errClosed
	}
	if err := backends.CheckArgs(mode, reqs, out); err != nil {
		return fmt.Errorf("redis: apply: %w", err)
	}
	if len(reqs) == 0 {
		return nil
	}

	// Distinct keys, and each request's key index.
	keys := make([]string, 0, len(reqs))
	kidx := make([]int, len(reqs))
	for i := range reqs {
		k := -1
		for j := range keys {
			if len(keys[j]) == len(reqs[i].Key) && keys[j] == string(reqs[i].Key) {
				k = j
				break
			}
		}
		if k < 0 {
			k = len(keys)
			keys = append(keys, string(reqs[i].Key))
		}
		kidx[i] = k
	}
	t := int64(-1)
	if b.clientTime {
		t = clampExact(now)
	}

	groups := b.group(keys, kidx)
	detail := len(groups) > 1
	for g := range groups {
		gr := &groups[g]
		local := make(map[int]int, len(gr.keys)) // call key index -> KEYS index (1-based in Lua)
		gr.inv.script = b.scripts.apply
		gr.inv.keys = make([]string, len(gr.keys))
		for n, k := range gr.keys {
			gr.inv.keys[n] = keys[k]
			local[k] = n + 1
		}
		args := make([]any, 0, applyHeader+len(gr.reqs)*applyStride)
		args = append(args, int64(mode), t, boolArg(detail))
		for _, i := range gr.reqs {
			r := &reqs[i]
			args = append(args, local[kidx[i]], int64(r.Limit.Algorithm), clampExact(r.Hits), boolArg(r.Shadow))
			args = limitArgs(args, r.Limit)
		}
		gr.inv.args = args
	}

	invs := make([]*invocation, len(groups))
	for g := range groups {
		invs[g] = &groups[g].inv
	}
	if err := b.send(ctx, invs); err != nil {
		return err
	}
	if !detail {
		return b.decisions(&groups[0], out)
	}
	return b.crossSlot(ctx, t, mode, reqs, groups, out)
}

func boolArg(v bool) int64 {
	if v {
		return 1
	}
	return 0
}

// group splits the call's distinct keys into one group per hash slot (one
// group when not a Cluster) with the requests on them, in call order.
func (b *Backend) group(keys []string, kidx []int) []group {
	if b.cluster == nil {
		g := group{reqs: make([]int, len(kidx)), keys: make([]int, len(keys))}
		for i := range kidx {
			g.reqs[i] = i
		}
		for k := range keys {
			g.keys[k] = k
		}
		return []group{g}
	}
	var groups []group
	slotGroup := make(map[int]int)
	keyGroup := make([]int, len(keys))
	for k, key := range keys {
		s := Slot(key)
		g, ok := slotGroup[s]
		if !ok {
			g = len(groups)
			slotGroup[s] = g
			groups = append(groups, group{})
		}
		groups[g].keys = append(groups[g].keys, k)
		keyGroup[k] = g
	}
	for i, k := range kidx {
		g := keyGroup[k]
		groups[g].reqs = append(groups[g].reqs, i)
	}
	return groups
}

// send runs the invocations, batched with other calls when batching is on,
// and returns when every one has its reply or ctx is done.
func (b *Backend) send(ctx context.Context, invs []*invocation) error {
	b.calls.Add(1)
	if b.batch != nil {
		return b.batch.do(ctx, invs)
	}
	b.batches.Add(1)
	if err := b.exec(ctx, invs); err != nil {
		return unavailable(err)
	}
	return nil
}

// How exec sends an invocation.
const (
	viaFCall   = iota // FCALL of the library's function
	viaEvalSha        // EVALSHA of the script's digest
	viaEval           // EVAL of the script's source
)

// caller is what command needs of a client or a pipeline.
type caller interface {
	FCall(ctx context.Context, function string, keys []string, args ...any) *goredis.Cmd
	EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *goredis.Cmd
	Eval(ctx context.Context, script string, keys []string, args ...any) *goredis.Cmd
}

// exec sends invs in one round trip (a pipeline when more than one): as
// FCALL while b.functions holds, else as EVALSHA. Those answered "Function
// not found" are sent again after FUNCTION LOAD, those answered NOSCRIPT
// with EVAL, once each; when Redis says it has no Functions, they go as
// scripts from then on. It returns an error only when no reply could be had
// at all; per-invocation errors stay in cmd.
func (b *Backend) exec(ctx context.Context, invs []*invocation) error {
	scripted := invs
	if b.functions.Load() {
		b.round(ctx, invs, viaFCall)
		missing, unsupported := pick(invs, isNoFunction), pick(invs, isUnsupported)
		scripted = unsupported
		if len(unsupported) > 0 {
			b.functions.Store(false)
			scripted = append(scripted, missing...)
		} else if len(missing) > 0 {
			err := b.loadLibrary(ctx)
			if cannotLoad(err) {
				b.functions.Store(false)
			}
			if err != nil {
				// This call goes as scripts; the next tries FCALL again
				// unless Redis said it cannot.
				scripted = missing
			} else {
				b.functionReloads.Add(uint64(len(missing)))
				b.round(ctx, missing, viaFCall)
				// Missing still (a failover in between): as scripts.
				scripted = pick(missing, isNoFunction)
			}
		}
		if len(scripted) == 0 {
			return nil
		}
	}
	b.round(ctx, scripted, viaEvalSha)
	again := pick(scripted, isNoScript)
	if len(again) == 0 {
		return nil
	}
	b.noscript.Add(uint64(len(again)))
	b.round(ctx, again, viaEval)
	return nil
}

// round sends invs by how in one round trip: one command, or a pipeline
// when more than one (which in a Cluster go-redis splits per node, sent in
// parallel). Each invocation's reply or error is in its cmd.
func (b *Backend) round(ctx context.Context, invs []*invocation, how int) {
	if len(invs) == 1 {
		invs[0].cmd = b.command(ctx, b.c, invs[0], how)
		return
	}
	pipe := b.c.Pipeline()
	for _, inv := range invs {
		inv.cmd = b.command(ctx, pipe, inv, how)
	}
	pipe.Exec(ctx) // per-command errors are read by the callers
}

// command queues (on a pipeline) or sends inv on c by how.
func (b *Backend) command(ctx context.Context, c caller, inv *invocation, how int) *goredis.Cmd {
	switch how {
	case viaFCall:
		return c.FCall(ctx, b.scripts.function(inv.script), inv.keys, inv.args...)
	case viaEvalSha:
		return c.EvalSha(ctx, inv.script.Hash(), inv.keys, inv.args...)
	default:
		return c.Eval(ctx, b.scripts.source(inv.script), inv.keys, inv.args...)
	}
}

// pick returns the invocations whose error satisfies f.
func pick(invs []*invocation, f func(error) bool) []*invocation {
	var r []*invocation
	for _, inv := range invs {
		if f(inv.cmd.Err()) {
			r = append(r, inv)
		}
	}
	return r
}

// loadLibrary loads the library with FUNCTION LOAD: on the master, or on
// every master of a Cluster (each has its own functions, and which one
// lacks the library is not known). A library of that name that exists
// already holds the same code (its name is its digest): that counts as
// loaded, and REPLACE is not needed.
func (b *Backend) loadLibrary(ctx context.Context) error {
	b.functionLoads.Add(1)
	load := func(ctx context.Context, c goredis.Cmdable) error {
		err := c.FunctionLoad(ctx, b.scripts.lib).Err()
		if err != nil && goredis.HasErrorPrefix(err, "Library '") && strings.Contains(err.Error(), "already exists") {
			return nil
		}
		return err
	}
	if b.cluster != nil {
		return b.cluster.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			return load(ctx, c)
		})
	}
	return load(ctx, b.c)
}

func isNoScript(err error) bool {
	return err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT")
}

// isNoFunction reports whether err is Redis's answer to an FCALL of a
// function it does not have.
func isNoFunction(err error) bool {
	return err != nil && goredis.HasErrorPrefix(err, "Function not found")
}

// isUnsupported reports whether err says that Redis has no such command
// (FCALL or FUNCTION before Redis 7.0, or renamed away) or that the user
// may not run it (ACL).
func isUnsupported(err error) bool {
	return err != nil && (goredis.HasErrorPrefix(err, "unknown command") ||
		goredis.HasErrorPrefix(err, "unknown subcommand") ||
		(goredis.HasErrorPrefix(err, "NOPERM") && strings.Contains(err.Error(), "command")))
}

// transient are the prefixes of error replies that a later FUNCTION LOAD
// may not meet: a full, read-only, loading, busy or reconfiguring server.
var transient = []string{"OOM", "READONLY", "LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "MOVED", "ASK"}

// cannotLoad reports whether err, the error of loadLibrary, means that the
// library will never load on this Redis: an error reply, other than one of
// a transient state (a library that does not compile, as well as no
// FUNCTION command or no permission). Errors that are not replies (the
// network, the deadline) are transient too.
func cannotLoad(err error) bool {
	var rerr goredis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	for _, p := range transient {
		if goredis.HasErrorPrefix(err, p) {
			return false
		}
	}
	return true
}

// reply returns an invocation's reply as integers and strings, counting
// script errors.
func (b *Backend) reply(inv *invocation) ([]any, error) {
	v, err := inv.cmd.Slice()
	if err != nil {
		var rerr goredis.Error
		if errors.As(err, &rerr) && !isNoScript(err) && !isNoFunction(err) {
			b.scriptErrors.Add(1)
		}
		return nil, unavailable(err)
	}
	return v, nil
}

// decisions writes the decisions of g's reply into out.
func (b *Backend) decisions(g *group, out []algorithms.Decision) error {
	v, err := b.reply(&g.inv)
	if err != nil {
		return err
	}
	if len(v) < len(g.reqs)*resultFields {
		return unavailable(fmt.Errorf("script returned %d values for %d requests", len(v), len(g.reqs)))
	}
	for n, i := range g.reqs {
		out[i] = decision(v[n*resultFields:])
	}
	return nil
}

// decision reads the 5 integers of one decision.
func decision(v []any) algorithms.Decision {
	return algorithms.Decision{
		Allowed:    integer(v[0]) == 1,
		Remaining:  integer(v[1]),
		ResetAfter: integer(v[2]),
		RetryAfter: integer(v[3]),
		Count:      integer(v[4]),
	}
}

func integer(v any) int64 {
	n, _ := v.(int64)
	return n
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// Ping reports whether Redis answers: every master in a Cluster, the
// current master behind Sentinel. For readiness probes.
func (b *Backend) Ping(ctx context.Context) error {
	var err error
	if b.cluster != nil {
		err = b.cluster.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			return c.Ping(ctx).Err()
		})
	} else {
		err = b.c.Ping(ctx).Err()
	}
	if err != nil {
		return fmt.Errorf("redis: ping: %w: %w", backends.ErrUnavailable, err)
	}
	return nil
}

// Stats returns the pool statistics and the backend's counters.
func (b *Backend) Stats() Stats {
	p := b.c.PoolStats()
	return Stats{
		Hits: p.Hits, Misses: p.Misses, Timeouts: p.Timeouts,
		TotalConns: p.TotalConns, IdleConns: p.IdleConns,
		ScriptErrors:    b.scriptErrors.Load(),
		NoscriptReloads: b.noscript.Load(),
		FunctionLoads:   b.functionLoads.Load(),
		FunctionReloads: b.functionReloads.Load(),
		Functions:       b.functions.Load(),
		Batches:         b.batches.Load(),
		Calls:           b.calls.Load(),
		Refunds:         b.refunds.Load(),
		RefundErrors:    b.refundErrors.Load(),
	}
}

// Close stops the batcher, waits for refunds in flight and closes the
// connections. Apply fails after Close. Close may be called more than once.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		if b.batch != nil {
			b.batch.close()
		}
		b.bg.Wait()
		b.closeErr = b.c.Close()
	})
	return b.closeErr
}

var errShortReply = errors.New("script reply has an unexpected length")
