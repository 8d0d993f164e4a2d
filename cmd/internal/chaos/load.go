package main

// load.go: the client load and the phases its calls are classified by.
//
// The load is open loop: call i is due at start + i/rate whatever the
// answers, sent by a pool of workers, each call with its own deadline (as
// Envoy's rate-limit filter has a timeout). A call is classified by the
// phase in force when it started, and by whether the phase changed while
// it was in flight: the phases are an epoch counter and a phase packed in
// one atomic word, so a worker reads both at once before and after its
// call. Every kill and restart starts a new epoch; a call whose epoch
// changed was in flight at a kill or a restart ("straddling"). The
// recovery after a restart ends with the first OK answer to a call that
// started after Redis answered PING again; that worker switches the phase
// back to normal within the same epoch.

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ratelimitd/ratelimitd/internal/loadrig"
)

// phase is what Redis is doing.
type phase uint8

const (
	phaseNormal     phase = iota // up
	phaseKilling                 // SIGKILL sent, the process not yet reaped
	phaseDown                    // dead
	phaseRestarting              // started again, not yet answering PING
	phaseRecovering              // answering PING; no OK answer yet
	phaseStraddle                // a class, not a phase: the call saw a kill or restart
	numPhases
)

var phaseNames = [numPhases]string{"normal", "killing", "down", "restarting", "recovering", "in flight at a kill or restart"}

func (p phase) String() string { return phaseNames[p] }

// phases is the phase in force, shared by the driver and the workers.
type phases struct {
	state       atomic.Uint64 // epoch<<8 | phase
	readyAt     atomic.Int64  // UnixNano when Redis answered PING after the last restart
	recoveredAt atomic.Int64  // UnixNano of the first OK answer after readyAt
}

func (p *phases) load() (epoch uint64, ph phase) {
	s := p.state.Load()
	return s >> 8, phase(s & 0xff)
}

// enter starts a new epoch in phase ph.
func (p *phases) enter(ph phase) {
	for {
		s := p.state.Load()
		if p.state.CompareAndSwap(s, ((s>>8)+1)<<8|uint64(ph)) {
			return
		}
	}
}

// ready records that Redis answers again and starts the recovery.
func (p *phases) ready(at time.Time) {
	p.readyAt.Store(at.UnixNano())
	p.recoveredAt.Store(0)
	p.enter(phaseRecovering)
}

// recovered ends the recovery of epoch with an OK answer received at t,
// unless it already ended.
func (p *phases) recovered(epoch uint64, t time.Time) {
	if p.state.CompareAndSwap(epoch<<8|uint64(phaseRecovering), epoch<<8|uint64(phaseNormal)) {
		p.recoveredAt.Store(t.UnixNano())
	}
}

// Outcomes of a call besides gRPC error codes.
const (
	outcomeOK        = "OK"
	outcomeOverLimit = "OVER_LIMIT"
	outcomeUnknown   = "UNKNOWN" // overall_code neither OK nor OVER_LIMIT
)

// cell counts one outcome of one class.
type cell struct {
	n      int64
	maxLat time.Duration
}

// classStats are the calls of one class.
type classStats struct {
	cells map[string]*cell // by outcome
	hist  *hdrhistogram.Histogram
}

// load is the client load on one ratelimitd.
type load struct {
	o       options
	domain  string
	clients []rlsv3.RateLimitServiceClient
	conns   []*grpc.ClientConn
	ph      *phases

	inflight atomic.Int64
	okPerKey []atomic.Int64

	mu      sync.Mutex
	classes [numPhases]*classStats
}

// newLoad connects to addr.
func newLoad(o options, addr string, ph *phases) (*load, error) {
	l := &load{o: o, domain: chaosDomain, ph: ph, okPerKey: make([]atomic.Int64, o.keys)}
	for range o.conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			l.close()
			return nil, err
		}
		l.conns = append(l.conns, cc)
		l.clients = append(l.clients, rlsv3.NewRateLimitServiceClient(cc))
	}
	for i := range l.classes {
		l.classes[i] = &classStats{cells: map[string]*cell{}, hist: hdrhistogram.New(1, 60_000_000, 3)}
	}
	return l, nil
}

func (l *load) close() {
	for _, cc := range l.conns {
		cc.Close()
	}
}

// request is the call for key k.
func (l *load) request(k int) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: l.domain, Descriptors: []*commonv3.RateLimitDescriptor{{
		Entries: []*commonv3.RateLimitDescriptor_Entry{{Key: chaosKey, Value: keyValue(k)}},
	}}}
}

// keyValue is the descriptor value of key k.
func keyValue(k int) string { return "c" + strconv.Itoa(k) }

// warm waits until every connection answers OK (with a long deadline), so
// that the load does not start with connection set-up.
func (l *load) warm(ctx context.Context) error {
	for _, c := range l.clients {
		err := loadrig.WaitFor(ctx, loadrig.Patience, func() error {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			resp, err := c.ShouldRateLimit(cctx, l.request(0))
			if err != nil {
				return err
			}
			if resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
				return fmt.Errorf("warm-up call answered %v", resp.GetOverallCode())
			}
			l.okPerKey[0].Add(1) // it counts like any other
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// run sends calls until stop is closed, then waits for the calls in
// flight.
func (l *load) run(stop <-chan struct{}) {
	interval := time.Duration(float64(time.Second) / l.o.rate)
	// Enough workers for 4 times the calls that fit in a deadline.
	workers := min(max(8, int(l.o.rate*l.o.deadline.Seconds()*4)+1), 256)
	start := time.Now()
	var tickets atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			client := l.clients[w%len(l.clients)]
			for {
				n := tickets.Add(1) - 1
				if d := time.Until(start.Add(time.Duration(n) * interval)); d > 0 {
					timer.Reset(d)
					select {
					case <-stop:
						return
					case <-timer.C:
					}
				} else {
					select {
					case <-stop:
						return
					default:
					}
				}
				l.call(client, int(n%int64(l.o.keys)))
			}
		})
	}
	wg.Wait()
}

// call sends one call and records its outcome.
func (l *load) call(client rlsv3.RateLimitServiceClient, k int) {
	e0, p0 := l.ph.load()
	l.inflight.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), l.o.deadline)
	start := time.Now()
	resp, err := client.ShouldRateLimit(ctx, l.request(k))
	end := time.Now()
	cancel()
	l.inflight.Add(-1)
	e1, _ := l.ph.load()

	class := p0
	if e1 != e0 || p0 == phaseKilling {
		class = phaseStraddle
	}
	var outcome string
	switch {
	case err != nil:
		outcome = status.Code(err).String()
	case resp.GetOverallCode() == rlsv3.RateLimitResponse_OK:
		outcome = outcomeOK
	case resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT:
		outcome = outcomeOverLimit
	default:
		outcome = outcomeUnknown
	}
	if outcome == outcomeOK {
		l.okPerKey[k].Add(1)
		if p0 == phaseRecovering && e1 == e0 {
			l.ph.recovered(e0, end)
		}
	}
	lat := end.Sub(start)
	l.mu.Lock()
	defer l.mu.Unlock()
	cs := l.classes[class]
	c := cs.cells[outcome]
	if c == nil {
		c = &cell{}
		cs.cells[outcome] = c
	}
	c.n++
	c.maxLat = max(c.maxLat, lat)
	cs.hist.RecordValue(max(lat.Microseconds(), 1))
}

// summary is a snapshot of the counts of one class.
type summary struct {
	class    phase
	total    int64
	outcomes map[string]cell
	p50, p99 time.Duration
	max      time.Duration
}

// summaries returns the counts of every class that had calls.
func (l *load) summaries() []summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []summary
	for i, cs := range l.classes {
		if cs.hist.TotalCount() == 0 {
			continue
		}
		s := summary{class: phase(i), total: cs.hist.TotalCount(), outcomes: map[string]cell{},
			p50: time.Duration(cs.hist.ValueAtPercentile(50)) * time.Microsecond,
			p99: time.Duration(cs.hist.ValueAtPercentile(99)) * time.Microsecond,
			max: time.Duration(cs.hist.Max()) * time.Microsecond}
		for k, c := range cs.cells {
			s.outcomes[k] = *c
		}
		out = append(out, s)
	}
	return out
}

// okTotal is the number of OK answers.
func (l *load) okTotal() int64 {
	var n int64
	for i := range l.okPerKey {
		n += l.okPerKey[i].Load()
	}
	return n
}
