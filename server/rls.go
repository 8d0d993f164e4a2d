package server

import (
	"context"
	"math"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ratelimitd/ratelimitd/algorithms"
	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/config"
	"github.com/ratelimitd/ratelimitd/overrides"
)

// Request bounds. A request beyond them is InvalidArgument: Envoy never
// sends such requests, and bounding them bounds the work of one call.
const (
	MaxDescriptors = 64       // descriptors per request
	MaxEntries     = 64       // entries per descriptor
	MaxValueLen    = 64 << 10 // bytes per domain, entry key and entry value
	// 64 KiB: above Envoy's default limit on request headers (60 KiB), so
	// that a descriptor built from a header or the path (query included)
	// of any request Envoy accepts is never refused.
)

// kind says how a descriptor is answered.
type kind uint8

const (
	kindNone      kind = iota // no rule, or unknown domain: {code: OK}
	kindReplaced              // rule replaced by another rule of the call: {code: OK}
	kindUnlimited             // unlimited rule: OK, remaining 4294967295
	kindCounted               // configured rule, decided by the backend
	kindOverride              // descriptor `limit` override, decided by the backend
	kindBlocked               // tier multiplier 0: OVER_LIMIT without a backend call
)

// scratch is the per-call working memory, pooled in Server.pool. Nothing in
// it outlives the call: the backend copies keys it keeps, and the response
// is built in freshly allocated memory.
type scratch struct {
	entries   []config.Entry // every descriptor's entries, back to back
	entEnd    []int          // entries of descriptor i end at entEnd[i]
	rules     []*config.Rule
	kinds     []kind
	hits      []int64
	reqOf     []int // index of the descriptor's first request in reqs, or -1
	reqN      []int // number of requests of the descriptor (one per limit)
	replacing []string
	keys      []byte // every bucket key, back to back
	keyEnd    []int
	reqs      []backends.Request
	out       []algorithms.Decision
	quotaViol []int
	passed    []*config.Rule        // counted rules not over their limit, for metadata
	ovr       []*overrides.Override // runtime override of the descriptor, or nil
	mult      []float64             // tier multiplier of the descriptor
	limits    []config.RuleLimit    // effective limits, one per request in reqs
	limStart  []int                 // index of the descriptor's first limit in limits
	memoKey   []byte
	mode      backends.Mode // what the call charges, for ratelimitd_hits_total
}

func (sc *scratch) reset(n int) {
	sc.entries = sc.entries[:0]
	sc.entEnd = sc.entEnd[:0]
	sc.rules = slices.Grow(sc.rules[:0], n)[:n]
	sc.kinds = slices.Grow(sc.kinds[:0], n)[:n]
	sc.hits = slices.Grow(sc.hits[:0], n)[:n]
	sc.reqOf = slices.Grow(sc.reqOf[:0], n)[:n]
	sc.reqN = slices.Grow(sc.reqN[:0], n)[:n]
	sc.ovr = slices.Grow(sc.ovr[:0], n)[:n]
	sc.mult = slices.Grow(sc.mult[:0], n)[:n]
	sc.limStart = slices.Grow(sc.limStart[:0], n)[:n]
	sc.limits = sc.limits[:0]
	sc.replacing = sc.replacing[:0]
	sc.keys = sc.keys[:0]
	sc.keyEnd = sc.keyEnd[:0]
	sc.reqs = sc.reqs[:0]
	sc.quotaViol = sc.quotaViol[:0]
	sc.passed = sc.passed[:0]
}

// maxPooledKeys bounds the key buffer kept in the pool, so that one huge
// request does not pin its memory for good.
const maxPooledKeys = 64 << 10

// release drops references to request memory and returns sc to the pool.
func (s *Server) release(sc *scratch) {
	if cap(sc.keys) > maxPooledKeys || cap(sc.entries) > MaxDescriptors*8 {
		return // let a huge scratch go; the pool makes a new one
	}
	clear(sc.entries[:cap(sc.entries)])
	clear(sc.rules[:cap(sc.rules)])
	clear(sc.replacing[:cap(sc.replacing)])
	clear(sc.passed[:cap(sc.passed)])
	clear(sc.ovr[:cap(sc.ovr)])
	clear(sc.limits[:cap(sc.limits)])
	for i := range sc.reqs {
		sc.reqs[i].Key = nil
	}
	s.pool.Put(sc)
}

func (sc *scratch) descEntries(i int) []config.Entry {
	start := 0
	if i > 0 {
		start = sc.entEnd[i-1]
	}
	return sc.entries[start:sc.entEnd[i]]
}

// ShouldRateLimit decides req: see the package comment for the flow and
// DESIGN.md §2-3 for the semantics. Errors are gRPC statuses:
// InvalidArgument for a malformed request, FailedPrecondition before the
// first config, Unavailable when the backend fails or misses its deadline.
// It never answers overall_code UNKNOWN.
func (s *Server) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	resp, err := s.decide(ctx, req)
	if err != nil {
		_, label := classify(err)
		s.m.byCode[label].Inc()
		if label == codeInvalidArgument {
			s.log.Debug("rate limit request refused", "domain", req.GetDomain(), "error", err.Error())
		} else {
			s.logFailure(s.now(), req.GetDomain(), label, err) // sampled
		}
		return nil, toStatus(err)
	}
	if resp.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT {
		s.m.byCode[codeOverLimit].Inc()
	} else {
		s.m.byCode[codeOK].Inc()
	}
	return resp, nil
}

// validate checks req against the protocol and the bounds.
func validate(req *rlsv3.RateLimitRequest) error {
	d := req.GetDomain()
	if d == "" {
		return invalidf("rate limit domain must not be empty")
	}
	if len(d) > MaxValueLen {
		return invalidf("rate limit domain is longer than %d bytes", MaxValueLen)
	}
	ds := req.GetDescriptors()
	if len(ds) == 0 {
		return invalidf("rate limit descriptor list must not be empty")
	}
	if len(ds) > MaxDescriptors {
		return invalidf("rate limit descriptor list has %d descriptors, more than the maximum of %d", len(ds), MaxDescriptors)
	}
	for i, desc := range ds {
		es := desc.GetEntries()
		if len(es) == 0 {
			return invalidf("rate limit descriptor %d has no entries", i)
		}
		if len(es) > MaxEntries {
			return invalidf("rate limit descriptor %d has %d entries, more than the maximum of %d", i, len(es), MaxEntries)
		}
		for j, e := range es {
			if e.GetKey() == "" {
				return invalidf("rate limit descriptor %d entry %d has an empty key", i, j)
			}
			if len(e.GetKey()) > MaxValueLen {
				return invalidf("rate limit descriptor %d entry %d key is longer than %d bytes", i, j, MaxValueLen)
			}
			if len(e.GetValue()) > MaxValueLen {
				return invalidf("rate limit descriptor %d entry %d value is longer than %d bytes", i, j, MaxValueLen)
			}
		}
	}
	return nil
}

// hitsOf returns the hits of descriptor desc of a call whose request-level
// hits_addend is reqHits: the descriptor's hits_addend when set (0 checks
// without consuming), else the request's, where 0 means 1; negated by
// is_negative_hits.
func hitsOf(reqHits uint32, desc *commonv3.RateLimitDescriptor) int64 {
	h := uint64(reqHits)
	if h == 0 {
		h = 1
	}
	if ha := desc.GetHitsAddend(); ha != nil {
		h = ha.GetValue()
	}
	if h > math.MaxInt64 {
		h = math.MaxInt64
	}
	if desc.GetIsNegativeHits() {
		return -int64(h)
	}
	return int64(h)
}

func (s *Server) decide(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if err := validate(req); err != nil {
		return nil, err
	}
	sn := s.snap.Load()
	if sn == nil {
		return nil, errNoConfig
	}
	cfg := sn.cfg
	domain := req.Domain
	ds := req.Descriptors
	n := len(ds)
	dom := cfg.Domain(domain)
	if dom != nil && dom.Disabled {
		return disabledResponse(n), nil
	}
	var tiers *config.Tiers
	var idem *config.Idempotency
	if dom != nil {
		tiers, idem = dom.Tiers, dom.Idempotency
	}
	var ovs *overrides.Set
	if s.o.Overrides != nil {
		ovs = s.o.Overrides()
	}

	sc := s.pool.Get().(*scratch)
	defer s.release(sc)
	sc.reset(n)

	// 1. Match every descriptor (reference: constructLimitsToCheck), with
	// the tier and idempotency entries taken out first.
	idemKey := ""
	for i, desc := range ds {
		tier := ""
		for _, e := range desc.Entries {
			switch {
			case tiers != nil && e.Key == tiers.Key:
				tier = e.Value
				continue
			case idem != nil && e.Key == idem.Key:
				if idemKey == "" {
					idemKey = e.Value
				}
				continue
			}
			sc.entries = append(sc.entries, config.Entry{Key: e.Key, Value: e.Value})
		}
		sc.entEnd = append(sc.entEnd, len(sc.entries))
		ents := sc.descEntries(i)
		sc.hits[i] = hitsOf(req.HitsAddend, desc)
		sc.rules[i], sc.kinds[i], sc.ovr[i], sc.mult[i] = nil, kindNone, nil, 1
		if tiers != nil {
			sc.mult[i], _ = tiers.Multiplier(tier)
		}
		if len(ents) == 0 {
			continue
		}
		if lim := desc.GetLimit(); lim != nil {
			if !cfg.HasDomain(domain) {
				continue
			}
			r, err := config.OverrideRule(domain, ents, lim.GetRequestsPerUnit(), config.Unit(lim.GetUnit()))
			if err != nil {
				return nil, invalidf("rate limit descriptor %d: limit override: %v", i, err)
			}
			sc.rules[i], sc.kinds[i] = r, kindOverride
			continue
		}
		r := cfg.Match(domain, ents)
		if r == nil {
			continue
		}
		sc.rules[i] = r
		sc.replacing = append(sc.replacing, r.Replaces...)
		if ovs != nil {
			sc.ovr[i] = ovs.Lookup(domain, ents)
		}
		sc.kinds[i] = kindCounted
	}
	// An idempotent replay gets the first answer and consumes nothing.
	memo := s.memo
	var memoKey []byte
	if idemKey != "" && memo != nil {
		memoKey = appendMemoKey(sc.memoKey[:0], s.o.KeyPrefix, domain, idemKey, req, idem.Key)
		sc.memoKey = memoKey
		if resp, ok, err := s.recall(ctx, memo, memoKey); err != nil {
			return nil, err
		} else if ok {
			s.m.replays.Inc()
			return resp, nil
		}
	}
	// 2. replaces: a counted rule whose name another matched rule of this
	// call replaces is dropped (unlimited rules are never dropped, as in
	// the reference, where they are no longer in limitsToCheck by then).
	if len(sc.replacing) > 0 {
		for i := range n {
			if sc.kinds[i] == kindCounted && !sc.rules[i].Unlimited && sc.rules[i].Name != "" && slices.Contains(sc.replacing, sc.rules[i].Name) {
				sc.kinds[i] = kindReplaced
			}
		}
	}
	// 3. The effective limits of each counted descriptor (override, policy,
	// tier), then one backend request per limit, keys in one buffer; all
	// of them in one Apply. Calendar-aligned limits get their window at
	// now. A call whose every counted rule is charge_always is charged
	// whatever the decisions.
	now := s.now().UnixMicro()
	mode := s.o.Mode
	chargeAlways, counted, blocked := true, false, false
	for i := range n {
		sc.reqOf[i], sc.reqN[i] = -1, 0
		r := sc.rules[i]
		switch sc.kinds[i] {
		case kindCounted:
			var res resolution
			start := len(sc.limits)
			sc.limits, res = resolve(sc.limits, r, sc.ovr[i], dom, sc.mult[i])
			switch res {
			case resUnlimited:
				sc.kinds[i] = kindUnlimited
				continue
			case resBlocked:
				sc.kinds[i] = kindBlocked
				blocked = blocked || !r.ShadowMode
				continue
			}
			sc.limStart[i] = start
		case kindOverride:
			sc.limStart[i] = len(sc.limits)
			sc.limits = append(sc.limits, r.Limits...)
		default:
			continue
		}
		counted = true
		chargeAlways = chargeAlways && r.ChargeAlways
		lims := sc.limits[sc.limStart[i]:]
		sc.reqOf[i] = len(sc.reqs)
		sc.reqN[i] = len(lims)
		shadow := r.ShadowMode || r.QuotaMode || s.o.GlobalQuotaMode || s.o.GlobalShadowMode
		for k := range lims {
			sc.keys = append(sc.keys, s.o.KeyPrefix...)
			sc.keys = r.AppendLimitKeyFor(sc.keys, sc.descEntries(i), &lims[k], k)
			sc.keyEnd = append(sc.keyEnd, len(sc.keys))
			sc.reqs = append(sc.reqs, backends.Request{
				Limit:  lims[k].At(now),
				Hits:   sc.hits[i],
				Shadow: shadow,
			})
		}
	}
	if counted && chargeAlways {
		mode = backends.ChargeAlways
	}
	sc.mode = mode
	if blocked && mode != backends.ChargeAlways {
		// A blocked descriptor refuses the call without a bucket of its
		// own: the others are only looked at, as a veto would leave them.
		for j := range sc.reqs {
			sc.reqs[j].Hits = 0
		}
	}
	start := 0
	for j := range sc.reqs {
		sc.reqs[j].Key = sc.keys[start:sc.keyEnd[j]:sc.keyEnd[j]]
		start = sc.keyEnd[j]
	}
	if len(sc.reqs) > 0 {
		sc.out = slices.Grow(sc.out[:0], len(sc.reqs))[:len(sc.reqs)]
		if err := s.apply(ctx, now, mode, sc.reqs, sc.out); err != nil {
			return nil, err
		}
	}
	resp := s.respond(sn, req, sc, now)
	if memoKey != nil {
		return s.remember(ctx, memo, memoKey, resp, idem.TTL), nil
	}
	return resp, nil
}

// disabledResponse answers every descriptor of a disabled domain OK.
func disabledResponse(n int) *rlsv3.RateLimitResponse {
	statuses := make([]rlsv3.RateLimitResponse_DescriptorStatus, n)
	ptrs := make([]*rlsv3.RateLimitResponse_DescriptorStatus, n)
	for i := range statuses {
		statuses[i].Code = rlsv3.RateLimitResponse_OK
		ptrs[i] = &statuses[i]
	}
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: ptrs}
}

// mostRestrictive returns the index, among the n decisions from first,
// of the one a descriptor with several limits reports: a refusal before
// any allowance; then the smallest remaining; then the refusal that lasts
// longest (never, RetryAfter -1, first); then the longest time to reset.
func mostRestrictive(out []algorithms.Decision, first, n int) int {
	best := first
	for j := first + 1; j < first+n; j++ {
		if moreRestrictive(out[j], out[best]) {
			best = j
		}
	}
	return best
}

func moreRestrictive(a, b algorithms.Decision) bool {
	switch {
	case a.Allowed != b.Allowed:
		return !a.Allowed
	case a.Remaining != b.Remaining:
		return a.Remaining < b.Remaining
	case a.RetryAfter != b.RetryAfter:
		return a.RetryAfter == -1 || (b.RetryAfter != -1 && a.RetryAfter > b.RetryAfter)
	}
	return a.ResetAfter > b.ResetAfter
}

// apply calls the backend at now under the backend deadline, in a
// backend.apply span when Options.Tracer is set.
func (s *Server) apply(ctx context.Context, now int64, mode backends.Mode, reqs []backends.Request, out []algorithms.Decision) error {
	t0 := time.Now()
	actx, cancel := s.backendContext(ctx)
	defer cancel()
	actx, span := s.startApplySpan(actx, len(reqs), mode) // nil span when tracing is off
	err := s.o.Backend.Apply(actx, now, mode, reqs, out)
	s.m.backendTime.Observe(time.Since(t0).Seconds())
	endApplySpan(span, err)
	if err != nil {
		return s.backendFailed(actx, err)
	}
	return nil
}

// respond builds the response from the decisions, as envoyproxy/ratelimit's
// shouldRateLimitWorker, and records the metrics. now is the call's instant
// in microseconds.
func (s *Server) respond(sn *snapshot, req *rlsv3.RateLimitRequest, sc *scratch, now int64) *rlsv3.RateLimitResponse {
	n := len(req.Descriptors)
	nc := len(sc.reqs)
	nb := 0 // blocked descriptors: they get a current_limit too
	for i := range n {
		if sc.kinds[i] == kindBlocked {
			nb++
		}
	}
	// One allocation per kind of message, not one per descriptor.
	statuses := make([]rlsv3.RateLimitResponse_DescriptorStatus, n)
	ptrs := make([]*rlsv3.RateLimitResponse_DescriptorStatus, n)
	var limits []rlsv3.RateLimitResponse_RateLimit
	var durs []durationpb.Duration
	var umults []wrapperspb.UInt32Value
	if nc+nb > 0 {
		limits = make([]rlsv3.RateLimitResponse_RateLimit, nc+nb)
		durs = make([]durationpb.Duration, nc)
		umults = make([]wrapperspb.UInt32Value, nc+nb)
	}
	resp := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: ptrs}

	// The descriptor closest to its limit, for the headers: the reference's
	// minimumDescriptor (strictly smallest remaining first, then the last
	// enforced over-limit descriptor wins).
	minIdx := -1
	minRemaining := uint32(math.MaxUint32)
	quotaEnabled := false
	blocked := nc
	veto := vetoed(sc)

	for i := range n {
		st := &statuses[i]
		ptrs[i] = st
		st.Code = rlsv3.RateLimitResponse_OK
		switch sc.kinds[i] {
		case kindNone, kindReplaced:
			continue
		case kindUnlimited:
			st.LimitRemaining = math.MaxUint32
			continue
		case kindBlocked:
			// A tier multiplier of 0: refused, with a limit of 0.
			r := sc.rules[i]
			l := baseLimit(r)
			l.RequestsPerUnit = 0
			cl := &limits[blocked]
			setCurrentLimit(cl, &l, &umults[blocked])
			blocked++
			st.CurrentLimit = cl
			rm := s.m.ruleMetrics(sn, req.Domain, r, false)
			rm.overLimit.Inc()
			code := codeOverLimit
			if r.ShadowMode {
				code = codeShadowMode
			}
			rm.answered(code)
			bl := blockedLimit(r)
			s.logRefusal(now, req.Domain, rm.rule, code, sc.descEntries(i), &bl)
			if r.ShadowMode {
				rm.shadow.Inc()
				continue
			}
			st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
			resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
			minIdx, minRemaining = i, 0
			continue
		}
		r := sc.rules[i]
		j := mostRestrictive(sc.out, sc.reqOf[i], sc.reqN[i])
		d := sc.out[j]
		rm := s.m.ruleMetrics(sn, req.Domain, r, sc.kinds[i] == kindOverride)
		if charged(sc, i, veto) {
			rm.hits.Add(float64(sc.hits[i]))
		}
		quota := r.QuotaMode || s.o.GlobalQuotaMode
		if quota {
			quotaEnabled = true
		}

		cl := &limits[j]
		setCurrentLimit(cl, &sc.limits[j], &umults[j])
		rate := sc.limits[j].Limit.Rate
		st.CurrentLimit = cl
		st.LimitRemaining = clampUint32(d.Remaining)
		du := &durs[j]
		du.Seconds = ceilSeconds(d.ResetAfter)
		st.DurationUntilReset = du

		if st.LimitRemaining < minRemaining {
			minIdx, minRemaining = i, st.LimitRemaining
		}
		if d.Allowed || r.ShadowMode {
			sc.passed = append(sc.passed, r)
		}
		if d.Allowed {
			rm.answered(codeOK)
			// Past 80% used, as the reference's NEAR_LIMIT_RATIO 0.8:
			// more used than floor(0.8 × limit).
			if sc.hits[i] > 0 && rate-d.Remaining > rate*4/5 {
				rm.nearLimit.Inc()
			}
			continue
		}
		rm.overLimit.Inc()
		code := codeOverLimit
		switch {
		case r.ShadowMode:
			code = codeShadowMode
		case quota:
			code = codeQuotaMode
		}
		rm.answered(code)
		s.logRefusal(now, req.Domain, rm.rule, code, sc.descEntries(i), &sc.limits[j])
		switch code {
		case codeShadowMode:
			// Reference base_limiter: a shadow-mode rule over its limit
			// answers OK, remaining and reset as computed.
			rm.shadow.Inc()
		case codeQuotaMode:
			// Reference ratelimit.go (quota mode): the violation is
			// reported in the dynamic metadata, the status becomes OK with
			// current_limit and limit_remaining only, and the call is not
			// refused for it.
			sc.quotaViol = append(sc.quotaViol, i)
			st.DurationUntilReset = nil
		default:
			st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
			resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
			minIdx, minRemaining = i, 0
		}
	}

	if resp.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT && s.o.GlobalShadowMode {
		resp.OverallCode = rlsv3.RateLimitResponse_OK
		s.m.globalShadow.Inc()
	}
	if minIdx >= 0 && (s.ro.Style != HeadersOff || (s.ro.Body != BodyOff && resp.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT)) {
		v := s.view(sc, minIdx, statuses[minIdx].Code == rlsv3.RateLimitResponse_OVER_LIMIT && resp.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT)
		if s.ro.Style != HeadersOff {
			resp.ResponseHeadersToAdd = appendClientHeaders(nil, &s.ro, &v, time.UnixMicro(now))
		}
		if v.Over && s.ro.Body != BodyOff {
			body, ctype := overLimitBody(&s.ro, &v)
			if body != nil {
				resp.RawBody = body
				resp.ResponseHeadersToAdd = append(resp.ResponseHeadersToAdd, &corev3.HeaderValue{Key: "Content-Type", Value: ctype})
			}
		}
	}
	if s.o.DynamicMetadata {
		resp.DynamicMetadata = dynamicMetadata(req, sc.passed, sc.quotaViol, quotaEnabled)
	}
	return resp
}

// view describes descriptor i for the headers and the body: its most
// restrictive limit and decision.
func (s *Server) view(sc *scratch, i int, over bool) limitView {
	r := sc.rules[i]
	if sc.kinds[i] == kindBlocked {
		l := baseLimit(r)
		l.RequestsPerUnit, l.Limit.Rate = 0, 0
		return limitView{Policy: policyName(r, &l), Limit: l, Decision: algorithms.Decision{RetryAfter: -1}, Over: over}
	}
	j := mostRestrictive(sc.out, sc.reqOf[i], sc.reqN[i])
	return limitView{Policy: policyName(r, &sc.limits[j]), Limit: sc.limits[j], Decision: sc.out[j], Over: over}
}

// policyName names a limit in headers and bodies: the limit's name, the
// rule's policy, the rule's name, or its stat key.
func policyName(r *config.Rule, l *config.RuleLimit) string {
	switch {
	case l.Name != "":
		return l.Name
	case r.Policy != "":
		return r.Policy
	case r.Name != "":
		return r.Name
	}
	return r.StatKey
}

// setCurrentLimit describes limit l in Envoy's terms in cl: its rate per
// unit and, when the period is several units (period: 90m, or
// unit_multiplier), the multiplier in unit_multiplier (um is its storage).
// A concurrency limit reports max_in_flight with unit UNKNOWN: it has no
// time unit. A fixed window of one unit reports exactly what
// envoyproxy/ratelimit does.
func setCurrentLimit(cl *rlsv3.RateLimitResponse_RateLimit, l *config.RuleLimit, um *wrapperspb.UInt32Value) {
	cl.RequestsPerUnit = l.RequestsPerUnit
	cl.Unit = rlsv3.RateLimitResponse_RateLimit_Unit(l.Unit)
	cl.Name = l.Name
	if l.UnitMultiplier > 1 {
		um.Value = l.UnitMultiplier
		cl.UnitMultiplier = um
	}
}

// ceilSeconds rounds microseconds up to whole seconds. For a fixed window it
// equals the reference's CalculateReset, divider - now%divider (in whole
// seconds, now truncated to the second).
func ceilSeconds(us int64) int64 {
	if us <= 0 {
		return 0
	}
	s := us / algorithms.Second // no (us + Second - 1): it would overflow near MaxInt64
	if us%algorithms.Second != 0 {
		s++
	}
	return s
}

func clampUint32(v int64) uint32 {
	switch {
	case v < 0:
		return 0
	case v > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(v)
}
