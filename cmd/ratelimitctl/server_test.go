package main

// Tests against a real ratelimitd in the same process: server.New over the
// memory backend, the admin API with overrides in a file, on a loopback
// TCP port. The server's clock is fixed, so that no window turns over
// whatever the machine's speed.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ratelimitd/ratelimitd/backends/memory"
	"github.com/ratelimitd/ratelimitd/config"
	"github.com/ratelimitd/ratelimitd/overrides"
	"github.com/ratelimitd/ratelimitd/server"
)

const (
	aliceToken = "alice-0123456789abcdef"
	bobToken   = "bob-fedcba9876543210"
	tokenFile  = "# operators\nalice " + aliceToken + "\nbob " + bobToken + "\n"
)

// t0 is the server's clock: 55 s before the end of a minute window.
var t0 = time.Date(2026, 3, 4, 5, 6, 5, 0, time.UTC)

const serverConfig = `domain: api
tiers:
  key: tier
  default: user
  multipliers: {admin: 10, user: 1, banned: 0}
idempotency: {key: idempotency_key, ttl: 10m}
policies:
  pro:
    requests: {requests_per_unit: 30, unit: hour}
descriptors:
  - key: api_key
    max_override: {requests_per_unit: 8, unit: minute}
    rate_limit: {requests_per_unit: 4, unit: minute, name: per-key}
  - key: internal
    rate_limit: {unlimited: true}
  - key: path
    value: "/v1/*"
    rate_limit: {requests_per_unit: 2, unit: hour}
`

// testServer is one running ratelimitd.
type testServer struct {
	addr    string
	cfg     *config.Config
	dir     string
	tokFile string // a token file holding alice's token
}

// serverOptions change startServer.
type serverOptions struct {
	config    string                         // the config file's content; default serverConfig
	tokens    string                         // the admin token file's content; "" turns the admin API off
	tls       *tls.Config                    // serve over TLS
	overrides map[string]*overrides.Override // stored before the server starts
}

// startServer starts a ratelimitd on 127.0.0.1:0 and stops it when t ends.
func startServer(t *testing.T, o serverOptions) *testServer {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	if o.config == "" {
		o.config = serverConfig
	}
	if err := os.WriteFile(cfgPath, []byte(o.config), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ovPath := filepath.Join(dir, "overrides.json")
	if len(o.overrides) > 0 {
		writeOverrides(t, ovPath, o.overrides)
	}
	now := func() time.Time { return t0 }
	b := memory.New(memory.Options{Now: now})
	t.Cleanup(func() { b.Close() })
	st := overrides.NewFileStore(ovPath)
	// No ticks: the admin API refreshes the watcher after its own changes.
	w, err := overrides.Watch(context.Background(), st, overrides.WatcherOptions{Tick: make(chan time.Time)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	style, err := server.ParseHeaderStyle("ietf")
	if err != nil {
		t.Fatal(err)
	}
	body, err := server.ParseBodyFormat("json")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{
		Backend:        b,
		Now:            now,
		BackendTimeout: -1, // memory does no I/O: no deadline to miss on a busy machine
		Overrides:      w.Current,
		HeaderStyle:    style,
		Body:           body,
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetConfig(cfg)
	srv.SetServing(true)
	var toks []server.AdminToken
	if o.tokens != "" {
		if toks, err = server.ParseAdminTokens([]byte(o.tokens)); err != nil {
			t.Fatal(err)
		}
	}
	admin, err := srv.NewAdmin(server.AdminOptions{Tokens: toks, Store: st, Watcher: w})
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if o.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(o.tls)))
	}
	g := grpc.NewServer(opts...)
	srv.Register(g)
	admin.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); g.Serve(lis) }()
	t.Cleanup(func() {
		g.Stop()
		<-done
	})
	tf := filepath.Join(dir, "token")
	if err := os.WriteFile(tf, []byte(tokenFile), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testServer{addr: lis.Addr().String(), cfg: cfg, dir: dir, tokFile: tf}
}

// writeOverrides writes overrides in the file store's format:
// {"format": 1, "overrides": {"<id>": <the override's JSON>}}.
func writeOverrides(t *testing.T, path string, ovs map[string]*overrides.Override) {
	t.Helper()
	doc := map[string]any{"format": 1}
	m := map[string]json.RawMessage{}
	for id, o := range ovs {
		b, err := overrides.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		m[id] = b
	}
	doc["overrides"] = m
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// env is the environment of a ratelimitctl talking to s as alice.
func (s *testServer) env() map[string]string {
	return map[string]string{"RATELIMITCTL_ADDR": s.addr, "RATELIMITCTL_TOKEN": aliceToken}
}

func TestLimits(t *testing.T) {
	s := startServer(t, serverOptions{tokens: tokenFile})
	env := s.env()

	// The issue's own syntax: flags first; then flags after the entries.
	r := ctl(t, env, "limits", "set", "--domain", "api", "api_key=abc", "6/minute", "--reason", "ticket 42")
	want(t, r, exitOK, "value     6 per minute", "reason    ticket 42", "author    alice", "previous  none")
	r = ctl(t, env, "limits", "get", "api_key=abc", "-domain", "api")
	want(t, r, exitOK, "entries  api_key=abc", "value    6 per minute", "author   alice")
	r = ctl(t, env, "limits", "set", "api_key=abc", "-domain=api", "7/m")
	want(t, r, exitOK, "value     7 per minute", "previous  6 per minute")

	// Above the rule's max_override: refused, naming the ceiling.
	r = ctl(t, env, "limits", "set", "-domain", "api", "api_key=abc", "100/minute")
	want(t, r, exitError, "err:ratelimitctl: limits set: FailedPrecondition: 100 per minute is above the ceiling of 8 per minute that rule api.api_key sets with max_override")
	r = ctl(t, env, "limits", "set", "-domain", "api", "api_key=abc", "unlimited")
	want(t, r, exitError, "err:unlimited is above the ceiling of 8 per minute")

	// A policy, unlimited where no ceiling, and a gcra limit.
	want(t, ctl(t, env, "limits", "set", "-domain", "api", "api_key=def", "policy=pro"), exitOK, "value     policy pro")
	want(t, ctl(t, env, "limits", "set", "-domain", "api", "internal=x", "unlimited"), exitOK, "value     unlimited")
	want(t, ctl(t, env, "limits", "set", "-domain", "api", "path=/v1/runs", "1/s", "-algorithm", "gcra", "-burst", "3"), exitOK, "value     1 per second (gcra, burst 3)")
	// Refusals of the server: an unknown policy (exit 1), a malformed
	// override (InvalidArgument: exit 2).
	want(t, ctl(t, env, "limits", "set", "-domain", "api", "api_key=ghi", "policy=gold"), exitError, `err:FailedPrecondition: domain "api" has no policy "gold" (policies: pro)`)
	want(t, ctl(t, env, "limits", "set", "-domain", "api", "api_key=ghi", "0/minute"), exitUsage, "err:InvalidArgument: ")

	// list, every page; then one page at a time.
	r = ctl(t, env, "limits", "list")
	want(t, r, exitOK, "DOMAIN  ENTRIES", "api_key=abc", "7 per minute", "policy pro", "unlimited", "gcra")
	if n := strings.Count(r.stdout, "\napi "); n != 4 {
		t.Errorf("want 4 overrides listed, got %d:\n%s", n, r)
	}
	r = ctl(t, env, "limits", "list", "-page-size", "3")
	want(t, r, exitOK, "err:more: next page with -page-token ")
	token := strings.TrimSpace(r.stderr[strings.LastIndex(r.stderr, " ")+1:])
	if n := strings.Count(r.stdout, "\napi "); n != 3 {
		t.Errorf("want a page of 3, got %d:\n%s", n, r)
	}
	r = ctl(t, env, "limits", "list", "-page-token", token)
	if n := strings.Count(r.stdout, "\napi "); r.code != 0 || n != 1 || r.stderr != "" {
		t.Errorf("want the last override after the token:\n%s", r)
	}
	want(t, ctl(t, env, "limits", "list", "-domain", "other"), exitOK, "no overrides")

	// JSON: protojson with the proto's field names.
	r = ctl(t, env, "limits", "list", "-o", "json")
	var list struct {
		Overrides []struct {
			Domain  string `json:"domain"`
			Entries []struct{ Key, Value string }
			Limit   *struct {
				RequestsPerUnit int    `json:"requests_per_unit"`
				Unit            string `json:"unit"`
			} `json:"limit"`
			Policy string `json:"policy"`
			Author string `json:"author"`
		} `json:"overrides"`
		NextPageToken string `json:"next_page_token"`
	}
	decode(t, r, &list)
	if len(list.Overrides) != 4 || list.NextPageToken != "" || list.Overrides[0].Author != "alice" {
		t.Fatalf("json list: %+v", list)
	}
	found := false
	for _, o := range list.Overrides {
		if o.Limit != nil && o.Limit.RequestsPerUnit == 7 && o.Limit.Unit == "minute" && o.Entries[0].Value == "abc" {
			found = true
		}
	}
	if !found {
		t.Errorf("json list lacks api_key=abc 7/minute: %s", r.stdout)
	}
	r = ctl(t, env, "limits", "get", "-domain", "api", "api_key=def", "-o", "json")
	var got struct {
		Override struct {
			Policy string `json:"policy"`
			ID     string `json:"id"`
		} `json:"override"`
	}
	decode(t, r, &got)
	if got.Override.Policy != "pro" || got.Override.ID == "" {
		t.Errorf("json get: %s", r.stdout)
	}

	// unset, then get and unset again: not found.
	want(t, ctl(t, env, "limits", "unset", "-domain", "api", "api_key=abc"), exitOK, "removed  api: api_key=abc", "was      7 per minute")
	want(t, ctl(t, env, "limits", "get", "-domain", "api", "api_key=abc"), exitNotFound, "err:ratelimitctl: limits get: NotFound: no override for api_key=abc")
	want(t, ctl(t, env, "limits", "unset", "-domain", "api", "api_key=abc"), exitNotFound, "err:NotFound")
}

func TestListFollowsPages(t *testing.T) {
	ovs := map[string]*overrides.Override{}
	for i := range 150 {
		o := &overrides.Override{Domain: "api", Entries: []config.Entry{{Key: "api_key", Value: fmt.Sprintf("k%03d", i)}},
			Kind: overrides.Limit, RequestsPerUnit: 5, Unit: config.Minute}
		ovs[o.ID()] = o
	}
	s := startServer(t, serverOptions{tokens: tokenFile, overrides: ovs})
	r := ctl(t, s.env(), "limits", "list", "-o", "json")
	var list struct {
		Overrides []json.RawMessage `json:"overrides"`
	}
	decode(t, r, &list)
	if len(list.Overrides) != 150 {
		t.Errorf("listed %d overrides of 150 (the server's pages hold 100)", len(list.Overrides))
	}
	r = ctl(t, s.env(), "limits", "list", "-page-size", "100")
	if n := strings.Count(r.stdout, "\napi "); n != 100 || !strings.Contains(r.stderr, "-page-token") {
		t.Errorf("one page of 100: %d rows\n%s", n, r.stderr)
	}
}

func TestAuthentication(t *testing.T) {
	s := startServer(t, serverOptions{tokens: tokenFile})
	addr := map[string]string{"RATELIMITCTL_ADDR": s.addr}

	r := ctl(t, addr, "config")
	want(t, r, exitDenied, `err:ratelimitctl: config: Unauthenticated: admin API: missing "authorization: Bearer <token>" metadata`, "err:no token was sent")
	r = ctl(t, addr, "config", "-token", "wrong-token-0123456789")
	want(t, r, exitDenied, "err:ratelimitctl: config: Unauthenticated: admin API: the bearer token is not valid")
	if strings.Contains(r.stderr, "no token was sent") {
		t.Errorf("hint about a missing token when one was sent:\n%s", r)
	}

	// The token file: its first token (alice's), from a flag, the
	// environment or standard input.
	want(t, ctl(t, addr, "limits", "set", "-domain", "api", "api_key=a", "5/minute", "-token-file", s.tokFile), exitOK, "author    alice")
	env := map[string]string{"RATELIMITCTL_ADDR": s.addr, "RATELIMITCTL_TOKEN_FILE": s.tokFile}
	want(t, ctl(t, env, "config"), exitOK, "version")
	want(t, ctlIn(t, "bob "+bobToken+"\n", addr, "limits", "set", "-domain", "api", "api_key=b", "5/minute", "-token-file", "-"), exitOK, "author    bob")
	// The flag wins over the environment, and RATELIMITCTL_TOKEN over
	// RATELIMITCTL_TOKEN_FILE.
	env["RATELIMITCTL_TOKEN"] = "wrong-token-0123456789"
	want(t, ctl(t, env, "config"), exitDenied)
	want(t, ctl(t, env, "config", "-token", aliceToken), exitOK)
	want(t, ctl(t, env, "config", "-token-file", s.tokFile), exitOK)
	// -addr wins over RATELIMITCTL_ADDR.
	want(t, ctl(t, map[string]string{"RATELIMITCTL_ADDR": "127.0.0.1:1"}, "config", "-addr", s.addr, "-token", aliceToken), exitOK)
}

func TestAdminOff(t *testing.T) {
	s := startServer(t, serverOptions{})
	for _, args := range [][]string{
		{"config"},
		{"limits", "list"},
		{"limits", "set", "-domain", "api", "api_key=a", "5/minute"},
		{"inspect", "-domain", "api", "api_key=a"},
	} {
		r := ctl(t, s.env(), args...)
		want(t, r, exitDenied, "err:FailedPrecondition: the admin API is off: start ratelimitd with -admin-token-file")
	}
	// check needs no admin API.
	want(t, ctl(t, s.env(), "check", "-domain", "api", "api_key=a"), exitOK, "overall: OK")
}

func TestCheckInspectReset(t *testing.T) {
	s := startServer(t, serverOptions{tokens: tokenFile})
	env := s.env()

	// 4 per minute: 3 hits in one call, then 1, then over.
	r := ctl(t, env, "check", "-domain", "api", "-hits", "3", "api_key=k1")
	want(t, r, exitOK, "overall: OK", "0  OK    4 per minute (per-key)  1          55s", "RateLimit-Policy", "body:\n  (none)")
	r = ctl(t, env, "inspect", "-domain", "api", "api_key=k1")
	want(t, r, exitOK, "rule      api.api_key (", "config.yaml:11)", "tier      user (multiplier 1)", "override  none", "mode      counted",
		"0  4 per minute (per-key)  3     1          55s", `"3:api1:17:api_key2:k112:fixed_window8:60000000"`)
	want(t, ctl(t, env, "check", "-domain", "api", "api_key=k1"), exitOK, "0  OK    4 per minute (per-key)  0")

	// Two descriptors, one over: OVER_LIMIT, exit 4, with a body.
	r = ctl(t, env, "check", "-domain", "api", "internal=x", "--", "api_key=k1")
	want(t, r, exitOverLimit, "overall: OVER_LIMIT", "0  OK", "1  OVER_LIMIT  4 per minute (per-key)  0", "Retry-After: 55", `"error"`)
	r = ctl(t, env, "check", "-domain", "api", "api_key=k1", "-o", "json")
	if r.code != exitOverLimit {
		t.Fatalf("want exit 4:\n%s", r)
	}
	var doc checkJSON
	decode(t, r, &doc)
	if doc.OverallCode != "OVER_LIMIT" || len(doc.Statuses) != 1 || doc.Statuses[0].Limit == nil || doc.Statuses[0].Limit.RequestsPerUnit != 4 ||
		doc.Statuses[0].Limit.Unit != "MINUTE" || doc.Statuses[0].ResetSeconds != 55 || doc.RawBody == "" || len(doc.ResponseHeaders) == 0 {
		t.Errorf("json: %+v", doc)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(doc.RawBody), &body); err != nil {
		t.Errorf("raw body is not JSON: %v: %q", err, doc.RawBody)
	}

	// An override shows in inspect, and applies to check.
	want(t, ctl(t, env, "limits", "set", "-domain", "api", "api_key=k1", "6/minute"), exitOK)
	r = ctl(t, env, "inspect", "-domain", "api", "api_key=k1", "tier=admin")
	want(t, r, exitOK, "tier      admin (multiplier 10)", "override  6 per minute (api_key=k1, by alice, ", "6 per minute (per-key)  4     2")
	r = ctl(t, env, "inspect", "-domain", "api", "api_key=k1", "-o", "json")
	var ins struct {
		Matched  bool   `json:"matched"`
		RulePath string `json:"rule_path"`
		Buckets  []struct {
			Used      string `json:"used"` // int64: a string in protojson
			Remaining string `json:"remaining"`
			Key       []byte `json:"key"`
		} `json:"buckets"`
	}
	decode(t, r, &ins)
	if !ins.Matched || ins.RulePath != "api.api_key" || len(ins.Buckets) != 1 || ins.Buckets[0].Used != "4" || ins.Buckets[0].Remaining != "2" ||
		!strings.HasPrefix(string(ins.Buckets[0].Key), "3:api") {
		t.Errorf("json inspect: %s", r.stdout)
	}

	// reset brings the budget back.
	r = ctl(t, env, "reset", "-domain", "api", "api_key=k1")
	want(t, r, exitOK, "reset 1 bucket of api: api_key=k1 (1 held state)", `"3:api1:17:api_key2:k112:fixed_window8:60000000"`)
	want(t, ctl(t, env, "inspect", "-domain", "api", "api_key=k1"), exitOK, "6 per minute (per-key)  0     6")
	want(t, ctl(t, env, "check", "-domain", "api", "api_key=k1"), exitOK, "0  OK    6 per minute (per-key)  5")
	r = ctl(t, env, "reset", "-domain", "api", "api_key=k1", "-o", "json")
	var rs struct {
		Keys    [][]byte `json:"keys"`
		Existed int      `json:"existed"`
	}
	decode(t, r, &rs)
	if len(rs.Keys) != 1 || rs.Existed != 1 {
		t.Errorf("json reset: %s", r.stdout)
	}

	// Nothing matches: exit 3.
	want(t, ctl(t, env, "inspect", "-domain", "api", "nope=1"), exitNotFound, "err:no rule matches: no rule of domain api matches nope=1")
	want(t, ctl(t, env, "reset", "-domain", "api", "nope=1"), exitNotFound, "err:ratelimitctl: reset: NotFound: ")
	r = ctl(t, env, "inspect", "-domain", "api", "nope=1", "-o", "json")
	if r.code != exitNotFound || !strings.Contains(r.stdout, `"matched": false`) {
		t.Errorf("json inspect, no match:\n%s", r)
	}
	// An unknown domain is answered OK, as Envoy's service does.
	want(t, ctl(t, env, "check", "-domain", "other", "a=b"), exitOK, "overall: OK")
	// What the server refuses as InvalidArgument is a usage error.
	want(t, ctl(t, env, "check", "-domain", "api", "api_key="+strings.Repeat("x", 65<<10)), exitUsage, "err:ratelimitctl: check: InvalidArgument: ")
}

func TestConfig(t *testing.T) {
	s := startServer(t, serverOptions{tokens: tokenFile})
	env := s.env()
	want(t, ctl(t, env, "limits", "set", "-domain", "api", "api_key=abc", "5/minute"), exitOK)
	r := ctl(t, env, "config")
	want(t, r, exitOK, "version    1", "hash       "+s.cfg.Hash(), "loaded_at  "+t0.Format(time.RFC3339), "domains    api", "rules      3", "overrides  1", "config.yaml")
	if strings.Contains(r.stdout, "api.api_key") {
		t.Errorf("rules without -rules:\n%s", r)
	}
	r = ctl(t, env, "config", "--rules")
	want(t, r, exitOK, "api.api_key", `4 per minute`, `name="per-key" max_override="8 per minute"`, "api.internal", "unlimited", "api.path=/v1/*", "config.yaml:11")
	r = ctl(t, env, "config", "-rules", "-o", "json")
	var doc struct {
		Version string   `json:"version"` // int64: a string in protojson
		Hash    string   `json:"hash"`
		Files   []string `json:"files"`
		Domains []string `json:"domains"`
		Rules   []struct {
			Path string `json:"path"`
			Line int    `json:"line"`
		} `json:"rules"`
		OverrideCount int `json:"override_count"`
	}
	decode(t, r, &doc)
	if doc.Version != "1" || doc.Hash != s.cfg.Hash() || len(doc.Rules) != 3 || doc.Rules[0].Path != "api.api_key" || doc.OverrideCount != 1 {
		t.Errorf("json config: %s", r.stdout)
	}
}

func TestConnectionErrors(t *testing.T) {
	// A port nothing listens on: connection refused, at once.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	env := map[string]string{"RATELIMITCTL_ADDR": addr, "RATELIMITCTL_TOKEN": aliceToken}
	want(t, ctl(t, env, "config"), exitError, "err:ratelimitctl: config: Unavailable: ")
	want(t, ctl(t, env, "check", "-domain", "api", "a=b"), exitError, "err:ratelimitctl: check: Unavailable: ")
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCert(t, nil, nil, "test CA", true)
	srvCert, srvKey := newCert(t, ca, caKey, "ratelimitd", false)
	cliCert, cliKey := newCert(t, ca, caKey, "operator", false)
	files := map[string][]byte{
		"ca.pem":         pemBlock("CERTIFICATE", ca.Raw),
		"client.pem":     pemBlock("CERTIFICATE", cliCert.Raw),
		"client-key.pem": keyPEM(t, cliKey),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	s := startServer(t, serverOptions{tokens: tokenFile, tls: &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert.Raw}, PrivateKey: srvKey}},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}})
	env := s.env()
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")

	want(t, ctl(t, env, "config", "-ca", caFile, "-cert", certFile, "-key", keyFile), exitOK, "version    1")
	// The same from the environment.
	env2 := map[string]string{"RATELIMITCTL_ADDR": s.addr, "RATELIMITCTL_TOKEN": aliceToken,
		"RATELIMITCTL_CA": caFile, "RATELIMITCTL_CERT": certFile, "RATELIMITCTL_KEY": keyFile}
	want(t, ctl(t, env2, "config"), exitOK, "version    1")
	// Without a client certificate, without the CA, or in plaintext: refused.
	want(t, ctl(t, env, "config", "-ca", caFile), exitError, "err:ratelimitctl: config: Unavailable: ")
	want(t, ctl(t, env, "config", "-tls", "-cert", certFile, "-key", keyFile), exitError, "err:ratelimitctl: config: Unavailable: ")
	want(t, ctl(t, env, "config"), exitError, "err:ratelimitctl: config: Unavailable: ")
	// A CA file without a certificate is a usage error.
	want(t, ctl(t, env, "config", "-ca", keyFile), exitUsage, "err:-ca: no PEM certificate")
}

// newCert returns a certificate signed by parent (self-signed when nil),
// valid for 127.0.0.1, and its key.
func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, cn string, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		IsCA:                  isCA,
		BasicConstraintsValid: true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func keyPEM(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("EC PRIVATE KEY", der)
}
