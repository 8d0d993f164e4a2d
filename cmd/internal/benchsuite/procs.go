package main

// The processes: building the binaries, ratelimitd and the no-op server
// on free ports, one ratelimitctl bench run, and reading their memory.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long a process may take to say it serves.
const startTimeout = 30 * time.Second

// benchConfig is the config every ratelimitd serves: a limit on api_key
// that no run reaches, with a window long enough (a day) that prefilled
// buckets stay live, and a tiny one on the value "over", which the load
// tool's -over-limit sends.
const benchConfig = `domain: bench
descriptors:
  - key: api_key
    rate_limit: {requests_per_unit: 1000000000, unit: day}
  - key: api_key
    value: over
    rate_limit: {requests_per_unit: 1, unit: hour}
`

// daemonFlags are the flags every ratelimitd gets besides its addresses,
// config and backend. -backend-timeout is raised from its 10 ms default
// so that queueing on a loaded machine shows as latency, not as
// UNAVAILABLE answers that the circuit breaker would then make cheap.
var daemonFlags = []string{"-backend-timeout", "1s"}

// moduleRoot returns the directory of the go.mod above the working
// directory.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the ratelimitd module: run from the repository")
	}
	return filepath.Dir(mod), nil
}

// build compiles ./cmd/ratelimitd and ./cmd/ratelimitctl into dir.
func build(ctx context.Context, root, dir string) error {
	for _, name := range []string{"ratelimitd", "ratelimitctl"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/%s: %v\n%s", name, err, out)
		}
	}
	return nil
}

// proc is a started process and the tail of its output.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}

	mu   sync.Mutex
	tail []string // last lines of output
	stop sync.Once
}

// startProc starts bin with args and reads its output (stdout when
// fromStdout, else stderr) line by line, calling match on each line until
// it returns a non-empty string, which startProc returns: the address the
// process serves on. It kills the process when it exits first or takes
// longer than startTimeout.
func startProc(name, bin string, args []string, fromStdout bool, match func(line string) string) (*proc, string, error) {
	cmd := exec.Command(bin, args...)
	// Killed with the suite, even when it dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out io.ReadCloser
	var err error
	if fromStdout {
		out, err = cmd.StdoutPipe()
	} else {
		out, err = cmd.StderrPipe()
	}
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{})}
	found := make(chan string, 1)
	// This goroutine ends when the process closes its output, at exit.
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.tail = append(p.tail, line)
			if len(p.tail) > 30 {
				p.tail = p.tail[1:]
			}
			p.mu.Unlock()
			if !sent {
				if addr := match(line); addr != "" {
					found <- addr
					sent = true
				}
			}
		}
		io.Copy(io.Discard, out)
		cmd.Wait()
		close(p.exited)
	}()
	select {
	case addr := <-found:
		return p, addr, nil
	case <-p.exited:
		return nil, "", fmt.Errorf("%s exited before serving: %s", name, p.output())
	case <-time.After(startTimeout):
		p.kill()
		return nil, "", fmt.Errorf("%s did not serve within %v: %s", name, startTimeout, p.output())
	}
}

// output returns the last lines the process wrote.
func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// kill stops the process: SIGTERM, then SIGKILL after 10 s. It waits for
// the exit and may be called more than once.
func (p *proc) kill() {
	p.stop.Do(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// rss returns the process's resident set size in bytes (VmRSS in
// /proc/PID/status).
func (p *proc) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v) // "54660 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// daemon is a running ratelimitd.
type daemon struct {
	*proc
	addr string // gRPC
}

// startDaemon starts ratelimitd with the bench config and extra flags on
// free ports, and stops it when the suite ends (or at kill).
func (su *suite) startDaemon(name string, extra ...string) (*daemon, error) {
	dir := su.t.TempDir()
	args := []string{
		"-config", su.configDir,
		"-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0",
		"-log-format", "json",
		"-overrides-file", filepath.Join(dir, "overrides.json"),
	}
	args = append(append(append(args, daemonFlags...), extra...), su.s.daemonFlags...)
	p, addr, err := startProc(name, su.daemonBin, args, false, func(line string) string {
		var m struct {
			Msg      string `json:"msg"`
			GRPCAddr string `json:"grpc_addr"`
		}
		if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "serving" {
			return m.GRPCAddr
		}
		return ""
	})
	if err != nil {
		return nil, err
	}
	su.t.Cleanup(p.kill)
	return &daemon{proc: p, addr: addr}, nil
}

// pids returns the process ids of ds.
func pids(ds []*daemon) []int {
	out := make([]int, len(ds))
	for i, d := range ds {
		out[i] = d.cmd.Process.Pid
	}
	return out
}

// startNoop starts `ratelimitctl noop-server` on a free port.
func (su *suite) startNoop() (*daemon, error) {
	p, addr, err := startProc("ratelimitctl noop-server", su.ctlBin, []string{"noop-server", "-listen", "127.0.0.1:0"}, true, func(line string) string {
		a, _ := strings.CutPrefix(line, "serving on ")
		return a
	})
	if err != nil {
		return nil, err
	}
	su.t.Cleanup(p.kill)
	return &daemon{proc: p, addr: addr}, nil
}

// benchDoc is ratelimitctl bench's JSON report (-o json), the fields the
// suite reads; the raw output keeps them all.
type benchDoc struct {
	Target          string  `json:"target"`
	NoopServer      bool    `json:"noop_server"`
	Mode            string  `json:"mode"`
	Callers         int     `json:"callers"`
	Conns           int     `json:"conns"`
	Rate            float64 `json:"rate"`
	Keys            int     `json:"keys"`
	Dist            string  `json:"dist"`
	Descriptors     int     `json:"descriptors"`
	OverLimitShare  float64 `json:"over_limit_fraction"`
	DurationSeconds float64 `json:"duration_seconds"`
	Count           int64   `json:"count"`
	CallsPerSecond  float64 `json:"calls_per_second"`
	Latency         struct {
		P50  int64   `json:"p50_us"`
		P90  int64   `json:"p90_us"`
		P99  int64   `json:"p99_us"`
		P999 int64   `json:"p999_us"`
		Max  int64   `json:"max_us"`
		Mean float64 `json:"mean_us"`
	} `json:"latency"`
	OK           int64            `json:"ok"`
	OverLimit    int64            `json:"over_limit"`
	OtherCode    int64            `json:"other_code"`
	Errors       int64            `json:"errors"`
	ErrorsByCode map[string]int64 `json:"errors_by_code"`

	// CPU is not ratelimitctl's: the suite measures it around the run.
	CPU *cpuUse `json:"cpu_per_call,omitempty"`
}

// bench runs `ratelimitctl bench -q -o json args...` and returns its
// report. timeout bounds the whole run.
func (su *suite) bench(args []string, timeout time.Duration) (benchDoc, error) {
	ctx, cancel := context.WithTimeout(su.ctx, timeout)
	defer cancel()
	args = append([]string{"bench", "-q", "-o", "json"}, args...)
	cmd := exec.CommandContext(ctx, su.ctlBin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.ProcessState != nil {
		su.lastLoadToolCPU = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	}
	var doc benchDoc
	if jerr := json.Unmarshal(stdout.Bytes(), &doc); jerr != nil || err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return doc, fmt.Errorf("ratelimitctl %s: %v %v\n%s", strings.Join(args, " "), err, jerr, strings.TrimSpace(stderr.String()))
	}
	return doc, nil
}

// redisUsedMemory returns used_memory from INFO memory of the Redis at
// addr.
func redisUsedMemory(ctx context.Context, addr string) (int64, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	defer c.Close()
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("no used_memory in INFO memory")
}
