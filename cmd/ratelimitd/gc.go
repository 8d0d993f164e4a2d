package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// gcTuner sets the collector's target so that the heap may grow by at
// least headroom bytes between collections, and by at least percent % of
// the live heap: GOGC = max(percent, headroom/live × 100).
//
// Why: a loaded ratelimitd allocates a few KiB per call (gRPC buffers and
// messages) over a live heap of a few MiB, so Go's default (GOGC=100,
// grow by the live heap) collects many times a second. A fixed higher GOGC
// would fix that but multiply the memory of a large live heap (a memory
// backend holding millions of buckets) by as much. Headroom is a floor in
// bytes instead: small heaps collect rarely, large heaps as Go's default.
// The live heap is read once a second, and the target changed only when
// it moves by more than a tenth.
type gcTuner struct {
	percent  int
	headroom uint64
	cur      int
	sample   []metrics.Sample
}

func newGCTuner(percent int, headroom uint64) *gcTuner {
	return &gcTuner{percent: percent, headroom: headroom, cur: -2, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
}

// target is the GOGC value for a live heap of live bytes.
func (g *gcTuner) target(live uint64) int {
	if g.percent < 0 {
		return -1 // the collector is off
	}
	live = max(live, 1<<20) // at start the live heap reads 0
	return max(g.percent, int(min(float64(g.headroom)/float64(live)*100, 100000)))
}

// tune reads the live heap and updates the target when it moved enough.
func (g *gcTuner) tune() {
	metrics.Read(g.sample)
	var live uint64
	if g.sample[0].Value.Kind() == metrics.KindUint64 {
		live = g.sample[0].Value.Uint64()
	}
	t := g.target(live)
	if g.cur < 0 || t < 0 || t*10 < g.cur*9 || t*10 > g.cur*11 {
		debug.SetGCPercent(t)
		g.cur = t
	}
}

// run tunes now and then every second until ctx is done.
func (g *gcTuner) run(ctx context.Context) {
	g.tune()
	if g.percent < 0 || g.headroom == 0 {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.tune()
		}
	}
}
