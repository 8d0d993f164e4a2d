package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/ratelimitd/ratelimitd/internal/redistest"
)

// logWriter writes each line to t.Log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestChaosShort runs chaos for a few seconds: one 2 s Redis kill, one
// config swap, then the fallback's outage. It asserts only what does not
// depend on the machine's speed: the timing limits are lifted (recovery
// within 30 s, any share of calls past their deadline, a 1 s deadline), and
// what is left must hold: no crash, exit 0, outage calls answered
// UNAVAILABLE (or by the fallback), the broken config refused and the good
// one back, and Redis's counts matching the OK answers within the calls
// whose outcome is unknown.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes for about 20 s")
	}
	redistest.Require(t)
	args := []string{"-duration", "6s", "-kill-every", "6s", "-outage", "2s", "-swap-every", "6s", "-rate", "200",
		"-keys", "8", "-deadline", "1s", "-recovery-limit", "30s", "-max-deadline-share", "1", "-fallback", "local"}
	o, err := parseOptions(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o.log = logWriter{t}
	rep, err := chaos(context.Background(), t, o, args)
	if err != nil {
		t.Fatal(err)
	}
	md := rep.markdown()
	if f := rep.failures(); len(f) > 0 {
		t.Errorf("failures:\n%s\n\nreport:\n%s", strings.Join(f, "\n"), md)
	}

	// The checks failures() makes, spelled out.
	m := rep.main
	if !m.alive || m.crash != "" || m.exit != 0 || m.stopErr != nil {
		t.Errorf("main run: alive %v, crash %q, exit %d, %v", m.alive, m.crash, m.exit, m.stopErr)
	}
	if len(m.kills) != 1 || !m.kills[0].recovered {
		t.Errorf("kills = %+v, want one, recovered", m.kills)
	}
	if len(m.swaps) != 1 || !m.swaps[0].refused || !m.swaps[0].restored {
		t.Errorf("swaps = %+v, want one, refused and restored", m.swaps)
	}
	if a := m.acct; a == nil || !a.passed() || a.ok == 0 {
		t.Errorf("accounting = %+v", a)
	}
	if down := m.class(phaseDown); down.outcomes[unavailable].n == 0 {
		t.Errorf("no UNAVAILABLE answer while Redis was down: %+v", down)
	}
	f := rep.fallback
	if f == nil || f.class(phaseDown).outcomes[outcomeOK].n == 0 || f.fallbacks <= 0 || f.exit != 0 {
		t.Errorf("fallback run = %+v", f)
	}
	for _, want := range []string{"# Chaos", "## Run: `-on-backend-failure unavailable`", "## Fallback: `-on-backend-failure local`", "Accounting"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

func TestOptions(t *testing.T) {
	for _, args := range [][]string{
		{"-duration", "10s", "-kill-every", "20s"}, // no kill fits
		{"-duration", "10s", "-swap-every", "30s", "-kill-every", "4s"},
		{"-fallback", "maybe"},
		{"-rate", "0"},
		{"extra"},
	} {
		if _, err := parseOptions(args, io.Discard); err == nil {
			t.Errorf("parseOptions(%q) accepted", args)
		}
	}
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if kills, swaps := len(o.killTimes()), len(o.swapTimes()); kills != 3 || swaps != 18 {
		t.Errorf("defaults give %d kills and %d swaps, want 3 and 18", kills, swaps)
	}
}
