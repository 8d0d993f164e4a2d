// Package archtest keeps the import rules of DESIGN.md (section 1) true:
//
//   - algorithms imports nothing but the standard library;
//   - config imports, of ours, only algorithms;
//   - backends/... import, of ours, only backends/... and algorithms, never
//     config or server;
//   - only programs (cmd/..., and the runnable programs under examples/...)
//     import server, and nothing imports cmd/...;
//   - only server, programs and our generated code under proto/ import gRPC,
//     protobuf or Envoy's proto packages directly.
//
// The rules are checked on what `go list -deps` reports: the transitive
// imports of every package's non-test code, and the direct imports of its
// tests for the rules on cmd and on proto packages.
package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/ratelimitd/ratelimitd"

// pkg is the part of `go list -json` output the rules need.
type pkg struct {
	ImportPath   string
	Module       *struct{ Path string }
	Imports      []string
	Deps         []string
	TestImports  []string
	XTestImports []string
}

// rel returns p relative to the module and whether p is ours.
func rel(p string) (string, bool) {
	if p == module {
		return ".", true
	}
	r, ok := strings.CutPrefix(p, module+"/")
	return r, ok
}

// under reports whether the module-relative path r is dir or inside it.
func under(r, dir string) bool { return r == dir || strings.HasPrefix(r, dir+"/") }

func isProgram(r string) bool { return under(r, "cmd") || under(r, "examples") }

func isStd(p string) bool {
	first, _, _ := strings.Cut(p, "/")
	return !strings.Contains(first, ".")
}

// isProto reports whether p is a package of gRPC, protobuf or Envoy's protos.
func isProto(p string) bool {
	for _, prefix := range [...]string{
		"google.golang.org/grpc",
		"google.golang.org/protobuf",
		"google.golang.org/genproto",
		"github.com/envoyproxy/go-control-plane",
		"github.com/cncf/xds",
		"github.com/golang/protobuf",
	} {
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			return true
		}
	}
	return false
}

// violations returns one line per broken rule.
func violations(pkgs []pkg) []string {
	var out []string
	bad := func(p pkg, dep, rule string) {
		out = append(out, p.ImportPath+" imports "+dep+": "+rule)
	}
	for _, p := range pkgs {
		r, ok := rel(p.ImportPath)
		if !ok {
			continue
		}
		for _, d := range p.Deps {
			dr, ours := rel(d)
			switch {
			case under(r, "algorithms") && !isStd(d):
				bad(p, d, "algorithms imports the standard library only")
			case !ours:
			case under(r, "config") && !under(dr, "algorithms") && !under(dr, "config"):
				bad(p, d, "config imports, of ours, only algorithms")
			case under(r, "backends") && !under(dr, "backends") && !under(dr, "algorithms"):
				bad(p, d, "backends import, of ours, only backends and algorithms")
			case under(dr, "server") && !under(r, "server") && !isProgram(r):
				bad(p, d, "only cmd imports server")
			case under(dr, "cmd"):
				bad(p, d, "nothing imports cmd")
			}
		}
		direct := slices.Concat(p.Imports, p.TestImports, p.XTestImports)
		for _, d := range direct {
			dr, ours := rel(d)
			if ours && under(dr, "cmd") && dr != r {
				bad(p, d, "nothing imports cmd")
			}
			if isProto(d) && !under(r, "server") && !isProgram(r) && !under(r, "proto") {
				bad(p, d, "only server (and cmd) touch gRPC and proto packages")
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// listPackages runs `go list -deps -json ./...` at the module root and
// returns the module's own packages.
func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-deps", "-json", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Module != nil && p.Module.Path == module {
			pkgs = append(pkgs, p)
		}
	}
	return pkgs
}

func TestImportRules(t *testing.T) {
	pkgs := listPackages(t)
	seen := map[string]bool{}
	for _, p := range pkgs {
		r, _ := rel(p.ImportPath)
		seen[r] = true
	}
	// Guard against a vacuous pass: the rules are about these packages.
	for _, want := range []string{"algorithms", "config", "backends"} {
		if !seen[want] {
			t.Errorf("go list did not report package %s; the rules would check nothing", want)
		}
	}
	for _, v := range violations(pkgs) {
		t.Error(v)
	}
}

// TestRulesBite shows that each rule reports what it should, and lets
// through what DESIGN.md allows.
func TestRulesBite(t *testing.T) {
	m := func(r string) string { return module + "/" + r }
	tests := []struct {
		name string
		p    pkg
		want int
	}{
		{"algorithms uses a library", pkg{ImportPath: m("algorithms"), Deps: []string{"math", "github.com/x/y"}}, 1},
		{"algorithms imports config", pkg{ImportPath: m("algorithms"), Deps: []string{m("config")}}, 1},
		{"config imports algorithms", pkg{ImportPath: m("config"), Deps: []string{m("algorithms"), "go.yaml.in/yaml/v3"}}, 0},
		{"config imports backends", pkg{ImportPath: m("config"), Deps: []string{m("backends")}}, 1},
		{"memory imports backends", pkg{ImportPath: m("backends/memory"), Deps: []string{m("backends"), m("algorithms")}}, 0},
		{"memory imports config", pkg{ImportPath: m("backends/memory"), Deps: []string{m("config")}}, 1},
		{"redis imports server", pkg{ImportPath: m("backends/redis"), Deps: []string{m("server")}}, 1},
		{"internal imports server", pkg{ImportPath: m("internal/x"), Deps: []string{m("server")}}, 1},
		{"cmd imports server", pkg{ImportPath: m("cmd/ratelimitd"), Deps: []string{m("server"), m("config")}}, 0},
		{"server imports cmd", pkg{ImportPath: m("server"), Deps: []string{m("cmd/ratelimitd")}}, 1},
		{"a test imports cmd", pkg{ImportPath: m("server"), XTestImports: []string{m("cmd/ratelimitctl")}}, 1},
		{"config imports grpc", pkg{ImportPath: m("config"), Imports: []string{"google.golang.org/grpc"}}, 1},
		{"backend test imports envoy", pkg{ImportPath: m("backends/memory"), TestImports: []string{"github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"}}, 1},
		{"server imports envoy", pkg{ImportPath: m("server"), Imports: []string{"github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"}}, 0},
		{"proto imports protobuf", pkg{ImportPath: m("proto/admin/v1"), Imports: []string{"google.golang.org/protobuf/proto"}}, 0},
	}
	for _, tt := range tests {
		if got := violations([]pkg{tt.p}); len(got) != tt.want {
			t.Errorf("%s: %d violations %q, want %d", tt.name, len(got), got, tt.want)
		}
	}
}
