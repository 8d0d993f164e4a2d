package main

// What the machine is, for the report.

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// machine describes where the suite ran.
type machine struct {
	NProc        int    `json:"nproc"`
	CPU          string `json:"cpu"`
	MemoryBytes  int64  `json:"memory_bytes"`
	Kernel       string `json:"kernel"`
	Go           string `json:"go"`
	RedisVersion string `json:"redis_version,omitempty"`
	Revision     string `json:"revision"` // of the checkout the suite ran in
	Date         string `json:"date"`
}

// readMachine reads /proc, the Go version that built bin and
// redis-server's version (when withRedis).
func readMachine(ctx context.Context, bin string, withRedis bool) machine {
	m := machine{NProc: runtime.NumCPU(), Go: runtime.Version(), Date: time.Now().UTC().Format("2006-01-02 15:04 UTC")}
	if info, err := buildinfo.ReadFile(bin); err == nil {
		m.Go = info.GoVersion
	}
	m.CPU = "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			k, v, ok := strings.Cut(line, ":")
			if ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				f := strings.Fields(v)
				if len(f) == 2 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					m.MemoryBytes = kb << 10
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if withRedis {
		if out, err := exec.CommandContext(ctx, "redis-server", "--version").Output(); err == nil {
			// "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 ..."
			for f := range strings.FieldsSeq(string(out)) {
				if v, ok := strings.CutPrefix(f, "v="); ok {
					m.RedisVersion = v
				}
			}
		}
	}
	return m
}

// gitRevision describes the checkout at root: its short commit, with
// "+changes" when the work tree differs from it, or "unknown" outside git.
func gitRevision(ctx context.Context, root string) string {
	cmd := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "unknown (not a git checkout)"
	}
	rev := strings.TrimSpace(string(out))
	cmd = exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
		rev += " with uncommitted changes"
	}
	return rev
}
