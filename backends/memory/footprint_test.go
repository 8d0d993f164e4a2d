package memory

import (
	"context"
	"runtime"
	"strconv"
	"testing"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
)

// realisticKey appends a bucket key shaped as config.AppendKey writes it
// (domain, entry count, entry key and value, algorithm, period; 45 to 54
// bytes) for the i-th API key.
func realisticKey(dst []byte, alg algorithms.Algorithm, i int) []byte {
	dst = append(dst, "5:bench1:17:api_key8:k"...)
	n := len(dst)
	dst = strconv.AppendInt(dst, int64(i%10_000_000)+10_000_000, 10)
	dst = append(dst[:n], dst[n+1:]...) // 7 digits
	name := alg.String()
	dst = strconv.AppendInt(dst, int64(len(name)), 10)
	dst = append(dst, ':')
	dst = append(dst, name...)
	return append(dst, "8:60000000"...)
}

// fill charges one hit at now on n keys (from the first-th) with one Apply
// each, as the server does for one-descriptor requests.
func fill(tb testing.TB, be *Backend, now int64, alg algorithms.Algorithm, first, n int) {
	tb.Helper()
	ctx := context.Background()
	reqs := []backends.Request{{Limit: algorithms.Limit{Algorithm: alg, Rate: 1 << 40, Period: algorithms.Minute}, Hits: 1}}
	out := make([]algorithms.Decision, 1)
	key := make([]byte, 0, 64)
	for i := first; i < first+n; i++ {
		key = realisticKey(key[:0], alg, i)
		reqs[0].Key = key
		if err := be.Apply(ctx, now, backends.AllOrNothing, reqs, out); err != nil {
			tb.Fatal(err)
		}
	}
}

// heapAlloc returns the live heap after a full collection.
func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkFootprint fills a Backend (default Options) with n buckets of
// realistic keys and reports the heap they hold per bucket (B/bucket: the
// HeapAlloc growth after a collection, New's own allocations included,
// over the buckets held): table slots, keys and state. ns/op is the time
// to fill it; run it with -benchtime=1x. The concurrency buckets are
// charged twice, 30s apart, so that their state needs all of State.
func BenchmarkFootprint(b *testing.B) {
	for _, c := range []struct {
		name  string
		alg   algorithms.Algorithm
		n     int
		again bool // charge every key again 30s later
	}{
		{"fixed_window/1M", algorithms.FixedWindow, 1_000_000, false},
		{"fixed_window/100k", algorithms.FixedWindow, 100_000, false},
		{"gcra/100k", algorithms.GCRA, 100_000, false},
		{"concurrency/100k", algorithms.Concurrency, 100_000, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			var perBucket float64
			for b.Loop() {
				before := heapAlloc()
				be := New(Options{}) // room for 1<<20: no eviction
				fill(b, be, base, c.alg, 0, c.n)
				if c.again {
					fill(b, be, base+30*algorithms.Second, c.alg, 0, c.n)
					be.sweep(base + 30*algorithms.Second) // as the sweeper would: shrinks the table they left
				}
				after := heapAlloc()
				s := be.Stats()
				if s.Buckets != int64(c.n) {
					b.Fatalf("%d buckets held, want %d", s.Buckets, c.n)
				}
				perBucket = float64(int64(after)-int64(before)) / float64(s.Buckets)
				be.Close()
			}
			b.ReportMetric(perBucket, "B/bucket")
		})
	}
}

// BenchmarkFlood fills a Backend to its MaxBuckets bound, then floods it
// with 10 times as many unique keys, and reports the live heap before and
// after the flood (heap-full-MB, heap-flood-MB, and their ratio) and the
// bytes allocated during the flood (flood-alloc-MB: garbage the collector
// has to clear, which the process's RSS carries until it does). Run it
// with -benchtime=1x.
func BenchmarkFlood(b *testing.B) {
	const maxBuckets = 1 << 17
	var full, flooded, allocated uint64
	for b.Loop() {
		be := New(Options{MaxBuckets: maxBuckets})
		fill(b, be, base, algorithms.FixedWindow, 0, 2*maxBuckets) // every shard full
		full = heapAlloc()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		before := m.TotalAlloc
		fill(b, be, base, algorithms.FixedWindow, 2*maxBuckets, 10*maxBuckets)
		runtime.ReadMemStats(&m)
		allocated = m.TotalAlloc - before
		flooded = heapAlloc()
		if s := be.Stats(); s.Buckets > maxBuckets {
			b.Fatalf("%d buckets > %d", s.Buckets, maxBuckets)
		}
		be.Close()
	}
	b.ReportMetric(float64(full)/(1<<20), "heap-full-MB")
	b.ReportMetric(float64(flooded)/(1<<20), "heap-flood-MB")
	b.ReportMetric(float64(flooded)/float64(full), "flood/full")
	b.ReportMetric(float64(allocated)/(1<<20), "flood-alloc-MB")
}

// TestFloodBound floods a full Backend with ten times MaxBuckets unique
// keys: the bucket count never exceeds the bound, and no table grows past
// the size the bound needs, so the memory the buckets hold is bounded too.
func TestFloodBound(t *testing.T) {
	const maxBuckets = 1 << 11
	b := New(Options{Shards: 4, MaxBuckets: maxBuckets})
	defer b.Close()
	limit := tableSize(b.perShard)
	for round := range 11 { // the first fills, the others flood
		fill(t, b, base, algorithms.FixedWindow, round*maxBuckets, maxBuckets)
		s := b.Stats()
		if s.Buckets > maxBuckets {
			t.Fatalf("round %d: %d buckets > %d", round, s.Buckets, maxBuckets)
		}
		for i := range b.shards {
			if n := len(b.shards[i].small.slots); n > limit {
				t.Fatalf("round %d: shard %d has %d slots, more than the %d its bound needs", round, i, n, limit)
			}
		}
		if round > 0 && s.Buckets < maxBuckets*9/10 {
			t.Errorf("round %d: %d buckets, want the shards kept near full", round, s.Buckets)
		}
	}
	// Nothing expired: every key past the bound evicted a live bucket.
	if s := b.Stats(); s.Buckets+s.Evictions != 11*maxBuckets {
		t.Errorf("Stats = %+v after %d keys", s, 11*maxBuckets)
	}
}

// TestFloodHeapFlat measures the live heap of a full Backend before and
// after a flood of ten times MaxBuckets unique keys: it must not grow
// (replacing buckets reuses their slots). A collection makes HeapAlloc
// exact; the margin covers the test's own allocations.
func TestFloodHeapFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("decides 100k new keys")
	}
	const maxBuckets = 1 << 13
	b := New(Options{MaxBuckets: maxBuckets})
	defer b.Close()
	fill(t, b, base, algorithms.FixedWindow, 0, 2*maxBuckets) // every shard full
	full := heapAlloc()
	fill(t, b, base, algorithms.FixedWindow, 2*maxBuckets, 10*maxBuckets)
	flooded := heapAlloc()
	if s := b.Stats(); s.Buckets > maxBuckets {
		t.Fatalf("%d buckets > %d", s.Buckets, maxBuckets)
	}
	t.Logf("live heap %d B full, %d B after the flood", full, flooded)
	if flooded > full+64<<10 {
		t.Errorf("the flood grew the live heap from %d B to %d B", full, flooded)
	}
}
