package config

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ratelimitd/ratelimitd/algorithms"
)

func loadAlgorithms(t *testing.T) *Config {
	t.Helper()
	c, err := Load("testdata/extensions/algorithms.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLimits(t *testing.T) {
	c := loadAlgorithms(t)
	paris, _ := time.LoadLocation("Europe/Paris")
	for _, tc := range []struct {
		entries []Entry
		want    []RuleLimit
	}{
		{[]Entry{{"api_key", "k"}}, []RuleLimit{{RequestsPerUnit: 500, Unit: Minute, UnitMultiplier: 1,
			Limit: algorithms.Limit{Algorithm: algorithms.GCRA, Rate: 500, Period: algorithms.Minute, Burst: 50}}}},
		{[]Entry{{"api_key", "k"}, {"path", "/api/runs/7"}}, []RuleLimit{
			{Name: "burst", RequestsPerUnit: 10, Unit: Second, UnitMultiplier: 1, Limit: algorithms.Limit{Rate: 10, Period: algorithms.Second}},
			{Name: "sustained", RequestsPerUnit: 1000, Unit: Minute, UnitMultiplier: 90, Limit: algorithms.Limit{Rate: 1000, Period: 90 * algorithms.Minute}},
		}},
		{[]Entry{{"client", "c"}}, []RuleLimit{{RequestsPerUnit: 100, Unit: Second, UnitMultiplier: 1,
			Limit: algorithms.Limit{Algorithm: algorithms.TokenBucket, Rate: 100, Period: algorithms.Second, Burst: 300}}}},
		{[]Entry{{"report", "r"}}, []RuleLimit{{RequestsPerUnit: 5, Unit: Minute, UnitMultiplier: 10,
			Limit: algorithms.Limit{Algorithm: algorithms.SlidingWindow, Rate: 5, Period: 10 * algorithms.Minute}}}},
		{[]Entry{{"daily", "d"}}, []RuleLimit{{RequestsPerUnit: 1000, Unit: Day, UnitMultiplier: 1, Calendar: paris,
			Limit: algorithms.Limit{Rate: 1000, Period: algorithms.Day}}}},
		{[]Entry{{"monthly", "m"}}, []RuleLimit{{RequestsPerUnit: 100000, Unit: Month, UnitMultiplier: 1, Calendar: time.UTC,
			Limit: algorithms.Limit{Algorithm: algorithms.SlidingWindow, Rate: 100000, Period: 30 * algorithms.Day}}}},
		{[]Entry{{"window", "w"}}, []RuleLimit{{RequestsPerUnit: 30, Unit: Second, UnitMultiplier: 30,
			Limit: algorithms.Limit{Rate: 30, Period: 30 * algorithms.Second}}}},
		{[]Entry{{"org", "o"}, {"concurrency", "runs"}}, []RuleLimit{{RequestsPerUnit: 50, UnitMultiplier: 0,
			Limit: algorithms.Limit{Algorithm: algorithms.Concurrency, Rate: 50, Period: 30 * algorithms.Minute}}}},
	} {
		r := c.Match("api", tc.entries)
		if r == nil {
			t.Fatalf("%v: no rule", tc.entries)
		}
		if diff := cmp.Diff(tc.want, r.Limits, cmp.Comparer(func(a, b *time.Location) bool { return a.String() == b.String() })); diff != "" {
			t.Errorf("%v: limits (-want +got):\n%s", tc.entries, diff)
		}
		if r.Limit != r.Limits[0].Limit || r.RequestsPerUnit != r.Limits[0].RequestsPerUnit || r.Unit != r.Limits[0].Unit || r.Name != r.Limits[0].Name {
			t.Errorf("%v: the rule's single-limit fields differ from Limits[0]", tc.entries)
		}
	}
}

func TestLimitKeysDiffer(t *testing.T) {
	c := loadAlgorithms(t)
	ents := []Entry{{"api_key", "k"}, {"path", "/api/runs/7"}}
	r := c.Match("api", ents)
	k0, k1 := string(r.AppendLimitKey(nil, ents, 0)), string(r.AppendLimitKey(nil, ents, 1))
	if k0 == k1 {
		t.Errorf("both limits of a list share key %q", k0)
	}
	if want := "3:api1:27:api_key1:k4:path11:/api/runs/712:fixed_window7:1000000"; k0 != want || k0 != string(r.AppendKey(nil, ents)) {
		t.Errorf("first limit key %q, want %q", k0, want)
	}
	if want := "3:api1:27:api_key1:k4:path11:/api/runs/712:fixed_window10:54000000001:1"; k1 != want {
		t.Errorf("second limit key %q, want %q", k1, want)
	}
	d := []Entry{{"daily", "d"}}
	if got, want := string(c.Match("api", d).AppendKey(nil, d)), "3:api1:15:daily1:d12:fixed_window11:8640000000021:calendar:Europe/Paris"; got != want {
		t.Errorf("calendar key %q, want %q", got, want)
	}
	// The algorithm is part of the key.
	a := &Rule{Domain: "x", Limit: algorithms.Limit{Algorithm: algorithms.GCRA, Period: 1}}
	b := &Rule{Domain: "x", Limit: algorithms.Limit{Algorithm: algorithms.TokenBucket, Period: 1}}
	if string(a.AppendKey(nil, d)) == string(b.AppendKey(nil, d)) {
		t.Error("gcra and token_bucket share a key")
	}
	// No allocation with room in dst.
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { _ = r.AppendLimitKey(buf[:0], ents, 1) }); n != 0 {
		t.Errorf("AppendLimitKey allocates %v times", n)
	}
}

func TestCalendarWindows(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	ny, _ := time.LoadLocation("America/New_York")
	kolkata, _ := time.LoadLocation("Asia/Kolkata")
	at := func(loc *time.Location, s string) int64 {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMicro()
	}
	for _, tc := range []struct {
		name       string
		unit       Unit
		loc        *time.Location
		now        string
		start, end string
		hours      int64
	}{
		{"February 2026: 28 days", Month, time.UTC, "2026-02-14 12:00", "2026-02-01 00:00", "2026-03-01 00:00", 28 * 24},
		{"February 2028: 29 days", Month, time.UTC, "2028-02-29 23:59", "2028-02-01 00:00", "2028-03-01 00:00", 29 * 24},
		{"April: 30 days", Month, time.UTC, "2026-04-01 00:00", "2026-04-01 00:00", "2026-05-01 00:00", 30 * 24},
		{"March in Paris: 31 days less the DST hour", Month, paris, "2026-03-31 23:59", "2026-03-01 00:00", "2026-04-01 00:00", 31*24 - 1},
		{"midnight in Paris", Day, paris, "2026-07-14 00:30", "2026-07-14 00:00", "2026-07-15 00:00", 24},
		{"spring forward: a 23-hour day", Day, paris, "2026-03-29 12:00", "2026-03-29 00:00", "2026-03-30 00:00", 23},
		{"fall back: a 25-hour day", Day, ny, "2026-11-01 23:00", "2026-11-01 00:00", "2026-11-02 00:00", 25},
		{"a week from Monday", Week, paris, "2026-01-04 18:00", "2025-12-29 00:00", "2026-01-05 00:00", 7 * 24},
		{"Monday itself", Week, paris, "2026-01-05 00:00", "2026-01-05 00:00", "2026-01-12 00:00", 7 * 24},
		{"a year", Year, time.UTC, "2026-06-01 00:00", "2026-01-01 00:00", "2027-01-01 00:00", 365 * 24},
		{"a local hour off the UTC hour", Hour, kolkata, "2026-06-01 10:59", "2026-06-01 10:00", "2026-06-01 11:00", 1},
	} {
		l := RuleLimit{Unit: tc.unit, UnitMultiplier: 1, Calendar: tc.loc, Limit: algorithms.Limit{Rate: 1, Period: UnitPeriod(tc.unit)}}
		got := l.At(at(tc.loc, tc.now))
		if got.WindowStart != at(tc.loc, tc.start) || got.WindowEnd != at(tc.loc, tc.end) {
			t.Errorf("%s: window [%v, %v), want [%s, %s)", tc.name, time.UnixMicro(got.WindowStart).In(tc.loc), time.UnixMicro(got.WindowEnd).In(tc.loc), tc.start, tc.end)
		}
		if h := (got.WindowEnd - got.WindowStart) / algorithms.Hour; h != tc.hours {
			t.Errorf("%s: %d hours, want %d", tc.name, h, tc.hours)
		}
	}
	// The repeated hour when New York's clocks go back: each 01:xx is its
	// own local hour.
	first := time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC).UnixMicro() // 01:30 EDT
	l := RuleLimit{Unit: Hour, Calendar: ny, Limit: algorithms.Limit{Rate: 1, Period: algorithms.Hour}}
	a, b := l.At(first), l.At(first+algorithms.Hour)
	if a.WindowEnd != b.WindowStart || a.WindowStart != first-30*algorithms.Minute {
		t.Errorf("repeated hour: %+v then %+v", a, b)
	}
	// Epoch-aligned limits are returned as they are.
	e := RuleLimit{Limit: algorithms.Limit{Rate: 1, Period: algorithms.Day}}
	if got := e.At(first); got != e.Limit {
		t.Errorf("epoch limit At = %+v", got)
	}
	if n := testing.AllocsPerRun(100, func() { _ = l.At(first) }); n != 0 {
		t.Errorf("At allocates %v times", n)
	}
}
