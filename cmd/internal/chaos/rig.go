package main

// rig.go: the binaries under test, a running ratelimitd, and its /metrics.
//
// cmd/internal/soak and cmd/internal/chaos each keep a copy of this file
// (keep them the same): nothing may import a package under cmd
// (internal/archtest), and these helpers drive the binaries, which is no
// business of a library package.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

// module is the import path the binaries are built from.
const module = "github.com/ratelimitd/ratelimitd"

// patience bounds every wait for a process to start, stop or answer: a
// guard against hanging, not a performance expectation.
const patience = 60 * time.Second

// binaries returns the paths of ratelimitd and ratelimitctl: the ones
// given, or, for an empty one, the binary built into dir with go build
// (run from inside the module). A built binary is named prefix-name, so
// that it is told apart in ps, and a `pkill -x ratelimitd` run by someone
// else on the machine leaves it alone.
func binaries(dir, prefix, ratelimitd, ratelimitctl string) (string, string, error) {
	paths := []*string{&ratelimitd, &ratelimitctl}
	for i, name := range []string{"ratelimitd", "ratelimitctl"} {
		if *paths[i] != "" {
			continue
		}
		out := filepath.Join(dir, prefix+"-"+name)
		b, err := exec.Command("go", "build", "-o", out, module+"/cmd/"+name).CombinedOutput()
		if err != nil {
			return "", "", fmt.Errorf("go build %s: %v\n%s", name, err, b)
		}
		*paths[i] = out
	}
	return ratelimitd, ratelimitctl, nil
}

// childEnv is this process's environment without RATELIMITD_* and
// RATELIMITCTL_* variables, so that only the flags given configure the
// processes started.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RATELIMITD_") && !strings.HasPrefix(kv, "RATELIMITCTL_") {
			env = append(env, kv)
		}
	}
	return env
}

// command is exec.CommandContext with childEnv, dir as working directory,
// and SIGKILL for the child if this process dies first.
func command(ctx context.Context, dir, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// daemon is a running ratelimitd, started on free loopback ports (port 0:
// it logs the addresses it bound), logging JSON to a file.
type daemon struct {
	grpcAddr, httpAddr string
	logPath            string

	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait returned

	mu    sync.Mutex
	tail  []string // the last lines of its log
	crash string   // the first line that starts a Go panic or fatal error
}

// tailLines is how many log lines a daemon keeps for failure messages.
const tailLines = 40

// startDaemon starts bin with args in dir, logging to dir/name.log, waits
// until it serves, and kills it when t's cleanups run (if it still runs).
func startDaemon(t redistest.T, name, bin, dir string, args ...string) (*daemon, error) {
	args = append([]string{"-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-log-format", "json"}, args...)
	d := &daemon{logPath: filepath.Join(dir, name+".log"), exited: make(chan struct{})}
	logFile, err := os.Create(d.logPath)
	if err != nil {
		return nil, err
	}
	d.cmd = command(context.Background(), dir, bin, args...)
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	if err := d.cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	t.Cleanup(d.kill)
	serving := make(chan map[string]any, 1)
	// This goroutine ends when the process closes its stderr, at exit.
	go func() {
		defer close(d.exited)
		defer logFile.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			d.add(line)
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "serving" {
				select {
				case serving <- m:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
		d.cmd.Wait()
	}()
	select {
	case m := <-serving:
		d.grpcAddr, _ = m["grpc_addr"].(string)
		d.httpAddr, _ = m["http_addr"].(string)
		if d.grpcAddr == "" || d.httpAddr == "" {
			return nil, fmt.Errorf("ratelimitd: serving line without addresses: %v", m)
		}
		return d, nil
	case <-d.exited:
		return nil, fmt.Errorf("ratelimitd exited at start (%s); its log:\n%s", d.cmd.ProcessState, d.logTail())
	case <-time.After(patience):
		return nil, fmt.Errorf("ratelimitd did not serve within %v; its log:\n%s", patience, d.logTail())
	}
}

// add keeps line in the tail and notes a crash.
func (d *daemon) add(line string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.crash == "" && (strings.HasPrefix(line, "panic:") || strings.HasPrefix(line, "fatal error:")) {
		d.crash = line
	}
	d.tail = append(d.tail, line)
	if len(d.tail) > tailLines {
		d.tail = d.tail[len(d.tail)-tailLines:]
	}
}

// logTail returns the last lines of the log.
func (d *daemon) logTail() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.tail, "\n")
}

// crashed returns the line of a Go panic or fatal error in the log, or "".
func (d *daemon) crashed() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.crash
}

// alive reports whether the process has not exited.
func (d *daemon) alive() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// kill ends the process with SIGKILL, if it runs, and waits for it.
func (d *daemon) kill() {
	if d.alive() {
		d.cmd.Process.Kill()
	}
	<-d.exited
}

// stop asks the process to drain and exit (SIGTERM) and returns its exit
// code; after patience it kills it and says so. A process that had already
// exited is reported as such: that is a crash.
func (d *daemon) stop() (int, error) {
	if !d.alive() {
		return d.cmd.ProcessState.ExitCode(), fmt.Errorf("ratelimitd had exited before it was stopped: %s", d.cmd.ProcessState)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		return d.cmd.ProcessState.ExitCode(), nil
	case <-time.After(patience):
		d.kill()
		return d.cmd.ProcessState.ExitCode(), fmt.Errorf("ratelimitd did not exit within %v of SIGTERM; killed", patience)
	}
}

// pid is the process id.
func (d *daemon) pid() int { return d.cmd.Process.Pid }

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// metrics is one scrape of /metrics.
type metrics []sample

// httpClient scrapes; its timeout bounds a scrape of a stuck process.
var httpClient = &http.Client{Timeout: 5 * time.Second}

// scrape reads http://addr/metrics.
func scrape(addr string) (metrics, error) {
	resp, err := httpClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return parseMetrics(string(b))
}

// parseMetrics parses the Prometheus text format as client_golang writes
// it: "name{k="v",...} value", without timestamps.
func parseMetrics(text string) (metrics, error) {
	var m metrics
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: %q: %v", line, err)
		}
		s := sample{name: line[:sp], value: v}
		if i := strings.IndexByte(s.name, '{'); i >= 0 {
			if s.labels, err = parseLabels(s.name[i+1 : len(s.name)-1]); err != nil {
				return nil, fmt.Errorf("metrics: %q: %v", line, err)
			}
			s.name = s.name[:i]
		}
		m = append(m, s)
	}
	return m, nil
}

// parseLabels parses `k="v",k2="v2"` with Go-style escapes in values.
func parseLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return nil, errors.New("bad label")
		}
		k := s[:eq]
		rest := s[eq+1:]
		end := 1
		for end < len(rest) && rest[end] != '"' {
			if rest[end] == '\\' {
				end++
			}
			end++
		}
		if end >= len(rest) {
			return nil, errors.New("unterminated label value")
		}
		v, err := strconv.Unquote(rest[:end+1])
		if err != nil {
			return nil, err
		}
		labels[k] = v
		s = strings.TrimPrefix(rest[end+1:], ",")
	}
	return labels, nil
}

// get returns the sum of the samples named name whose labels include the
// pairs kv (name, value, ...), and whether there was any.
func (m metrics) get(name string, kv ...string) (float64, bool) {
	sum, found := 0.0, false
	for _, s := range m {
		if s.name != name || !s.has(kv) {
			continue
		}
		sum += s.value
		found = true
	}
	return sum, found
}

// value is get without the found flag: -1 when absent.
func (m metrics) value(name string, kv ...string) float64 {
	if v, ok := m.get(name, kv...); ok {
		return v
	}
	return -1
}

// all returns the samples named name.
func (m metrics) all(name string) []sample {
	var out []sample
	for _, s := range m {
		if s.name == name {
			out = append(out, s)
		}
	}
	return out
}

func (s sample) has(kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		if s.labels[kv[i]] != kv[i+1] {
			return false
		}
	}
	return true
}

// waitFor polls cond every 20 ms until it returns nil or timeout passes,
// and returns cond's last error then.
func waitFor(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ready returns nil when GET /readyz answers 200 (with Redis: once Redis
// answers).
func ready(httpAddr string) error {
	resp, err := httpClient.Get("http://" + httpAddr + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

// machine describes where the run happens.
func machine() []string {
	out := []string{fmt.Sprintf("%s/%s, %d CPUs (%s), %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel(), runtime.Version())}
	if b, err := exec.Command("redis-server", "--version").Output(); err == nil {
		out = append(out, strings.TrimSpace(string(b)))
	}
	out = append(out, "load average at the start: "+loadavg())
	return out
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
