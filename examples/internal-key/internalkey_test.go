// The acceptance test of examples/internal-key: an operator throttles an
// internal key and lifts the limit again with the real ratelimitctl binary,
// against the memory backend and a real Redis, on a fixed clock.
package internalkey_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ratelimitd/ratelimitd/examples/internal/harness"
	adminv1 "github.com/ratelimitd/ratelimitd/proto/ratelimitd/admin/v1"
	"github.com/ratelimitd/ratelimitd/server"
)

const (
	ok   = rlsv3.RateLimitResponse_OK
	over = rlsv3.RateLimitResponse_OVER_LIMIT

	// backendA is the internal key backend A sends to backend B.
	backendA = "ik_backend_a_7f3c"
)

// ctl is the ratelimitctl binary built by TestMain, or "" with the reason
// in ctlMissing.
var ctl, ctlMissing string

// TestMain builds ratelimitctl once, from the module's cmd/ratelimitctl, as
// an operator would, and checks that no test leaks a goroutine.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "internalkey")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := buildCtl(dir); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			ctlMissing = "the go tool is not on PATH: cannot build ratelimitctl"
		} else {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildCtl(dir string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		return err
	}
	out := filepath.Join(dir, "ratelimitctl")
	cmd := exec.Command(goTool, "build", "-o", out, "./cmd/ratelimitctl")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/ratelimitctl: %v\n%s", err, b)
	}
	ctl = out
	return nil
}

// operator runs ratelimitctl against e as the README does: the address and
// token file in RATELIMITCTL_ADDR and RATELIMITCTL_TOKEN_FILE.
type operator struct {
	t         *testing.T
	addr      string
	tokenFile string
}

func newOperator(t *testing.T, e *harness.Env) *operator {
	if ctl == "" {
		t.Skip(ctlMissing)
	}
	tf := filepath.Join(t.TempDir(), "tokens")
	// ratelimitd's -admin-token-file format; ratelimitctl uses its first token.
	if err := os.WriteFile(tf, []byte("operator "+e.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &operator{t: t, addr: e.Addr, tokenFile: tf}
}

// run runs ratelimitctl with args and returns its output and exit code.
func (o *operator) run(args ...string) (stdout, stderr string, code int) {
	o.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ctl, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RATELIMITCTL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "RATELIMITCTL_ADDR="+o.addr, "RATELIMITCTL_TOKEN_FILE="+o.tokenFile)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		o.t.Fatalf("ratelimitctl %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}

// mustRun runs ratelimitctl and fails the test unless it exits 0.
func (o *operator) mustRun(args ...string) string {
	o.t.Helper()
	stdout, stderr, code := o.run(args...)
	if code != 0 {
		o.t.Fatalf("ratelimitctl %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// list returns the overrides as `limits list -o json` prints them.
func (o *operator) list() []*adminv1.Override {
	o.t.Helper()
	var resp adminv1.ListOverridesResponse
	out := o.mustRun("limits", "list", "-o", "json")
	if err := protojson.Unmarshal([]byte(out), &resp); err != nil {
		o.t.Fatalf("limits list -o json: %v\n%s", err, out)
	}
	return resp.GetOverrides()
}

func TestOperatorThrottlesAnInternalKey(t *testing.T) {
	harness.ForEachBackend(t, func(t *testing.T, backend string) {
		routes := harness.LoadRoutes(t, "envoy-routes.yaml", "internal")
		e := harness.Start(t, "config", backend, server.Options{})
		op := newOperator(t, e)
		// Backend A calling backend B, as Envoy in front of B sees it.
		call := func(key string) *rlsv3.RateLimitResponse {
			t.Helper()
			req := harness.Request{Headers: map[string]string{":method": "POST", ":path": "/internal/orders", "x-internal-key": key}}
			return e.Envoy(routes, "internal_api", req, harness.OnRequest)
		}
		unlimited := func(what string, n int) {
			t.Helper()
			for i := range n {
				resp := call(backendA)
				st := resp.GetStatuses()[0]
				if resp.GetOverallCode() != ok || st.GetLimitRemaining() != math.MaxUint32 || st.GetCurrentLimit() != nil {
					t.Fatalf("%s, call %d: %s, remaining %d, current_limit %v; want OK, 4294967295, none", what, i+1, resp.GetOverallCode(), st.GetLimitRemaining(), st.GetCurrentLimit())
				}
			}
		}

		// 1. Unlimited by default: 1000 calls at one instant all pass.
		unlimited("before any override", 1000)

		// 2. The operator sets 500 a minute.
		out := op.mustRun("limits", "set", "--domain", "internal", "internal_key="+backendA, "500/minute", "--reason", "incident 42: B is overloaded")
		if !strings.Contains(out, "500 per minute") {
			t.Errorf("limits set printed\n%s\nwant the value, 500 per minute", out)
		}
		list := op.list()
		if len(list) != 1 {
			t.Fatalf("limits list: %d overrides, want 1: %v", len(list), list)
		}
		ov := list[0]
		lim := ov.GetLimit()
		if ov.GetDomain() != "internal" || len(ov.GetEntries()) != 1 || ov.GetEntries()[0].GetKey() != "internal_key" ||
			ov.GetEntries()[0].GetValue() != backendA || lim.GetRequestsPerUnit() != 500 || lim.GetUnit() != "minute" ||
			ov.GetAuthor() != "operator" || ov.GetReason() != "incident 42: B is overloaded" {
			t.Errorf("limits list: %v, want internal_key=%s at 500 per minute by operator", ov, backendA)
		}

		// 3. Exactly 500 pass in the minute: one call every 100 ms from
		// 09:00:00, the 501st (at 09:00:50) is refused.
		for i := 1; i <= 501; i++ {
			resp := call(backendA)
			st := resp.GetStatuses()[0]
			want := ok
			if i == 501 {
				want = over
			}
			if resp.GetOverallCode() != want {
				t.Fatalf("call %d of the minute: %s, want %s", i, resp.GetOverallCode(), want)
			}
			cl := st.GetCurrentLimit()
			if cl.GetRequestsPerUnit() != 500 || cl.GetUnit() != rlsv3.RateLimitResponse_RateLimit_MINUTE {
				t.Fatalf("call %d: current_limit %v, want 500 per MINUTE", i, cl)
			}
			if want == ok && st.GetLimitRemaining() != uint32(500-i) {
				t.Fatalf("call %d: limit_remaining %d, want %d", i, st.GetLimitRemaining(), 500-i)
			}
			e.Clock.Advance(100 * time.Millisecond)
		}
		// The next minute starts afresh.
		e.Clock.Set(harness.T0.Add(time.Minute))
		if resp := call(backendA); resp.GetOverallCode() != ok || resp.GetStatuses()[0].GetLimitRemaining() != 499 {
			t.Errorf("09:01:00: %s, remaining %d; want OK, 499", resp.GetOverallCode(), resp.GetStatuses()[0].GetLimitRemaining())
		}

		// 4. Above the ceiling: refused, exit 1, naming the ceiling; the
		// override in force is unchanged. So is unlimited.
		for _, value := range []string{"2000/minute", "unlimited"} {
			stdout, stderr, code := op.run("limits", "set", "--domain", "internal", "internal_key="+backendA, value)
			if code != 1 || !strings.Contains(stderr, "FailedPrecondition") || !strings.Contains(stderr, "above the ceiling of 1000 per minute that rule internal.internal_key=ik_* sets with max_override") {
				t.Errorf("limits set %s: exit %d\n%s%s\nwant exit 1 and a message naming the ceiling of 1000 per minute", value, code, stdout, stderr)
			}
		}
		if out := op.mustRun("limits", "get", "--domain", "internal", "internal_key="+backendA); !strings.Contains(out, "500 per minute") {
			t.Errorf("limits get after the refused changes:\n%s\nwant 500 per minute still", out)
		}

		// 5. The operator lifts the limit: unlimited again at once, though
		// the minute's count was spent.
		if out := op.mustRun("limits", "unset", "--domain", "internal", "internal_key="+backendA); !strings.Contains(out, "500 per minute") {
			t.Errorf("limits unset printed\n%s\nwant the removed value, 500 per minute", out)
		}
		if list := op.list(); len(list) != 0 {
			t.Errorf("limits list after unset: %v, want none", list)
		}
		if _, stderr, code := op.run("limits", "get", "--domain", "internal", "internal_key="+backendA); code != 3 {
			t.Errorf("limits get after unset: exit %d (%s), want 3 (not found)", code, stderr)
		}
		unlimited("after unset", 1000)

		// Other values of the header: 100 a minute each.
		for i := 1; i <= 101; i++ {
			resp := call("ik-typo")
			want := ok
			if i == 101 {
				want = over
			}
			if resp.GetOverallCode() != want {
				t.Fatalf("unrecognised key, call %d: %s, want %s", i, resp.GetOverallCode(), want)
			}
			if cl := resp.GetStatuses()[0].GetCurrentLimit(); cl.GetName() != "unrecognised_internal_key" || cl.GetRequestsPerUnit() != 100 {
				t.Fatalf("unrecognised key: current_limit %v, want 100 per minute named unrecognised_internal_key", cl)
			}
		}
	})
}
