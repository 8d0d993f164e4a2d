package main

// CPU accounting: where a run's CPU time went, per call. On a machine
// where the load tool, ratelimitd and Redis share the cores, a server's
// throughput is bounded by the CPU that all three spend per call, so
// these figures explain a ratio to the no-op ceiling better than latency.

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// clockTicks is the unit of /proc/PID/stat's utime and stime (USER_HZ,
// 100 on every Linux that Go supports).
const clockTicks = 100

// cpuSeconds returns the user plus system CPU time of process pid.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// fields are counted after its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return float64(u+st) / clockTicks, nil
}

// cpuTotal returns the CPU seconds of pids summed (0 for none).
func cpuTotal(pids []int) (float64, error) {
	var t float64
	for _, p := range pids {
		s, err := cpuSeconds(p)
		if err != nil {
			return 0, err
		}
		t += s
	}
	return t, nil
}

// redisPID returns process_id from INFO server of the Redis at addr.
func redisPID(ctx context.Context, addr string) (int, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	defer c.Close()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("%s: no process_id in INFO server", addr)
}

// cpuUse is a run's CPU time per call, in microseconds, by process.
type cpuUse struct {
	Server   float64 `json:"server_us"`    // ratelimitd processes, or the no-op server
	Redis    float64 `json:"redis_us"`     // redis-server processes
	LoadTool float64 `json:"load_tool_us"` // ratelimitctl bench (and the in-process no-op server)
}

// Total is the CPU time per call over every process.
func (c cpuUse) Total() float64 { return c.Server + c.Redis + c.LoadTool }
