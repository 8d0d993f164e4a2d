package main

// inspect, reset and config: the admin API's views of a running server.

import (
	"fmt"
	"strconv"
	"strings"

	adminv1 "github.com/ratelimitd/ratelimitd/proto/ratelimitd/admin/v1"

	"github.com/ratelimitd/ratelimitd/config"
)

// descriptorCommand parses the -domain and entries of inspect and reset
// and dials.
func (c *cli) descriptorCommand(args []string) (client adminv1.AdminServiceClient, cn *conn, domain string, entries []config.Entry, out *output, code int, ok bool) {
	fs := c.flagSet()
	d := fs.String("domain", "", "the descriptor's `domain` (required)")
	cf := addConn(fs, true)
	out = addOutput(fs)
	pos, code, ok := c.parse(fs, args, false)
	if !ok {
		return nil, nil, "", nil, nil, code, false
	}
	if *d == "" {
		return nil, nil, "", nil, nil, c.usagef("-domain is required"), false
	}
	if len(pos) == 0 {
		return nil, nil, "", nil, nil, c.usagef("want the descriptor's entries: key=value..."), false
	}
	entries, err := parseEntries(pos)
	if err != nil {
		return nil, nil, "", nil, nil, c.usagef("%v", err), false
	}
	client, cn, code, ok = c.admin(fs, cf)
	if !ok {
		return nil, nil, "", nil, nil, code, false
	}
	return client, cn, *d, entries, out, exitOK, true
}

// inspect is the inspect command.
func (c *cli) inspect(args []string) int {
	client, cn, domain, entries, out, code, ok := c.descriptorCommand(args)
	if !ok {
		return code
	}
	defer cn.close()
	ctx, cancel := cn.call(c.ctx)
	defer cancel()
	resp, err := client.Inspect(ctx, &adminv1.InspectRequest{Domain: domain, Descriptor_: &adminv1.Descriptor{Entries: entriesProto(entries)}})
	if err != nil {
		return c.rpcFail(cn, err)
	}
	code = exitOK
	if !resp.GetMatched() {
		code = exitNotFound
	}
	if out.json {
		writeProto(c.stdout, resp)
		return code
	}
	if !resp.GetMatched() {
		return c.failf(exitNotFound, "no rule matches: no rule of domain %s matches %s (or the domain is unknown or disabled; explain -config says more)", domain, entriesText(entries))
	}
	t := newTable(c.stdout)
	rule := resp.GetRulePath()
	if fl := fileLine(resp.GetRuleFile(), int(resp.GetRuleLine())); fl != "" {
		rule += " (" + fl + ")"
	}
	t.row("rule", rule)
	if resp.GetTier() != "" {
		t.row("tier", resp.GetTier()+" (multiplier "+strconv.FormatFloat(resp.GetTierMultiplier(), 'g', -1, 64)+")")
	}
	if o := resp.GetOverride(); o != nil {
		desc := overrideValueText(o) + " (" + protoEntriesText(o.GetEntries())
		if o.GetAuthor() != "" {
			desc += ", by " + o.GetAuthor()
		}
		if o.GetUpdated() != nil {
			desc += ", " + timeText(o.GetUpdated(), true)
		}
		if o.GetReason() != "" {
			desc += ", " + strconv.Quote(o.GetReason())
		}
		t.row("override", desc+")")
	} else {
		t.row("override", "none")
	}
	if resp.GetPolicy() != "" {
		t.row("policy", resp.GetPolicy()+" (meter "+cmpOr(resp.GetMeter(), "requests")+")")
	}
	mode := "counted"
	switch {
	case resp.GetUnlimited():
		mode = "unlimited: never counted"
	case resp.GetTier() != "" && resp.GetTierMultiplier() == 0:
		mode = "blocked: the tier's multiplier is 0, every request is answered OVER_LIMIT"
	case resp.GetShadowMode():
		mode = "shadow_mode: counted, always answered OK"
	case resp.GetQuotaMode():
		mode = "quota_mode: counted, answered OK, violations in dynamic metadata"
	}
	t.row("mode", mode)
	t.flush()
	if len(resp.GetBuckets()) == 0 {
		return exitOK
	}
	fmt.Fprintln(c.stdout)
	t.row("#", "LIMIT", "USED", "REMAINING", "RESET", "KEY")
	for i, b := range resp.GetBuckets() {
		lim := limitProtoText(b.GetLimit())
		if n := b.GetLimit().GetName(); n != "" {
			lim += " (" + n + ")"
		}
		t.row(strconv.Itoa(i), lim, strconv.FormatInt(b.GetUsed(), 10), strconv.FormatUint(b.GetRemaining(), 10),
			shortDuration(b.GetResetAfter().AsDuration()), printable(b.GetKey()))
	}
	t.flush()
	return exitOK
}

// reset is the reset command.
func (c *cli) reset(args []string) int {
	client, cn, domain, entries, out, code, ok := c.descriptorCommand(args)
	if !ok {
		return code
	}
	defer cn.close()
	ctx, cancel := cn.call(c.ctx)
	defer cancel()
	resp, err := client.ResetBuckets(ctx, &adminv1.ResetBucketsRequest{Domain: domain, Descriptor_: &adminv1.Descriptor{Entries: entriesProto(entries)}})
	if err != nil {
		return c.rpcFail(cn, err)
	}
	if out.json {
		writeProto(c.stdout, resp)
		return exitOK
	}
	n := len(resp.GetKeys())
	fmt.Fprintf(c.stdout, "reset %d %s of %s: %s (%d held state)\n", n, plural(n, "bucket", "buckets"), domain, entriesText(entries), resp.GetExisted())
	for _, k := range resp.GetKeys() {
		fmt.Fprintf(c.stdout, "  %s\n", printable(k))
	}
	return exitOK
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// config is the config command.
func (c *cli) config(args []string) int {
	fs := c.flagSet()
	rules := fs.Bool("rules", false, "list every rule too")
	cf := addConn(fs, true)
	out := addOutput(fs)
	pos, code, ok := c.parse(fs, args, false)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return c.usagef("unexpected argument %q", pos[0])
	}
	client, cn, code, ok := c.admin(fs, cf)
	if !ok {
		return code
	}
	defer cn.close()
	ctx, cancel := cn.call(c.ctx)
	defer cancel()
	resp, err := client.GetConfig(ctx, &adminv1.GetConfigRequest{Rules: *rules})
	if err != nil {
		return c.rpcFail(cn, err)
	}
	if out.json {
		writeProto(c.stdout, resp)
		return exitOK
	}
	t := newTable(c.stdout)
	t.row("version", strconv.FormatInt(resp.GetVersion(), 10))
	t.row("hash", resp.GetHash())
	t.row("loaded_at", timeText(resp.GetLoadedAt(), resp.GetLoadedAt() != nil))
	t.row("files", cmpOr(strings.Join(resp.GetFiles(), ", "), "-"))
	t.row("domains", cmpOr(strings.Join(resp.GetDomains(), ", "), "-"))
	t.row("rules", strconv.Itoa(int(resp.GetRuleCount())))
	t.row("overrides", strconv.Itoa(int(resp.GetOverrideCount())))
	t.flush()
	if !*rules || len(resp.GetRules()) == 0 {
		return exitOK
	}
	fmt.Fprintln(c.stdout)
	for _, r := range resp.GetRules() {
		t.row(r.GetPath(), ruleProtoLimits(r), strings.Join(ruleProtoFlags(r), " "), fileLine(r.GetFile(), int(r.GetLine())))
	}
	t.flush()
	return exitOK
}

// ruleProtoLimits is a rule's limits, joined with " + ", or "unlimited".
func ruleProtoLimits(r *adminv1.Rule) string {
	if r.GetUnlimited() {
		return "unlimited"
	}
	parts := make([]string, len(r.GetLimits()))
	for i, l := range r.GetLimits() {
		parts[i] = limitProtoText(l)
	}
	return strings.Join(parts, " + ")
}

// ruleProtoFlags is ruleFlags for the admin API's Rule.
func ruleProtoFlags(r *adminv1.Rule) []string {
	var f []string
	if ls := r.GetLimits(); len(ls) > 0 && ls[0].GetName() != "" {
		f = append(f, "name="+strconv.Quote(ls[0].GetName()))
	}
	if r.GetPolicy() != "" {
		f = append(f, "policy="+r.GetPolicy(), "meter="+cmpOr(r.GetMeter(), "requests"))
	}
	if m := r.GetMaxOverride(); m != nil {
		f = append(f, "max_override="+strconv.Quote(limitProtoText(m)))
	}
	if r.GetShadowMode() {
		f = append(f, "shadow_mode")
	}
	if r.GetQuotaMode() {
		f = append(f, "quota_mode")
	}
	return f
}
