package redis_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/backendtest"
	"github.com/ratelimitd/ratelimitd/backends/redis"
	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

// libraries returns the names of the ratelimitd libraries loaded in the
// server behind c, with their functions.
func libraries(t *testing.T, c goredis.Cmdable) map[string][]string {
	t.Helper()
	libs, err := c.FunctionList(context.Background(), goredis.FunctionListQuery{LibraryNamePattern: "ratelimitd_*"}).Result()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]string{}
	for _, l := range libs {
		for _, f := range l.Functions {
			m[l.Name] = append(m[l.Name], f.Name)
		}
	}
	return m
}

// TestFunctionLibrary: calls go as FCALL of a library loaded on first use,
// named by its digest, one per clock (the prelude differs), each with the
// two functions.
func TestFunctionLibrary(t *testing.T) {
	s := redistest.Standalone(t)
	rc := s.Client(t)
	for _, clientTime := range []bool{true, false} {
		b := newBackend(t, redis.Options{Addrs: []string{s.Addr}, ClientTime: clientTime})
		apply(t, b, backendtest.Base, aon, req(fmt.Sprint("lib", clientTime), perMinute(5), 1))
		if st := b.Stats(); !st.Functions || st.FunctionLoads != 1 || st.FunctionReloads != 1 || st.NoscriptReloads != 0 {
			t.Errorf("ClientTime %v, first call: %+v; want Functions, one load and one reload, no NOSCRIPT", clientTime, st)
		}
		apply(t, b, backendtest.Base, aon, req(fmt.Sprint("lib", clientTime), perMinute(5), 1))
		if st := b.Stats(); st.FunctionLoads != 1 || st.FunctionReloads != 1 {
			t.Errorf("ClientTime %v, second call: %+v; want no more loads", clientTime, st)
		}
	}
	libs := libraries(t, rc)
	if len(libs) != 2 {
		t.Fatalf("libraries %v, want two (one per clock)", libs)
	}
	for name, fns := range libs {
		if len(name) != len("ratelimitd_")+16 || len(fns) != 2 {
			t.Errorf("library %s with functions %v: want ratelimitd_ and 16 hex digits, two functions", name, fns)
		}
		for _, f := range fns {
			if f != name+"_apply" && f != name+"_refund" {
				t.Errorf("library %s has function %s", name, f)
			}
		}
	}
	if info := rc.Info(context.Background(), "commandstats").Val(); strings.Contains(info, "cmdstat_evalsha") || strings.Contains(info, "cmdstat_eval:") {
		t.Errorf("scripts were sent: %s", info)
	}
}

// TestFunctionFlush removes the library between calls (FUNCTION FLUSH, as
// after a restart without persistence): the next call loads it again and
// succeeds, unbatched and batched.
func TestFunctionFlush(t *testing.T) {
	s := redistest.Standalone(t)
	rc := s.Client(t)
	ctx := context.Background()
	for _, window := range []time.Duration{0, 100 * time.Microsecond} {
		b := newBackend(t, redis.Options{Addrs: []string{s.Addr}, ClientTime: true, BatchWindow: window})
		key := fmt.Sprint("ff", window)
		apply(t, b, backendtest.Base, aon, req(key, perMinute(5), 1))
		before := b.Stats()
		if err := rc.FunctionFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if n := len(libraries(t, rc)); n != 0 {
			t.Fatalf("%d libraries after FUNCTION FLUSH", n)
		}
		d := apply(t, b, backendtest.Base, aon, req(key, perMinute(5), 1), req(key+"x", perMinute(5), 1))
		if d[0].Count != 2 || d[1].Count != 1 {
			t.Errorf("after FUNCTION FLUSH: %+v, want counts 2 and 1", d)
		}
		st := b.Stats()
		if !st.Functions || st.FunctionLoads != before.FunctionLoads+1 || st.FunctionReloads != before.FunctionReloads+1 || st.NoscriptReloads != 0 {
			t.Errorf("after FUNCTION FLUSH: %+v; want one more load and reload (before %+v)", st, before)
		}
		if n := len(libraries(t, rc)); n != 1 {
			t.Errorf("%d libraries after the call, want 1", n)
		}
	}
}

// TestFunctionFlushCluster removes the library from one master, then from
// every master: the next call loads it again on every master and
// succeeds, cross-slot calls and their refunds included.
func TestFunctionFlushCluster(t *testing.T) {
	c := redistest.Cluster(t)
	cc := c.Client(t)
	ctx := context.Background()
	for _, window := range []time.Duration{0, 100 * time.Microsecond} {
		b := newBackend(t, redis.Options{Topology: redis.Cluster, Addrs: c.Addrs, ClientTime: true, BatchWindow: window})
		p := fmt.Sprint(window)
		reqs := []backends.Request{req(p+"a", perMinute(5), 1), req(p+"b", perMinute(5), 1), req(p+"c", perMinute(5), 1)}
		apply(t, b, backendtest.Base, aon, reqs...)
		// One master: the one serving the first key.
		one := c.NodeFor(t, p+"a")
		single := goredis.NewClient(&goredis.Options{Addr: c.Addrs[one], DisableIdentity: true})
		if err := single.FunctionFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		single.Close()
		before := b.Stats()
		for i, d := range apply(t, b, backendtest.Base, aon, reqs...) {
			if d.Count != 2 {
				t.Errorf("request %d after FUNCTION FLUSH on one master: %+v, want count 2", i, d)
			}
		}
		if st := b.Stats(); st.FunctionLoads != before.FunctionLoads+1 || st.FunctionReloads <= before.FunctionReloads {
			t.Errorf("after FUNCTION FLUSH on one master: %+v (before %+v)", st, before)
		}
		// Every master, and a vetoed cross-slot call, whose refund runs
		// as a function too.
		if err := cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			return c.FunctionFlush(ctx).Err()
		}); err != nil {
			t.Fatal(err)
		}
		over := append(reqs[:3:3], req(p+"full", perMinute(0), 1))
		for i, d := range apply(t, b, backendtest.Base, aon, over...)[:3] {
			if !d.Allowed || d.Count != 2 {
				t.Errorf("request %d of a vetoed call: %+v, want allowed with count 2 (uncharged)", i, d)
			}
		}
		for i, d := range apply(t, b, backendtest.Base, aon, reqs...) {
			if d.Count != 3 {
				t.Errorf("request %d after the vetoed call: %+v, want count 3 (the veto refunded)", i, d)
			}
		}
		if st := b.Stats(); st.RefundErrors != 0 || st.NoscriptReloads != 0 || !st.Functions {
			t.Errorf("stats %+v", st)
		}
		for _, addr := range c.Addrs {
			nc := goredis.NewClient(&goredis.Options{Addr: addr, DisableIdentity: true})
			if n := len(libraries(t, nc)); n != 1 {
				t.Errorf("%s: %d libraries, want 1", addr, n)
			}
			nc.Close()
		}
	}
}

// TestNoFunctions runs on a Redis without the FUNCTION command (renamed
// away, as a Redis before 7.0 lacks it): the first call tries FUNCTION
// LOAD once, falls back to scripts, and later calls go as EVALSHA without
// trying again. DisableFunctions goes to scripts from the start.
func TestNoFunctions(t *testing.T) {
	s := redistest.StandaloneArgs(t, "--rename-command", "FUNCTION", "")
	rc := s.Client(t)
	if err := rc.FunctionList(context.Background(), goredis.FunctionListQuery{}).Err(); err == nil {
		t.Fatal("FUNCTION LIST works on a server without FUNCTION")
	}
	for _, window := range []time.Duration{0, 100 * time.Microsecond} {
		b := newBackend(t, redis.Options{Addrs: []string{s.Addr}, ClientTime: true, BatchWindow: window})
		key := fmt.Sprint("nf", window)
		for i := range 5 {
			if d := apply(t, b, backendtest.Base, aon, req(key, perMinute(5), 1)); d[0].Count != int64(i+1) {
				t.Errorf("call %d: %+v, want count %d", i, d[0], i+1)
			}
		}
		if st := b.Stats(); st.Functions || st.FunctionLoads != 1 || st.FunctionReloads != 0 {
			t.Errorf("stats %+v: want Functions false after one load", st)
		}
	}
	fresh := redistest.Standalone(t)
	b := newBackend(t, redis.Options{Addrs: []string{fresh.Addr}, ClientTime: true, DisableFunctions: true})
	apply(t, b, backendtest.Base, aon, req("df", perMinute(5), 1))
	if st := b.Stats(); st.Functions || st.FunctionLoads != 0 || st.NoscriptReloads != 1 {
		t.Errorf("DisableFunctions: stats %+v, want no load, one NOSCRIPT", st)
	}
	if n := len(libraries(t, fresh.Client(t))); n != 0 {
		t.Errorf("DisableFunctions loaded %d libraries", n)
	}
}

// TestConformanceScripts runs the suite on the EVALSHA path.
func TestConformanceScripts(t *testing.T) {
	s := redistest.Standalone(t)
	conformance(t, redis.Options{Addrs: []string{s.Addr}, DisableFunctions: true})
}
