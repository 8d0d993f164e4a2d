package algorithms

import "testing"

// BenchmarkDecide decides one call of 1 hit per algorithm on a live state,
// advancing the instant by 1 ms each call so that windows roll and
// buckets refill as they do in service.
func BenchmarkDecide(b *testing.B) {
	for _, alg := range []Algorithm{FixedWindow, SlidingWindow, TokenBucket, GCRA, Concurrency} {
		b.Run(alg.String(), func(b *testing.B) {
			l := Limit{Algorithm: alg, Rate: 1000, Period: Second, Burst: 100}
			var s State
			now := int64(1_800_000_000) * Second
			b.ReportAllocs()
			for b.Loop() {
				_, s = Decide(l, s, now, 1)
				now += Millisecond
			}
		})
	}
}
