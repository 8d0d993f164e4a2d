package kubernetes

// Docker is not available where the tests run, so the Dockerfile is
// checked as text: its stages, the Go version of the build image against
// go.mod's, a static build, a non-root user that Kubernetes' runAsNonRoot
// can verify, and defaults that agree with the manifests. The
// .dockerignore is checked against the files the build needs.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// root is the repository root, from this package's directory.
const root = "../.."

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

// stage is one FROM and the instructions after it.
type stage struct {
	image, name string
	ins         []instruction
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.ins {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// parseDockerfile splits a Dockerfile into stages. Comment lines (parser
// directives included) are dropped, also inside a continued instruction,
// as Docker does.
func parseDockerfile(t *testing.T, text string) []stage {
	t.Helper()
	var (
		stages []stage
		cur    strings.Builder
		start  int
	)
	flush := func() {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return
		}
		cmd, args, _ := strings.Cut(s, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := stage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			} else if len(f) != 1 {
				t.Fatalf("Dockerfile:%d: FROM %s: want IMAGE [AS NAME]", in.line, in.args)
			}
			stages = append(stages, st)
			return
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile:%d: %s before the first FROM", in.line, in.cmd)
		}
		stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
	}
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush()
	return stages
}

// envOf returns the variables a stage's ENV instructions set (KEY=VALUE
// form, values without spaces or quotes).
func envOf(t *testing.T, s stage) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, in := range s.all("ENV") {
		for _, kv := range strings.Fields(in.args) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || strings.ContainsAny(v, `"'`) {
				t.Fatalf("Dockerfile:%d: ENV %s: use KEY=VALUE without quotes (this test reads no other form)", in.line, in.args)
			}
			env[k] = v
		}
	}
	return env
}

// goVersion returns the Go version go.mod asks for: its toolchain line if
// any, else its go line.
func goVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^toolchain go(\S+)\s*$`).FindSubmatch(b); m != nil {
		return string(m[1])
	}
	m := regexp.MustCompile(`(?m)^go (\S+)\s*$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	return string(m[1])
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, string(b))
	if len(stages) != 2 {
		t.Fatalf("%d stages, want 2: build, then run", len(stages))
	}
	build, run := stages[0], stages[1]

	// The build image's Go is go.mod's: golang:VERSION[-variant][@digest].
	image, _, _ := strings.Cut(build.image, "@")
	tag, ok := strings.CutPrefix(image, "golang:")
	version, _, _ := strings.Cut(tag, "-")
	if want := goVersion(t); !ok || version != want {
		t.Errorf("build stage FROM %s: want golang:%s, go.mod's version: the image builds with the Go the tests run on (and its GOTOOLCHAIN=local refuses an older one)", build.image, want)
	}
	if build.name == "" {
		t.Error("build stage has no name (FROM ... AS build)")
	}

	// Module files first, downloaded in their own layer, then the source.
	copies := build.all("COPY")
	modCopy := slices.IndexFunc(copies, func(in instruction) bool {
		f := strings.Fields(in.args)
		return slices.Contains(f, "go.mod") && slices.Contains(f, "go.sum") && !slices.Contains(f, ".")
	})
	srcCopy := slices.IndexFunc(copies, func(in instruction) bool { return strings.HasPrefix(in.args, ". ") })
	download := slices.IndexFunc(build.ins, func(in instruction) bool { return in.cmd == "RUN" && strings.Contains(in.args, "go mod download") })
	if modCopy < 0 || srcCopy < 0 || download < 0 || !(copies[modCopy].line < build.ins[download].line && build.ins[download].line < copies[srcCopy].line) {
		t.Error("build stage: want COPY go.mod go.sum, RUN go mod download, then COPY . (the download layer is kept until the module files change)")
	}

	// Static, reproducible, stripped binaries of both programs.
	cgoOff := envOf(t, build)["CGO_ENABLED"] == "0"
	var built []string
	for _, in := range build.all("RUN") {
		for cmd := range strings.SplitSeq(in.args, "&&") {
			if !strings.Contains(cmd, "go build") {
				continue
			}
			f := strings.Fields(cmd)
			built = append(built, f[len(f)-1])
			if !cgoOff && !strings.Contains(cmd, "CGO_ENABLED=0") {
				t.Errorf("Dockerfile:%d: go build without CGO_ENABLED=0: the binary would need libc", in.line)
			}
			if !strings.Contains(cmd, "-trimpath") {
				t.Errorf("Dockerfile:%d: go build without -trimpath", in.line)
			}
			if !regexp.MustCompile(`-ldflags[ =]"?-s -w"?`).MatchString(cmd) {
				t.Errorf(`Dockerfile:%d: go build without -ldflags "-s -w"`, in.line)
			}
		}
	}
	slices.Sort(built)
	if want := []string{"./cmd/ratelimitctl", "./cmd/ratelimitd"}; !slices.Equal(built, want) {
		t.Errorf("go build of %q, want %q", built, want)
	}

	// The run stage: distroless static (or scratch), a numeric non-root
	// user, the same one the Deployment runs as.
	if !strings.HasPrefix(run.image, "gcr.io/distroless/static") && run.image != "scratch" {
		t.Errorf("run stage FROM %s: want gcr.io/distroless/static-* (or scratch)", run.image)
	}
	users := run.all("USER")
	if len(users) != 1 {
		t.Fatalf("run stage: %d USER instructions, want 1", len(users))
	}
	uid, _, _ := strings.Cut(users[0].args, ":")
	n, err := strconv.ParseInt(uid, 10, 64)
	if err != nil || n == 0 {
		t.Errorf("USER %s: want a numeric non-zero user (runAsNonRoot cannot check a user name)", users[0].args)
	}
	m := load(t)
	d, c := m.ratelimitd(t)
	if sc := d.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != n {
		t.Errorf("Deployment %s does not run as the image's user %d", d.Name, n)
	}

	// ENTRYPOINT, in exec form, is the ratelimitd binary copied from the
	// build stage.
	var entry []string
	if e := run.all("ENTRYPOINT"); len(e) != 1 || json.Unmarshal([]byte(e[0].args), &entry) != nil || len(entry) == 0 {
		t.Fatalf("run stage: want one ENTRYPOINT in exec form [\"/path/ratelimitd\"], got %v", e)
	}
	copied := map[string]string{} // destination path → source
	for _, in := range run.all("COPY") {
		f := strings.Fields(in.args)
		from := ""
		for len(f) > 0 && strings.HasPrefix(f[0], "--") {
			if v, ok := strings.CutPrefix(f[0], "--from="); ok {
				from = v + ":"
			}
			f = f[1:]
		}
		dest := f[len(f)-1]
		for _, src := range f[:len(f)-1] {
			if strings.HasSuffix(dest, "/") {
				copied[path.Join(dest, path.Base(src))] = from + src
			} else {
				copied[dest] = from + src
			}
		}
	}
	if src := copied[entry[0]]; !strings.HasPrefix(src, build.name+":") {
		t.Errorf("ENTRYPOINT %s is not a file copied from the %s stage (copied: %v)", entry[0], build.name, copied)
	}
	if path.Base(entry[0]) != "ratelimitd" {
		t.Errorf("ENTRYPOINT %s: want ratelimitd", entry[0])
	}

	// Listen on every interface, on the ports the manifests expose, and
	// serve the quickstart config from where the Deployment mounts its
	// ConfigMap.
	env := envOf(t, run)
	for name, want := range map[string]int32{"RATELIMITD_GRPC_ADDR": grpcPort, "RATELIMITD_HTTP_ADDR": httpPort} {
		host, port := addrPort(t, name, env[name])
		if host != "0.0.0.0" || port != want {
			t.Errorf("ENV %s=%s, want 0.0.0.0:%d", name, env[name], want)
		}
	}
	cfg := env["RATELIMITD_CONFIG"]
	if copied[cfg] != "examples/quickstart/config" {
		t.Errorf("ENV RATELIMITD_CONFIG=%s: want the directory examples/quickstart/config is copied to (copied: %v)", cfg, copied)
	}
	if dir := flags(t, c.Args)["config"]; dir != cfg {
		t.Errorf("the Deployment's -config %s differs from the image's %s", dir, cfg)
	}
	var exposed []string
	for _, in := range run.all("EXPOSE") {
		exposed = append(exposed, strings.Fields(in.args)...)
	}
	for _, p := range []int{grpcPort, httpPort} {
		if !slices.Contains(exposed, strconv.Itoa(p)) {
			t.Errorf("EXPOSE %v: want %d", exposed, p)
		}
	}
}

// dockerignore returns the patterns of the .dockerignore.
func dockerignore(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var pats []string
	for line := range strings.Lines(string(b)) {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		// Keep ignored() honest: it knows no exceptions and ** only as a
		// leading "**/".
		if strings.HasPrefix(p, "!") || strings.Contains(strings.TrimPrefix(p, "**/"), "**") {
			t.Fatalf(".dockerignore: pattern %q: this test's matcher does not handle it", p)
		}
		pats = append(pats, path.Clean(strings.TrimPrefix(p, "/")))
	}
	return pats
}

// ignored reports whether Docker leaves the slash-separated path rel out
// of the build context: a pattern that matches the path or one of its
// parent directories; "**/" matches any number of directories.
func ignored(pats []string, rel string) bool {
	comps := strings.Split(rel, "/")
	for _, p := range pats {
		rest, deep := strings.CutPrefix(p, "**/")
		for k := 1; k <= len(comps); k++ {
			from := 0
			if deep {
				from = k - 1
			}
			for i := 0; i <= from; i++ {
				if ok, _ := path.Match(rest, strings.Join(comps[i:k], "/")); ok {
					return true
				}
			}
		}
	}
	return false
}

func TestDockerignore(t *testing.T) {
	pats := dockerignore(t)
	for _, rel := range []string{".git", ".git/HEAD", "bin/ratelimitd", "config/testdata/fuzz/FuzzLoad/abc", "ratelimitd-overrides.json"} {
		if !ignored(pats, rel) {
			t.Errorf(".dockerignore keeps %s in the build context", rel)
		}
	}

	// Every file the image's build reads stays in: the module files, the
	// Go and embedded files of every package of ours the two programs
	// build from, and the quickstart config.
	need := []string{"go.mod", "go.sum"}
	quick, err := filepath.Glob(filepath.Join(root, "examples/quickstart/config/*"))
	if err != nil || len(quick) == 0 {
		t.Fatalf("examples/quickstart/config: %v", err)
	}
	for _, q := range quick {
		r, _ := filepath.Rel(root, q)
		need = append(need, filepath.ToSlash(r))
	}
	cmd := exec.Command("go", "list", "-deps", "-json=Dir,GoFiles,EmbedFiles,Module", "./cmd/ratelimitd", "./cmd/ratelimitctl")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			Dir                 string
			GoFiles, EmbedFiles []string
			Module              *struct{ Path string }
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || p.Module.Path != "github.com/ratelimitd/ratelimitd" {
			continue
		}
		for _, f := range slices.Concat(p.GoFiles, p.EmbedFiles) {
			r, err := filepath.Rel(abs, filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			need = append(need, filepath.ToSlash(r))
		}
	}
	if len(need) < 20 {
		t.Fatalf("only %d files needed: go list output changed?", len(need))
	}
	for _, rel := range need {
		if ignored(pats, rel) {
			t.Errorf(".dockerignore leaves out %s, which the image's build needs", rel)
		}
	}
}

func TestIgnoredMatcher(t *testing.T) {
	pats := []string{".git", "**/testdata", "**/*.test", "bin"}
	for rel, want := range map[string]bool{
		".git/objects/ab":            true,
		"a/.git":                     false,
		"testdata/x":                 true,
		"config/testdata/fuzz/F/x":   true,
		"config/loader.test":         true,
		"ratelimitd.test":            true,
		"bin/x":                      true,
		"cmd/bin/x":                  false,
		"cmd/ratelimitd/main.go":     false,
		"config/testdata_helpers.go": false,
	} {
		if got := ignored(pats, rel); got != want {
			t.Errorf("ignored(%q) = %v, want %v", rel, got, want)
		}
	}
}
