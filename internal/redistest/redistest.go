// Package redistest starts real Redis processes for tests: a standalone
// server, a TLS-only standalone server with its certificates, a Sentinel
// set (master, replica, one sentinel) and a three-master Cluster whose
// nodes can be paused one by one. Nothing is mocked.
//
// Every process listens on a free loopback port, keeps its files in
// t.TempDir() and is killed by t.Cleanup, also when the test fails. Ports
// are picked by listening on 127.0.0.1:0 and closing; another process can
// grab the port before redis-server binds it, so a start that fails is
// retried on new ports. Startup waits for the process to answer PING (with a
// deadline) before returning.
//
// When redis-server is not installed the helpers skip the test, unless the
// environment variable CI is set: then they fail it, so that a CI run never
// passes by skipping every Redis test. `make test` installs the Debian
// packages redis-server, redis-sentinel and redis-tools when it can.
package redistest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
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

// startTimeout bounds how long one process may take to answer PING.
const startTimeout = 15 * time.Second

// attempts is how many times a start is retried on fresh ports.
const attempts = 5

// Require skips t when redis-server (or another named binary) is not
// installed, or fails it when the environment variable CI is set.
func Require(t T, binaries ...string) {
	t.Helper()
	if len(binaries) == 0 {
		binaries = []string{"redis-server"}
	}
	for _, b := range binaries {
		if _, err := exec.LookPath(b); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed and CI is set: install redis-server, redis-sentinel and redis-tools (make ensure-deps)", b)
			}
			t.Skipf("%s is not installed (make ensure-deps installs it)", b)
		}
	}
}

// freePorts returns n distinct ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// proc is one running redis-server or redis-sentinel.
type proc struct {
	name    string   // binary
	args    []string // arguments, the same for every (re)start
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}

	mu     sync.Mutex   // guards stderr
	stderr bytes.Buffer // what the process wrote before its log file opened
}

// start launches the process; it does not wait for it to listen.
func (p *proc) start() error {
	cmd := exec.Command(p.name, p.args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.mu.Lock()
	p.stderr.Reset()
	p.mu.Unlock()
	cmd.Stderr = stderrWriter{p}
	if err := cmd.Start(); err != nil {
		return err
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	exited := p.exited
	go func() {
		cmd.Wait()
		close(exited)
	}()
	return nil
}

// stderrWriter appends to a proc's stderr buffer, up to 64 KiB.
type stderrWriter struct{ p *proc }

func (w stderrWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	if w.p.stderr.Len() < 64<<10 {
		w.p.stderr.Write(b)
	}
	return len(b), nil
}

// pause stops the process with SIGSTOP, if it runs.
func (p *proc) pause() {
	if p.alive() {
		p.cmd.Process.Signal(syscall.SIGSTOP)
	}
}

// resume continues the process with SIGCONT, if it runs.
func (p *proc) resume() {
	if p.alive() {
		p.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// kill sends SIGKILL (after SIGCONT, in case it was paused) and waits for
// the process to exit.
func (p *proc) kill() {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.exited:
	default:
		p.cmd.Process.Signal(syscall.SIGCONT)
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// alive reports whether the process has not exited.
func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// logTail returns the end of the process's log, and what it wrote to
// stderr (configuration errors come before the log opens), for failure
// messages.
func (p *proc) logTail() string {
	p.mu.Lock()
	stderr := string(bytes.TrimSpace(p.stderr.Bytes()))
	p.mu.Unlock()
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		b = []byte("(no log: " + err.Error() + ")")
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	if stderr != "" {
		return string(bytes.TrimSpace(b)) + "; stderr: " + stderr
	}
	return string(bytes.TrimSpace(b))
}

// waitPing waits until addr answers PING (over TLS when tc is not nil), the
// process exits, or the deadline passes.
func waitPing(p *proc, addr string, tc *tls.Config) error {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1, DisableIdentity: true, TLSConfig: tc})
	defer c.Close()
	deadline := time.Now().Add(startTimeout)
	var err error
	for time.Now().Before(deadline) {
		if !p.alive() {
			return fmt.Errorf("%s exited: %s", p.name, p.logTail())
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s on %s did not answer PING within %v: %v; log: %s", p.name, addr, startTimeout, err, p.logTail())
}

// serverArgs are the arguments of a throwaway redis-server on port in dir.
func serverArgs(port int, dir string, extra ...string) []string {
	return append([]string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--protected-mode", "no",
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"),
	}, extra...)
}

// Server is a standalone redis-server. Its methods are safe for concurrent
// use.
type Server struct {
	// Addr is the server's host:port on 127.0.0.1; it stays the same across
	// Kill and Restart.
	Addr string
	// Socket is the path of the server's unix socket, which it listens on
	// as well.
	Socket string

	t  T
	mu sync.Mutex
	p  *proc
}

// Standalone starts a redis-server on a free loopback port and stops it when
// the test ends.
func Standalone(t T) *Server {
	t.Helper()
	return StandaloneArgs(t)
}

// StandaloneArgs is Standalone with extra redis-server arguments, which come
// after the defaults and so override them: "--appendonly", "yes",
// "--appendfsync", "always" makes a server that Restart brings back with its
// data (the log stays in the server's directory, which Restart reuses).
func StandaloneArgs(t T, extra ...string) *Server {
	t.Helper()
	Require(t)
	// A unix socket path is limited to 107 bytes: keep it short rather
	// than under t.TempDir(), whose name grows with the test's.
	sockDir, err := os.MkdirTemp("", "redistest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "redis.sock")
	p, addr := startServer(t, "standalone", append([]string{"--unixsocket", sock, "--unixsocketperm", "700"}, extra...)...)
	s := &Server{Addr: addr, Socket: sock, t: t, p: p}
	t.Cleanup(s.Kill)
	return s
}

// startServer starts a redis-server on a free port, retrying on new ports
// when the start fails, and fails t after attempts tries.
func startServer(t T, name string, extra ...string) (*proc, string) {
	t.Helper()
	p, addr, err := tryStartServer(t, name, nil, func(port int, dir string) []string {
		return serverArgs(port, dir, extra...)
	})
	if err != nil {
		t.Fatalf("redistest: start %s redis-server: %v", name, err)
	}
	return p, addr
}

// tryStartServer starts a redis-server with args(port, dir) on a free port,
// waits until it answers PING (over TLS when tc is not nil), and retries on
// new ports when that fails. It returns the last error after attempts
// tries.
func tryStartServer(t T, name string, tc *tls.Config, args func(port int, dir string) []string) (*proc, string, error) {
	t.Helper()
	var lastErr error
	for i := range attempts {
		ports, err := freePorts(1)
		if err != nil {
			t.Fatalf("redistest: free port: %v", err)
		}
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("%s-%d", name, i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := &proc{name: "redis-server", args: args(ports[0], dir), logPath: filepath.Join(dir, "redis.log")}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		if lastErr = p.start(); lastErr == nil {
			if lastErr = waitPing(p, addr, tc); lastErr == nil {
				return p, addr, nil
			}
			p.kill()
		}
	}
	return nil, "", lastErr
}

// Kill stops the server with SIGKILL and waits for it to exit. Clients see
// their connections reset. Killing a stopped server does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.p.kill()
}

// Pause stops the server with SIGSTOP: it keeps its connections but answers
// nothing, like a hung or partitioned Redis. Resume or Kill end the pause.
func (s *Server) Pause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.p.pause()
}

// Resume continues a paused server.
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.p.resume()
}

// Restart kills the server if it runs and starts it again on the same
// address, and waits until it answers PING. It comes back empty, unless it
// was started by StandaloneArgs with persistence on. It fails the test if
// the port was taken in between.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.p.kill()
	var err error
	for range attempts {
		if err = s.p.start(); err == nil {
			if err = waitPing(s.p, s.Addr, nil); err == nil {
				return
			}
		}
		s.p.kill()
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart redis-server on %s: %v", s.Addr, err)
}

// Client returns a go-redis client for the server, closed when the test
// ends.
func (s *Server) Client(t T) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// SentinelSet is a master, one replica of it and one sentinel monitoring
// them with quorum 1, so that killing the master promotes the replica
// within a few seconds.
type SentinelSet struct {
	// MasterName is the name the sentinel knows the master by.
	MasterName string
	// SentinelAddrs are the sentinels' host:port addresses (one).
	SentinelAddrs []string
	// MasterAddr and ReplicaAddr are the data servers' addresses at start.
	MasterAddr, ReplicaAddr string

	t               T
	master, replica *proc
	sentinel        *proc
	mu              sync.Mutex
}

// Sentinel starts a master, a replica and a sentinel, waits until the
// sentinel knows both, and stops them when the test ends.
func Sentinel(t T) *SentinelSet {
	t.Helper()
	Require(t, "redis-server", "redis-sentinel")
	s := &SentinelSet{MasterName: "ratelimitd-test", t: t}
	t.Cleanup(s.stop)
	s.master, s.MasterAddr = startServer(t, "master")
	s.replica, s.ReplicaAddr = startServer(t, "replica", "--replicaof", "127.0.0.1", port(s.MasterAddr))

	var lastErr error
	for i := range attempts {
		ports, err := freePorts(1)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("sentinel-%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		conf := filepath.Join(dir, "sentinel.conf")
		text := strings.Join([]string{
			"port " + strconv.Itoa(ports[0]),
			"bind 127.0.0.1",
			"protected-mode no",
			"daemonize no",
			"dir " + dir,
			"logfile " + filepath.Join(dir, "sentinel.log"),
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %s 1", s.MasterName, port(s.MasterAddr)),
			fmt.Sprintf("sentinel down-after-milliseconds %s 1000", s.MasterName),
			fmt.Sprintf("sentinel failover-timeout %s 3000", s.MasterName),
			fmt.Sprintf("sentinel parallel-syncs %s 1", s.MasterName),
			"",
		}, "\n")
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		p := &proc{name: "redis-sentinel", args: []string{conf}, logPath: filepath.Join(dir, "sentinel.log")}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		if lastErr = p.start(); lastErr == nil {
			if lastErr = waitPing(p, addr, nil); lastErr == nil {
				s.sentinel, s.SentinelAddrs = p, []string{addr}
				break
			}
			p.kill()
		}
	}
	if s.sentinel == nil {
		t.Fatalf("redistest: start redis-sentinel: %v", lastErr)
	}

	// Wait until the replica is in sync and the sentinel has discovered it:
	// only then can it fail over.
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.SentinelAddrs[0], DisableIdentity: true})
	defer sc.Close()
	rc := redis.NewClient(&redis.Options{Addr: s.ReplicaAddr, DisableIdentity: true})
	defer rc.Close()
	err := poll(startTimeout, func(ctx context.Context) error {
		info, err := rc.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return errors.New("replica not in sync")
		}
		reps, err := sc.Replicas(ctx, s.MasterName).Result()
		if err != nil {
			return err
		}
		for _, r := range reps {
			if r["name"] == s.ReplicaAddr && !strings.Contains(r["flags"], "disconnected") && !strings.Contains(r["flags"], "s_down") {
				return nil
			}
		}
		return fmt.Errorf("sentinel does not know replica %s yet: %v", s.ReplicaAddr, reps)
	})
	if err != nil {
		t.Fatalf("redistest: sentinel set not ready: %v; sentinel log: %s", err, s.sentinel.logTail())
	}
	return s
}

// KillMaster kills the master process with SIGKILL. The sentinel sees it
// down after a second and promotes the replica; WaitForPromotion waits for
// that.
func (s *SentinelSet) KillMaster() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.master.kill()
}

// FailoverPatience bounds a wait for a Sentinel failover. Sentinel enters
// TILT mode for 30 s (and again, as long as it goes on) whenever its timer
// runs late, as it does on a starved CPU, and does not fail over in TILT:
// on a busy two-core CI machine a failover that takes 3 s idle can take
// more than a minute.
const FailoverPatience = 3 * time.Minute

// WaitForPromotion waits up to timeout until the sentinel names the replica
// as master and the replica says it is one, and returns its address. It
// fails the test on timeout.
func (s *SentinelSet) WaitForPromotion(timeout time.Duration) string {
	s.t.Helper()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.SentinelAddrs[0], DisableIdentity: true})
	defer sc.Close()
	rc := redis.NewClient(&redis.Options{Addr: s.ReplicaAddr, DisableIdentity: true})
	defer rc.Close()
	err := poll(timeout, func(ctx context.Context) error {
		addr, err := sc.GetMasterAddrByName(ctx, s.MasterName).Result()
		if err != nil {
			return err
		}
		if got := net.JoinHostPort(addr[0], addr[1]); got != s.ReplicaAddr {
			return fmt.Errorf("sentinel names %s as master", got)
		}
		info, err := rc.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "role:master") {
			return errors.New("replica not yet master")
		}
		return nil
	})
	if err != nil {
		s.t.Fatalf("redistest: no promotion within %v: %v; sentinel log: %s", timeout, err, s.sentinel.logTail())
	}
	return s.ReplicaAddr
}

func (s *SentinelSet) stop() {
	for _, p := range []*proc{s.sentinel, s.replica, s.master} {
		if p != nil {
			p.kill()
		}
	}
}

// ClusterSet is a Redis Cluster of three masters without replicas, every
// slot assigned. (The type cannot be called Cluster: that is the function
// that starts one.)
type ClusterSet struct {
	// Addrs are the masters' host:port addresses; a node's index in Addrs
	// names it in NodeFor, Pause and Resume.
	Addrs []string

	mu    sync.Mutex // orders Pause and Resume with the cleanup's kill
	procs []*proc
}

// Cluster starts three cluster-enabled redis-servers, joins them with
// `redis-cli --cluster create`, waits until every node reports
// cluster_state:ok, and stops them when the test ends.
func Cluster(t T) *ClusterSet {
	t.Helper()
	Require(t, "redis-server", "redis-cli")
	c := &ClusterSet{}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, p := range c.procs {
			p.kill()
		}
	})
	var lastErr error
	for i := range attempts {
		if lastErr = c.start(t, i); lastErr == nil {
			return c
		}
		for _, p := range c.procs {
			p.kill()
		}
		c.procs, c.Addrs = nil, nil
	}
	t.Fatalf("redistest: start cluster: %v", lastErr)
	return nil
}

func (c *ClusterSet) start(t T, attempt int) error {
	ports, err := freePorts(6) // three data ports, three cluster bus ports
	if err != nil {
		return err
	}
	for n := range 3 {
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("cluster-%d-%d", attempt, n))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		p := &proc{name: "redis-server", logPath: filepath.Join(dir, "redis.log"), args: serverArgs(ports[n], dir,
			"--cluster-enabled", "yes",
			"--cluster-port", strconv.Itoa(ports[3+n]),
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "2000",
		)}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[n]))
		if err := p.start(); err != nil {
			return err
		}
		c.procs = append(c.procs, p)
		c.Addrs = append(c.Addrs, addr)
		if err := waitPing(p, addr, nil); err != nil {
			return err
		}
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cmd := exec.Command("redis-cli", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}
	for _, addr := range c.Addrs {
		rc := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
		err := poll(startTimeout, func(ctx context.Context) error {
			info, err := rc.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") ||
				!strings.Contains(info, "cluster_slots_ok:16384") {
				return fmt.Errorf("node %s not ready: %s", addr, info)
			}
			return nil
		})
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// NodeFor returns the index in Addrs of the master that serves key's hash
// slot, as CLUSTER KEYSLOT and CLUSTER SLOTS say. It fails the test when no
// node serves it.
func (c *ClusterSet) NodeFor(t T, key string) int {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: c.Addrs[0], DisableIdentity: true})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	slot, err := rc.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatalf("redistest: CLUSTER KEYSLOT %q: %v", key, err)
	}
	ranges, err := rc.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatalf("redistest: CLUSTER SLOTS: %v", err)
	}
	for _, r := range ranges {
		if slot < int64(r.Start) || slot > int64(r.End) || len(r.Nodes) == 0 {
			continue
		}
		for i, a := range c.Addrs {
			if port(a) == port(r.Nodes[0].Addr) {
				return i
			}
		}
		t.Fatalf("redistest: slot %d of %q is served by %s, not one of %v", slot, key, r.Nodes[0].Addr, c.Addrs)
	}
	t.Fatalf("redistest: no node serves slot %d of %q", slot, key)
	return -1
}

// Pause stops node i (an index in Addrs) with SIGSTOP: it keeps its
// connections but answers nothing, like a hung or partitioned node. Resume,
// or the end of the test, ends the pause. Keep pauses well under the
// cluster's node timeout (2s), or the other nodes mark the node failed.
func (c *ClusterSet) Pause(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.procs[i].pause()
}

// Resume continues node i after Pause.
func (c *ClusterSet) Resume(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.procs[i].resume()
}

// Client returns a go-redis cluster client for the cluster, closed when the
// test ends.
func (c *ClusterSet) Client(t T) *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs, DisableIdentity: true})
	t.Cleanup(func() { cc.Close() })
	return cc
}

// poll calls f until it returns nil or timeout passes, and returns f's last
// error on timeout.
func poll(timeout time.Duration, f func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// port returns the port of a host:port address.
func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
