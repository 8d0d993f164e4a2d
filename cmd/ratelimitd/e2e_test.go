package main

// The end-to-end test builds ratelimitd, starts it on free loopback ports
// (port 0; the binary logs the addresses it bound) with a temporary config
// directory and talks to it over TCP as Envoy and an operator would. Every
// wait polls with an overall deadline; no assertion depends on how long
// something took.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// patience bounds every wait; it is a guard against hanging, not a
// performance expectation.
const patience = 60 * time.Second

// logLines collects the JSON log lines of a process.
type logLines struct {
	mu    sync.Mutex
	lines []map[string]any
	raw   []string
	more  chan struct{} // closed and replaced when a line arrives
	done  bool          // the stream ended
}

func newLogLines() *logLines { return &logLines{more: make(chan struct{})} }

func (l *logLines) add(line string) {
	var m map[string]any
	_ = json.Unmarshal([]byte(line), &m) // non-JSON lines (a panic) are kept raw
	l.mu.Lock()
	l.raw = append(l.raw, line)
	l.lines = append(l.lines, m)
	close(l.more)
	l.more = make(chan struct{})
	l.mu.Unlock()
}

func (l *logLines) end() {
	l.mu.Lock()
	l.done = true
	close(l.more)
	l.more = make(chan struct{})
	l.mu.Unlock()
}

// await returns the first line from index from on that satisfies match,
// and the index after it.
func (l *logLines) await(t *testing.T, from int, what string, match func(map[string]any) bool) (map[string]any, int) {
	t.Helper()
	deadline := time.After(patience)
	for {
		l.mu.Lock()
		for i := from; i < len(l.lines); i++ {
			if m := l.lines[i]; m != nil && match(m) {
				l.mu.Unlock()
				return m, i + 1
			}
		}
		more, done := l.more, l.done
		l.mu.Unlock()
		if done {
			t.Fatalf("the process ended without logging %s; its log:\n%s", what, l.String())
		}
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("no log line %s; the log:\n%s", what, l.String())
		}
	}
}

func (l *logLines) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.raw, "\n")
}

func msgIs(msg string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["msg"] == msg }
}

// proc is a running ratelimitd.
type proc struct {
	cmd                *exec.Cmd
	log                *logLines
	grpcAddr, httpAddr string
	exited             chan struct{} // closed once cmd.Wait returned
	waitErr            error
}

// buildBinary builds ratelimitd into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ratelimitd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startProc starts bin with args on free ports and waits until it serves.
func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	args = append([]string{"-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-log-format", "json"}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = os.Environ()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: newLogLines(), exited: make(chan struct{})}
	// This goroutine ends when the process closes its stderr, at exit.
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.log.add(sc.Text())
		}
		p.log.end()
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("ratelimitd log:\n%s", p.log.String())
		}
	})
	serving, _ := p.log.await(t, 0, `"serving"`, msgIs("serving"))
	p.grpcAddr, _ = serving["grpc_addr"].(string)
	p.httpAddr, _ = serving["http_addr"].(string)
	if p.grpcAddr == "" || p.httpAddr == "" {
		t.Fatalf("serving line without addresses: %v", serving)
	}
	return p
}

// exitCode waits for the process to exit and returns its exit code.
func (p *proc) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(patience):
		t.Fatal("ratelimitd did not exit")
	}
	return p.cmd.ProcessState.ExitCode()
}

// get returns the status and body of GET http://httpAddr/path.
func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// eventually polls cond until it is true or patience runs out.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric returns the value of the sample whose line starts with series
// (name and labels as exposed), or -1 when absent.
func metric(t *testing.T, addr, series string) float64 {
	t.Helper()
	_, body := get(t, addr, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}

func descriptor(kv ...string) *ratelimitv3.RateLimitDescriptor {
	d := &ratelimitv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

// rls is a gRPC client of a running ratelimitd.
type rls struct {
	conn *grpc.ClientConn
	rl   rlsv3.RateLimitServiceClient
}

func dial(t *testing.T, addr string) *rls {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rls{conn: conn, rl: rlsv3.NewRateLimitServiceClient(conn)}
}

func (c *rls) call(t *testing.T, domain string, ds ...*ratelimitv3.RateLimitDescriptor) *rlsv3.RateLimitResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	resp, err := c.rl.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: domain, Descriptors: ds})
	if err != nil {
		t.Fatalf("ShouldRateLimit(%s): %v", domain, err)
	}
	return resp
}

// versionLimit is the requests_per_unit of the rule that matches
// [version=probe]: each config of the test gives it a different value.
func (c *rls) versionLimit(t *testing.T) uint32 {
	t.Helper()
	st := c.call(t, "e2e", descriptor("version", "probe")).GetStatuses()[0]
	return st.GetCurrentLimit().GetRequestsPerUnit()
}

// e2eConfig is the test's config, generation gen: [user=*] allows 3 a
// day each, [version=*] allows 1000+gen a day.
func e2eConfig(gen int) string {
	return fmt.Sprintf(`domain: e2e
descriptors:
  - key: user
    rate_limit: {unit: day, requests_per_unit: 3}
  - key: version
    rate_limit: {unit: day, requests_per_unit: %d}
`, 1000+gen)
}

const brokenConfig = `domain: e2e
descriptors:
  - key: user
    rate_limit: {unit: fortnight, requests_per_unit: 3}
`

func writeConfig(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	writeConfig(t, file, e2eConfig(1))

	p := startProc(t, bin, "-config", dir, "-reload-debounce", "50ms")
	eventually(t, "/readyz to answer 200", func() bool {
		code, _ := get(t, p.httpAddr, "/readyz")
		return code == http.StatusOK
	})
	c := dial(t, p.grpcAddr)

	// A health watcher opened now must see NOT_SERVING at shutdown.
	hctx, hcancel := context.WithCancel(context.Background())
	defer hcancel()
	health, err := healthpb.NewHealthClient(c.conn).Watch(hctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if h, err := health.Recv(); err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v, %v; want SERVING", h, err)
	}

	t.Run("limits", func(t *testing.T) {
		// 3 a day per user: OK three times, then OVER_LIMIT. A day boundary
		// between the calls would reset the window: then try a new user.
		for attempt := 0; ; attempt++ {
			user := fmt.Sprintf("u%d", attempt)
			var got []string
			var resets []int64
			for range 4 {
				st := c.call(t, "e2e", descriptor("user", user)).GetStatuses()[0]
				got = append(got, fmt.Sprintf("%v/%d", st.Code, st.LimitRemaining))
				resets = append(resets, st.GetDurationUntilReset().GetSeconds())
			}
			if resets[3] > resets[0] && attempt < 3 {
				continue // the window rolled over
			}
			want := []string{"OK/2", "OK/1", "OK/0", "OVER_LIMIT/0"}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("four calls for one user: %v, want %v", got, want)
			}
			break
		}
		resp := c.call(t, "unknown-domain", descriptor("user", "x"))
		if resp.OverallCode != rlsv3.RateLimitResponse_OK {
			t.Errorf("unknown domain: %v, want OK", resp.OverallCode)
		}
		if got := c.versionLimit(t); got != 1001 {
			t.Errorf("first config: limit %d, want 1001", got)
		}
	})

	t.Run("reload in place", func(t *testing.T) {
		writeConfig(t, file, e2eConfig(2))
		eventually(t, "the rewritten config", func() bool { return c.versionLimit(t) == 1002 })
	})

	t.Run("reload by rename", func(t *testing.T) {
		tmp := filepath.Join(dir, ".config.yaml.tmp")
		writeConfig(t, tmp, e2eConfig(3))
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the renamed config", func() bool { return c.versionLimit(t) == 1003 })
	})

	// publish lays out generation gen as the kubelet updates a ConfigMap:
	// a new timestamped directory, then a new ..data symlink renamed over
	// the old one.
	publish := func(t *testing.T, gen int, data string) {
		t.Helper()
		ts := fmt.Sprintf("..2026_01_02_03_04_05.%09d", gen)
		if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
			t.Fatal(err)
		}
		writeConfig(t, filepath.Join(dir, ts, "config.yaml"), data)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(ts, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("reload by ConfigMap symlink swap", func(t *testing.T) {
		publish(t, 4, e2eConfig(4))
		// Turn config.yaml into the kubelet's symlink, atomically.
		link := filepath.Join(dir, ".config.yaml.link")
		if err := os.Symlink(filepath.Join("..data", "config.yaml"), link); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(link, file); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the ConfigMap layout", func() bool { return c.versionLimit(t) == 1004 })
		publish(t, 5, e2eConfig(5))
		eventually(t, "the swapped ..data", func() bool { return c.versionLimit(t) == 1005 })
	})

	const loadErrors = `ratelimitd_config_loads_total{result="error"}`
	t.Run("broken config keeps the last good one", func(t *testing.T) {
		before := metric(t, p.httpAddr, loadErrors)
		if before < 0 {
			t.Fatalf("no %s in /metrics", loadErrors)
		}
		publish(t, 6, brokenConfig)
		eventually(t, "the load error to be counted", func() bool { return metric(t, p.httpAddr, loadErrors) > before })
		if got := c.versionLimit(t); got != 1005 {
			t.Errorf("after a broken config: limit %d, want 1005 (the last good config)", got)
		}
		_, rules := get(t, p.httpAddr, "/rlconfig")
		if !strings.Contains(rules, "e2e.version: unit=DAY requests_per_unit=1005") {
			t.Errorf("/rlconfig after a broken config:\n%s\nwant the last good rules", rules)
		}
		if code, _ := get(t, p.httpAddr, "/readyz"); code != http.StatusOK {
			t.Errorf("/readyz after a broken config: %d, want 200", code)
		}
	})

	t.Run("SIGHUP reloads", func(t *testing.T) {
		from := p.log.len()
		before := metric(t, p.httpAddr, loadErrors)
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		p.log.await(t, from, "reloading on SIGHUP", func(m map[string]any) bool {
			return m["msg"] == "reloading config" && m["trigger"] == "sighup"
		})
		// The config on disk is still broken: the reload fails, once more.
		eventually(t, "the SIGHUP load error to be counted", func() bool { return metric(t, p.httpAddr, loadErrors) > before })
		if got := c.versionLimit(t); got != 1005 {
			t.Errorf("after SIGHUP on a broken config: limit %d, want 1005", got)
		}
	})

	t.Run("SIGTERM drains and exits 0", func(t *testing.T) {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		h, err := health.Recv()
		if err != nil || h.Status != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("health after SIGTERM: %v, %v; want NOT_SERVING", h, err)
		}
		hcancel() // the watch is an in-flight call: end it so the drain ends
		if code := p.exitCode(t); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
		p.log.await(t, 0, `"stopped"`, msgIs("stopped"))
	})
}

func TestStartWithBrokenConfigFails(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, filepath.Join(dir, "config.yaml"), brokenConfig)
	var stdout, stderr strings.Builder
	args := []string{"-config", dir, "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0"}
	if code := run(context.Background(), args, func(string) string { return "" }, &stdout, &stderr); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "fortnight") {
		t.Errorf("the log does not name the error:\n%s", stderr.String())
	}
}
