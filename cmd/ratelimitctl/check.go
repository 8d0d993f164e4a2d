package main

// check: one ShouldRateLimit, as Envoy would send it.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ratelimitd/ratelimitd/config"
)

const checkHelp = `Sends one envoy.service.ratelimit.v3 ShouldRateLimit to -addr (ratelimitd's
-grpc-addr) and prints the overall code, each descriptor's status (code,
limit, remaining, reset), the headers and the raw body. It consumes what
Envoy's call would: -hits 0 is Envoy's default, one hit.

Descriptors: the entries up to a lone -- are the first descriptor, the
entries after it the second, and so on:

  ratelimitctl check -domain api api_key=abc -- api_key=abc path=/v1/runs

Exits 0 for OK, 4 for OVER_LIMIT, 1 for an error.

-o json prints {"overall_code", "statuses": [{"code", "limit":
{"name", "requests_per_unit", "unit", "unit_multiplier", "text"} or null,
"remaining", "reset_seconds"}], "response_headers": [{"key", "value"}],
"request_headers": [...], "raw_body", "dynamic_metadata"}.
`

type currentLimitJSON struct {
	Name            string `json:"name,omitempty"`
	RequestsPerUnit uint32 `json:"requests_per_unit"`
	Unit            string `json:"unit"`
	UnitMultiplier  uint32 `json:"unit_multiplier"`
	Text            string `json:"text"`
}

type statusJSON struct {
	Code         string            `json:"code"`
	Limit        *currentLimitJSON `json:"limit"`
	Remaining    uint32            `json:"remaining"`
	ResetSeconds float64           `json:"reset_seconds"`
}

type headerJSON struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type checkJSON struct {
	OverallCode     string          `json:"overall_code"`
	Statuses        []statusJSON    `json:"statuses"`
	ResponseHeaders []headerJSON    `json:"response_headers"`
	RequestHeaders  []headerJSON    `json:"request_headers"`
	RawBody         string          `json:"raw_body"`
	DynamicMetadata json.RawMessage `json:"dynamic_metadata,omitempty"`
}

// check is the check command.
func (c *cli) check(args []string) int {
	fs := c.flagSet()
	domain := fs.String("domain", "", "the request's `domain` (required)")
	hits := fs.Uint("hits", 0, "the request's hits_addend: hits to consume per descriptor (0 means 1, as Envoy sends it)")
	cf := addConn(fs, false)
	out := addOutput(fs)
	pos, code, ok := c.parse(fs, args, true)
	if !ok {
		return code
	}
	if *domain == "" {
		return c.usagef("-domain is required")
	}
	if *hits > 1<<32-1 {
		return c.usagef("-hits %d is more than 4294967295", *hits)
	}
	groups, err := descriptorGroups(pos)
	if err != nil {
		return c.usagef("%v", err)
	}
	cn, code, ok := c.connect(fs, cf)
	if !ok {
		return code
	}
	defer cn.close()
	req := &rlsv3.RateLimitRequest{Domain: *domain, HitsAddend: uint32(*hits)}
	for _, g := range groups {
		d := &commonv3.RateLimitDescriptor{}
		for _, e := range g {
			d.Entries = append(d.Entries, &commonv3.RateLimitDescriptor_Entry{Key: e.Key, Value: e.Value})
		}
		req.Descriptors = append(req.Descriptors, d)
	}
	ctx, cancel := cn.call(c.ctx)
	defer cancel()
	resp, err := rlsv3.NewRateLimitServiceClient(cn.cc).ShouldRateLimit(ctx, req)
	if err != nil {
		return c.rpcFail(cn, err)
	}
	doc := checkDoc(resp)
	if out.json {
		writeJSON(c.stdout, doc)
	} else {
		c.printCheck(doc)
	}
	switch resp.GetOverallCode() {
	case rlsv3.RateLimitResponse_OK:
		return exitOK
	case rlsv3.RateLimitResponse_OVER_LIMIT:
		return exitOverLimit
	}
	return c.failf(exitError, "the answer's overall code is %s", resp.GetOverallCode())
}

// descriptorGroups splits positionals at each "--" into descriptors.
func descriptorGroups(pos []string) ([][]config.Entry, error) {
	var groups [][]config.Entry
	start := 0
	for i := 0; i <= len(pos); i++ {
		if i < len(pos) && pos[i] != "--" {
			continue
		}
		if i == start {
			if len(pos) == 0 {
				return nil, fmt.Errorf("want at least one descriptor: key=value... [-- key=value...]")
			}
			return nil, fmt.Errorf("descriptor %d is empty: -- separates descriptors, each of one or more key=value", len(groups)+1)
		}
		g, err := parseEntries(pos[start:i])
		if err != nil {
			return nil, err
		}
		groups = append(groups, g)
		start = i + 1
	}
	return groups, nil
}

// checkDoc converts a response to check's JSON shape.
func checkDoc(resp *rlsv3.RateLimitResponse) checkJSON {
	doc := checkJSON{
		OverallCode:     resp.GetOverallCode().String(),
		Statuses:        []statusJSON{},
		ResponseHeaders: headersJSON(resp.GetResponseHeadersToAdd()),
		RequestHeaders:  headersJSON(resp.GetRequestHeadersToAdd()),
		RawBody:         string(resp.GetRawBody()),
	}
	for _, st := range resp.GetStatuses() {
		s := statusJSON{Code: st.GetCode().String(), Remaining: st.GetLimitRemaining()}
		if d := st.GetDurationUntilReset(); d != nil {
			s.ResetSeconds = d.AsDuration().Seconds()
		}
		if cl := st.GetCurrentLimit(); cl != nil {
			um := max(cl.GetUnitMultiplier().GetValue(), 1)
			s.Limit = &currentLimitJSON{
				Name:            cl.GetName(),
				RequestsPerUnit: cl.GetRequestsPerUnit(),
				Unit:            cl.GetUnit().String(),
				UnitMultiplier:  um,
				Text:            currentLimitText(cl.GetRequestsPerUnit(), config.Unit(cl.GetUnit()), um),
			}
		}
		doc.Statuses = append(doc.Statuses, s)
	}
	if md := resp.GetDynamicMetadata(); md != nil {
		if b, err := protojson.Marshal(md); err == nil {
			var compact bytes.Buffer
			if json.Compact(&compact, b) == nil {
				doc.DynamicMetadata = compact.Bytes()
			}
		}
	}
	return doc
}

// currentLimitText writes a current_limit as config.RuleLimit.String does
// ("4 per minute"); Envoy's units are config's.
func currentLimitText(rpu uint32, u config.Unit, um uint32) string {
	if config.UnitPeriod(u) == 0 {
		return strconv.FormatUint(uint64(rpu), 10) + " (no unit)"
	}
	l := config.RuleLimit{RequestsPerUnit: rpu, Unit: u, UnitMultiplier: um}
	l.Limit.Rate = int64(rpu)
	l.Limit.Period = config.UnitPeriod(u) * int64(um)
	return l.String()
}

func headersJSON(hs []*corev3.HeaderValue) []headerJSON {
	out := []headerJSON{}
	for _, h := range hs {
		v := h.GetValue()
		if v == "" && len(h.GetRawValue()) > 0 {
			v = string(h.GetRawValue())
		}
		out = append(out, headerJSON{Key: h.GetKey(), Value: v})
	}
	return out
}

// printCheck writes check's answer as a table.
func (c *cli) printCheck(doc checkJSON) {
	fmt.Fprintf(c.stdout, "overall: %s\n\n", doc.OverallCode)
	t := newTable(c.stdout)
	t.row("#", "CODE", "LIMIT", "REMAINING", "RESET")
	for i, s := range doc.Statuses {
		limit := "-"
		if s.Limit != nil {
			limit = s.Limit.Text
			if s.Limit.Name != "" {
				limit += " (" + s.Limit.Name + ")"
			}
		}
		t.row(strconv.Itoa(i), s.Code, limit, strconv.FormatUint(uint64(s.Remaining), 10), shortDuration(time.Duration(s.ResetSeconds*float64(time.Second))))
	}
	t.flush()
	fmt.Fprintln(c.stdout, "\nresponse headers:")
	printHeaders(c, doc.ResponseHeaders)
	if len(doc.RequestHeaders) > 0 {
		fmt.Fprintln(c.stdout, "\nrequest headers:")
		printHeaders(c, doc.RequestHeaders)
	}
	fmt.Fprintln(c.stdout, "\nbody:")
	if doc.RawBody == "" {
		fmt.Fprintln(c.stdout, "  (none)")
	} else {
		for line := range strings.Lines(doc.RawBody) {
			fmt.Fprintln(c.stdout, "  "+strings.TrimRight(line, "\n"))
		}
	}
	if len(doc.DynamicMetadata) > 0 {
		fmt.Fprintf(c.stdout, "\ndynamic metadata:\n  %s\n", doc.DynamicMetadata)
	}
}

func printHeaders(c *cli, hs []headerJSON) {
	if len(hs) == 0 {
		fmt.Fprintln(c.stdout, "  (none)")
		return
	}
	for _, h := range hs {
		fmt.Fprintf(c.stdout, "  %s: %s\n", h.Key, h.Value)
	}
}

// shortDuration writes d as a Go duration without trailing zero units:
// 42s, 1m, 1h30m; "-" for 0.
func shortDuration(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
