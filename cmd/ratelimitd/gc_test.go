package main

import "testing"

func TestGCTunerTarget(t *testing.T) {
	for _, tc := range []struct {
		percent  int
		headroom uint64
		live     uint64
		want     int
	}{
		{100, 64 << 20, 4 << 20, 1600}, // a small heap grows by the headroom
		{100, 64 << 20, 1 << 30, 100},  // a large one by the percent
		{100, 64 << 20, 0, 6400},       // nothing live yet: counted as 1 MiB
		{400, 64 << 20, 64 << 20, 400}, // the larger of the two
		{100, 0, 4 << 20, 100},         // no headroom
		{-1, 64 << 20, 4 << 20, -1},    // the collector off stays off
		{100, 1 << 62, 1, 100000},      // bounded
		{50, 64 << 20, 256 << 20, 50},  // below Go's default when asked
		{100, 64 << 20, 32 << 20, 200}, // headroom twice the live heap
		{100, 64 << 20, 48 << 20, 133}, // rounded down
		{100, 64 << 20, 63 << 20, 101}, // just under the headroom
		{100, 64 << 20, 65 << 20, 100}, // just over
	} {
		g := newGCTuner(tc.percent, tc.headroom)
		if got := g.target(tc.live); got != tc.want {
			t.Errorf("target(percent %d, headroom %d, live %d) = %d, want %d", tc.percent, tc.headroom, tc.live, got, tc.want)
		}
	}
}
