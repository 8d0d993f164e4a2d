// Package harness runs the worked examples under examples/ the way an
// operator would: the example's own config directory, loaded with
// config.Load, served by a real server.Server over gRPC on a loopback TCP
// port with the admin API on, against the memory backend or a real
// redis-server (internal/redistest). Each example's test drives it with the
// descriptors its envoy-routes.yaml produces (envoy.go) and asserts the
// numbers its README promises.
//
// Time is an argument: every Env has a Clock that only moves when the test
// moves it, and the server decides at that clock (server.Options.Now; the
// memory backend sweeps on it; the Redis backend runs with ClientTime so its
// scripts decide at the server's now, not Redis TIME). No assertion depends
// on how fast the machine is.
//
// Everything Start starts is stopped by t.Cleanup, in reverse order: the
// client, the gRPC server (and the goroutine serving it), the override
// watcher, the backend, then Redis. Example tests run goleak in TestMain.
package harness

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/memory"
	"github.com/ratelimitd/ratelimitd/backends/redis"
	"github.com/ratelimitd/ratelimitd/config"
	"github.com/ratelimitd/ratelimitd/internal/redistest"
	"github.com/ratelimitd/ratelimitd/overrides"
	adminv1 "github.com/ratelimitd/ratelimitd/proto/ratelimitd/admin/v1"
	"github.com/ratelimitd/ratelimitd/server"
)

// Backends are the backends every example runs against, as subtest names.
var Backends = []string{"memory", "redis"}

// T0 is where every Env's clock starts: Monday 2 March 2026, 09:00:00 UTC,
// the start of a second, a minute and an hour, so that fixed windows begin
// with the test.
var T0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// Token is the admin API's bearer token in every Env (its name, in the
// audit log, is "operator").
const Token = "examples-0123456789abcdef"

// callTimeout bounds every call the harness makes: generous, as it only
// guards against a hung test, never decides an outcome.
const callTimeout = 30 * time.Second

// ForEachBackend runs f as the subtests "memory" and "redis", one after the
// other (the examples run on shared machines: no t.Parallel).
func ForEachBackend(t *testing.T, f func(t *testing.T, backend string)) {
	t.Helper()
	for _, b := range Backends {
		t.Run(b, func(t *testing.T) { f(t, b) })
	}
}

// Clock is a settable clock, safe for concurrent use. The zero Clock reads
// the zero time; Start's starts at T0.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t (backwards too: the algorithms then treat calls
// as late, which no example does).
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// Advance moves the clock forward by d and returns the new time.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// Env is one running example: a ratelimitd serving the example's config.
type Env struct {
	// Addr is the loopback host:port serving the RLS and the admin API
	// (ratelimitd's -grpc-addr, where the admin API is served too).
	Addr string
	// Token is the admin API's bearer token.
	Token string
	// Clock is the server's clock.
	Clock *Clock
	// Config is the example's config as loaded.
	Config *config.Config
	// Backend is "memory" or "redis".
	Backend string
	// OverridesFile is the admin API's override store.
	OverridesFile string
	// RLS and Admin are clients over one connection to Addr. Calls made
	// through Admin need AdminContext.
	RLS   rlsv3.RateLimitServiceClient
	Admin adminv1.AdminServiceClient

	t testing.TB
}

// Start serves the config in configDir (a directory or file, loaded as
// ratelimitd -config loads it) with backend "memory" or "redis" and the
// options o. Start sets o.Backend, o.Now (the Env's Clock) and o.Overrides
// (a file store in t.TempDir(), watched without polling: the admin API
// refreshes the watcher after each change it makes); it also sets, when
// left zero, o.Logger (discarding) and o.BackendTimeout (none for memory,
// 30 s for Redis: a deadline only guards against a hung test). Everything
// stops when t ends.
func Start(t testing.TB, configDir, backend string, o server.Options) *Env {
	t.Helper()
	cfg, err := config.Load(configDir, config.Options{})
	if err != nil {
		t.Fatalf("harness: load %s: %v", configDir, err)
	}
	e := &Env{Token: Token, Clock: &Clock{t: T0}, Config: cfg, Backend: backend, t: t}

	var be backends.Backend
	switch backend {
	case "memory":
		m := memory.New(memory.Options{Now: e.Clock.Now})
		t.Cleanup(func() { m.Close() })
		be = m
		if o.BackendTimeout == 0 {
			o.BackendTimeout = -1
		}
	case "redis":
		rs := redistest.Standalone(t)
		r, err := redis.New(redis.Options{Addrs: []string{rs.Addr}, ClientTime: true})
		if err != nil {
			t.Fatalf("harness: redis: %v", err)
		}
		t.Cleanup(func() { r.Close() })
		be = r
		if o.BackendTimeout == 0 {
			o.BackendTimeout = callTimeout
		}
	default:
		t.Fatalf("harness: backend %q is not memory or redis", backend)
	}

	e.OverridesFile = filepath.Join(t.TempDir(), "overrides.json")
	store := overrides.NewFileStore(e.OverridesFile)
	// No ticks: nothing else writes the store, and the admin API refreshes
	// the watcher after its own changes.
	watcher, err := overrides.Watch(context.Background(), store, overrides.WatcherOptions{Tick: make(chan time.Time)})
	if err != nil {
		t.Fatalf("harness: overrides: %v", err)
	}
	t.Cleanup(func() { watcher.Close() })

	o.Backend = be
	o.Now = e.Clock.Now
	o.Overrides = watcher.Current
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	srv, err := server.New(o)
	if err != nil {
		t.Fatalf("harness: server: %v", err)
	}
	srv.SetConfig(cfg)
	srv.SetServing(true)
	tokens, err := server.ParseAdminTokens([]byte("operator " + Token + "\n"))
	if err != nil {
		t.Fatalf("harness: tokens: %v", err)
	}
	admin, err := srv.NewAdmin(server.AdminOptions{Tokens: tokens, Store: store, Watcher: watcher})
	if err != nil {
		t.Fatalf("harness: admin: %v", err)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("harness: listen: %v", err)
	}
	gs := grpc.NewServer()
	srv.Register(gs)
	admin.Register(gs)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("harness: serve: %v", err)
		}
	})
	e.Addr = lis.Addr().String()

	cc, err := grpc.NewClient(e.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("harness: dial: %v", err)
	}
	t.Cleanup(func() { cc.Close() })
	e.RLS = rlsv3.NewRateLimitServiceClient(cc)
	e.Admin = adminv1.NewAdminServiceClient(cc)
	return e
}

// AdminContext returns a context for calls through Admin: it carries the
// admin API's bearer token, is bounded by a generous timeout and is
// cancelled when the test ends.
func (e *Env) AdminContext() context.Context {
	ctx, cancel := e.adminContext()
	e.t.Cleanup(cancel)
	return ctx
}

func (e *Env) adminContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+e.Token), cancel
}

// Call sends one ShouldRateLimit of domain with the descriptors ds and a
// request-level hits_addend of 0 (one hit each, as Envoy sends it) and
// returns the answer; any error fails the test.
func (e *Env) Call(domain string, ds ...*commonv3.RateLimitDescriptor) *rlsv3.RateLimitResponse {
	e.t.Helper()
	return e.Send(&rlsv3.RateLimitRequest{Domain: domain, Descriptors: ds})
}

// Send sends req and returns the answer; any error fails the test.
func (e *Env) Send(req *rlsv3.RateLimitRequest) *rlsv3.RateLimitResponse {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	resp, err := e.RLS.ShouldRateLimit(ctx, req)
	if err != nil {
		e.t.Fatalf("ShouldRateLimit %s: %v", Describe(req.GetDescriptors()...), err)
	}
	return resp
}

// Inspect returns the buckets of a descriptor of domain as the admin API
// reports them (usage and remaining of each limit, charging nothing).
func (e *Env) Inspect(domain string, d *commonv3.RateLimitDescriptor) *adminv1.InspectResponse {
	e.t.Helper()
	var ents []*adminv1.Entry
	for _, en := range d.GetEntries() {
		ents = append(ents, &adminv1.Entry{Key: en.GetKey(), Value: en.GetValue()})
	}
	ctx, cancel := e.adminContext()
	defer cancel()
	resp, err := e.Admin.Inspect(ctx, &adminv1.InspectRequest{Domain: domain, Descriptor_: &adminv1.Descriptor{Entries: ents}})
	if err != nil {
		e.t.Fatalf("Inspect %s: %v", Describe(d), err)
	}
	return resp
}

// D returns a descriptor of the entries given as key, value pairs.
func D(kv ...string) *commonv3.RateLimitDescriptor {
	if len(kv)%2 != 0 {
		panic("harness.D: want key, value pairs")
	}
	d := &commonv3.RateLimitDescriptor{}
	for i := 0; i < len(kv); i += 2 {
		d.Entries = append(d.Entries, &commonv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

// WithHits returns d with its own hits_addend set to n; n = 0 checks the
// buckets without consuming.
func WithHits(d *commonv3.RateLimitDescriptor, n uint64) *commonv3.RateLimitDescriptor {
	d.HitsAddend = wrapperspb.UInt64(n)
	return d
}

// Check returns d as a check: hits_addend 0, which reports what is left
// without consuming it.
func Check(d *commonv3.RateLimitDescriptor) *commonv3.RateLimitDescriptor { return WithHits(d, 0) }

// Release returns d as a release of one hit (is_negative_hits), as Envoy
// sends it when a stream ends.
func Release(d *commonv3.RateLimitDescriptor) *commonv3.RateLimitDescriptor {
	d.HitsAddend = wrapperspb.UInt64(1)
	d.IsNegativeHits = true
	return d
}

// Describe writes descriptors as "[k=v, k=v] [k=v]" for messages.
func Describe(ds ...*commonv3.RateLimitDescriptor) string {
	var b strings.Builder
	for i, d := range ds {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteByte('[')
		for j, en := range d.GetEntries() {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString(en.GetKey() + "=" + en.GetValue())
		}
		if h := d.GetHitsAddend(); h != nil {
			sign := ""
			if d.GetIsNegativeHits() {
				sign = "-"
			}
			b.WriteString(" hits " + sign + itoa(h.GetValue()))
		}
		b.WriteByte(']')
	}
	return b.String()
}

func itoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var buf [20]byte
	i := len(buf)
	for v > 0 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return string(buf[i:])
}

// Header returns the value of the response header name (case-insensitive)
// of resp, and whether it is there. A header added twice fails t: clients
// would see it twice.
func Header(t testing.TB, resp *rlsv3.RateLimitResponse, name string) (string, bool) {
	t.Helper()
	var val string
	found := false
	for _, h := range resp.GetResponseHeadersToAdd() {
		if strings.EqualFold(h.GetKey(), name) {
			if found {
				t.Fatalf("header %s is added twice: %q and %q", name, val, h.GetValue())
			}
			val, found = h.GetValue(), true
		}
	}
	return val, found
}

// Headers returns the response headers of resp as "Name: value" lines, for
// messages.
func Headers(resp *rlsv3.RateLimitResponse) string {
	return headerLines(resp.GetResponseHeadersToAdd())
}

func headerLines(hs []*corev3.HeaderValue) string {
	var b strings.Builder
	for _, h := range hs {
		b.WriteString(h.GetKey() + ": " + h.GetValue() + "\n")
	}
	return b.String()
}

// ModuleRoot returns the directory of the module's go.mod, found upwards
// from the working directory (a test runs in its package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: no go.mod above the working directory")
		}
		dir = parent
	}
}
