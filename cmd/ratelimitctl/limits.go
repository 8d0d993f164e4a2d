package main

// limits get|set|unset|list: the admin API's runtime overrides.

import (
	"flag"
	"fmt"
	"strings"
	"time"

	adminv1 "github.com/ratelimitd/ratelimitd/proto/ratelimitd/admin/v1"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/config"
)

const limitsSetHelp = `The entries name the descriptors the override applies to: those of
domain D that contain all of them (the override with the most entries
wins). The last argument is the value:

  500/minute, 10/s, 1000/90m   a limit (n/unit: s, sec, second, m, min,
                               minute, h, hour, d, day, week, month, year,
                               or a Go duration); with -algorithm and
                               -burst, else the matched rule's
  unlimited                    no limit (refused for a rule with a
                               max_override)
  policy=NAME                  the limits of a policy of the domain's config

  ratelimitctl limits set -domain api api_key=abc 500/minute -reason "ticket 42"
  ratelimitctl limits set -domain api api_key=abc unlimited
  ratelimitctl limits set -domain api api_key=abc policy=pro

On a concurrency rule the limit's number is max_in_flight and the rule
keeps its lease (write it as a rate: 50/minute). The server refuses a
limit above a rule's max_override, naming the ceiling (exit 1).
`

const limitsListHelp = `Lists every override (of domain D, with -domain), following the pages.
With -page-size, prints one page of at most N and, when more follow,
the -page-token of the next one on standard error.
`

// admin dials for an admin command.
func (c *cli) admin(fs *flag.FlagSet, cf *connFlags) (adminv1.AdminServiceClient, *conn, int, bool) {
	cn, code, ok := c.connect(fs, cf)
	if !ok {
		return nil, nil, code, false
	}
	return adminv1.NewAdminServiceClient(cn.cc), cn, exitOK, true
}

// entriesProto converts entries for the admin API.
func entriesProto(es []config.Entry) []*adminv1.Entry {
	out := make([]*adminv1.Entry, len(es))
	for i, e := range es {
		out[i] = &adminv1.Entry{Key: e.Key, Value: e.Value}
	}
	return out
}

// protoEntriesText writes the admin API's entries as "k=v, k2=v2".
func protoEntriesText(es []*adminv1.Entry) string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.GetKey() + "=" + e.GetValue()
	}
	return strings.Join(parts, ", ")
}

// overrideValueText describes an override's value: "500 per minute",
// "unlimited", "policy pro"; "none" for nil.
func overrideValueText(o *adminv1.Override) string {
	if o == nil {
		return "none"
	}
	switch v := o.GetValue().(type) {
	case *adminv1.Override_Unlimited:
		return "unlimited"
	case *adminv1.Override_Policy:
		return "policy " + v.Policy
	case *adminv1.Override_Limit:
		return limitProtoText(v.Limit)
	}
	return "none"
}

// limitProtoText is a Limit's text, as the server wrote it, or built
// from its fields.
func limitProtoText(l *adminv1.Limit) string {
	if l.GetText() != "" {
		return l.GetText()
	}
	u, err := config.ParseUnit(l.GetUnit())
	if err != nil {
		return fmt.Sprintf("%d", l.GetRequestsPerUnit())
	}
	return currentLimitText(l.GetRequestsPerUnit(), u, max(l.GetUnitMultiplier(), 1))
}

// timeText writes a timestamp in UTC, RFC 3339; "-" when absent.
func timeText(ts interface{ AsTime() time.Time }, valid bool) string {
	if !valid {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// overrideRows writes an override's fields as rows of t.
func overrideRows(t *table, o *adminv1.Override) {
	t.row("domain", o.GetDomain())
	t.row("entries", protoEntriesText(o.GetEntries()))
	t.row("value", overrideValueText(o))
	t.row("reason", cmpOr(o.GetReason(), "-"))
	t.row("author", cmpOr(o.GetAuthor(), "-"))
	t.row("updated", timeText(o.GetUpdated(), o.GetUpdated() != nil))
}

// limitsSet is the limits set command.
func (c *cli) limitsSet(args []string) int {
	fs := c.flagSet()
	domain := fs.String("domain", "", "the override's `domain` (required)")
	reason := fs.String("reason", "", "why it is set, free `text`: stored with the override and logged")
	alg := fs.String("algorithm", "", "algorithm `name` of a limit: fixed_window, sliding_window, token_bucket or gcra (default: the matched rule's)")
	burst := fs.Int64("burst", 0, "burst `n` of a limit, for token_bucket and gcra (default: the rule's)")
	cf := addConn(fs, true)
	out := addOutput(fs)
	pos, code, ok := c.parse(fs, args, false)
	if !ok {
		return code
	}
	if *domain == "" {
		return c.usagef("-domain is required")
	}
	if len(pos) < 2 {
		return c.usagef("want key=value... VALUE: the entries, then the value (a limit such as 500/minute, unlimited, or policy=NAME)")
	}
	entries, err := parseEntries(pos[:len(pos)-1])
	if err != nil {
		return c.usagef("%v", err)
	}
	value := pos[len(pos)-1]
	ov := &adminv1.Override{Domain: *domain, Entries: entriesProto(entries), Reason: *reason}
	isLimit := false
	switch name, isPolicy := strings.CutPrefix(value, "policy="); {
	case value == "unlimited":
		ov.Value = &adminv1.Override_Unlimited{Unlimited: true}
	case isPolicy:
		if name == "" {
			return c.usagef("policy= needs a policy name: policy=NAME")
		}
		ov.Value = &adminv1.Override_Policy{Policy: name}
	case strings.Contains(value, "="):
		return c.usagef("the last argument is the value (a limit such as 500/minute, unlimited, or policy=NAME), found the entry %q", value)
	default:
		l, err := config.ParseLimitSpec(value)
		if err != nil {
			return c.usagef("%s", strings.TrimPrefix(err.Error(), "config: "))
		}
		if l.Limit.Algorithm == algorithms.Concurrency {
			return c.usagef("limit %q: an override cannot set a concurrency limit's lease; on a concurrency rule write max_in_flight as a rate, such as %d/minute (the rule keeps its lease)", value, l.RequestsPerUnit)
		}
		isLimit = true
		ov.Value = &adminv1.Override_Limit{Limit: &adminv1.Limit{
			RequestsPerUnit: l.RequestsPerUnit,
			Unit:            l.Unit.String(),
			UnitMultiplier:  l.UnitMultiplier,
			Algorithm:       *alg,
			Burst:           *burst,
		}}
	}
	if set := given(fs); !isLimit && (set["algorithm"] || set["burst"]) {
		return c.usagef("-algorithm and -burst go with a limit such as 500/minute, not %s", value)
	}
	client, cn, code, ok := c.admin(fs, cf)
	if !ok {
		return code
	}
	defer cn.close()
	ctx, cancel := cn.call(c.ctx)
	defer cancel()
	resp, err := client.SetOverride(ctx, &adminv1.SetOverrideRequest{Override: ov})
	if err != nil {
		return c.rpcFail(cn, err)
	}
	if out.json {
		writeProto(c.stdout, resp)
		return exitOK
	}
	t := newTable(c.stdout)
	overrideRows(t, resp.GetOverride())
	t.row("previous", overrideValueText(resp.GetPrevious()))
	t.flush()
	return exitOK
}

// overrideTarget parses the -domain and entries of get and unset.
func (c *cli) overrideTarget(args []string, verb string) (entries []config.Entry, domain string, cf *connFlags, out *output, fs *flag.FlagSet, code int, ok bool) {
	f := c.flagSet()
	d := f.String("domain", "", "the override's `domain` (required)")
	cf = addConn(f, true)
	out = addOutput(f)
	pos, code, ok := c.parse(f, args, false)
	if !ok {
		return nil, "", nil, nil, nil, code, false
	}
	if *d == "" {
		return nil, "", nil, nil, nil, c.usagef("-domain is required"), false
	}
	if len(pos) == 0 {
		return nil, "", nil, nil, nil, c.usagef("want the entries of the override to %s: key=value...", verb), false
	}
	entries, err := parseEntries(pos)
	if err != nil {
		return nil, "", nil, nil, nil, c.usagef("%v", err), false
	}
	return entries, *d, cf, out, f, exitOK, true
}

// limitsGet is the limits get command.
func (c *cli) limitsGet(args []string) int {
	entries, domain, cf, out, fs, code, ok := c.overrideTarget(args, "show")
	if !ok {
		return code
	}
	client, cn, code, ok := c.admin(fs, cf)
	if !ok {
		return code
	}
	defer cn.close()
	ctx, cancel := cn.call(c.ctx)
	defer cancel()
	resp, err := client.GetOverride(ctx, &adminv1.GetOverrideRequest{Domain: domain, Entries: entriesProto(entries)})
	if err != nil {
		return c.rpcFail(cn, err)
	}
	if out.json {
		writeProto(c.stdout, resp)
		return exitOK
	}
	t := newTable(c.stdout)
	overrideRows(t, resp.GetOverride())
	t.flush()
	return exitOK
}

// limitsUnset is the limits unset command.
func (c *cli) limitsUnset(args []string) int {
	entries, domain, cf, out, fs, code, ok := c.overrideTarget(args, "remove")
	if !ok {
		return code
	}
	client, cn, code, ok := c.admin(fs, cf)
	if !ok {
		return code
	}
	defer cn.close()
	ctx, cancel := cn.call(c.ctx)
	defer cancel()
	resp, err := client.DeleteOverride(ctx, &adminv1.DeleteOverrideRequest{Domain: domain, Entries: entriesProto(entries)})
	if err != nil {
		return c.rpcFail(cn, err)
	}
	if out.json {
		writeProto(c.stdout, resp)
		return exitOK
	}
	t := newTable(c.stdout)
	t.row("removed", domain+": "+entriesText(entries))
	t.row("was", overrideValueText(resp.GetPrevious()))
	t.flush()
	return exitOK
}

// limitsList is the limits list command.
func (c *cli) limitsList(args []string) int {
	fs := c.flagSet()
	domain := fs.String("domain", "", "only this `domain`'s overrides (default: every domain's)")
	pageSize := fs.Int("page-size", 0, "print one page of at most `n` overrides (1 to 1000) instead of all")
	pageToken := fs.String("page-token", "", "start at this `token`, from a previous page")
	cf := addConn(fs, true)
	out := addOutput(fs)
	pos, code, ok := c.parse(fs, args, false)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return c.usagef("unexpected argument %q (filter by domain with -domain)", pos[0])
	}
	onePage := given(fs)["page-size"]
	if onePage && (*pageSize < 1 || *pageSize > 1000) {
		return c.usagef("-page-size must be from 1 to 1000")
	}
	client, cn, code, ok := c.admin(fs, cf)
	if !ok {
		return code
	}
	defer cn.close()
	all := &adminv1.ListOverridesResponse{}
	token := *pageToken
	for {
		ctx, cancel := cn.call(c.ctx)
		resp, err := client.ListOverrides(ctx, &adminv1.ListOverridesRequest{Domain: *domain, PageSize: int32(*pageSize), PageToken: token})
		cancel()
		if err != nil {
			return c.rpcFail(cn, err)
		}
		all.Overrides = append(all.Overrides, resp.GetOverrides()...)
		next := resp.GetNextPageToken()
		if onePage || next == "" {
			all.NextPageToken = next
			break
		}
		if next == token {
			return c.failf(exitError, "the server returned the same page token twice: %q", next)
		}
		token = next
	}
	if out.json {
		writeProto(c.stdout, all)
		return exitOK
	}
	if len(all.GetOverrides()) == 0 {
		fmt.Fprintln(c.stdout, "no overrides")
	} else {
		t := newTable(c.stdout)
		t.row("DOMAIN", "ENTRIES", "VALUE", "AUTHOR", "UPDATED", "REASON")
		for _, o := range all.GetOverrides() {
			t.row(o.GetDomain(), protoEntriesText(o.GetEntries()), overrideValueText(o), cmpOr(o.GetAuthor(), "-"),
				timeText(o.GetUpdated(), o.GetUpdated() != nil), cmpOr(o.GetReason(), "-"))
		}
		t.flush()
	}
	if all.GetNextPageToken() != "" {
		fmt.Fprintf(c.stderr, "more: next page with -page-token %s\n", all.GetNextPageToken())
	}
	return exitOK
}
