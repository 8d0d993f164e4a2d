// Package loadrig drives the real ratelimitd and ratelimitctl binaries for
// the load programs (cmd/internal/soak and cmd/internal/chaos): it builds
// the binaries, starts ratelimitd as a daemon on free loopback ports and
// reads its addresses from its JSON log, stops it, scrapes and parses its
// /metrics, and describes the machine for a report.
//
// It is for programs that run the binaries, not for library code: it
// starts processes, builds with the go command and reads /proc. It lives
// under internal because nothing may import a package under cmd
// (internal/archtest), and imports nothing of ours but internal/redistest
// (for redistest.T, which both a test and a redistest.Program satisfy).
package loadrig

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
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

// module is the import path the binaries are built from.
const module = "github.com/ratelimitd/ratelimitd"

// Patience bounds every wait for a process to start, stop or answer: a
// guard against hanging, not a performance expectation.
const Patience = 60 * time.Second

// Binaries returns the paths of ratelimitd and ratelimitctl: the ones
// given, or, for an empty one, the binary built into dir with go build
// (run from inside the module). A built binary is named prefix-name, so
// that it is told apart in ps, and a `pkill -x ratelimitd` run by someone
// else on the machine leaves it alone.
func Binaries(dir, prefix, ratelimitd, ratelimitctl string) (string, string, error) {
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

// Command is exec.CommandContext with dir as working directory, this
// process's environment without RATELIMITD_* and RATELIMITCTL_* variables
// (so that only the flags given configure the child), and SIGKILL for the
// child if this process dies first.
func Command(ctx context.Context, dir, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Daemon is a running ratelimitd, started by StartDaemon on free loopback
// ports (port 0: it logs the addresses it bound), logging JSON to a file.
//
// A goroutine reads its log until the process exits; Stop, or the cleanup
// StartDaemon registers, ends the process and so the goroutine. LogTail,
// Crashed, Alive and PID are safe for concurrent use.
type Daemon struct {
	GRPCAddr string // the gRPC address it serves on, host:port
	HTTPAddr string // the HTTP address (/metrics, /readyz), host:port
	LogPath  string // the file its log is copied to

	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait returned

	mu    sync.Mutex
	tail  []string // the last lines of its log
	crash string   // the first line that starts a Go panic or fatal error
}

// tailLines is how many log lines a Daemon keeps for failure messages.
const tailLines = 40

// StartDaemon starts bin with args in dir, logging to dir/name.log, waits
// until it serves, and kills it when t's cleanups run (if it still runs).
// It adds the flags for free loopback ports and JSON logs before args.
func StartDaemon(t redistest.T, name, bin, dir string, args ...string) (*Daemon, error) {
	args = append([]string{"-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-log-format", "json"}, args...)
	d := &Daemon{LogPath: filepath.Join(dir, name+".log"), exited: make(chan struct{})}
	logFile, err := os.Create(d.LogPath)
	if err != nil {
		return nil, err
	}
	d.cmd = Command(context.Background(), dir, bin, args...)
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
		d.GRPCAddr, _ = m["grpc_addr"].(string)
		d.HTTPAddr, _ = m["http_addr"].(string)
		if d.GRPCAddr == "" || d.HTTPAddr == "" {
			return nil, fmt.Errorf("ratelimitd: serving line without addresses: %v", m)
		}
		return d, nil
	case <-d.exited:
		return nil, fmt.Errorf("ratelimitd exited at start (%s); its log:\n%s", d.cmd.ProcessState, d.LogTail())
	case <-time.After(Patience):
		return nil, fmt.Errorf("ratelimitd did not serve within %v; its log:\n%s", Patience, d.LogTail())
	}
}

// add keeps line in the tail and notes a crash.
func (d *Daemon) add(line string) {
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

// LogTail returns the last lines of the log (at most 40), for failure
// messages.
func (d *Daemon) LogTail() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.tail, "\n")
}

// Crashed returns the first line of the log that starts a Go panic or
// fatal error, or "" when there is none.
func (d *Daemon) Crashed() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.crash
}

// Alive reports whether the process has not exited.
func (d *Daemon) Alive() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// ProcessState returns how the process exited once Alive reports false,
// and nil while it runs.
func (d *Daemon) ProcessState() *os.ProcessState {
	if d.Alive() {
		return nil
	}
	return d.cmd.ProcessState
}

// kill ends the process with SIGKILL, if it runs, and waits for it.
func (d *Daemon) kill() {
	if d.Alive() {
		d.cmd.Process.Kill()
	}
	<-d.exited
}

// Stop asks the process to drain and exit (SIGTERM) and returns its exit
// code; after Patience it kills it and says so. A process that had
// already exited is reported as such, with an error: that is a crash.
func (d *Daemon) Stop() (int, error) {
	if !d.Alive() {
		return d.cmd.ProcessState.ExitCode(), fmt.Errorf("ratelimitd had exited before it was stopped: %s", d.cmd.ProcessState)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		return d.cmd.ProcessState.ExitCode(), nil
	case <-time.After(Patience):
		d.kill()
		return d.cmd.ProcessState.ExitCode(), fmt.Errorf("ratelimitd did not exit within %v of SIGTERM; killed", Patience)
	}
}

// PID returns the process id.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// httpClient scrapes and asks /readyz; its timeout bounds a request to a
// stuck process.
var httpClient = &http.Client{Timeout: 5 * time.Second}

// WaitFor polls cond every 20 ms until it returns nil or timeout passes,
// and returns cond's last error then, or ctx's error when ctx ends first.
func WaitFor(ctx context.Context, timeout time.Duration, cond func() error) error {
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

// Ready returns nil when GET http://httpAddr/readyz answers 200 (with
// Redis: once Redis answers).
func Ready(httpAddr string) error {
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

// Machine describes where the run happens, one line per fact for a
// report: OS, architecture, CPUs and Go version; redis-server's version
// when it is installed; the load average now.
func Machine() []string {
	out := []string{fmt.Sprintf("%s/%s, %d CPUs (%s), %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel(), runtime.Version())}
	if b, err := exec.Command("redis-server", "--version").Output(); err == nil {
		out = append(out, strings.TrimSpace(string(b)))
	}
	out = append(out, "load average at the start: "+LoadAvg())
	return out
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
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

// LoadAvg returns the 1, 5 and 15 minute load averages of /proc/loadavg,
// separated by spaces, or "unknown".
func LoadAvg() string {
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
