package server

// The admin API (proto/ratelimitd/admin/v1): runtime overrides, inspection,
// bucket resets and the loaded config.
//
// Security: the API is off unless tokens are configured; a call then says
// how to turn it on. Every call needs "authorization: Bearer <token>"; the
// token is compared with every configured token in constant time (SHA-256
// digests, so lengths leak nothing either), and the caller is known by the
// token's name, plus the subject of its client certificate when the admin
// listener uses mTLS. Every change is logged at Info as "admin change" with
// who, what, and the old and new values.
//
// Overrides are written to the override store (a Redis hash, or a file for
// the memory backend); every replica reads the store on its own poll
// (overrides.Watcher), and the replica that made a change refreshes at once.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/config"
	"github.com/ratelimitd/ratelimitd/overrides"
	adminv1 "github.com/ratelimitd/ratelimitd/proto/ratelimitd/admin/v1"
)

// AdminToken is one bearer token of the admin API and the name its changes
// are logged under.
type AdminToken struct {
	Name   string
	digest [sha256.Size]byte
}

// minTokenLen is the shortest token accepted: guessing must be hopeless.
const minTokenLen = 16

// ParseAdminTokens reads a token file: one token per line, optionally
// preceded by a name and a space ("alice 3f9c..."), blank lines and lines
// starting with # ignored. A token without a name is named "token-<line>".
// Tokens shorter than 16 bytes and repeated names are errors.
func ParseAdminTokens(data []byte) ([]AdminToken, error) {
	var toks []AdminToken
	names := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		var name, tok string
		switch len(fields) {
		case 1:
			name, tok = fmt.Sprintf("token-%d", line), fields[0]
		case 2:
			name, tok = fields[0], fields[1]
		default:
			return nil, fmt.Errorf("line %d: want a token, or a name and a token, separated by a space", line)
		}
		if len(tok) < minTokenLen {
			return nil, fmt.Errorf("line %d: token of %s is %d bytes long, shorter than %d", line, name, len(tok), minTokenLen)
		}
		if first, dup := names[name]; dup {
			return nil, fmt.Errorf("line %d: name %s is used on line %d already", line, name, first)
		}
		names[name] = line
		toks = append(toks, AdminToken{Name: name, digest: sha256.Sum256([]byte(tok))})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, errors.New("no token found: want one token per line")
	}
	return toks, nil
}

// AdminOptions configure the admin API.
type AdminOptions struct {
	// Tokens are the accepted bearer tokens. None turns the API off: every
	// call answers FailedPrecondition saying how to turn it on.
	Tokens []AdminToken
	// Store keeps the overrides; Watcher is the server's view of it (the
	// same as Options.Overrides reads). Both are required when Tokens are
	// set.
	Store   overrides.Store
	Watcher *overrides.Watcher
}

// Admin serves ratelimitd.admin.v1.AdminService for a Server.
type Admin struct {
	adminv1.UnimplementedAdminServiceServer
	s *Server
	o AdminOptions
}

// NewAdmin returns the admin API of s. It fails when tokens are set without
// a store and a watcher.
func (s *Server) NewAdmin(o AdminOptions) (*Admin, error) {
	if len(o.Tokens) > 0 && (o.Store == nil || o.Watcher == nil) {
		return nil, errors.New("server: admin: a store and a watcher are required")
	}
	return &Admin{s: s, o: o}, nil
}

// Register registers the admin service on g.
func (a *Admin) Register(g *grpc.Server) { adminv1.RegisterAdminServiceServer(g, a) }

// errAdminOff is the answer of every call when no token is configured.
var errAdminOff = status.Error(codes.FailedPrecondition,
	"the admin API is off: start ratelimitd with -admin-token-file naming a file of bearer tokens (one per line, optionally \"name token\"), and optionally -admin-addr for its own listener")

// authorize returns who is calling, or the gRPC error to answer.
func (a *Admin) authorize(ctx context.Context) (string, error) {
	if len(a.o.Tokens) == 0 {
		return "", errAdminOff
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var tok string
	for _, v := range md.Get("authorization") {
		if t, ok := strings.CutPrefix(v, "Bearer "); ok {
			tok = strings.TrimSpace(t)
			break
		}
	}
	if tok == "" {
		return "", status.Error(codes.Unauthenticated, "admin API: missing \"authorization: Bearer <token>\" metadata")
	}
	d := sha256.Sum256([]byte(tok))
	found := -1
	for i := range a.o.Tokens {
		// Every token is compared, so the time taken says nothing about
		// which one matched or how much of one did.
		if subtle.ConstantTimeCompare(d[:], a.o.Tokens[i].digest[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", status.Error(codes.Unauthenticated, "admin API: the bearer token is not valid")
	}
	who := a.o.Tokens[found].Name
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			who += " (certificate " + ti.State.PeerCertificates[0].Subject.String() + ")"
		}
	}
	return who, nil
}

// snapshotOrFail returns the config in use or FailedPrecondition.
func (a *Admin) snapshot() (*snapshot, error) {
	sn := a.s.snap.Load()
	if sn == nil {
		return nil, status.Error(codes.FailedPrecondition, "no rate limit configuration loaded")
	}
	return sn, nil
}

// audit logs one change.
func (a *Admin) audit(who, action string, attrs ...any) {
	a.s.m.adminChanges.WithLabelValues(action).Inc()
	a.s.log.Info("admin change", append([]any{"who", who, "action", action}, attrs...)...)
}

// SetOverride implements adminv1.AdminServiceServer.
func (a *Admin) SetOverride(ctx context.Context, req *adminv1.SetOverrideRequest) (*adminv1.SetOverrideResponse, error) {
	who, err := a.authorize(ctx)
	if err != nil {
		return nil, err
	}
	o, err := overrideFromProto(req.GetOverride())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	sn, err := a.snapshot()
	if err != nil {
		return nil, err
	}
	if err := checkOverride(sn.cfg, o); err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	o.Author = who
	o.Updated = a.s.now().UTC().Truncate(time.Millisecond)
	b, err := overrides.Marshal(o)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	id := overrides.ID(o.Domain, o.Entries)
	old, err := a.o.Store.Put(ctx, id, b)
	if err != nil {
		return nil, storeError(err)
	}
	resp := &adminv1.SetOverrideResponse{Override: overrideToProto(o)}
	var prev *overrides.Override
	if old != nil {
		if prev, err = overrides.Unmarshal(old); err == nil {
			resp.Previous = overrideToProto(prev)
		}
	}
	a.audit(who, "set_override", "domain", o.Domain, "entries", entriesText(o.Entries), "old", overrideDescription(prev), "new", overrideDescription(o), "reason", o.Reason)
	a.refresh(ctx)
	return resp, nil
}

// refresh makes this replica see its own change at once.
func (a *Admin) refresh(ctx context.Context) {
	if err := a.o.Watcher.Refresh(ctx); err != nil {
		a.s.log.Warn("admin: override refresh failed; the next poll will retry", "error", err.Error())
	}
}

// storeError maps an override store failure to a gRPC error.
func storeError(err error) error {
	if errors.Is(err, backends.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.Unavailable, "override store: "+err.Error())
	}
	return status.Error(codes.Internal, "override store: "+err.Error())
}

// GetOverride implements adminv1.AdminServiceServer.
func (a *Admin) GetOverride(ctx context.Context, req *adminv1.GetOverrideRequest) (*adminv1.GetOverrideResponse, error) {
	if _, err := a.authorize(ctx); err != nil {
		return nil, err
	}
	ents, err := entriesFromProto(req.GetEntries())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	a.refresh(ctx)
	o := a.o.Watcher.Current().Get(req.GetDomain(), ents)
	if o == nil {
		return nil, status.Errorf(codes.NotFound, "no override for %s in domain %q", entriesText(ents), req.GetDomain())
	}
	return &adminv1.GetOverrideResponse{Override: overrideToProto(o)}, nil
}

// DeleteOverride implements adminv1.AdminServiceServer.
func (a *Admin) DeleteOverride(ctx context.Context, req *adminv1.DeleteOverrideRequest) (*adminv1.DeleteOverrideResponse, error) {
	who, err := a.authorize(ctx)
	if err != nil {
		return nil, err
	}
	ents, err := entriesFromProto(req.GetEntries())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if req.GetDomain() == "" || len(ents) == 0 {
		return nil, status.Error(codes.InvalidArgument, "domain and at least one entry are required")
	}
	old, err := a.o.Store.Delete(ctx, overrides.ID(req.GetDomain(), ents))
	if err != nil {
		return nil, storeError(err)
	}
	if old == nil {
		return nil, status.Errorf(codes.NotFound, "no override for %s in domain %q", entriesText(ents), req.GetDomain())
	}
	resp := &adminv1.DeleteOverrideResponse{}
	prev, perr := overrides.Unmarshal(old)
	if perr == nil {
		resp.Previous = overrideToProto(prev)
	}
	a.audit(who, "delete_override", "domain", req.GetDomain(), "entries", entriesText(ents), "old", overrideDescription(prev), "new", "none")
	a.refresh(ctx)
	return resp, nil
}

// ListOverrides implements adminv1.AdminServiceServer.
func (a *Admin) ListOverrides(ctx context.Context, req *adminv1.ListOverridesRequest) (*adminv1.ListOverridesResponse, error) {
	if _, err := a.authorize(ctx); err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, status.Error(codes.InvalidArgument, "page_size must not be negative")
	case size == 0:
		size = 100
	case size > 1000:
		size = 1000
	}
	after := ""
	if t := req.GetPageToken(); t != "" {
		b, err := base64.RawURLEncoding.DecodeString(t)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, "page_token is not one this server returned")
		}
		after = string(b)
	}
	a.refresh(ctx)
	list := a.o.Watcher.Current().List(req.GetDomain())
	resp := &adminv1.ListOverridesResponse{}
	for _, o := range list {
		id := overrides.ID(o.Domain, o.Entries)
		if after != "" && id <= after {
			continue
		}
		if len(resp.Overrides) == size {
			last := resp.Overrides[len(resp.Overrides)-1].GetId()
			resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(last))
			break
		}
		resp.Overrides = append(resp.Overrides, overrideToProto(o))
	}
	return resp, nil
}

// inspection is what a descriptor matches, resolved as ShouldRateLimit
// would, without a backend call.
type inspection struct {
	rule     *config.Rule
	entries  []config.Entry // tier and idempotency entries removed
	tier     string
	mult     float64
	override *overrides.Override
	res      resolution
	limits   []config.RuleLimit
	keys     [][]byte
}

// inspect resolves a descriptor of domain.
func (a *Admin) inspect(sn *snapshot, domain string, in []config.Entry) *inspection {
	cfg := sn.cfg
	dom := cfg.Domain(domain)
	ins := &inspection{mult: 1}
	if dom != nil && dom.Disabled {
		return ins
	}
	tierVal := ""
	for _, e := range in {
		switch {
		case dom != nil && dom.Tiers != nil && e.Key == dom.Tiers.Key:
			tierVal = e.Value
		case dom != nil && dom.Idempotency != nil && e.Key == dom.Idempotency.Key:
		default:
			ins.entries = append(ins.entries, e)
		}
	}
	if dom != nil && dom.Tiers != nil {
		ins.mult, ins.tier = dom.Tiers.Multiplier(tierVal)
	}
	if len(ins.entries) == 0 {
		return ins
	}
	ins.rule = cfg.Match(domain, ins.entries)
	if ins.rule == nil {
		return ins
	}
	if a.o.Watcher != nil {
		ins.override = a.o.Watcher.Current().Lookup(domain, ins.entries)
	}
	ins.limits, ins.res = resolve(nil, ins.rule, ins.override, dom, ins.mult)
	for k := range ins.limits {
		key := append([]byte(a.s.o.KeyPrefix), nil...)
		ins.keys = append(ins.keys, ins.rule.AppendLimitKeyFor(key, ins.entries, &ins.limits[k], k))
	}
	return ins
}

// Inspect implements adminv1.AdminServiceServer.
func (a *Admin) Inspect(ctx context.Context, req *adminv1.InspectRequest) (*adminv1.InspectResponse, error) {
	if _, err := a.authorize(ctx); err != nil {
		return nil, err
	}
	ents, err := entriesFromProto(req.GetDescriptor_().GetEntries())
	if err != nil || len(ents) == 0 {
		if err == nil {
			err = errors.New("descriptor has no entries")
		}
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	sn, err := a.snapshot()
	if err != nil {
		return nil, err
	}
	ins := a.inspect(sn, req.GetDomain(), ents)
	resp := &adminv1.InspectResponse{Tier: ins.tier, TierMultiplier: ins.mult}
	if ins.rule == nil {
		return resp, nil
	}
	r := ins.rule
	resp.Matched = true
	resp.RulePath, resp.RuleFile, resp.RuleLine = r.Path, r.File, int32(r.Line)
	resp.ShadowMode, resp.QuotaMode = r.ShadowMode, r.QuotaMode
	resp.Policy, resp.Meter = r.Policy, r.Meter
	if ins.override != nil {
		resp.Override = overrideToProto(ins.override)
		if ins.override.Kind == overrides.Policy {
			resp.Policy = ins.override.Policy
		}
	}
	switch ins.res {
	case resUnlimited:
		resp.Unlimited = true
		return resp, nil
	case resBlocked:
		return resp, nil
	}
	// The usage: each bucket decided with 0 hits, which charges nothing.
	now := a.s.now().UnixMicro()
	reqs := make([]backends.Request, len(ins.limits))
	for k := range ins.limits {
		reqs[k] = backends.Request{Key: ins.keys[k], Limit: ins.limits[k].At(now)}
	}
	out := make([]algorithms.Decision, len(reqs))
	if err := a.s.apply(ctx, now, backends.AllOrNothing, reqs, out); err != nil {
		return nil, toStatus(err)
	}
	for k := range ins.limits {
		resp.Buckets = append(resp.Buckets, &adminv1.BucketState{
			Limit:      limitToProto(ins.limits[k]),
			Key:        ins.keys[k],
			Remaining:  uint64(max(out[k].Remaining, 0)),
			ResetAfter: durationpb.New(time.Duration(out[k].ResetAfter) * time.Microsecond),
			Used:       out[k].Count,
		})
	}
	return resp, nil
}

// ResetBuckets implements adminv1.AdminServiceServer.
func (a *Admin) ResetBuckets(ctx context.Context, req *adminv1.ResetBucketsRequest) (*adminv1.ResetBucketsResponse, error) {
	who, err := a.authorize(ctx)
	if err != nil {
		return nil, err
	}
	ents, err := entriesFromProto(req.GetDescriptor_().GetEntries())
	if err != nil || len(ents) == 0 {
		if err == nil {
			err = errors.New("descriptor has no entries")
		}
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	sn, err := a.snapshot()
	if err != nil {
		return nil, err
	}
	rs, ok := a.s.o.Backend.(backends.Resetter)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "the backend cannot reset buckets")
	}
	ins := a.inspect(sn, req.GetDomain(), ents)
	if ins.rule == nil {
		return nil, status.Errorf(codes.NotFound, "no rule of domain %q matches %s", req.GetDomain(), entriesText(ents))
	}
	resp := &adminv1.ResetBucketsResponse{Keys: ins.keys}
	if len(ins.keys) > 0 {
		bctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		n, err := rs.Reset(bctx, ins.keys)
		if errors.Is(err, errors.ErrUnsupported) {
			return nil, status.Error(codes.Unimplemented, "the backend cannot reset buckets")
		}
		if err != nil {
			return nil, status.Error(codes.Unavailable, "reset: "+err.Error())
		}
		resp.Existed = int32(n)
	}
	a.audit(who, "reset_buckets", "domain", req.GetDomain(), "entries", entriesText(ents), "rule", ins.rule.Path, "buckets", len(ins.keys), "existed", resp.Existed)
	return resp, nil
}

// GetConfig implements adminv1.AdminServiceServer.
func (a *Admin) GetConfig(ctx context.Context, req *adminv1.GetConfigRequest) (*adminv1.GetConfigResponse, error) {
	if _, err := a.authorize(ctx); err != nil {
		return nil, err
	}
	sn, err := a.snapshot()
	if err != nil {
		return nil, err
	}
	c := sn.cfg
	resp := &adminv1.GetConfigResponse{
		Version:       sn.version,
		Hash:          c.Hash(),
		LoadedAt:      timestamppb.New(sn.loadedAt),
		Files:         c.LoadedFiles(),
		Domains:       c.Domains(),
		RuleCount:     int32(len(c.Rules())),
		OverrideCount: int32(a.o.Watcher.Current().Len()),
	}
	if req.GetRules() {
		for _, r := range c.Rules() {
			resp.Rules = append(resp.Rules, ruleToProto(r))
		}
	}
	return resp, nil
}

// checkOverride refuses an override that no rule of cfg could apply to,
// that names an unknown policy, or that passes a rule's max_override.
func checkOverride(cfg *config.Config, o *overrides.Override) error {
	dom := cfg.Domain(o.Domain)
	if dom == nil {
		return fmt.Errorf("domain %q is not in the loaded config (domains: %s)", o.Domain, strings.Join(cfg.Domains(), ", "))
	}
	rules := cfg.RulesWith(o.Domain, o.Entries)
	if len(rules) == 0 {
		return fmt.Errorf("no rule of domain %q could apply to descriptors with %s: an override changes the limit of a rule that matches", o.Domain, entriesText(o.Entries))
	}
	switch o.Kind {
	case overrides.Policy:
		p := dom.Policies[o.Policy]
		if p == nil {
			names := make([]string, 0, len(dom.Policies))
			for n := range dom.Policies {
				names = append(names, n)
			}
			if len(names) == 0 {
				return fmt.Errorf("domain %q has no policies: declare policy %q under policies: in its config", o.Domain, o.Policy)
			}
			return fmt.Errorf("domain %q has no policy %q (policies: %s)", o.Domain, o.Policy, strings.Join(slices.Sorted(slices.Values(names)), ", "))
		}
	case overrides.Limit, overrides.Unlimited:
		var l config.RuleLimit
		if o.Kind == overrides.Limit {
			l = overrideRate(o)
		}
		for _, r := range rules {
			if r.MaxOverride == nil {
				continue
			}
			if o.Kind == overrides.Unlimited {
				return fmt.Errorf("unlimited is above the ceiling of %s that rule %s sets with max_override", r.MaxOverride.String(), r.Path)
			}
			if (l.Limit.Algorithm == algorithms.Concurrency) != (r.MaxOverride.Limit.Algorithm == algorithms.Concurrency) {
				continue
			}
			if config.Above(&l, r.MaxOverride) {
				return fmt.Errorf("%s is above the ceiling of %s that rule %s sets with max_override", l.String(), r.MaxOverride.String(), r.Path)
			}
		}
	}
	return nil
}

// entriesText writes entries as "k=v, k2=v2" for messages and logs.
func entriesText(es []config.Entry) string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(e.Key)
		b.WriteByte('=')
		b.WriteString(e.Value)
	}
	return b.String()
}

// overrideText describes an override's value for audit logs.
func overrideDescription(o *overrides.Override) string {
	if o == nil {
		return "none"
	}
	switch o.Kind {
	case overrides.Unlimited:
		return "unlimited"
	case overrides.Policy:
		return "policy " + o.Policy
	}
	return overrideRate(o).String()
}

func entriesFromProto(es []*adminv1.Entry) ([]config.Entry, error) {
	out := make([]config.Entry, 0, len(es))
	for i, e := range es {
		if e.GetKey() == "" {
			return nil, fmt.Errorf("entry %d has an empty key", i)
		}
		out = append(out, config.Entry{Key: e.GetKey(), Value: e.GetValue()})
	}
	return out, nil
}

func entriesToProto(es []config.Entry) []*adminv1.Entry {
	out := make([]*adminv1.Entry, len(es))
	for i, e := range es {
		out[i] = &adminv1.Entry{Key: e.Key, Value: e.Value}
	}
	return out
}

// overrideFromProto converts and validates a requested override.
func overrideFromProto(p *adminv1.Override) (*overrides.Override, error) {
	if p == nil {
		return nil, errors.New("override is required")
	}
	ents, err := entriesFromProto(p.GetEntries())
	if err != nil {
		return nil, err
	}
	o := &overrides.Override{Domain: p.GetDomain(), Entries: ents, Reason: p.GetReason()}
	switch v := p.GetValue().(type) {
	case *adminv1.Override_Unlimited:
		if !v.Unlimited {
			return nil, errors.New("unlimited must be true when set; to remove an override, delete it")
		}
		o.Kind = overrides.Unlimited
	case *adminv1.Override_Policy:
		o.Kind, o.Policy = overrides.Policy, v.Policy
	case *adminv1.Override_Limit:
		l := v.Limit
		o.Kind = overrides.Limit
		o.RequestsPerUnit, o.UnitMultiplier, o.Algorithm, o.Burst = l.GetRequestsPerUnit(), l.GetUnitMultiplier(), l.GetAlgorithm(), l.GetBurst()
		if o.Algorithm != "" {
			if _, ok := algorithms.ParseAlgorithm(o.Algorithm); !ok {
				return nil, fmt.Errorf("algorithm %q is not one of fixed_window, sliding_window, token_bucket, gcra, concurrency", o.Algorithm)
			}
		}
		if l.GetUnit() != "" {
			u, err := config.ParseUnit(l.GetUnit())
			if err != nil {
				return nil, errors.New(strings.TrimPrefix(err.Error(), "config: "))
			}
			o.Unit = u
		}
	default:
		return nil, errors.New("override needs a value: limit, unlimited or policy")
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return o, nil
}

func overrideToProto(o *overrides.Override) *adminv1.Override {
	p := &adminv1.Override{
		Domain:  o.Domain,
		Entries: entriesToProto(o.Entries),
		Reason:  o.Reason,
		Author:  o.Author,
		Id:      overrides.ID(o.Domain, o.Entries),
	}
	if !o.Updated.IsZero() {
		p.Updated = timestamppb.New(o.Updated)
	}
	switch o.Kind {
	case overrides.Unlimited:
		p.Value = &adminv1.Override_Unlimited{Unlimited: true}
	case overrides.Policy:
		p.Value = &adminv1.Override_Policy{Policy: o.Policy}
	default:
		l := overrideRate(o)
		lp := limitToProto(l)
		lp.Algorithm = o.Algorithm
		lp.Burst = o.Burst
		p.Value = &adminv1.Override_Limit{Limit: lp}
	}
	return p
}

func limitToProto(l config.RuleLimit) *adminv1.Limit {
	p := &adminv1.Limit{
		RequestsPerUnit: l.RequestsPerUnit,
		UnitMultiplier:  l.UnitMultiplier,
		Algorithm:       l.Limit.Algorithm.String(),
		Burst:           l.Limit.Burst,
		Name:            l.Name,
		Text:            l.String(),
	}
	if l.Unit != config.UnitUnknown {
		p.Unit = l.Unit.String()
	}
	return p
}

func ruleToProto(r *config.Rule) *adminv1.Rule {
	p := &adminv1.Rule{
		Domain:     r.Domain,
		Path:       r.Path,
		File:       r.File,
		Line:       int32(r.Line),
		Unlimited:  r.Unlimited,
		ShadowMode: r.ShadowMode,
		QuotaMode:  r.QuotaMode,
		Policy:     r.Policy,
		Meter:      r.Meter,
	}
	for _, l := range r.Limits {
		p.Limits = append(p.Limits, limitToProto(l))
	}
	if r.MaxOverride != nil {
		p.MaxOverride = limitToProto(*r.MaxOverride)
	}
	return p
}
