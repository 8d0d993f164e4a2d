package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/config"
)

// validate loads the config at path and writes each rule to stdout, one
// line each: its path, its limit, its flags. It returns 0, or 1 after
// writing every error to stderr, one line each ("file: path: message").
func validate(path string, opts config.Options, stdout, stderr io.Writer) int {
	cfg, err := config.Load(path, opts)
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				fmt.Fprintln(stderr, e.Error())
			}
		} else {
			fmt.Fprintln(stderr, err)
		}
		fmt.Fprintf(stderr, "%s: %d errors\n", path, countErrors(err))
		return 1
	}
	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 8, 2, ' ', 0)
	for _, r := range cfg.Rules() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Path, limitText(r), strings.Join(ruleFlags(r), " "))
	}
	tw.Flush()
	for line := range strings.Lines(table.String()) {
		fmt.Fprintln(stdout, strings.TrimRight(line, " \n"))
	}
	fmt.Fprintf(stderr, "%s: ok, %d rules, hash %s\n", path, len(cfg.Rules()), cfg.Hash())
	return 0
}

// limitText is a rule's limit as "10/minute", or "unlimited".
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
func ruleFlags(r *config.Rule) []string {
	var f []string
	if r.Name != "" {
		f = append(f, "name="+strconv.Quote(r.Name))
	}
	if !r.Unlimited && r.Limit.Algorithm != algorithms.FixedWindow {
		f = append(f, "algorithm="+r.Limit.Algorithm.String())
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
