package server

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/ratelimitd/ratelimitd/backends/memory"
	"github.com/ratelimitd/ratelimitd/overrides"
	adminv1 "github.com/ratelimitd/ratelimitd/proto/ratelimitd/admin/v1"
)

const (
	aliceToken = "alice-0123456789abcdef"
	bobToken   = "bob-fedcba9876543210"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// replica is one ratelimitd: a Server with its admin API over bufconn, its
// overrides read from the file at path by a Watcher that polls on tick.
type replica struct {
	*env
	admin adminv1.AdminServiceClient
	tick  chan time.Time
	w     *overrides.Watcher
	log   *syncBuffer
}

// newReplica starts a replica with tokens (none: admin off) and overrides
// kept in the file at path.
func newReplica(t *testing.T, path string, tokens string) *replica {
	t.Helper()
	st := overrides.NewFileStore(path)
	tick := make(chan time.Time)
	w, err := overrides.Watch(context.Background(), st, overrides.WatcherOptions{Tick: tick})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	logs := &syncBuffer{}
	b := memory.New(memory.Options{Now: func() time.Time { return t0 }})
	t.Cleanup(func() { b.Close() })
	e := newEnv(t, policyConfig, Options{Backend: b, Overrides: w.Current, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	var toks []AdminToken
	if tokens != "" {
		if toks, err = ParseAdminTokens([]byte(tokens)); err != nil {
			t.Fatal(err)
		}
	}
	a, err := e.s.NewAdmin(AdminOptions{Tokens: toks, Store: st, Watcher: w})
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer()
	a.Register(g)
	done := make(chan struct{})
	go func() { defer close(done); g.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///admin",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
		<-done
	})
	return &replica{env: e, admin: adminv1.NewAdminServiceClient(conn), tick: tick, w: w, log: logs}
}

func as(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

func entries(kv ...string) []*adminv1.Entry {
	var es []*adminv1.Entry
	for i := 0; i+1 < len(kv); i += 2 {
		es = append(es, &adminv1.Entry{Key: kv[i], Value: kv[i+1]})
	}
	return es
}

func limitOverride(rpu uint32, unit string, kv ...string) *adminv1.SetOverrideRequest {
	return &adminv1.SetOverrideRequest{Override: &adminv1.Override{
		Domain: "api", Entries: entries(kv...),
		Value: &adminv1.Override_Limit{Limit: &adminv1.Limit{RequestsPerUnit: rpu, Unit: unit}},
	}}
}

const twoTokens = "alice " + aliceToken + "\n# ops\nbob " + bobToken + "\n"

func TestAdminOffSaysHowToTurnItOn(t *testing.T) {
	r := newReplica(t, filepath.Join(t.TempDir(), "o.json"), "")
	_, err := r.admin.GetConfig(as(aliceToken), &adminv1.GetConfigRequest{})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "-admin-token-file") {
		t.Fatalf("admin off: %v", err)
	}
}

func TestAdminAuthentication(t *testing.T) {
	r := newReplica(t, filepath.Join(t.TempDir(), "o.json"), twoTokens)
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want codes.Code
	}{
		{"no metadata", context.Background(), codes.Unauthenticated},
		{"not bearer", metadata.AppendToOutgoingContext(context.Background(), "authorization", "Basic "+aliceToken), codes.Unauthenticated},
		{"wrong token", as("alice-0123456789abcdeX"), codes.Unauthenticated},
		{"a prefix of a token", as(aliceToken[:10]), codes.Unauthenticated},
		{"alice", as(aliceToken), codes.OK},
		{"bob", as(bobToken), codes.OK},
	} {
		_, err := r.admin.GetConfig(tc.ctx, &adminv1.GetConfigRequest{})
		if status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestParseAdminTokens(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{"", "no token"},
		{"short", "shorter than 16"},
		{"a " + aliceToken + "\na " + bobToken, "name a is used on line 1"},
		{"a b c", "want a token"},
	} {
		_, err := ParseAdminTokens([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.err)
		}
	}
	toks, err := ParseAdminTokens([]byte(aliceToken + "\n"))
	if err != nil || len(toks) != 1 || toks[0].Name != "token-1" {
		t.Errorf("unnamed token: %v %v", toks, err)
	}
}

func TestAdminOverrideLifecycle(t *testing.T) {
	r := newReplica(t, filepath.Join(t.TempDir(), "o.json"), twoTokens)
	ctx := as(aliceToken)
	check := func(want uint32) {
		t.Helper()
		resp := call(t, r.env, rq("api", desc("api_key", "abc")))
		if got := resp.Statuses[0].CurrentLimit.GetRequestsPerUnit(); got != want {
			t.Fatalf("limit %d, want %d", got, want)
		}
	}
	check(4)
	set, err := r.admin.SetOverride(ctx, limitOverride(6, "minute", "api_key", "abc"))
	if err != nil {
		t.Fatal(err)
	}
	if set.Previous != nil || set.Override.GetAuthor() != "alice" || set.Override.GetLimit().GetText() != "6 per minute" {
		t.Errorf("set: %v", set)
	}
	check(6) // the writing replica sees it at once
	got, err := r.admin.GetOverride(ctx, &adminv1.GetOverrideRequest{Domain: "api", Entries: entries("api_key", "abc")})
	if err != nil || got.Override.GetLimit().GetRequestsPerUnit() != 6 {
		t.Fatalf("get: %v %v", got, err)
	}
	// Replace it by bob: the previous value comes back, the log says who.
	set, err = r.admin.SetOverride(as(bobToken), limitOverride(7, "minute", "api_key", "abc"))
	if err != nil || set.Previous.GetLimit().GetRequestsPerUnit() != 6 {
		t.Fatalf("replace: %v %v", set, err)
	}
	logs := r.log.String()
	for _, want := range []string{"who=alice", "who=bob", "action=set_override", `old="6 per minute"`, `new="7 per minute"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("audit log lacks %s:\n%s", want, logs)
		}
	}
	list, err := r.admin.ListOverrides(ctx, &adminv1.ListOverridesRequest{})
	if err != nil || len(list.Overrides) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
	del, err := r.admin.DeleteOverride(ctx, &adminv1.DeleteOverrideRequest{Domain: "api", Entries: entries("api_key", "abc")})
	if err != nil || del.Previous.GetLimit().GetRequestsPerUnit() != 7 {
		t.Fatalf("delete: %v %v", del, err)
	}
	check(4)
	if _, err := r.admin.DeleteOverride(ctx, &adminv1.DeleteOverrideRequest{Domain: "api", Entries: entries("api_key", "abc")}); status.Code(err) != codes.NotFound {
		t.Errorf("second delete: %v", err)
	}
	if _, err := r.admin.GetOverride(ctx, &adminv1.GetOverrideRequest{Domain: "api", Entries: entries("api_key", "abc")}); status.Code(err) != codes.NotFound {
		t.Errorf("get after delete: %v", err)
	}
}

func TestAdminRefusals(t *testing.T) {
	r := newReplica(t, filepath.Join(t.TempDir(), "o.json"), twoTokens)
	ctx := as(aliceToken)
	for _, tc := range []struct {
		name string
		req  *adminv1.SetOverrideRequest
		code codes.Code
		msg  string
	}{
		{"above the ceiling", limitOverride(1000, "minute", "api_key", "abc"), codes.FailedPrecondition, "above the ceiling of 8 per minute"},
		{"unlimited under a ceiling", &adminv1.SetOverrideRequest{Override: &adminv1.Override{Domain: "api", Entries: entries("api_key", "abc"), Value: &adminv1.Override_Unlimited{Unlimited: true}}}, codes.FailedPrecondition, "unlimited is above the ceiling"},
		{"no rule", limitOverride(5, "minute", "nothing", "x"), codes.FailedPrecondition, "no rule of domain"},
		{"unknown domain", &adminv1.SetOverrideRequest{Override: &adminv1.Override{Domain: "nope", Entries: entries("api_key", "abc"), Value: &adminv1.Override_Unlimited{Unlimited: true}}}, codes.FailedPrecondition, "not in the loaded config"},
		{"unknown policy", &adminv1.SetOverrideRequest{Override: &adminv1.Override{Domain: "api", Entries: entries("vk", "a"), Value: &adminv1.Override_Policy{Policy: "gold"}}}, codes.FailedPrecondition, "no policy \"gold\" (policies: pro, starter)"},
		{"bad unit", limitOverride(5, "fortnight", "api_key", "abc"), codes.InvalidArgument, "fortnight"},
		{"no value", &adminv1.SetOverrideRequest{Override: &adminv1.Override{Domain: "api", Entries: entries("api_key", "abc")}}, codes.InvalidArgument, "needs a value"},
		{"no override", &adminv1.SetOverrideRequest{}, codes.InvalidArgument, "required"},
	} {
		_, err := r.admin.SetOverride(ctx, tc.req)
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %v with %q", tc.name, err, tc.code, tc.msg)
		}
	}
	// At the ceiling is fine.
	if _, err := r.admin.SetOverride(ctx, limitOverride(8, "minute", "api_key", "abc")); err != nil {
		t.Errorf("at the ceiling: %v", err)
	}
}

func TestAdminOverridesSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.json")
	r := newReplica(t, path, twoTokens)
	if _, err := r.admin.SetOverride(as(aliceToken), limitOverride(6, "minute", "api_key", "abc")); err != nil {
		t.Fatal(err)
	}
	// A new process on the same file.
	r2 := newReplica(t, path, twoTokens)
	resp := call(t, r2.env, rq("api", desc("api_key", "abc")))
	if got := resp.Statuses[0].CurrentLimit.GetRequestsPerUnit(); got != 6 {
		t.Errorf("after restart: limit %d, want 6", got)
	}
}

func TestAdminChangeReachesOtherReplicaAtItsNextPoll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.json")
	a := newReplica(t, path, twoTokens)
	b := newReplica(t, path, twoTokens)
	if _, err := a.admin.SetOverride(as(aliceToken), limitOverride(6, "minute", "api_key", "abc")); err != nil {
		t.Fatal(err)
	}
	before := call(t, b.env, rq("api", desc("api_key", "abc")))
	if got := before.Statuses[0].CurrentLimit.GetRequestsPerUnit(); got != 4 {
		t.Fatalf("b before its poll: limit %d, want 4", got)
	}
	b.tick <- time.Now() // b's next poll: every DefaultInterval (< 1 s) in production
	b.tick <- time.Now() // the second send returns only once the first poll is done
	after := call(t, b.env, rq("api", desc("api_key", "abc")))
	if got := after.Statuses[0].CurrentLimit.GetRequestsPerUnit(); got != 6 {
		t.Errorf("b after its poll: limit %d, want 6", got)
	}
	if overrides.DefaultInterval >= time.Second {
		t.Errorf("DefaultInterval %v: replicas would not see changes within one second", overrides.DefaultInterval)
	}
}

func TestAdminInspectAndReset(t *testing.T) {
	r := newReplica(t, filepath.Join(t.TempDir(), "o.json"), twoTokens)
	ctx := as(aliceToken)
	for range 3 {
		call(t, r.env, rq("api", desc("tier", "admin", "api_key", "abc")))
	}
	ins, err := r.admin.Inspect(ctx, &adminv1.InspectRequest{Domain: "api", Descriptor_: &adminv1.Descriptor{Entries: entries("tier", "admin", "api_key", "abc")}})
	if err != nil {
		t.Fatal(err)
	}
	if !ins.Matched || ins.RulePath != "api.api_key" || ins.Tier != "admin" || ins.TierMultiplier != 10 || len(ins.Buckets) != 1 {
		t.Fatalf("inspect: %v", ins)
	}
	bk := ins.Buckets[0]
	if bk.Limit.GetRequestsPerUnit() != 40 || bk.Remaining != 37 || bk.Used != 3 {
		t.Errorf("bucket: %v", bk)
	}
	// Inspect consumed nothing.
	again, _ := r.admin.Inspect(ctx, &adminv1.InspectRequest{Domain: "api", Descriptor_: &adminv1.Descriptor{Entries: entries("api_key", "abc")}})
	if again.Buckets[0].Used != 3 {
		t.Errorf("inspect consumed: used %d", again.Buckets[0].Used)
	}
	rs, err := r.admin.ResetBuckets(ctx, &adminv1.ResetBucketsRequest{Domain: "api", Descriptor_: &adminv1.Descriptor{Entries: entries("api_key", "abc")}})
	if err != nil || rs.Existed != 1 || len(rs.Keys) != 1 {
		t.Fatalf("reset: %v %v", rs, err)
	}
	resp := call(t, r.env, rq("api", desc("api_key", "abc")))
	if got := resp.Statuses[0].LimitRemaining; got != 3 {
		t.Errorf("after reset: remaining %d, want 3", got)
	}
	if !strings.Contains(r.log.String(), "action=reset_buckets") {
		t.Errorf("reset not audited")
	}
}

func TestAdminGetConfig(t *testing.T) {
	r := newReplica(t, filepath.Join(t.TempDir(), "o.json"), twoTokens)
	c, err := r.admin.GetConfig(as(aliceToken), &adminv1.GetConfigRequest{Rules: true})
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != 1 || c.Hash != r.s.Config().Hash() || c.RuleCount != int32(len(c.Rules)) || c.RuleCount == 0 || c.Domains[0] != "api" {
		t.Errorf("config: %v", c)
	}
}
