package main

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
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
			p := newKeyPicker(o, 42, nil)
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
	req := newKeyPicker(o, 1, nil).request(o)
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
	if v := newKeyPicker(o, 1, nil).request(o).GetDescriptors()[0].GetEntries()[0].GetValue(); v != "hot" {
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
		{[]string{"-dist", "pareto"}, `-dist "pareto": want uniform, zipf or seq`},
		{[]string{"-descriptors", "0"}, "-descriptors must be at least 1"},
		{[]string{"-over-limit", "1.5"}, "-over-limit must be between 0 and 1"},
		{[]string{"-over-limit", "-0.1"}, "-over-limit must be between 0 and 1"},
		{[]string{"-over-limit", "NaN"}, "-over-limit must be between 0 and 1"},
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
	want(t, r, exitOK, "Usage: ratelimitctl bench", "intended time", "-noop-server", "-max-inflight", "[$RATELIMITCTL_ADDR]", "-over-limit", "seq", "comma-separated")
	r = ctl(t, nil, "help", "noop-server")
	want(t, r, exitOK, "Usage: ratelimitctl noop-server [-listen ADDR]", "-listen", "fair ceiling")
}

func TestBenchSeqPicker(t *testing.T) {
	o := benchOptions{keys: 10, dist: "seq", domain: "d", key: "api_key", descriptors: 4}
	var seq atomic.Int64
	a, b := newKeyPicker(o, 1, &seq), newKeyPicker(o, 2, &seq)
	var got []string
	for _, p := range []*keyPicker{a, b, a} {
		for _, d := range p.request(o).GetDescriptors() {
			got = append(got, d.GetEntries()[0].GetValue())
		}
	}
	want := "k0 k1 k2 k3 k4 k5 k6 k7 k8 k9 k0 k1"
	if strings.Join(got, " ") != want {
		t.Errorf("seq values: got %v, want %s", got, want)
	}
}

// recordingServer answers OK, or OVER_LIMIT to a request whose first
// value is "over", and remembers every value it was sent.
type recordingServer struct {
	rlsv3.UnimplementedRateLimitServiceServer
	addr string

	mu     sync.Mutex
	values map[string]int
	calls  int
}

func (s *recordingServer) ShouldRateLimit(_ context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	for _, d := range req.GetDescriptors() {
		for _, e := range d.GetEntries() {
			s.values[e.GetValue()]++
		}
	}
	code := rlsv3.RateLimitResponse_OK
	if req.GetDescriptors()[0].GetEntries()[0].GetValue() == overValue {
		code = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	return &rlsv3.RateLimitResponse{OverallCode: code}, nil
}

// startRecording serves a recordingServer on 127.0.0.1 until t ends.
func startRecording(t *testing.T) *recordingServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &recordingServer{addr: lis.Addr().String(), values: map[string]int{}}
	g := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(g, s)
	done := make(chan struct{})
	go func() { defer close(done); g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); <-done })
	return s
}

func TestBenchSeqCreatesEveryKeyOnce(t *testing.T) {
	s := startRecording(t)
	// 100 calls of 10 descriptors over 1000 keys, from 8 callers at once.
	r := ctl(t, nil, "bench", "-q", "-o", "json", "-addr", s.addr, "-dist", "seq", "-keys", "1000", "-descriptors", "10", "-requests", "100", "-callers", "8")
	var doc benchJSON
	decode(t, r, &doc)
	if r.code != exitOK || doc.Count != 100 || doc.Dist != "seq" {
		t.Fatalf("want 100 calls, dist seq; got %+v\n%s", doc, r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.values) != 1000 {
		t.Errorf("%d distinct values, want 1000", len(s.values))
	}
	for v, n := range s.values {
		if n != 1 || strings.Contains(v, ".") {
			t.Errorf("value %q sent %d times, want once and no suffix", v, n)
		}
	}
}

func TestBenchOverLimit(t *testing.T) {
	s := startRecording(t)
	for _, tc := range []struct {
		share    string
		min, max int64 // over-limit answers out of 400
	}{
		{"0", 0, 0},
		{"0.25", 50, 150}, // 100 expected; far outside is a bug, not chance
		{"1", 400, 400},
	} {
		t.Run(tc.share, func(t *testing.T) {
			r := ctl(t, nil, "bench", "-q", "-o", "json", "-addr", s.addr, "-requests", "400", "-descriptors", "2", "-over-limit", tc.share)
			var doc benchJSON
			decode(t, r, &doc)
			if r.code != exitOK || doc.Count != 400 || doc.OK+doc.OverLimit != 400 {
				t.Fatalf("want 400 answered calls; got %+v\n%s", doc, r)
			}
			if doc.OverLimit < tc.min || doc.OverLimit > tc.max {
				t.Errorf("-over-limit %s: %d of 400 over limit, want %d to %d", tc.share, doc.OverLimit, tc.min, tc.max)
			}
			if tc.share == "0.25" && doc.OverLimitShare != 0.25 {
				t.Errorf("over_limit_fraction %g", doc.OverLimitShare)
			}
		})
	}
}

func TestBenchOverLimitRealServer(t *testing.T) {
	// ratelimitd refuses the "over" value once its tiny limit is spent.
	srv := startServer(t, serverOptions{config: `domain: bench
descriptors:
  - key: api_key
    rate_limit: {requests_per_unit: 1000000000, unit: day}
  - key: api_key
    value: over
    rate_limit: {requests_per_unit: 1, unit: hour}
`})
	r := ctl(t, nil, "bench", "-q", "-o", "json", "-addr", srv.addr, "-requests", "300", "-over-limit", "0.5")
	var doc benchJSON
	decode(t, r, &doc)
	if r.code != exitOK || doc.Count != 300 || doc.Errors != 0 || doc.OverLimit < 75 || doc.OK < 75 {
		t.Errorf("want about half of 300 calls over limit, no errors; got %+v\n%s", doc, r)
	}
	r = ctl(t, nil, "bench", "-q", "-addr", srv.addr, "-requests", "10", "-over-limit", "0.5")
	want(t, r, exitOK, `50% "over"`)
}

func TestBenchSeveralAddresses(t *testing.T) {
	a, b, c := startRecording(t), startRecording(t), startRecording(t)
	r := ctl(t, nil, "bench", "-q", "-o", "json", "-addr", a.addr+", "+b.addr+","+c.addr, "-conns", "3", "-callers", "3", "-requests", "300")
	var doc benchJSON
	decode(t, r, &doc)
	if r.code != exitOK || doc.Count != 300 || doc.OK != 300 {
		t.Fatalf("want 300 OK calls; got %+v\n%s", doc, r)
	}
	total := 0
	for i, s := range []*recordingServer{a, b, c} {
		s.mu.Lock()
		n := s.calls
		s.mu.Unlock()
		if n == 0 {
			t.Errorf("server %d got no call", i)
		}
		total += n
	}
	if total != 300 {
		t.Errorf("servers got %d calls in all, want 300", total)
	}
	for _, tc := range []struct{ addr, conns, err string }{
		{a.addr + ",," + b.addr, "4", "empty address in the list"},
		{a.addr + "," + b.addr + "," + c.addr, "2", "-conns 2 is less than the 3 addresses of -addr"},
	} {
		r := ctl(t, nil, "bench", "-q", "-addr", tc.addr, "-conns", tc.conns, "-requests", "1")
		want(t, r, exitUsage, "err:"+tc.err)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestNoopServerCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"noop-server", "-listen", "127.0.0.1:0"}, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr)
	}()
	var addr string
	deadline := time.Now().Add(30 * time.Second)
	for addr == "" {
		if a, ok := strings.CutPrefix(strings.TrimSpace(stdout.String()), "serving on "); ok {
			addr = a
			break
		}
		select {
		case code := <-exited:
			t.Fatalf("noop-server exited %d: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("noop-server did not say where it serves")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := ctl(t, nil, "bench", "-q", "-o", "json", "-addr", addr, "-requests", "100")
	var doc benchJSON
	decode(t, r, &doc)
	if r.code != exitOK || doc.OK != 100 || doc.NoopServer {
		t.Errorf("want 100 OK calls from a server of its own; got %+v\n%s", doc, r)
	}
	cancel()
	select {
	case code := <-exited:
		if code != exitOK || stderr.String() != "" {
			t.Errorf("noop-server exited %d, stderr %q", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("noop-server did not stop when its context ended")
	}

	r = ctl(t, nil, "noop-server", "x")
	want(t, r, exitUsage, `err:unexpected argument "x"`)
	r = ctl(t, nil, "noop-server", "-listen", "256.0.0.1:nope")
	want(t, r, exitError, "err:ratelimitctl: noop-server:")
}
