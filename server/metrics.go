package server

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ratelimitd/ratelimitd/config"
)

// Metrics. Labels are bounded by the config, never by request values: the
// rule label is the rule's name when it has one, else its StatKey
// ("domain.key_value.key", from the config, not the request); descriptor
// `limit` overrides share the rule label "override"; domain labels are only
// domains the config declares.
//
//	name                                       type       labels         meaning
//	ratelimitd_requests_total                  counter    code           ShouldRateLimit calls by outcome: ok, over_limit,
//	                                                                     invalid_argument, failed_precondition, unavailable,
//	                                                                     canceled, internal
//	ratelimitd_decisions_total                 counter    domain, rule   counted descriptors decided (one per descriptor per call)
//	ratelimitd_over_limit_total                counter    domain, rule   decisions that refused their hits (shadow and quota too)
//	ratelimitd_shadow_mode_total               counter    domain, rule   refusals answered OK because the rule is in shadow mode
//	ratelimitd_near_limit_total                counter    domain, rule   allowed decisions with hits that left <= 20% of the limit
//	ratelimitd_global_shadow_mode_total        counter    -              calls answered OK only because of global shadow mode
//	ratelimitd_config_loads_total              counter    result         config loads: success, error
//	ratelimitd_config_info                     gauge      hash           1 for the config in use
//	ratelimitd_backend_duration_seconds        histogram  -              Backend.Apply latency
//	ratelimitd_backend_errors_total            counter    -              Backend.Apply failures (answered UNAVAILABLE)
//	ratelimitd_idempotent_replays_total        counter    -              calls answered with a stored first answer (idempotency)
//	ratelimitd_admin_changes_total             counter    action         admin API changes: set_override, delete_override, reset_buckets
//	ratelimitd_overrides                       gauge      -              runtime overrides in force
type metrics struct {
	requests     *prometheus.CounterVec
	byCode       map[string]prometheus.Counter
	decisions    *prometheus.CounterVec
	overLimit    *prometheus.CounterVec
	shadow       *prometheus.CounterVec
	nearLimit    *prometheus.CounterVec
	globalShadow prometheus.Counter
	configLoads  *prometheus.CounterVec
	configInfo   *prometheus.GaugeVec
	backendTime  prometheus.Histogram
	backendErrs  prometheus.Counter
	replays      prometheus.Counter
	adminChanges *prometheus.CounterVec
	overrides    prometheus.GaugeFunc
}

// ruleMetrics are one rule's series, resolved once per config load.
type ruleMetrics struct {
	decisions, overLimit, shadow, nearLimit prometheus.Counter
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

// overrideRuleLabel is the rule label of descriptor `limit` overrides.
const overrideRuleLabel = "override"

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
			Help: "Counted descriptors decided, by domain and rule.",
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
		configInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ratelimitd_config_info",
			Help: "1 for the config in use, labelled with its hash.",
		}, []string{"hash"}),
		backendTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ratelimitd_backend_duration_seconds",
			Help:    "Backend.Apply latency.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}),
		backendErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ratelimitd_backend_errors_total",
			Help: "Backend.Apply failures, answered UNAVAILABLE.",
		}),
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
	for _, c := range []prometheus.Collector{m.requests, m.decisions, m.overLimit, m.shadow, m.nearLimit,
		m.globalShadow, m.configLoads, m.configInfo, m.backendTime, m.backendErrs, m.replays, m.adminChanges, m.overrides} {
		if err := reg.Register(c); err != nil {
			return nil, errors.Join(errors.New("register metrics"), err)
		}
	}
	m.byCode = make(map[string]prometheus.Counter)
	for _, c := range []string{codeOK, codeOverLimit, codeInvalidArgument, codeFailedPrecondition,
		codeUnavailable, codeCanceled, codeInternal} {
		m.byCode[c] = m.requests.WithLabelValues(c)
	}
	m.configLoads.WithLabelValues("success")
	m.configLoads.WithLabelValues("error")
	return m, nil
}

// ruleLabel is the bounded rule label of r.
func ruleLabel(r *config.Rule) string {
	if r.Name != "" {
		return r.Name
	}
	return r.StatKey
}

func (m *metrics) forRule(domain, rule string) *ruleMetrics {
	return &ruleMetrics{
		decisions: m.decisions.WithLabelValues(domain, rule),
		overLimit: m.overLimit.WithLabelValues(domain, rule),
		shadow:    m.shadow.WithLabelValues(domain, rule),
		nearLimit: m.nearLimit.WithLabelValues(domain, rule),
	}
}

// snapshot resolves the series of every rule of c.
func (m *metrics) snapshot(c *config.Config) *snapshot {
	rules := c.Rules()
	sn := &snapshot{
		cfg:       c,
		rules:     make(map[*config.Rule]*ruleMetrics, len(rules)),
		overrides: make(map[string]*ruleMetrics),
	}
	for _, r := range rules {
		sn.rules[r] = m.forRule(r.Domain, ruleLabel(r))
		if _, ok := sn.overrides[r.Domain]; !ok {
			sn.overrides[r.Domain] = m.forRule(r.Domain, overrideRuleLabel)
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
		return m.forRule(domain, overrideRuleLabel)
	}
	if rm := sn.rules[r]; rm != nil {
		return rm
	}
	return m.forRule(r.Domain, ruleLabel(r))
}
