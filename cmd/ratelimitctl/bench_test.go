package main

import (
	"strings"
	"testing"
)

func TestBenchNoopServer(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want int64
		mode string
	}{
		{"closed", []string{"-requests", "200", "-callers", "4", "-conns", "2"}, 200, "closed"},
		{"open", []string{"-rate", "500", "-requests", "50", "-max-inflight", "8"}, 50, "open"},
		{"zipf, 3 descriptors", []string{"-requests", "100", "-dist", "zipf", "-keys", "10", "-descriptors", "3"}, 100, "closed"},
		{"hot", []string{"-requests", "100", "-hot"}, 100, "closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"bench", "-noop-server", "-q", "-o", "json"}, tc.args...)
			r := ctl(t, nil, args...)
			var doc benchJSON
			decode(t, r, &doc)
			if r.code != exitOK || r.stderr != "" {
				t.Fatalf("want exit 0 and no stderr, got:\n%s", r)
			}
			if doc.Count != tc.want || doc.OK != tc.want || doc.Errors != 0 || doc.OverLimit != 0 || len(doc.ErrorsByCode) != 0 {
				t.Errorf("want %d calls, all OK, no errors; got %+v", tc.want, doc)
			}
			if doc.Mode != tc.mode || !doc.NoopServer || doc.Latency.Max < doc.Latency.P50 {
				t.Errorf("report: %+v", doc)
			}
		})
	}
}

func TestBenchTable(t *testing.T) {
	r := ctl(t, nil, "bench", "-noop-server", "-q", "-requests", "20", "-addr", "ignored:1")
	want(t, r, exitOK, "(in-process no-op server)", "closed loop, 16 callers over 4 connections", "calls", "P99.9")
	if !strings.Contains(r.stdout, "ok          20\n") {
		t.Errorf("want 20 OK calls:\n%s", r)
	}
}

func TestBenchEveryCallFails(t *testing.T) {
	// A port nothing listens on: every call fails, the run still reports.
	r := ctl(t, map[string]string{"RATELIMITCTL_TIMEOUT": "5s"}, "bench", "-q", "-requests", "5", "-callers", "1", "-conns", "1", "-addr", "127.0.0.1:1", "-o", "json")
	var doc benchJSON
	decode(t, r, &doc)
	want(t, r, exitError, "err:every call failed")
	if doc.Count != 5 || doc.Errors != 5 || doc.ErrorsByCode["Unavailable"] != 5 {
		t.Errorf("want 5 Unavailable errors, got %+v", doc)
	}
}

func TestBenchKeyPicker(t *testing.T) {
	for _, dist := range []string{"uniform", "zipf"} {
		for _, keys := range []int{1, 2, 50} {
			o := benchOptions{keys: keys, dist: dist, domain: "d", key: "k", descriptors: 2}
			p := newKeyPicker(o, 42)
			seen := map[int]int{}
			for range 5000 {
				i := p.index()
				if i < 0 || i >= keys {
					t.Fatalf("%s over %d keys: picked %d", dist, keys, i)
				}
				seen[i]++
			}
			if keys == 50 && len(seen) < 10 {
				t.Errorf("%s over 50 keys: only %d distinct values in 5000 picks", dist, len(seen))
			}
			if dist == "zipf" && keys == 50 && seen[0] <= seen[49] {
				t.Errorf("zipf: k0 picked %d times, k49 %d", seen[0], seen[49])
			}
		}
	}
	o := benchOptions{keys: 7, dist: "uniform", domain: "d", key: "api_key", descriptors: 3}
	req := newKeyPicker(o, 1).request(o)
	if req.GetDomain() != "d" || len(req.GetDescriptors()) != 3 {
		t.Fatalf("request: %v", req)
	}
	v0 := req.GetDescriptors()[0].GetEntries()[0].GetValue()
	for i, d := range req.GetDescriptors() {
		e := d.GetEntries()
		wantV := v0
		if i > 0 {
			wantV += "." + string(rune('0'+i))
		}
		if len(e) != 1 || e[0].GetKey() != "api_key" || e[0].GetValue() != wantV || !strings.HasPrefix(wantV, "k") {
			t.Errorf("descriptor %d: %v, want api_key=%s", i, e, wantV)
		}
	}
	o.hot = true
	if v := newKeyPicker(o, 1).request(o).GetDescriptors()[0].GetEntries()[0].GetValue(); v != "hot" {
		t.Errorf("-hot: value %q", v)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"x"}, `unexpected argument "x"`},
		{[]string{"-callers", "0"}, "-callers must be at least 1"},
		{[]string{"-conns", "0"}, "-conns must be at least 1"},
		{[]string{"-requests", "-1"}, "-requests must not be negative"},
		{[]string{"-duration", "0s"}, "-duration must be greater than 0"},
		{[]string{"-rate", "-5"}, "-rate must not be negative"},
		{[]string{"-rate", "10", "-max-inflight", "0"}, "-max-inflight must be at least 1"},
		{[]string{"-domain", ""}, "-domain is empty"},
		{[]string{"-entry-key", ""}, "-entry-key is empty"},
		{[]string{"-keys", "0"}, "-keys must be at least 1"},
		{[]string{"-dist", "pareto"}, `-dist "pareto": want uniform or zipf`},
		{[]string{"-descriptors", "0"}, "-descriptors must be at least 1"},
		{[]string{"-callers", "many"}, `invalid value "many" for flag -callers`},
		{[]string{"-cert", "c.pem"}, "-cert and -key go together"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := ctl(t, nil, append([]string{"bench", "-noop-server"}, tc.args...)...)
			want(t, r, exitUsage, "err:"+tc.err, "err:Run 'ratelimitctl help bench'")
			if r.stdout != "" {
				t.Errorf("a usage error wrote to stdout:\n%s", r)
			}
		})
	}
}

func TestBenchHelp(t *testing.T) {
	r := ctl(t, nil, "help", "bench")
	want(t, r, exitOK, "Usage: ratelimitctl bench", "intended time", "-noop-server", "-max-inflight", "[$RATELIMITCTL_ADDR]")
}
