package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ratelimitd/ratelimitd/internal/redistest"
	adminv1 "github.com/ratelimitd/ratelimitd/proto/ratelimitd/admin/v1"
)

const adminE2EToken = "ops-token-0123456789abcdef"

const adminE2EConfig = `domain: admin-e2e
descriptors:
  - key: api_key
    max_override: {requests_per_unit: 1000, unit: minute}
    rate_limit: {requests_per_unit: 500, unit: minute}
`

// adminClient dials the admin API at addr with the test's token.
func adminClient(t *testing.T, addr string) (adminv1.AdminServiceClient, context.Context) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	t.Cleanup(cancel)
	return adminv1.NewAdminServiceClient(conn), metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+adminE2EToken)
}

func tokenFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte("ops "+adminE2EToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func set700(t *testing.T, a adminv1.AdminServiceClient, ctx context.Context) {
	t.Helper()
	_, err := a.SetOverride(ctx, &adminv1.SetOverrideRequest{Override: &adminv1.Override{
		Domain:  "admin-e2e",
		Entries: []*adminv1.Entry{{Key: "api_key", Value: "abc"}},
		Value:   &adminv1.Override_Limit{Limit: &adminv1.Limit{RequestsPerUnit: 700, Unit: "minute"}},
		Reason:  "customer upgrade",
	}})
	if err != nil {
		t.Fatalf("SetOverride: %v", err)
	}
}

// limitOf is the limit replica p applies to api_key=abc.
func limitOf(t *testing.T, c *rls) uint32 {
	t.Helper()
	return c.call(t, "admin-e2e", descriptor("api_key", "abc")).GetStatuses()[0].GetCurrentLimit().GetRequestsPerUnit()
}

func TestAdminEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Redis")
	}
	bin := buildBinary(t)

	t.Run("redis replicas and restart", func(t *testing.T) {
		r := redistest.Standalone(t)
		dir := configDir(t, adminE2EConfig)
		toks := tokenFile(t)
		a := redisInstance(t, bin, dir, nil, []string{r.Addr}, "-admin-token-file", toks)
		b := redisInstance(t, bin, dir, nil, []string{r.Addr}, "-admin-token-file", toks)
		ca, cb := dial(t, a.grpcAddr), dial(t, b.grpcAddr)
		if got := limitOf(t, cb); got != 500 {
			t.Fatalf("before: %d", got)
		}
		admin, ctx := adminClient(t, a.grpcAddr)
		set700(t, admin, ctx)
		if got := limitOf(t, ca); got != 700 {
			t.Errorf("the replica that made the change: %d, want 700 at once", got)
		}
		// The other replica polls every 250ms; the wait is bounded by
		// patience only, so that a slow machine cannot fail it (the spread
		// itself is asserted with injected ticks in server and overrides).
		eventually(t, "replica b to apply the override", func() bool { return limitOf(t, cb) == 700 })
		// The audit log names who and what.
		a.log.await(t, 0, "the admin change", func(m map[string]any) bool {
			return m["msg"] == "admin change" && m["who"] == "ops" && m["new"] == "700 per minute" && m["old"] == "none"
		})
		// A new process on the same Redis has it from its start.
		c := redisInstance(t, bin, dir, nil, []string{r.Addr}, "-admin-token-file", toks)
		if got := limitOf(t, dial(t, c.grpcAddr)); got != 700 {
			t.Errorf("a new replica: %d, want 700", got)
		}
		// Above the ceiling is refused with it named.
		_, err := admin.SetOverride(ctx, &adminv1.SetOverrideRequest{Override: &adminv1.Override{
			Domain: "admin-e2e", Entries: []*adminv1.Entry{{Key: "api_key", Value: "abc"}},
			Value: &adminv1.Override_Limit{Limit: &adminv1.Limit{RequestsPerUnit: 2000, Unit: "minute"}},
		}})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "ceiling of 1000 per minute") {
			t.Errorf("above the ceiling: %v", err)
		}
	})

	t.Run("memory, own listener, restart", func(t *testing.T) {
		dir := configDir(t, adminE2EConfig)
		toks := tokenFile(t)
		store := filepath.Join(t.TempDir(), "overrides.json")
		args := []string{"-config", dir, "-admin-token-file", toks, "-admin-addr", "127.0.0.1:0", "-overrides-file", store}
		p := startProc(t, bin, args...)
		on, _ := p.log.await(t, 0, "admin API on", msgIs("admin API on"))
		addr, _ := on["addr"].(string)
		if addr == "" || addr == p.grpcAddr {
			t.Fatalf("admin address %q", addr)
		}
		// The admin API is not on the RLS listener.
		rlsAdmin, ctx := adminClient(t, p.grpcAddr)
		if _, err := rlsAdmin.GetConfig(ctx, &adminv1.GetConfigRequest{}); status.Code(err) != codes.Unimplemented {
			t.Errorf("admin call on the gRPC listener: %v", err)
		}
		admin, ctx := adminClient(t, addr)
		set700(t, admin, ctx)
		p.cmd.Process.Signal(os.Interrupt)
		if code := p.exitCode(t); code != 0 {
			t.Fatalf("exit %d", code)
		}
		p2 := startProc(t, bin, args...)
		if got := limitOf(t, dial(t, p2.grpcAddr)); got != 700 {
			t.Errorf("after a restart: %d, want 700", got)
		}
	})

	t.Run("admin off", func(t *testing.T) {
		p := startProc(t, bin, "-config", configDir(t, adminE2EConfig))
		admin, ctx := adminClient(t, p.grpcAddr)
		_, err := admin.GetConfig(ctx, &adminv1.GetConfigRequest{})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "-admin-token-file") {
			t.Errorf("admin off: %v", err)
		}
	})
}
