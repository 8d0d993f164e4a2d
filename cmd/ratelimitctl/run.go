package main

// The command line: dispatch, flag parsing with flags anywhere among the
// arguments, exit codes, and the output helpers every command shares.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"
	"text/tabwriter"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ratelimitd/ratelimitd/config"
)

// Exit codes.
const (
	exitOK        = 0
	exitError     = 1 // connection, server error, invalid config
	exitUsage     = 2 // bad flags or arguments (also the server's InvalidArgument)
	exitNotFound  = 3 // no rule matches, no override
	exitOverLimit = 4 // check answered OVER_LIMIT
	exitDenied    = 5 // Unauthenticated, PermissionDenied, admin API off
)

// cli is one invocation: its inputs and outputs, and the command running.
type cli struct {
	ctx            context.Context
	getenv         func(string) string
	stdin          io.Reader
	stdout, stderr io.Writer
	name           string // the command, as in messages: "limits set"
}

// command is one subcommand.
type command struct {
	name    string
	args    string // synopsis of the arguments, after the name
	summary string
	help    string // more, after the synopsis; may be empty
	run     func(c *cli, args []string) int
}

// commands lists every command, in help order. "limits" dispatches to the
// "limits ..." entries.
func commands() []*command {
	return []*command{
		{name: "validate", args: "[flags] PATH", summary: "load a config file or directory and print its rules, or every error", help: validateHelp, run: (*cli).validate},
		{name: "explain", args: "-config PATH [-domain D] [flags] key=value...", summary: "which rule a descriptor matches, its limits and bucket keys (offline)", help: explainHelp, run: (*cli).explain},
		{name: "check", args: "-domain D [-hits N] [flags] key=value... [-- key=value...]", summary: "send one ShouldRateLimit and print the answer", help: checkHelp, run: (*cli).check},
		{name: "bench", args: "[-callers N] [-conns M] [-rate R] [-duration D | -requests N] [-noop-server] [flags]", summary: "load a ShouldRateLimit server and report calls/s and latency percentiles", help: benchHelp, run: (*cli).bench},
		{name: "noop-server", args: "[-listen ADDR]", summary: "serve a ShouldRateLimit that answers OK and does nothing: bench's ceiling, in a process of its own", help: noopServerHelp, run: (*cli).noopServe},
		{name: "limits set", args: "-domain D [-reason TEXT] [-algorithm A] [-burst N] [flags] key=value... VALUE", summary: "set the runtime limit of the descriptors with these entries", help: limitsSetHelp, run: (*cli).limitsSet},
		{name: "limits get", args: "-domain D [flags] key=value...", summary: "show the override set for exactly these entries", run: (*cli).limitsGet},
		{name: "limits unset", args: "-domain D [flags] key=value...", summary: "remove the override set for exactly these entries", run: (*cli).limitsUnset},
		{name: "limits list", args: "[-domain D] [-page-size N [-page-token T]] [flags]", summary: "list overrides (every page, unless -page-size is given)", help: limitsListHelp, run: (*cli).limitsList},
		{name: "inspect", args: "-domain D [flags] key=value...", summary: "what a descriptor matches on the server: rule, tier, override, usage of each bucket", run: (*cli).inspect},
		{name: "reset", args: "-domain D [flags] key=value...", summary: "forget the buckets of a descriptor, so that it starts with its whole budget", run: (*cli).reset},
		{name: "config", args: "[-rules] [flags]", summary: "describe the config the server has loaded (version, hash, files, rules)", run: (*cli).config},
		{name: "version", args: "[-o table|json]", summary: "print ratelimitctl's version", run: (*cli).version},
		{name: "help", args: "[command]", summary: "print this help, or a command's", run: (*cli).help},
	}
}

// findCommand returns the command named by the first words of args (two
// for "limits ..."), and the arguments after them.
func findCommand(args []string) (*command, []string, error) {
	name := args[0]
	rest := args[1:]
	if name == "limits" {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			return nil, nil, errors.New("limits needs a subcommand: get, set, unset or list")
		}
		name, rest = "limits "+rest[0], rest[1:]
	}
	for _, c := range commands() {
		if c.name == name {
			return c, rest, nil
		}
	}
	return nil, nil, fmt.Errorf("unknown command %q", name)
}

// run is ratelimitctl with its inputs passed in; it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{ctx: ctx, getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		c.usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		c.usage(stdout)
		return exitOK
	case "-version", "--version":
		args = append([]string{"version"}, args[1:]...)
	}
	if strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(stderr, "ratelimitctl: the command comes first: ratelimitctl <command> [flags] [arguments] (found flag %s)\n", args[0])
		fmt.Fprintln(stderr, "Run 'ratelimitctl help' for usage.")
		return exitUsage
	}
	cmd, rest, err := findCommand(args)
	if err != nil {
		fmt.Fprintf(stderr, "ratelimitctl: %v\n", err)
		fmt.Fprintln(stderr, "Run 'ratelimitctl help' for usage.")
		return exitUsage
	}
	c.name = cmd.name
	return cmd.run(c, rest)
}

// usage writes the overall help.
func (c *cli) usage(w io.Writer) {
	fmt.Fprint(w, `ratelimitctl is the operator CLI of ratelimitd.

Usage:
  ratelimitctl <command> [flags] [arguments]

Commands:
`)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, cmd := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", cmd.name, cmd.summary)
	}
	tw.Flush()
	fmt.Fprint(w, `
Flags may come before, between or after the arguments; -flag and --flag
are the same. A descriptor entry is key=value. Run 'ratelimitctl help
<command>' for a command's syntax and flags.

Exit codes:
  0  ok
  1  error: connection, server error, invalid config
  2  usage error: bad flags or arguments (also those the server refuses
     as InvalidArgument)
  3  not found: no rule matches the descriptor, no such override
  4  over limit: check was answered OVER_LIMIT
  5  permission denied: no or wrong token (Unauthenticated,
     PermissionDenied), or the server's admin API is off

Environment (a flag on the command line wins):
  RATELIMITCTL_ADDR        -addr, the server's gRPC (or admin) address
  RATELIMITCTL_TOKEN       -token, the admin API's bearer token
  RATELIMITCTL_TOKEN_FILE  -token-file, a file in ratelimitd's token-file format
  RATELIMITCTL_TLS, RATELIMITCTL_CA, RATELIMITCTL_CERT, RATELIMITCTL_KEY,
  RATELIMITCTL_TIMEOUT     -tls, -ca, -cert, -key, -timeout

See docs/ratelimitctl.md.
`)
}

// help is the help command.
func (c *cli) help(args []string) int {
	if len(args) == 0 {
		c.usage(c.stdout)
		return exitOK
	}
	cmd, rest, err := findCommand(args)
	if err != nil || len(rest) > 0 {
		if err == nil {
			err = fmt.Errorf("unexpected argument %q", rest[0])
		}
		return c.usagef("%v", err)
	}
	c.name = cmd.name
	return cmd.run(c, []string{"-h"})
}

// flagSet returns the flag set of the running command, with its help.
func (c *cli) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("ratelimitctl "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse reports errors itself
	return fs
}

// parse parses args into fs, flags anywhere among the positionals (see
// parseArgs), and returns the positionals. When it returns ok false the
// command must return code: 0 after -h, 2 after a usage error.
func (c *cli) parse(fs *flag.FlagSet, args []string, groups bool) (pos []string, code int, ok bool) {
	pos, err := parseArgs(fs, args, groups)
	if errors.Is(err, flag.ErrHelp) {
		c.commandHelp(fs)
		return nil, exitOK, false
	}
	if err != nil {
		return nil, c.usagef("%v", err), false
	}
	return pos, exitOK, true
}

// commandHelp writes the running command's help and flags to stdout.
func (c *cli) commandHelp(fs *flag.FlagSet) {
	for _, cmd := range commands() {
		if cmd.name != c.name {
			continue
		}
		fmt.Fprintf(c.stdout, "Usage: ratelimitctl %s %s\n\n%s.\n", cmd.name, cmd.args, upperFirst(cmd.summary))
		if cmd.help != "" {
			fmt.Fprintf(c.stdout, "\n%s", cmd.help)
		}
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprint(c.stdout, "\nFlags:\n")
		fs.SetOutput(c.stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	fmt.Fprint(c.stdout, "\nExit codes: 0 ok, 1 error, 2 usage error, 3 not found, 4 over limit, 5 permission denied.\n")
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// usagef reports a usage error of the running command and returns 2.
func (c *cli) usagef(format string, args ...any) int {
	name := c.name
	if name == "" {
		name = "help"
	}
	fmt.Fprintf(c.stderr, "ratelimitctl: %s: %s\n", name, fmt.Sprintf(format, args...))
	if c.name != "" && c.name != "help" {
		fmt.Fprintf(c.stderr, "Run 'ratelimitctl help %s' for usage.\n", c.name)
	} else {
		fmt.Fprintln(c.stderr, "Run 'ratelimitctl help' for usage.")
	}
	return exitUsage
}

// failf reports an error of the running command and returns code.
func (c *cli) failf(code int, format string, args ...any) int {
	fmt.Fprintf(c.stderr, "ratelimitctl: %s: %s\n", c.name, fmt.Sprintf(format, args...))
	return code
}

// parseArgs parses the flags of fs wherever they are among args and
// returns the other arguments, in order. Go's flag package stops at the
// first positional; operators write flags after them too
// ("limits get api_key=abc -domain api").
//
// An argument starting with '-' (other than "-" and "--") is a flag:
// -name, --name, -name=value, or -name value for a flag that is not
// boolean. "--" ends the flags (what follows is positional) unless groups
// is set: it is then returned as a positional, a separator of descriptor
// groups, and flags are still parsed after it. -h and -help return
// flag.ErrHelp unless fs defines them.
func parseArgs(fs *flag.FlagSet, args []string, groups bool) ([]string, error) {
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--" && groups:
			pos = append(pos, a)
			continue
		case a == "--":
			return append(pos, args[i+1:]...), nil
		case len(a) < 2 || a[0] != '-':
			pos = append(pos, a)
			continue
		}
		name := strings.TrimPrefix(a[1:], "-")
		if name == "" || name[0] == '-' || name[0] == '=' {
			return nil, fmt.Errorf("bad flag syntax: %s", a)
		}
		name, value, hasValue := strings.Cut(name, "=")
		f := fs.Lookup(name)
		if f == nil {
			if name == "h" || name == "help" {
				return nil, flag.ErrHelp
			}
			return nil, fmt.Errorf("flag provided but not defined: -%s", name)
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			if !hasValue {
				value = "true"
			}
		} else if !hasValue {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("flag needs an argument: -%s", name)
			}
			i++
			value = args[i]
		}
		if err := fs.Set(name, value); err != nil {
			return nil, fmt.Errorf("invalid value %q for flag -%s: %v", value, name, err)
		}
	}
	return pos, nil
}

// given reports which flags of fs were set on the command line.
func given(fs *flag.FlagSet) map[string]bool {
	m := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { m[f.Name] = true })
	return m
}

// parseEntries parses key=value arguments. The key must not be empty; the
// value may be.
func parseEntries(args []string) ([]config.Entry, error) {
	out := make([]config.Entry, 0, len(args))
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("descriptor entry %q: want key=value", a)
		}
		out = append(out, config.Entry{Key: k, Value: v})
	}
	return out, nil
}

// entriesText writes entries as "k=v, k2=v2".
func entriesText(es []config.Entry) string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Key + "=" + e.Value
	}
	return strings.Join(parts, ", ")
}

// output is the -o flag: table or json.
type output struct{ json bool }

func (o *output) String() string {
	if o.json {
		return "json"
	}
	return "table"
}

func (o *output) Set(s string) error {
	switch s {
	case "table":
		o.json = false
	case "json":
		o.json = true
	default:
		return errors.New("want table or json")
	}
	return nil
}

// addOutput defines -o on fs.
func addOutput(fs *flag.FlagSet) *output {
	o := &output{}
	fs.Var(o, "o", "output `format`: table (aligned, for people) or json (one document, for scripts)")
	return o
}

// table writes aligned columns, without trailing spaces.
type table struct {
	w  io.Writer
	b  bytes.Buffer
	tw *tabwriter.Writer
}

func newTable(w io.Writer) *table {
	t := &table{w: w}
	t.tw = tabwriter.NewWriter(&t.b, 0, 8, 2, ' ', 0)
	return t
}

func (t *table) row(cols ...string) { fmt.Fprintln(t.tw, strings.Join(cols, "\t")) }

func (t *table) flush() {
	t.tw.Flush()
	for line := range strings.Lines(t.b.String()) {
		fmt.Fprintln(t.w, strings.TrimRight(line, " \n"))
	}
	t.b.Reset()
}

// writeJSON writes v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeProto writes m as one indented JSON document: protojson with the
// proto field names (snake_case, as in admin.proto) and every field, set
// or not, so that scripts find the same fields in every answer. protojson
// varies its spacing on purpose; the document is compacted and indented
// again so that the output is stable.
func writeProto(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	var compact, out bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		return err
	}
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

// printable writes a bucket key for people: as Go's %q does, quoted, with
// every byte that is not printable escaped. Keys are binary-safe, and
// descriptor values may hold anything.
func printable(key []byte) string { return fmt.Sprintf("%q", key) }

// version is the version command.
func (c *cli) version(args []string) int {
	fs := c.flagSet()
	out := addOutput(fs)
	pos, code, ok := c.parse(fs, args, false)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return c.usagef("unexpected argument %q", pos[0])
	}
	v := versionInfo()
	if out.json {
		writeJSON(c.stdout, v)
		return exitOK
	}
	line := "ratelimitctl " + v.Version
	var extra []string
	if v.Revision != "" {
		extra = append(extra, "revision "+v.Revision)
	}
	if v.Modified {
		extra = append(extra, "modified")
	}
	if v.Time != "" {
		extra = append(extra, v.Time)
	}
	if len(extra) > 0 {
		line += " (" + strings.Join(extra, ", ") + ")"
	}
	fmt.Fprintln(c.stdout, line+" "+v.Go)
	return exitOK
}

// buildVersion is what the version command reports.
type buildVersion struct {
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified"`
	Go       string `json:"go"`
}

// versionInfo reads the build information the Go toolchain embeds: the
// module version ("(devel)" for a build from a checkout) and the VCS
// revision.
func versionInfo() buildVersion {
	v := buildVersion{Version: "(devel)"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v.Go = bi.GoVersion
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// domainsText lists domains for messages.
func domainsText(ds []string) string {
	if len(ds) == 0 {
		return "none"
	}
	return strings.Join(slices.Sorted(slices.Values(ds)), ", ")
}
