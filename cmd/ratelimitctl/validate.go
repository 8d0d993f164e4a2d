package main

// validate, and the rule printer it shares with explain and config. The
// printer is copied from cmd/ratelimitd/validate.go (a package main, which
// nothing may import) so that both programs print rules alike; it adds
// the extensions ratelimitd -validate leaves out (policy, meter,
// max_override, charge_always) and each rule's file and line.

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/config"
)

const validateHelp = `PATH is a YAML file, or a directory whose *.yaml and *.yml files are
loaded as ratelimitd loads them. Prints one line per rule: its path, its
limits, its flags (name, algorithm, modes, policy...) and file:line; then
a summary line on standard error. Exits 1 after printing every error, one
per line ("file: path: message").

-o json prints {"path", "ok", "hash", "rules": [{"domain", "path",
"limits", "flags", "file", "line"}], "errors": [{"file", "path", "line",
"message"}]}.
`

// addConfigOptions defines the flags of config.Options on fs.
func addConfigOptions(fs *flag.FlagSet) *config.Options {
	o := &config.Options{}
	fs.BoolVar(&o.MergeDomains, "merge-domains", false, "let several config files declare the same domain (as ratelimitd -merge-domains)")
	fs.BoolVar(&o.TrailingWildcardsOnly, "trailing-wildcards-only", false, "* is a wildcard only at the end of a value (as ratelimitd -trailing-wildcards-only)")
	return o
}

// ruleJSON is a rule in validate's JSON.
type ruleJSON struct {
	Domain string   `json:"domain"`
	Path   string   `json:"path"`
	Limits string   `json:"limits"`
	Flags  []string `json:"flags"`
	File   string   `json:"file"`
	Line   int      `json:"line"`
}

// errorJSON is a config error in JSON.
type errorJSON struct {
	File    string `json:"file"`
	Path    string `json:"path"`
	Line    int    `json:"line"`
	Message string `json:"message"`
}

type validateJSON struct {
	Path   string      `json:"path"`
	OK     bool        `json:"ok"`
	Hash   string      `json:"hash,omitempty"`
	Rules  []ruleJSON  `json:"rules"`
	Errors []errorJSON `json:"errors"`
}

// validate is the validate command.
func (c *cli) validate(args []string) int {
	fs := c.flagSet()
	opts := addConfigOptions(fs)
	out := addOutput(fs)
	pos, code, ok := c.parse(fs, args, false)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return c.usagef("want one config path (a file or a directory), found %d arguments", len(pos))
	}
	path := pos[0]
	cfg, err := config.Load(path, *opts)
	if err != nil {
		if out.json {
			doc := validateJSON{Path: path, Rules: []ruleJSON{}, Errors: configErrorsJSON(err)}
			writeJSON(c.stdout, doc)
			return exitError
		}
		c.printConfigErrors(path, err)
		return exitError
	}
	if out.json {
		doc := validateJSON{Path: path, OK: true, Hash: cfg.Hash(), Rules: []ruleJSON{}, Errors: []errorJSON{}}
		for _, r := range cfg.Rules() {
			doc.Rules = append(doc.Rules, ruleJSON{Domain: r.Domain, Path: r.Path, Limits: limitText(r), Flags: nonNil(ruleFlags(r)), File: r.File, Line: r.Line})
		}
		writeJSON(c.stdout, doc)
		return exitOK
	}
	t := newTable(c.stdout)
	for _, r := range cfg.Rules() {
		t.row(r.Path, limitText(r), strings.Join(ruleFlags(r), " "), fileLine(r.File, r.Line))
	}
	t.flush()
	fmt.Fprintf(c.stderr, "%s: ok, %d rules, hash %s\n", path, len(cfg.Rules()), cfg.Hash())
	return exitOK
}

// printConfigErrors writes every error of a failed load to stderr, one
// per line, then their count, as ratelimitd -validate does.
func (c *cli) printConfigErrors(path string, err error) {
	var errs config.Errors
	n := 1
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(c.stderr, e.Error())
		}
		n = len(errs)
	} else {
		fmt.Fprintln(c.stderr, err)
	}
	fmt.Fprintf(c.stderr, "%s: %d errors\n", path, n)
}

func configErrorsJSON(err error) []errorJSON {
	var errs config.Errors
	if !errors.As(err, &errs) {
		return []errorJSON{{Message: err.Error()}}
	}
	out := make([]errorJSON, len(errs))
	for i, e := range errs {
		out[i] = errorJSON{File: e.File, Path: e.Path, Line: e.Line, Message: e.Message}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// fileLine writes "file:line", or "" when the file is unknown.
func fileLine(file string, line int) string {
	if file == "" {
		return ""
	}
	if line <= 0 {
		return file
	}
	return file + ":" + strconv.Itoa(line)
}

// limitText is a rule's limit as "10/minute", or "unlimited". Copied from
// cmd/ratelimitd/validate.go.
func limitText(r *config.Rule) string {
	if r.Unlimited {
		return "unlimited"
	}
	var parts []string
	for _, l := range r.Limits {
		switch {
		case l.Limit.Algorithm == algorithms.Concurrency:
			parts = append(parts, strconv.FormatUint(uint64(l.RequestsPerUnit), 10)+" in flight, lease "+time.Duration(l.Limit.Period*1000).String())
		case l.UnitMultiplier > 1:
			parts = append(parts, strconv.FormatUint(uint64(l.RequestsPerUnit), 10)+"/"+strconv.FormatUint(uint64(l.UnitMultiplier), 10)+" "+l.Unit.String()+"s")
		default:
			parts = append(parts, strconv.FormatUint(uint64(l.RequestsPerUnit), 10)+"/"+l.Unit.String())
		}
	}
	if len(parts) == 0 {
		return strconv.FormatUint(uint64(r.RequestsPerUnit), 10) + "/" + r.Unit.String()
	}
	return strings.Join(parts, " + ")
}

// ruleFlags lists what else than the limit a rule says, in config words.
// Copied from cmd/ratelimitd/validate.go, with policy, meter,
// max_override and charge_always added.
func ruleFlags(r *config.Rule) []string {
	var f []string
	if r.Name != "" {
		f = append(f, "name="+strconv.Quote(r.Name))
	}
	if !r.Unlimited && r.Limit.Algorithm != algorithms.FixedWindow {
		f = append(f, "algorithm="+r.Limit.Algorithm.String())
	}
	if r.Policy != "" {
		f = append(f, "policy="+r.Policy, "meter="+cmpOr(r.Meter, "requests"))
	}
	if r.MaxOverride != nil {
		f = append(f, "max_override="+strconv.Quote(r.MaxOverride.String()))
	}
	if r.ChargeAlways {
		f = append(f, "charge_always")
	}
	if r.ShadowMode {
		f = append(f, "shadow_mode")
	}
	if r.QuotaMode {
		f = append(f, "quota_mode")
	}
	if r.DetailedMetric {
		f = append(f, "detailed_metric")
	}
	if r.ShareThreshold() {
		f = append(f, "share_threshold")
	}
	if len(r.Replaces) > 0 {
		f = append(f, "replaces="+strings.Join(r.Replaces, ","))
	}
	return f
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
