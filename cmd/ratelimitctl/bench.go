package main

// bench: load a ShouldRateLimit server and report its latency.
//
// Two loops. The closed loop runs -callers goroutines that each send the
// next call as soon as the last one is answered: it finds the throughput
// ceiling, but a server that stalls also stalls the callers, so the stall
// shows as one slow call instead of the many that would have queued
// behind it (coordinated omission). The open loop sends call i at its
// intended time start + i/rate, whatever the server does, and measures
// latency from that intended time, so that queueing behind a stall is
// counted. It runs -max-inflight workers that each take the next ticket
// (call number), sleep until its intended time and send it: when every
// worker is busy the next ticket is taken late, and the lateness is part
// of its latency. Workers share a few histogram shards, each behind a
// mutex, rather than one histogram each (an HDR histogram of 1µs..60s at
// 3 digits is about 130 KB, times -max-inflight).

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

const benchHelp = `Sends ShouldRateLimit calls to -addr (ratelimitd's -grpc-addr) and reports
the number of calls, calls per second, latency percentiles (p50, p90, p99,
p99.9, max), OK and OVER_LIMIT answers and errors by gRPC code. A progress
line goes to standard error every second (-q turns it off).

Closed loop (the default): -callers goroutines over -conns connections,
each sending its next call when the last is answered. Open loop (-rate R):
R calls per second at fixed intended times, latency measured from the
intended time, at most -max-inflight calls in flight.

The run stops after -duration, or after -requests calls, whichever comes
first (-requests alone runs without a time limit). Each request has
-descriptors descriptors with one entry, -entry-key=VALUE, VALUE one of -keys
keys (k0, k1, ...) picked by -dist, or "hot" with -hot; descriptor i > 0
gets the value suffixed with .i, so that each is its own bucket. -dist seq
gives every descriptor of every call the next key in order instead (k0,
k1, ..., wrapping at -keys, no suffix): -requests K/D calls of D
descriptors create K buckets. -over-limit F sends that fraction of the
requests with the value "over" (give it a tiny limit in the config, e.g.
1 per hour, so that they are refused).

-addr may list several addresses, comma-separated: the connections are
spread over them in turn (several replicas).

-noop-server starts an in-process server that answers OK without doing
anything and loads it instead of -addr: the ceiling of this machine and
of ratelimitctl itself, to compare with a real run. 'ratelimitctl
noop-server' is the same server as a process of its own.

Exits 0 when the run completes, 1 when no call succeeded.
`

// Bench histogram range, in microseconds.
const (
	benchMinLatency = 1
	benchMaxLatency = 60_000_000
	benchSigFigs    = 3
)

// benchOptions are bench's settings, checked.
type benchOptions struct {
	callers, conns int
	duration       time.Duration // 0: no time limit
	requests       int64         // 0: no count limit
	rate           float64       // 0: closed loop
	maxInflight    int
	domain, key    string
	keys           int
	dist           string // uniform, zipf or seq
	hot            bool
	descriptors    int
	overLimit      float64 // fraction of requests with the value "over"
	progress       bool
}

// benchLatencyJSON is a latency summary, in microseconds.
type benchLatencyJSON struct {
	P50  int64   `json:"p50_us"`
	P90  int64   `json:"p90_us"`
	P99  int64   `json:"p99_us"`
	P999 int64   `json:"p999_us"`
	Max  int64   `json:"max_us"`
	Mean float64 `json:"mean_us"`
}

// benchJSON is bench's report; -o json prints it.
type benchJSON struct {
	Target          string           `json:"target"`
	NoopServer      bool             `json:"noop_server"`
	Mode            string           `json:"mode"` // closed or open
	Callers         int              `json:"callers"`
	Conns           int              `json:"conns"`
	Rate            float64          `json:"rate"`
	MaxInflight     int              `json:"max_inflight"`
	Domain          string           `json:"domain"`
	Key             string           `json:"key"`
	Keys            int              `json:"keys"`
	Dist            string           `json:"dist"`
	Descriptors     int              `json:"descriptors"`
	OverLimitShare  float64          `json:"over_limit_fraction"`
	DurationSeconds float64          `json:"duration_seconds"`
	Count           int64            `json:"count"`
	CallsPerSecond  float64          `json:"calls_per_second"`
	Latency         benchLatencyJSON `json:"latency"`
	OK              int64            `json:"ok"`
	OverLimit       int64            `json:"over_limit"`
	OtherCode       int64            `json:"other_code"`
	Errors          int64            `json:"errors"`
	ErrorsByCode    map[string]int64 `json:"errors_by_code"`
}

// bench is the bench command.
func (c *cli) bench(args []string) int {
	fs := c.flagSet()
	var o benchOptions
	fs.IntVar(&o.callers, "callers", 16, "closed loop: `number` of goroutines sending calls back to back")
	fs.IntVar(&o.conns, "conns", 4, "`number` of gRPC connections the calls are spread over")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to run (no limit when only -requests is given)")
	fs.Int64Var(&o.requests, "requests", 0, "stop after this `number` of calls (0: no limit)")
	fs.Float64Var(&o.rate, "rate", 0, "open loop: calls per second at fixed intended times (0: closed loop)")
	fs.IntVar(&o.maxInflight, "max-inflight", 1000, "open loop: at most this `number` of calls in flight")
	fs.StringVar(&o.domain, "domain", "bench", "the requests' `domain`")
	fs.StringVar(&o.key, "entry-key", "api_key", "the descriptor entry's `key` (-key is the mTLS client key)")
	fs.IntVar(&o.keys, "keys", 1000, "`number` of distinct entry values, k0 to kK-1")
	fs.StringVar(&o.dist, "dist", "uniform", "how values are picked: uniform, zipf (s=1.1, k0 the most frequent) or seq (every descriptor the next value in order, wrapping at -keys)")
	fs.BoolVar(&o.hot, "hot", false, "every request uses one value, \"hot\" (-keys and -dist are ignored)")
	fs.IntVar(&o.descriptors, "descriptors", 1, "`number` of descriptors per request")
	fs.Float64Var(&o.overLimit, "over-limit", 0, "`fraction` (0 to 1) of requests whose value is \"over\" (configure a tiny limit for it)")
	noop := fs.Bool("noop-server", false, "load an in-process server that answers OK and does nothing (ignores -addr and TLS)")
	quiet := fs.Bool("q", false, "no progress line on standard error")
	cf := addConn(fs, false)
	out := addOutput(fs)
	pos, code, ok := c.parse(fs, args, false)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return c.usagef("unexpected argument %q", pos[0])
	}
	set := given(fs)
	if set["requests"] && !set["duration"] {
		o.duration = 0
	}
	o.progress = !*quiet
	if err := o.check(set); err != nil {
		return c.usagef("%v", err)
	}
	if err := c.applyEnv(fs, cf); err != nil {
		return c.usagef("%v", err)
	}
	doc := benchJSON{NoopServer: *noop}
	if *noop {
		srv, err := startNoopServer("127.0.0.1:0")
		if err != nil {
			return c.failf(exitError, "no-op server: %v", err)
		}
		defer srv.stop()
		cf.addr = srv.addr
		cf.tls, cf.ca, cf.cert, cf.key = false, "", "", ""
	}
	doc.Target = cf.addr
	addrs, err := splitAddrs(cf.addr)
	if err != nil {
		return c.usagef("%v", err)
	}
	if o.conns < len(addrs) {
		return c.usagef("-conns %d is less than the %d addresses of -addr: some would get no connection", o.conns, len(addrs))
	}
	conns := make([]*conn, 0, o.conns)
	defer func() {
		for _, cn := range conns {
			cn.close()
		}
	}()
	for i := range o.conns {
		one := *cf
		one.addr = addrs[i%len(addrs)]
		cn, err := c.dial(&one)
		if err != nil {
			return c.usagef("%v", err)
		}
		conns = append(conns, cn)
	}
	rep := c.runBench(o, conns)
	rep.fill(&doc, o)
	if out.json {
		writeJSON(c.stdout, doc)
	} else {
		c.printBench(doc)
	}
	if doc.Count > 0 && doc.Errors == doc.Count {
		return c.failf(exitError, "every call failed")
	}
	return exitOK
}

// splitAddrs splits -addr's comma-separated list of addresses.
func splitAddrs(list string) ([]string, error) {
	var addrs []string
	for a := range strings.SplitSeq(list, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, fmt.Errorf("-addr %q: empty address in the list", list)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

// check reports the first bad setting; set holds the flags given.
func (o *benchOptions) check(set map[string]bool) error {
	switch {
	case o.callers < 1:
		return errors.New("-callers must be at least 1")
	case o.conns < 1:
		return errors.New("-conns must be at least 1")
	case o.requests < 0:
		return errors.New("-requests must not be negative")
	case set["duration"] && o.duration <= 0:
		return errors.New("-duration must be greater than 0")
	case o.rate < 0:
		return errors.New("-rate must not be negative")
	case o.maxInflight < 1:
		return errors.New("-max-inflight must be at least 1")
	case o.domain == "":
		return errors.New("-domain is empty")
	case o.key == "":
		return errors.New("-entry-key is empty")
	case o.keys < 1:
		return errors.New("-keys must be at least 1")
	case o.dist != "uniform" && o.dist != "zipf" && o.dist != "seq":
		return fmt.Errorf("-dist %q: want uniform, zipf or seq", o.dist)
	case o.descriptors < 1:
		return errors.New("-descriptors must be at least 1")
	case !(o.overLimit >= 0 && o.overLimit <= 1): // NaN too
		return errors.New("-over-limit must be between 0 and 1")
	}
	if o.hot {
		o.keys, o.dist = 1, "uniform"
	}
	return nil
}

// keyPicker picks entry values; it is not safe for concurrent use (each
// worker has its own), except for seq, which the workers share.
type keyPicker struct {
	hot       bool
	n         int
	overLimit float64
	r         *rand.Rand
	zipf      *rand.Zipf    // nil: uniform
	seq       *atomic.Int64 // -dist seq: the next value's number; nil otherwise
}

// newKeyPicker returns a picker over keys values, seeded with seed. With
// -dist seq, every picker of a run must share one counter, seq.
func newKeyPicker(o benchOptions, seed uint64, seq *atomic.Int64) *keyPicker {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := &keyPicker{hot: o.hot, n: o.keys, overLimit: o.overLimit, r: r}
	switch {
	case o.hot:
	case o.dist == "zipf" && o.keys > 1:
		p.zipf = rand.NewZipf(r, 1.1, 1, uint64(o.keys-1))
	case o.dist == "seq":
		p.seq = seq
	}
	return p
}

// index returns the next value's index, in [0, keys).
func (p *keyPicker) index() int {
	switch {
	case p.hot || p.n == 1:
		return 0
	case p.zipf != nil:
		return int(p.zipf.Uint64())
	}
	return p.r.IntN(p.n)
}

// overValue is the value of the -over-limit share of the requests.
const overValue = "over"

// request builds the next request.
func (p *keyPicker) request(o benchOptions) *rlsv3.RateLimitRequest {
	req := &rlsv3.RateLimitRequest{Domain: o.domain, Descriptors: make([]*commonv3.RateLimitDescriptor, o.descriptors)}
	entry := func(value string) *commonv3.RateLimitDescriptor {
		return &commonv3.RateLimitDescriptor{Entries: []*commonv3.RateLimitDescriptor_Entry{{Key: o.key, Value: value}}}
	}
	v := "hot"
	switch {
	case p.overLimit > 0 && p.r.Float64() < p.overLimit:
		v = overValue
	case p.seq != nil:
		// Each descriptor its own value, taken in order by every worker.
		first := p.seq.Add(int64(o.descriptors)) - int64(o.descriptors)
		for i := range req.Descriptors {
			req.Descriptors[i] = entry("k" + strconv.FormatInt((first+int64(i))%int64(p.n), 10))
		}
		return req
	case !p.hot:
		v = "k" + strconv.Itoa(p.index())
	}
	for i := range req.Descriptors {
		value := v
		if i > 0 {
			value += "." + strconv.Itoa(i)
		}
		req.Descriptors[i] = entry(value)
	}
	return req
}

// benchShard is a share of the results, owned by the workers whose
// number is its index modulo the number of shards.
type benchShard struct {
	mu        sync.Mutex
	hist      *hdrhistogram.Histogram
	ok, over  int64
	other     int64
	errByCode map[string]int64
}

// benchResult is a finished run.
type benchResult struct {
	elapsed time.Duration
	shards  []*benchShard
}

// runBench runs the loop o describes over conns and returns the results.
func (c *cli) runBench(o benchOptions, conns []*conn) *benchResult {
	workers := o.callers
	if o.rate > 0 {
		workers = o.maxInflight
	}
	shards := make([]*benchShard, min(workers, 16))
	for i := range shards {
		shards[i] = &benchShard{hist: hdrhistogram.New(benchMinLatency, benchMaxLatency, benchSigFigs), errByCode: map[string]int64{}}
	}

	// stop ends the loops; calls in flight finish under c.ctx, so that
	// the end of the run is not counted as errors.
	stop, cancel := context.WithCancel(c.ctx)
	defer cancel()
	var deadline time.Time
	start := time.Now()
	if o.duration > 0 {
		deadline = start.Add(o.duration)
		stop, cancel = context.WithDeadline(stop, deadline)
		defer cancel()
	}
	var tickets, done, failed, seq atomic.Int64
	interval := time.Duration(0)
	if o.rate > 0 {
		interval = time.Duration(float64(time.Second) / o.rate)
	}

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			sh := shards[w%len(shards)]
			cn := conns[w%len(conns)]
			client := rlsv3.NewRateLimitServiceClient(cn.cc)
			p := newKeyPicker(o, uint64(start.UnixNano())+uint64(w)*0x632be59bd9b4e019, &seq)
			timer := time.NewTimer(time.Hour)
			timer.Stop()
			for stop.Err() == nil {
				n := tickets.Add(1) - 1
				if o.requests > 0 && n >= o.requests {
					return
				}
				sent := time.Now()
				if interval > 0 {
					sent = start.Add(time.Duration(n) * interval)
					if !deadline.IsZero() && !sent.Before(deadline) {
						return
					}
					if d := time.Until(sent); d > 0 {
						timer.Reset(d)
						select {
						case <-stop.Done():
							return
						case <-timer.C:
						}
					}
				}
				req := p.request(o)
				ctx, cancelCall := cn.call(c.ctx)
				resp, err := client.ShouldRateLimit(ctx, req)
				cancelCall()
				if c.ctx.Err() != nil {
					return // interrupted: the call's outcome means nothing
				}
				us := min(max(time.Since(sent).Microseconds(), benchMinLatency), benchMaxLatency)
				done.Add(1)
				if err != nil {
					failed.Add(1)
				}
				sh.mu.Lock()
				sh.hist.RecordValue(us)
				switch {
				case err != nil:
					sh.errByCode[status.Code(err).String()]++
				case resp.GetOverallCode() == rlsv3.RateLimitResponse_OK:
					sh.ok++
				case resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT:
					sh.over++
				default:
					sh.other++
				}
				sh.mu.Unlock()
			}
		})
	}

	finished := make(chan struct{})
	var pwg sync.WaitGroup
	if o.progress {
		pwg.Go(func() { c.benchProgress(start, &done, &failed, finished) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(finished)
	pwg.Wait()
	return &benchResult{elapsed: elapsed, shards: shards}
}

// benchProgress writes a progress line to stderr every second until
// finished is closed.
func (c *cli) benchProgress(start time.Time, done, failed *atomic.Int64, finished <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := int64(0)
	for {
		select {
		case <-finished:
			return
		case now := <-t.C:
			n := done.Load()
			fmt.Fprintf(c.stderr, "bench: %4.0fs  %d calls  %d/s  %d errors\n", now.Sub(start).Seconds(), n, n-last, failed.Load())
			last = n
		}
	}
}

// fill writes the results into doc.
func (r *benchResult) fill(doc *benchJSON, o benchOptions) {
	h := hdrhistogram.New(benchMinLatency, benchMaxLatency, benchSigFigs)
	doc.ErrorsByCode = map[string]int64{}
	for _, sh := range r.shards {
		h.Merge(sh.hist)
		doc.OK += sh.ok
		doc.OverLimit += sh.over
		doc.OtherCode += sh.other
		for code, n := range sh.errByCode {
			doc.ErrorsByCode[code] += n
			doc.Errors += n
		}
	}
	doc.Mode = "closed"
	if o.rate > 0 {
		doc.Mode = "open"
	}
	doc.Callers, doc.Conns, doc.Rate, doc.MaxInflight = o.callers, o.conns, o.rate, o.maxInflight
	doc.Domain, doc.Key, doc.Keys, doc.Dist, doc.Descriptors = o.domain, o.key, o.keys, o.dist, o.descriptors
	doc.OverLimitShare = o.overLimit
	if o.hot {
		doc.Dist = "hot"
	}
	doc.DurationSeconds = r.elapsed.Seconds()
	doc.Count = h.TotalCount()
	if r.elapsed > 0 {
		doc.CallsPerSecond = float64(doc.Count) / r.elapsed.Seconds()
	}
	if doc.Count > 0 {
		doc.Latency = benchLatencyJSON{
			P50:  h.ValueAtPercentile(50),
			P90:  h.ValueAtPercentile(90),
			P99:  h.ValueAtPercentile(99),
			P999: h.ValueAtPercentile(99.9),
			Max:  h.Max(),
			Mean: h.Mean(),
		}
	}
}

// printBench writes bench's report as a table.
func (c *cli) printBench(doc benchJSON) {
	target := doc.Target
	if doc.NoopServer {
		target += " (in-process no-op server)"
	}
	mode := fmt.Sprintf("closed loop, %d callers over %d connections", doc.Callers, doc.Conns)
	if doc.Mode == "open" {
		mode = fmt.Sprintf("open loop, %g calls/s, at most %d in flight, over %d connections", doc.Rate, doc.MaxInflight, doc.Conns)
	}
	keys := fmt.Sprintf("%d keys, %s", doc.Keys, doc.Dist)
	if doc.Dist == "hot" {
		keys = "one hot key"
	}
	us := func(v int64) string { return (time.Duration(v) * time.Microsecond).String() }
	t := newTable(c.stdout)
	t.row("target", target)
	t.row("mode", mode)
	requests := fmt.Sprintf("domain %s, %s=<%s>, %d descriptors per request", doc.Domain, doc.Key, keys, doc.Descriptors)
	if doc.OverLimitShare > 0 {
		requests += fmt.Sprintf(", %g%% %q", doc.OverLimitShare*100, overValue)
	}
	t.row("requests", requests)
	t.row("duration", (time.Duration(doc.DurationSeconds * float64(time.Second))).Round(time.Millisecond).String())
	t.row("calls", fmt.Sprintf("%d (%.1f/s)", doc.Count, doc.CallsPerSecond))
	t.row("ok", strconv.FormatInt(doc.OK, 10))
	t.row("over limit", strconv.FormatInt(doc.OverLimit, 10))
	if doc.OtherCode > 0 {
		t.row("other code", strconv.FormatInt(doc.OtherCode, 10))
	}
	t.row("errors", strconv.FormatInt(doc.Errors, 10))
	for _, code := range slices.Sorted(func(yield func(string) bool) {
		for k := range doc.ErrorsByCode {
			if !yield(k) {
				return
			}
		}
	}) {
		t.row("  "+code, strconv.FormatInt(doc.ErrorsByCode[code], 10))
	}
	t.flush()
	fmt.Fprintln(c.stdout)
	t.row("P50", "P90", "P99", "P99.9", "MAX")
	t.row(us(doc.Latency.P50), us(doc.Latency.P90), us(doc.Latency.P99), us(doc.Latency.P999), us(doc.Latency.Max))
	t.flush()
}

// noopServer is an in-process RateLimitService that answers every call OK
// and does nothing else: what a run against it measures is the client,
// gRPC and the machine.
type noopServer struct {
	rlsv3.UnimplementedRateLimitServiceServer
	addr string
	srv  *grpc.Server
	wg   sync.WaitGroup
}

func (*noopServer) ShouldRateLimit(context.Context, *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
}

// startNoopServer serves a noopServer on addr (host:port; port 0 picks a
// free one) until stop.
func startNoopServer(addr string) (*noopServer, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &noopServer{addr: lis.Addr().String(), srv: grpc.NewServer()}
	rlsv3.RegisterRateLimitServiceServer(s.srv, s)
	s.wg.Go(func() { s.srv.Serve(lis) })
	return s, nil
}

// stop closes the listener and every connection and waits for Serve.
func (s *noopServer) stop() {
	s.srv.Stop()
	s.wg.Wait()
}

const noopServerHelp = `Serves the no-op RateLimitService of bench -noop-server as a process of
its own: every ShouldRateLimit is answered OK without doing anything. It
prints "serving on ADDR" once it listens and serves until interrupted
(SIGINT or SIGTERM), with gRPC's and Go's default settings.

Loading it with bench from another process measures what a separate
ratelimitd process could at best reach on this machine: the fair ceiling
for ratelimitd, whereas bench -noop-server shares the load tool's runtime.
`

// noopServe is the noop-server command.
func (c *cli) noopServe(args []string) int {
	fs := c.flagSet()
	listen := fs.String("listen", defaultAddr, "`host:port` to listen on; port 0 picks a free port")
	pos, code, ok := c.parse(fs, args, false)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return c.usagef("unexpected argument %q", pos[0])
	}
	srv, err := startNoopServer(*listen)
	if err != nil {
		return c.failf(exitError, "%v", err)
	}
	fmt.Fprintf(c.stdout, "serving on %s\n", srv.addr)
	<-c.ctx.Done()
	srv.stop()
	return exitOK
}
