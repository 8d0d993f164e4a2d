package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// result is one run of ratelimitctl.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return "exit " + string(rune('0'+r.code)) + "\nstdout:\n" + r.stdout + "stderr:\n" + r.stderr
}

// ctl runs ratelimitctl in-process with env as its environment and empty
// standard input.
func ctl(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	return ctlIn(t, "", env, args...)
}

// ctlIn is ctl with stdin as standard input.
func ctlIn(t *testing.T, stdin string, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		if k == "RATELIMITCTL_TIMEOUT" {
			// Generous, so that a loaded machine never fails a call; a
			// refused connection fails at once whatever the deadline.
			return "1m"
		}
		return ""
	}
	code := run(context.Background(), args, getenv, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

// want fails t unless r exited with code and its outputs contain the
// given substrings ("out:" or "err:" prefixed).
func want(t *testing.T, r result, code int, contains ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("want exit %d, got:\n%s", code, r)
	}
	for _, c := range contains {
		where, s := r.stdout, c
		if rest, ok := strings.CutPrefix(c, "err:"); ok {
			where, s = r.stderr, rest
		} else if rest, ok := strings.CutPrefix(c, "out:"); ok {
			s = rest
		}
		if !strings.Contains(where, s) {
			t.Fatalf("want %q in the output, got:\n%s", c, r)
		}
	}
}

// decode parses r's stdout as one JSON document into v.
func decode(t *testing.T, r result, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r)
	}
	if dec.More() {
		t.Fatalf("stdout holds more than one JSON document:\n%s", r)
	}
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		groups bool
		pos    []string
		domain string
		n      int
		b      bool
		err    string
	}{
		{name: "flags first", args: []string{"-domain", "api", "a=1", "b=2"}, pos: []string{"a=1", "b=2"}, domain: "api"},
		{name: "flags last", args: []string{"a=1", "--domain", "api"}, pos: []string{"a=1"}, domain: "api"},
		{name: "interleaved", args: []string{"a=1", "-n=3", "b=2", "-b", "c=3", "--domain=api"}, pos: []string{"a=1", "b=2", "c=3"}, domain: "api", n: 3, b: true},
		{name: "bool false", args: []string{"-b=false", "x"}, pos: []string{"x"}},
		{name: "end of flags", args: []string{"a=1", "--", "-n", "3"}, pos: []string{"a=1", "-n", "3"}},
		{name: "groups", args: []string{"a=1", "--", "b=2", "-n", "3", "--", "c=3"}, groups: true, pos: []string{"a=1", "--", "b=2", "--", "c=3"}, n: 3},
		{name: "lone dash", args: []string{"-"}, pos: []string{"-"}},
		{name: "unknown", args: []string{"a=1", "-nope"}, err: "flag provided but not defined: -nope"},
		{name: "missing value", args: []string{"a=1", "-domain"}, err: "flag needs an argument: -domain"},
		{name: "bad value", args: []string{"-n", "x"}, err: `invalid value "x" for flag -n`},
		{name: "three dashes", args: []string{"---n"}, err: "bad flag syntax"},
		{name: "help", args: []string{"a=1", "--help"}, err: flag.ErrHelp.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			domain := fs.String("domain", "", "")
			n := fs.Int("n", 0, "")
			b := fs.Bool("b", false, "")
			pos, err := parseArgs(fs, tc.args, tc.groups)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pos, tc.pos) || *domain != tc.domain || *n != tc.n || *b != tc.b {
				t.Errorf("positionals %q domain %q n %d b %v; want %q %q %d %v", pos, *domain, *n, *b, tc.pos, tc.domain, tc.n, tc.b)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	cfg := filepath.Join("..", "..", "config", "testdata", "valid", "basic.yaml")
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{nil, "Usage:"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"-addr", "x", "config"}, "the command comes first"},
		{[]string{"validate"}, "want one config path"},
		{[]string{"validate", "a", "b"}, "want one config path"},
		{[]string{"validate", "-o", "yaml", cfg}, `invalid value "yaml" for flag -o: want table or json`},
		{[]string{"explain", "a=1"}, "-config is required"},
		{[]string{"explain", "-config", cfg}, "want the descriptor's entries"},
		{[]string{"explain", "-config", cfg, "novalue"}, `descriptor entry "novalue": want key=value`},
		{[]string{"explain", "-config", cfg, "=v"}, `descriptor entry "=v": want key=value`},
		{[]string{"check", "a=1"}, "-domain is required"},
		{[]string{"check", "-domain", "api"}, "want at least one descriptor"},
		{[]string{"check", "-domain", "api", "a=1", "--"}, "descriptor 2 is empty"},
		{[]string{"check", "-domain", "api", "--", "a=1"}, "descriptor 1 is empty"},
		{[]string{"check", "-domain", "api", "a=1", "-hits", "-1"}, `invalid value "-1" for flag -hits`},
		{[]string{"limits"}, "limits needs a subcommand"},
		{[]string{"limits", "-domain", "api"}, "limits needs a subcommand"},
		{[]string{"limits", "frob"}, `unknown command "limits frob"`},
		{[]string{"limits", "set", "-domain", "api", "api_key=abc"}, "want key=value... VALUE"},
		{[]string{"limits", "set", "api_key=abc", "5/minute"}, "-domain is required"},
		{[]string{"limits", "set", "-domain", "api", "api_key=abc", "5/fortnight"}, `unit "fortnight" is not one of`},
		{[]string{"limits", "set", "-domain", "api", "api_key=abc", "path=/x"}, `the last argument is the value (a limit such as 500/minute, unlimited, or policy=NAME), found the entry "path=/x"`},
		{[]string{"limits", "set", "-domain", "api", "api_key=abc", "5 concurrent"}, "an override cannot set a concurrency limit's lease"},
		{[]string{"limits", "set", "-domain", "api", "api_key=abc", "unlimited", "-burst", "3"}, "-algorithm and -burst go with a limit"},
		{[]string{"limits", "set", "-domain", "api", "api_key=abc", "policy="}, "policy= needs a policy name"},
		{[]string{"limits", "get", "api_key=abc"}, "-domain is required"},
		{[]string{"limits", "get", "-domain", "api"}, "want the entries of the override to show"},
		{[]string{"limits", "unset", "-domain", "api"}, "want the entries of the override to remove"},
		{[]string{"limits", "list", "api"}, `unexpected argument "api"`},
		{[]string{"limits", "list", "-page-size", "0"}, "-page-size must be from 1 to 1000"},
		{[]string{"inspect", "-domain", "api"}, "want the descriptor's entries"},
		{[]string{"reset", "a=1"}, "-domain is required"},
		{[]string{"config", "extra"}, `unexpected argument "extra"`},
		{[]string{"config", "-token", "a", "-token-file", "b"}, "give -token or -token-file, not both"},
		{[]string{"config", "-cert", "c.pem"}, "-cert and -key go together"},
		{[]string{"config", "-timeout", "0s"}, "-timeout must be greater than 0"},
		{[]string{"config", "-token-file", "/nonexistent/token"}, "token file: open /nonexistent/token"},
		{[]string{"config", "-ca", "/nonexistent/ca.pem"}, "-ca: open /nonexistent/ca.pem"},
		{[]string{"config", "-nope"}, "flag provided but not defined: -nope"},
		{[]string{"help", "frob"}, `unknown command "frob"`},
		{[]string{"version", "x"}, `unexpected argument "x"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := ctl(t, nil, tc.args...)
			want(t, r, exitUsage, "err:"+tc.err)
			if r.stdout != "" {
				t.Errorf("a usage error wrote to stdout:\n%s", r)
			}
		})
	}
}

func TestUsageErrorFromEnvironment(t *testing.T) {
	r := ctl(t, map[string]string{"RATELIMITCTL_TIMEOUT": "soon"}, "config")
	want(t, r, exitUsage, `err:invalid value "soon" for RATELIMITCTL_TIMEOUT`)
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		r := ctl(t, nil, args...)
		want(t, r, exitOK, "Commands:", "limits set", "Exit codes:", "RATELIMITCTL_TOKEN_FILE", "4  over limit")
	}
	r := ctl(t, nil, "limits", "set", "-h")
	want(t, r, exitOK, "Usage: ratelimitctl limits set", "policy=NAME", "-algorithm", "-reason", "[$RATELIMITCTL_ADDR]", "Exit codes:")
	r = ctl(t, nil, "help", "check")
	want(t, r, exitOK, "Usage: ratelimitctl check", "lone --", "-hits")
	r = ctl(t, nil, "help", "limits", "list")
	want(t, r, exitOK, "-page-size")
	r = ctl(t, nil, "explain", "a=1", "--help")
	want(t, r, exitOK, "-config", "closest")
}

func TestVersion(t *testing.T) {
	want(t, ctl(t, nil, "version"), exitOK, "ratelimitctl ")
	r := ctl(t, nil, "--version", "-o", "json")
	var v buildVersion
	decode(t, r, &v)
	if v.Version == "" {
		t.Errorf("version: %+v", v)
	}
}

func TestFirstToken(t *testing.T) {
	for _, tc := range []struct{ in, tok, err string }{
		{"abc\n", "abc", ""},
		{"# ops\n\n  alice  s3cret-token  \nbob other\n", "s3cret-token", ""},
		{"a b c\n", "", "line 1"},
		{"# only a comment\n", "", "no token found"},
	} {
		tok, err := firstToken([]byte(tc.in))
		if tok != tc.tok || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("firstToken(%q) = %q, %v; want %q, %q", tc.in, tok, err, tc.tok, tc.err)
		}
	}
}

func TestValidate(t *testing.T) {
	basic := filepath.Join("..", "..", "config", "testdata", "valid", "basic.yaml")
	r := ctl(t, nil, "validate", basic)
	want(t, r, exitOK, "basic.tenant=acme.user ", "5/second", "basic.yaml:8", "err:ok, ", "err:rules, hash ")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	for _, l := range lines {
		if !strings.Contains(l, "basic.yaml:") {
			t.Errorf("rule line without file:line: %q", l)
		}
		if strings.HasSuffix(l, " ") {
			t.Errorf("trailing space: %q", l)
		}
	}

	// The extensions' flags.
	r = ctl(t, nil, "validate", filepath.Join("..", "..", "config", "testdata", "extensions", "policies.yaml"))
	want(t, r, exitOK, "policy=starter meter=requests", `max_override="5000 per hour"`, "charge_always", "algorithm=gcra")

	// Flags after the path, and JSON.
	r = ctl(t, nil, "validate", basic, "-o", "json")
	var doc validateJSON
	decode(t, r, &doc)
	if !doc.OK || len(doc.Rules) != len(lines) || doc.Hash == "" || doc.Rules[0].File == "" || doc.Rules[0].Line == 0 {
		t.Errorf("json: %+v", doc)
	}

	// Every error, then exit 1.
	r = ctl(t, nil, "validate", filepath.Join("..", "..", "config", "testdata", "multi", "many_errors.yaml"))
	want(t, r, exitError, `err:unknown key "extra"`, `err:unit "minutes"`, `err:unknown key "colour"`, "err:many_errors.yaml: 6 errors")
	if r.stdout != "" {
		t.Errorf("errors on stdout:\n%s", r)
	}
	r = ctl(t, nil, "validate", "-o", "json", filepath.Join("..", "..", "config", "testdata", "multi", "many_errors.yaml"))
	if r.code != exitError {
		t.Fatalf("want exit 1:\n%s", r)
	}
	decode(t, r, &doc)
	if doc.OK || len(doc.Errors) != 6 || doc.Errors[0].Line == 0 {
		t.Errorf("json errors: %+v", doc)
	}

	// A missing file is an error, not a usage error.
	want(t, ctl(t, nil, "validate", filepath.Join(t.TempDir(), "none.yaml")), exitError, "err:no such file")

	// -merge-domains.
	merge := filepath.Join("..", "..", "config", "testdata", "merge")
	want(t, ctl(t, nil, "validate", merge), exitError)
	want(t, ctl(t, nil, "validate", "-merge-domains", merge), exitOK)
}

// explainConfig exercises tiers, idempotency, policies, wildcards,
// max_override, shadow mode and several limits.
const explainConfig = `domain: llm
tiers:
  key: tier
  default: user
  multipliers: {admin: 10, user: 1, anon: 0.5, banned: 0}
idempotency: {key: idempotency_key, ttl: 10m}
policies:
  pro:
    requests: {requests_per_unit: 1000, unit: hour, algorithm: gcra, burst: 50}
descriptors:
  - key: plan
    value: pro
    descriptors:
      - key: org
        policy: pro
        max_override: {requests_per_unit: 5000, unit: hour}
  - key: path
    value: "/v1/chat/*"
    shadow_mode: true
    rate_limits:
      - {requests_per_unit: 20, unit: second, name: burst}
      - {requests_per_unit: 600, period: 90m}
  - key: org
    value: "internal-*"
    rate_limit: {unlimited: true}
  - key: user
    descriptors:
      - key: path
        rate_limit: {requests_per_unit: 5, unit: minute}
`

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestExplain(t *testing.T) {
	cfg := writeConfig(t, explainConfig)

	r := ctl(t, nil, "explain", "-config", cfg, "plan=pro", "org=acme", "tier=admin", "idempotency_key=k1")
	want(t, r, exitOK, "rule          llm.plan=pro.org (", "config.yaml:14)",
		"tier=admin (tier entry", "idempotency_key=k1 (idempotency entry",
		"tier          admin (multiplier 10)", "policy        pro (meter requests)",
		"max_override  5000 per hour", "10000 per hour (gcra, burst 500)",
		`"3:llm1:24:plan3:pro3:org4:acme4:gcra10:3600000000"`)

	// Flags after the entries; the default tier; two limits, shadow mode.
	r = ctl(t, nil, "explain", "path=/v1/chat/completions", "-config", cfg, "-domain", "llm")
	want(t, r, exitOK, "shadow_mode: counted", "tier          user (multiplier 1)", "20 per second       burst", "600 per 90 minutes  -", "name          burst", "max_override  none")

	// Half a multiplier, with -key-prefix.
	r = ctl(t, nil, "explain", "-config", cfg, "-key-prefix", "rl:", "tier=anon", "user=u1", "path=/x")
	want(t, r, exitOK, "3 per minute", `"rl:3:llm1:24:user2:u14:path2:/x12:fixed_window8:60000000"`)

	// A multiplier of 0 blocks; an unlimited rule has no buckets.
	want(t, ctl(t, nil, "explain", "-config", cfg, "tier=banned", "user=u1", "path=/x"), exitOK, "blocked")
	r = ctl(t, nil, "explain", "-config", cfg, "org=internal-7")
	want(t, r, exitOK, "unlimited: never counted")
	if strings.Contains(r.stdout, "KEY") {
		t.Errorf("unlimited rule with buckets:\n%s", r)
	}

	// Non-printable bytes in the key are escaped, as %q does.
	r = ctl(t, nil, "explain", "-config", cfg, "user=a\x00b\n", "path=/x")
	want(t, r, exitOK, `"3:llm1:24:user4:a\x00b\n4:path2:/x12:fixed_window8:60000000"`)

	// No match: exit 3 with the closest rule.
	r = ctl(t, nil, "explain", "-config", cfg, "plan=pro", "org=acme", "usage=tokens")
	want(t, r, exitNotFound, "err:no rule matches: no rule of domain llm matches plan=pro, org=acme, usage=tokens (closest: llm.plan=pro.org at ", "err:which matches the first 2 of the 3 entries")
	r = ctl(t, nil, "explain", "-config", cfg, "plan=pro")
	want(t, r, exitNotFound, "err:which needs 2 entries: plan=pro, org (any value)")
	r = ctl(t, nil, "explain", "-config", cfg, "user=u1", "route=/x")
	want(t, r, exitNotFound, "err:whose level 2 is path (any value) where the descriptor has route=/x")
	want(t, ctl(t, nil, "explain", "-config", cfg, "-domain", "nope", "a=b"), exitNotFound, `err:domain "nope" is not in the config (domains: llm)`)
	want(t, ctl(t, nil, "explain", "-config", cfg, "tier=admin"), exitNotFound, "err:no entries once the tiers and idempotency entries are removed")

	// JSON, matched and not.
	r = ctl(t, nil, "explain", "-config", cfg, "-o", "json", "tier=anon", "user=a\x00", "path=/x")
	var ex explanation
	decode(t, r, &ex)
	if !ex.Matched || ex.Rule.Path != "llm.user.path" || ex.Tier != "anon" || ex.TierMultiplier != 0.5 || len(ex.Limits) != 1 ||
		ex.Limits[0].RequestsPerUnit != 3 || ex.Limits[0].Unit != "minute" || ex.Limits[0].PeriodSeconds != 60 ||
		ex.Limits[0].Key != `3:llm1:24:user2:a\x004:path2:/x12:fixed_window8:60000000` || len(ex.Removed) != 1 || len(ex.Descriptor) != 2 {
		t.Errorf("json: %+v", ex)
	}
	r = ctl(t, nil, "explain", "-config", cfg, "-o", "json", "plan=pro")
	if r.code != exitNotFound {
		t.Fatalf("want exit 3:\n%s", r)
	}
	ex = explanation{}
	decode(t, r, &ex)
	if ex.Matched || ex.Reason == "" || !strings.Contains(ex.Closest, "llm.plan=pro.org") {
		t.Errorf("json, no match: %+v", ex)
	}

	// -domain is needed with several domains; a broken config is exit 1.
	dir := t.TempDir()
	for name, y := range map[string]string{"a.yaml": "domain: a\ndescriptors: [{key: k, rate_limit: {unit: second, requests_per_unit: 1}}]\n", "b.yaml": "domain: b\ndescriptors: []\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want(t, ctl(t, nil, "explain", "-config", dir, "k=v"), exitUsage, "err:-domain is required: the config has domains a, b")
	want(t, ctl(t, nil, "explain", "-config", dir, "-domain", "a", "k=v"), exitOK, "1 per second")
	want(t, ctl(t, nil, "explain", "-config", writeConfig(t, "domain: x\nbogus: 1\n"), "k=v"), exitError, `err:unknown key "bogus"`)
}
