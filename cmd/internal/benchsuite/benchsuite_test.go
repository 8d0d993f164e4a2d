package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

// TestQuick runs the suite with -quick against real processes: memory
// only, or Redis too when it is installed. It checks the structure of
// what it writes, never the numbers (the machine is shared).
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes for half a minute")
	}
	withRedis := true
	for _, b := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(b); err != nil {
			withRedis = false
		}
	}
	if !withRedis && os.Getenv("CI") != "" {
		redistest.Require(t, "redis-server", "redis-cli") // fails: CI must run the Redis scenarios
	}
	repoDoc := filepath.Join("..", "..", "..", "docs", "benchmarks.md")
	orig, err := os.ReadFile(repoDoc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	doc, img, raw := filepath.Join(dir, "benchmarks.md"), filepath.Join(dir, "img"), filepath.Join(dir, "raw.json")
	if err := os.WriteFile(doc, orig, 0o644); err != nil {
		t.Fatal(err)
	}

	var stderr bytes.Buffer
	args := []string{"-quick", "-run-duration", "500ms", "-doc", doc, "-img", img, "-json", raw, "-redis=" + map[bool]string{true: "true", false: "false"}[withRedis]}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	code := run(ctx, t, args, &stderr)
	t.Logf("benchsuite took %v:\n%s", time.Since(start).Round(time.Millisecond), stderr.String())
	if code != 0 {
		t.Fatalf("exit %d", code)
	}

	// The repository's document is untouched; the copy changed only
	// between the markers.
	if now, err := os.ReadFile(repoDoc); err != nil || !bytes.Equal(now, orig) {
		t.Errorf("the repository's %s changed (%v)", repoDoc, err)
	}
	got, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	before, after := splitMarkers(t, orig)
	gotBefore, gotAfter := splitMarkers(t, got)
	if before != gotBefore || after != gotAfter {
		t.Errorf("text outside the markers changed")
	}
	section := string(got[len(gotBefore) : len(got)-len(gotAfter)])
	for _, want := range []string{"## Standard scenarios", "make bench", "go run ./cmd/internal/benchsuite -quick", "nproc", "### Targets", "| PASS |", "vs no-op (process)"} {
		if !strings.Contains(section, want) && !(want == "| PASS |" && strings.Contains(section, "| FAIL |")) {
			t.Errorf("the generated section lacks %q:\n%s", want, section)
		}
	}
	if strings.Contains(section, "Not run yet") {
		t.Errorf("the placeholder is still there:\n%s", section)
	}

	// Every scenario ran and counted calls.
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	var rd rawDoc
	if err := json.Unmarshal(b, &rd); err != nil {
		t.Fatalf("-json: %v", err)
	}
	scenarios := map[string]int{}
	for _, m := range rd.Measurements {
		scenarios[m.Scenario]++
		if len(m.Runs) != 1 || m.Median.Count <= 0 {
			t.Errorf("%s: %d runs, %d calls; want 1 run with calls", m.ID, len(m.Runs), m.Median.Count)
		}
		// CPU can read 0 on a short run (ticks of 10 ms), but never be
		// missing: every process was found.
		if c := m.Median.CPU; c == nil || c.LoadTool < 0 || c.Server < 0 || c.Redis < 0 {
			t.Errorf("%s: CPU per call %+v, want it read", m.ID, c)
		}
		if m.Scenario == scLiveKeys && (m.Live == nil || m.Live.PrefillCalls <= 0 || m.Live.RSSAfter <= 0) {
			t.Errorf("%s: live-key figures missing: %+v", m.ID, m.Live)
		}
	}
	want := map[string]int{scCeiling: 2, scDescriptors: 3, scOpenLoop: 2, scLiveKeys: 2}
	if withRedis {
		want = map[string]int{scCeiling: 2, scDescriptors: 6, scOpenLoop: 3, scLiveKeys: 4, scReplicas: 3, scCluster: 2}
	}
	for sc, n := range want {
		if scenarios[sc] != n {
			t.Errorf("scenario %s: %d measurements, want %d (all: %v)", sc, scenarios[sc], n, scenarios)
		}
	}
	if len(rd.Targets) < 7 {
		t.Errorf("%d targets, want at least 7", len(rd.Targets))
	}

	// Every chart the section links decodes as a PNG.
	links := regexp.MustCompile(`!\[[^\]]*\]\(([^)]+\.png)\)`).FindAllStringSubmatch(section, -1)
	wantCharts := 2 // descriptors, live keys
	if withRedis {
		wantCharts = 4 // and replicas, Cluster
	}
	if len(links) != wantCharts {
		t.Errorf("%d chart links, want %d", len(links), wantCharts)
	}
	for _, l := range links {
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(l[1])))
		if err != nil {
			t.Error(err)
			continue
		}
		cfg, err := png.DecodeConfig(f)
		f.Close()
		if err != nil || cfg.Width < 100 || cfg.Height < 100 {
			t.Errorf("%s: not a PNG chart: %v %+v", l[1], err, cfg)
		}
	}
}

// splitMarkers returns the text up to and including the begin marker,
// and from the end marker on.
func splitMarkers(t *testing.T, doc []byte) (string, string) {
	t.Helper()
	s := string(doc)
	b, e := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if b < 0 || e < b {
		t.Fatalf("no markers in:\n%s", s)
	}
	return s[:b+len(beginMarker)], s[e:]
}

func TestReplaceSection(t *testing.T) {
	doc := "# T\n\nintro\n\n" + beginMarker + "\nold\nold\n" + endMarker + "\n\n## Hand-written\n"
	out, err := replaceSection([]byte(doc), "new\n\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# T\n\nintro\n\n" + beginMarker + "\nnew\n" + endMarker + "\n\n## Hand-written\n"
	if string(out) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
	again, err := replaceSection(out, "new\n")
	if err != nil || string(again) != want {
		t.Errorf("a second replacement changed the document: %v\n%s", err, again)
	}
	for _, bad := range []string{
		"no markers",
		beginMarker + " only",
		endMarker + " then " + beginMarker,
		beginMarker + beginMarker + endMarker,
	} {
		if _, err := replaceSection([]byte(bad), "x"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestMedianAndFormats(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %g, want %g", tc.in, got, tc.want)
		}
	}
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.6: "1,234,568", -12345: "-12,345"} {
		if got := fmtCount(in); got != want {
			t.Errorf("fmtCount(%g) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]string{697: "697 µs", 1497: "1.50 ms", 2_500_000: "2.50 s"} {
		if got := fmtUS(in); got != want {
			t.Errorf("fmtUS(%g) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]string{1: "1", 16: "16", 1000: "1k", 100_000: "100k", 1_000_000: "1M", 10_000_000: "10M"} {
		if got := tickLabel(in); got != want {
			t.Errorf("tickLabel(%g) = %q, want %q", in, got, want)
		}
	}
	if got := shellQuote("-ratelimitd-flags=-a b"); got != `'-ratelimitd-flags=-a b'` {
		t.Errorf("shellQuote: %s", got)
	}
}

func TestParseFootprint(t *testing.T) {
	out := []byte(`goos: linux
BenchmarkFootprint/1M-2         	       1	1234567 ns/op	        96.50 B/bucket	  100 B/op	   2 allocs/op
BenchmarkApply1-2   	 5000000	       210 ns/op
PASS
`)
	got := parseFootprint(out)
	if len(got) != 1 || got[0].Name != "BenchmarkFootprint/1M-2" || got[0].BytesPerBucket != 96.5 {
		t.Errorf("parseFootprint: %+v", got)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{"-repeat", "0"}, {"-over-limit", "2"}, {"-run-duration", "0s"}, {"extra"}, {"-nope"}} {
		var stderr bytes.Buffer
		if code := run(context.Background(), t, args, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2; stderr:\n%s", args, code, stderr.String())
		}
	}
}
