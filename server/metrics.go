package server

import (
	"context"
	"errors"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/config"
)

// Metrics. Labels are bounded by the config, never by request values: the
// rule label is the rule's name when it has one, else its StatKey
// ("domain.key_value.key", from the config, not the request); descriptor
// `limit` overrides share the rule label "override"; domain labels are only
// domains the config declares. docs/operations.md has the table of every
// metric ratelimitd serves (a test in cmd/ratelimitd keeps it true).
//
//	name                                       type       labels             meaning
//	ratelimitd_requests_total                  counter    code               ShouldRateLimit calls by outcome: ok, over_limit,
//	                                                                         invalid_argument, failed_precondition, unavailable,
//	                                                                         canceled, internal
//	ratelimitd_decisions_total                 counter    domain, rule, code counted descriptors decided, by what they were answered:
//	                                                                         ok, over_limit, shadow_mode, quota_mode
//	ratelimitd_hits_total                      counter    domain, rule       hits charged (hits_addend, 1 by default)
//	ratelimitd_over_limit_total                counter    domain, rule       decisions that refused their hits (shadow and quota too)
//	ratelimitd_shadow_mode_total               counter    domain, rule       refusals answered OK because the rule is in shadow mode
//	ratelimitd_near_limit_total                counter    domain, rule       allowed decisions with hits that left <= 20% of the limit
//	ratelimitd_global_shadow_mode_total        counter    -                  calls answered OK only because of global shadow mode
//	ratelimitd_config_loads_total              counter    result             config loads: success, error
//	ratelimitd_config_last_load_successful     gauge      -                  1 when the last load succeeded, 0 when it was rejected
//	ratelimitd_config_info                     gauge      hash, version      1 for the config in use
//	ratelimitd_backend_duration_seconds        histogram  -                  Backend.Apply latency
//	ratelimitd_backend_errors_total            counter    kind               backend failures answered UNAVAILABLE: timeout,
//	                                                                         unavailable, canceled, other
//	ratelimitd_idempotent_replays_total        counter    -                  calls answered with a stored first answer (idempotency)
//	ratelimitd_admin_changes_total             counter    action             admin API changes: set_override, delete_override, reset_buckets
//	ratelimitd_overrides                       gauge      -                  runtime overrides in force
type metrics struct {
	requests       *prometheus.CounterVec
	byCode         map[string]prometheus.Counter
	decisions      *prometheus.CounterVec
	hits           *prometheus.CounterVec
	overLimit      *prometheus.CounterVec
	shadow         *prometheus.CounterVec
	nearLimit      *prometheus.CounterVec
	globalShadow   prometheus.Counter
	configLoads    *prometheus.CounterVec
	configLastLoad prometheus.Gauge
	configInfo     *prometheus.GaugeVec
	backendTime    prometheus.Histogram
	backendErrs    *prometheus.CounterVec
	backendByKind  map[string]prometheus.Counter
	replays        prometheus.Counter
	adminChanges   *prometheus.CounterVec
	overrides      prometheus.GaugeFunc
}

// ruleMetrics are one rule's series, resolved once per config load.
type ruleMetrics struct {
	domain, rule                       string // the labels, for series resolved late
	overLimit, shadow, nearLimit, hits prometheus.Counter
	// ok, refused, shadowCode and quotaCode are decisions_total by code;
	// shadowCode and quotaCode may be nil (see forRule).
	ok, refused, shadowCode, quotaCode prometheus.Counter
	decisions                          *prometheus.CounterVec
}

// Outcome label values of ratelimitd_requests_total.
const (
	codeOK                 = "ok"
	codeOverLimit          = "over_limit"
	codeInvalidArgument    = "invalid_argument"
	codeFailedPrecondition = "failed_precondition"
	codeUnavailable        = "unavailable"
	codeCanceled           = "canceled"
	codeInternal           = "internal"
)

// Decision label values of ratelimitd_decisions_total, besides codeOK and
// codeOverLimit: refusals answered OK because of the rule's shadow mode, or
// reported as quota violations.
const (
	codeShadowMode = "shadow_mode"
	codeQuotaMode  = "quota_mode"
)

// Kind label values of ratelimitd_backend_errors_total.
const (
	kindTimeout     = "timeout"     // a deadline passed: ours (-backend-timeout) or the caller's
	kindUnavailable = "unavailable" // the store could not decide: connection refused, breaker open, Redis error
	kindCanceled    = "canceled"    // the caller went away
	kindOther       = "other"       // anything else: a bug
)

// overrideRuleLabel is the rule label of descriptor `limit` overrides.
const overrideRuleLabel = "override"

// adminActions are the action label values of ratelimitd_admin_changes_total.
var adminActions = []string{"set_override", "delete_override", "reset_buckets"}

// overrides reports how many runtime overrides are in force.
func newMetrics(reg prometheus.Registerer, overrides func() float64) (*metrics, error) {
	rl := []string{"domain", "rule"}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ratelimitd_requests_total",
			Help: "ShouldRateLimit calls by outcome.",
		}, []string{"code"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ratelimitd_decisions_total",
			Help: "Counted descriptors decided, by domain, rule and answer (ok, over_limit, shadow_mode, quota_mode).",
		}, []string{"domain", "rule", "code"}),
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ratelimitd_hits_total",
			Help: "Hits charged, by domain and rule (once per descriptor; refunds not counted).",
		}, rl),
		overLimit: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ratelimitd_over_limit_total",
			Help: "Decisions that refused their hits, by domain and rule (shadow and quota mode included).",
		}, rl),
		shadow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ratelimitd_shadow_mode_total",
			Help: "Refusals answered OK because the rule is in shadow mode, by domain and rule.",
		}, rl),
		nearLimit: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ratelimitd_near_limit_total",
			Help: "Allowed decisions past 80% of the limit used (more than floor(0.8 x limit)), by domain and rule.",
		}, rl),
		globalShadow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ratelimitd_global_shadow_mode_total",
			Help: "Calls answered OK only because global shadow mode is on.",
		}),
		configLoads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ratelimitd_config_loads_total",
			Help: "Config loads by result (success, error).",
		}, []string{"result"}),
		configLastLoad: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ratelimitd_config_last_load_successful",
			Help: "1 when the last config load succeeded, 0 when it was rejected (the previous config is still in use).",
		}),
		configInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ratelimitd_config_info",
			Help: "1 for the config in use, labelled with its hash and its version (1 for the first config loaded, +1 per load).",
		}, []string{"hash", "version"}),
		backendTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ratelimitd_backend_duration_seconds",
			Help:    "Backend.Apply latency.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}),
		backendErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ratelimitd_backend_errors_total",
			Help: "Backend failures answered UNAVAILABLE, by kind (timeout, unavailable, canceled, other).",
		}, []string{"kind"}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ratelimitd_idempotent_replays_total",
			Help: "Calls answered with the stored first answer of their idempotency key.",
		}),
		adminChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ratelimitd_admin_changes_total",
			Help: "Admin API changes by action (set_override, delete_override, reset_buckets).",
		}, []string{"action"}),
		overrides: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ratelimitd_overrides",
			Help: "Runtime overrides in force, as last read from the override store.",
		}, overrides),
	}
	for _, c := range []prometheus.Collector{m.requests, m.decisions, m.hits, m.overLimit, m.shadow, m.nearLimit,
		m.globalShadow, m.configLoads, m.configLastLoad, m.configInfo, m.backendTime, m.backendErrs, m.replays,
		m.adminChanges, m.overrides} {
		if err := reg.Register(c); err != nil {
			return nil, errors.Join(errors.New("register metrics"), err)
		}
	}
	// Every series whose labels are known in advance exists from the
	// start, at 0, so that rate() and absent() work before the first event.
	m.byCode = make(map[string]prometheus.Counter)
	for _, c := range []string{codeOK, codeOverLimit, codeInvalidArgument, codeFailedPrecondition,
		codeUnavailable, codeCanceled, codeInternal} {
		m.byCode[c] = m.requests.WithLabelValues(c)
	}
	m.backendByKind = make(map[string]prometheus.Counter)
	for _, k := range []string{kindTimeout, kindUnavailable, kindCanceled, kindOther} {
		m.backendByKind[k] = m.backendErrs.WithLabelValues(k)
	}
	for _, a := range adminActions {
		m.adminChanges.WithLabelValues(a)
	}
	m.configLoads.WithLabelValues("success")
	m.configLoads.WithLabelValues("error")
	return m, nil
}

// backendErrorKind classifies err, returned by a backend call made under
// ctx (the caller's context or one derived from it), for
// ratelimitd_backend_errors_total.
func backendErrorKind(ctx context.Context, err error) string {
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.Canceled) || errors.Is(err, context.Canceled):
		return kindCanceled
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()):
		return kindTimeout
	case errors.Is(err, backends.ErrUnavailable):
		return kindUnavailable
	}
	return kindOther
}

// backendFailed counts err, a failed backend call made under ctx, and
// returns it as the *backendError the call answers with.
func (s *Server) backendFailed(ctx context.Context, err error) error {
	kind := backendErrorKind(ctx, err)
	s.m.backendByKind[kind].Inc()
	return &backendError{err: err, kind: kind}
}

// ruleLabel is the bounded rule label of r.
func ruleLabel(r *config.Rule) string {
	if r.Name != "" {
		return r.Name
	}
	return r.StatKey
}

// forRule resolves the series of one rule label. The decisions_total
// series of the shadow_mode and quota_mode codes are resolved only when
// the rule can produce them (shadow or quota, from its config or the
// global quota mode), so that a config does not export series that stay
// at 0 forever; answered resolves them on first use otherwise.
func (m *metrics) forRule(domain, rule string, shadow, quota bool) *ruleMetrics {
	rm := &ruleMetrics{
		domain:    domain,
		rule:      rule,
		decisions: m.decisions,
		ok:        m.decisions.WithLabelValues(domain, rule, codeOK),
		refused:   m.decisions.WithLabelValues(domain, rule, codeOverLimit),
		hits:      m.hits.WithLabelValues(domain, rule),
		overLimit: m.overLimit.WithLabelValues(domain, rule),
		shadow:    m.shadow.WithLabelValues(domain, rule),
		nearLimit: m.nearLimit.WithLabelValues(domain, rule),
	}
	if shadow {
		rm.shadowCode = m.decisions.WithLabelValues(domain, rule, codeShadowMode)
	}
	if quota {
		rm.quotaCode = m.decisions.WithLabelValues(domain, rule, codeQuotaMode)
	}
	return rm
}

// answered counts one decision answered with code (codeOK, codeOverLimit,
// codeShadowMode or codeQuotaMode).
func (rm *ruleMetrics) answered(code string) {
	var c prometheus.Counter
	switch code {
	case codeOK:
		c = rm.ok
	case codeOverLimit:
		c = rm.refused
	case codeShadowMode:
		c = rm.shadowCode
	case codeQuotaMode:
		c = rm.quotaCode
	}
	if c == nil {
		c = rm.decisions.WithLabelValues(rm.domain, rm.rule, code)
	}
	c.Inc()
}

// snapshot resolves the series of every rule of c; globalQuota is
// Options.GlobalQuotaMode.
func (m *metrics) snapshot(c *config.Config, globalQuota bool) *snapshot {
	rules := c.Rules()
	sn := &snapshot{
		cfg:       c,
		rules:     make(map[*config.Rule]*ruleMetrics, len(rules)),
		overrides: make(map[string]*ruleMetrics),
	}
	for _, r := range rules {
		sn.rules[r] = m.forRule(r.Domain, ruleLabel(r), r.ShadowMode, r.QuotaMode || globalQuota)
		if _, ok := sn.overrides[r.Domain]; !ok {
			sn.overrides[r.Domain] = m.forRule(r.Domain, overrideRuleLabel, false, globalQuota)
		}
	}
	return sn
}

// ruleMetrics returns the series of a counted rule of domain. Rules are
// from sn.cfg, or overrides of a domain sn.cfg declares, so the fallback
// (a domain without rules) is still bounded by the config.
func (m *metrics) ruleMetrics(sn *snapshot, domain string, r *config.Rule, override bool) *ruleMetrics {
	if override {
		if rm := sn.overrides[domain]; rm != nil {
			return rm
		}
		return m.forRule(domain, overrideRuleLabel, false, false)
	}
	if rm := sn.rules[r]; rm != nil {
		return rm
	}
	return m.forRule(r.Domain, ruleLabel(r), false, false)
}

// vetoed reports whether the call decided in sc was charged nothing because
// of a refusal: under all_or_nothing an enforcing (non-shadow) bucket or
// blocked descriptor refused, under stop_when_over any bucket did, and
// under charge_always never (see backends.Mode).
func vetoed(sc *scratch) bool {
	if sc.mode == backends.ChargeAlways {
		return false
	}
	for i, k := range sc.kinds {
		if k == kindBlocked && !sc.rules[i].ShadowMode {
			return true
		}
	}
	for j := range sc.reqs {
		if !sc.out[j].Allowed && (sc.mode == backends.StopWhenOver || !sc.reqs[j].Shadow) {
			return true
		}
	}
	return false
}

// charged reports whether the hits of counted descriptor i of the call in
// sc were charged, for ratelimitd_hits_total: positive hits, under
// charge_always always, otherwise when the call was not vetoed and every
// limit of the descriptor allowed them. It tells what the charge mode
// says; the backends' own shortcuts (the local over-limit cache's
// uncharged refusals, a fallback's made-up answers) are not told apart.
func charged(sc *scratch, i int, veto bool) bool {
	switch {
	case sc.hits[i] <= 0:
		return false
	case sc.mode == backends.ChargeAlways:
		return true
	case veto:
		return false
	}
	for j := sc.reqOf[i]; j < sc.reqOf[i]+sc.reqN[i]; j++ {
		if !sc.out[j].Allowed {
			return false
		}
	}
	return true
}
