package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ratelimitd/ratelimitd/backends"
	"github.com/ratelimitd/ratelimitd/backends/resilient"
	"github.com/ratelimitd/ratelimitd/config"
	"github.com/ratelimitd/ratelimitd/server"
)

// envPrefix starts the environment fallback of every flag:
// -memory-max-buckets falls back to RATELIMITD_MEMORY_MAX_BUCKETS.
const envPrefix = "RATELIMITD_"

// settings is everything ratelimitd reads from its flags and environment,
// read once at start.
type settings struct {
	grpcAddr, httpAddr string
	configPath         string
	mergeDomains       bool
	trailingWildcards  bool
	reloadDebounce     time.Duration

	backend          string
	memoryMaxBuckets int
	backendTimeout   time.Duration
	chargeMode       backends.Mode
	keyPrefix        string

	redis redisSettings
	// onFailure, fallbackReplicas, breaker* and localCacheSize configure
	// the wrappers around a remote backend (backends/resilient).
	onFailure            resilient.Policy
	fallbackReplicas     int
	breakerFailures      int
	breakerProbeInterval time.Duration
	localCacheSize       int

	// notes are lines to log at start: which envoyproxy/ratelimit
	// settings were read, and which have no equivalent.
	notes []string

	// clockOffset shifts the decision clock: test-only, read from
	// RATELIMITD_TEST_CLOCK_OFFSET (no flag), so that a test can run
	// replicas whose clocks disagree.
	clockOffset time.Duration

	globalShadowMode bool
	globalQuotaMode  bool
	responseHeaders  bool
	headerLimit      string
	headerRemaining  string
	headerReset      string
	dynamicMetadata  bool
	headerStyle      server.HeaderStyle
	headerResetUnix  bool
	overLimitBody    server.BodyFormat
	problemType      string

	// The admin API and runtime overrides.
	adminTokenFile string
	adminAddr      string
	adminTLSCert   string
	adminTLSKey    string
	adminClientCA  string
	overridesFile  string
	overridesKey   string
	overridesPoll  time.Duration

	maxConnectionAge      time.Duration
	maxConnectionAgeGrace time.Duration
	drainTimeout          time.Duration
	grpcMaxRecvMsgSize    int
	grpcStreamWorkers     int
	gcPercent             int
	gcHeadroom            int64

	// TLS of the gRPC and HTTP listeners (tls.go).
	tlsCert, tlsKey string
	tlsClientCA     string
	httpTLS         bool

	// debugAddr, when set, serves net/http/pprof on a listener of its own.
	debugAddr string

	// Tracing (tracing.go); off while otlpEndpoint is empty.
	otlpEndpoint     string
	otlpInsecure     bool
	traceSampleRatio float64

	logFormat string
	logLevel  slog.Level

	// validate, when set, is the path to load and print instead of serving.
	validate string
}

// redisSettings are the -redis-* settings.
type redisSettings struct {
	topology                           string
	addrs                              []string
	masterName                         string
	username, password                 string
	sentinelUsername, sentinelPassword string
	db                                 int
	tls                                *tls.Config // nil: plain TCP
	poolSize                           int
	dialTimeout                        time.Duration
	readTimeout, writeTimeout          time.Duration
	batchWindow                        time.Duration
	batchMax                           int
	functions                          bool
}

// defaultMaxRecvMsgSize is -grpc-max-recv-msg-size's default: gRPC's own
// default, stated. The request bounds (server.MaxDescriptors, MaxEntries,
// MaxValueLen) would allow about 512 MiB; Envoy's requests take a few
// hundred bytes to a few KiB, so 4 MiB leaves room for a thousand times
// that while bounding what one call makes the server allocate.
const defaultMaxRecvMsgSize = 4 << 20

// Runtime defaults, chosen by measurement (docs/benchmarks.md): gRPC's
// goroutine per call grows a fresh stack on every call (the handler's
// frames pass 8 KiB), which cost about a fifth of the CPU under load;
// long-lived workers keep theirs. Beyond the workers, a call still gets a
// goroutine of its own, so the count bounds nothing. The collector's
// target keeps Go's 100 % for large heaps, with a floor of 64 MiB of
// growth between collections (gcTuner in gc.go).
const (
	defaultStreamWorkers = 64
	maxStreamWorkers     = 1 << 16
	defaultGCPercent     = 100
	defaultGCHeadroom    = 64 << 20
)

// maxMaxRecvMsgSize bounds -grpc-max-recv-msg-size: the largest request the
// request bounds let through is about 512 MiB, so more only lets a caller
// make the server allocate for a request it must refuse anyway.
const maxMaxRecvMsgSize = 1 << 30

// testClockOffsetEnv names the test-only clock offset (a Go duration such
// as -90s) added to the decision clock. It is not a flag and not documented
// in -h: only tests that simulate replicas with skewed clocks set it.
const testClockOffsetEnv = "RATELIMITD_TEST_CLOCK_OFFSET"

// envName is the environment variable that a flag falls back to.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// hasEnv reports whether a flag has an environment fallback. -validate has
// none: it is a command, not a setting, and left in the environment it
// would turn every start of the server into a one-shot check.
func hasEnv(flagName string) bool { return flagName != "validate" }

// parseSettings reads args, then for every flag not given on the command
// line its environment fallback from getenv (an empty value counts as
// unset), then envoyproxy/ratelimit's variables for what is still unset. Usage and flag errors are written to stderr; -h returns
// flag.ErrHelp.
func parseSettings(args []string, getenv func(string) string, stderr io.Writer) (settings, error) {
	var s settings
	fs := flag.NewFlagSet("ratelimitd", flag.ContinueOnError)
	fs.SetOutput(stderr)

	fs.StringVar(&s.grpcAddr, "grpc-addr", "127.0.0.1:8081", "`address` of the gRPC server (RLS, health, reflection); port 0 picks a free port")
	fs.StringVar(&s.httpAddr, "http-addr", "127.0.0.1:8080", "`address` of the HTTP server (/healthcheck, /healthz, /readyz, /json, /metrics, /rlconfig); port 0 picks a free port")
	fs.StringVar(&s.configPath, "config", "examples/quickstart/config", "config `path`: a YAML file, or a directory whose *.yaml and *.yml files are loaded (hidden files skipped); watched for changes")
	fs.BoolVar(&s.mergeDomains, "merge-domains", false, "let several config files declare the same domain and merge their descriptors")
	fs.BoolVar(&s.trailingWildcards, "trailing-wildcards-only", false, "match config values as envoyproxy/ratelimit does: * is a wildcard only at the end of a value (default: anywhere)")
	fs.DurationVar(&s.reloadDebounce, "reload-debounce", 200*time.Millisecond, "quiet `time` after the last change on disk before the config is reloaded")

	fs.StringVar(&s.backend, "backend", "memory", "where bucket state lives: memory (this process) or redis (shared by every replica)")
	fs.IntVar(&s.memoryMaxBuckets, "memory-max-buckets", 1_000_000, "most buckets the memory backend keeps (see docs/operations.md for what happens when full)")
	fs.DurationVar(&s.backendTimeout, "backend-timeout", 10*time.Millisecond, "deadline of one call to a remote backend (Redis); past it the call answers UNAVAILABLE")

	var redisAddr, redisPasswordFile, redisTLSCA, redisTLSCert, redisTLSKey, redisTLSServerName string
	var redisTLS bool
	r := &s.redis
	fs.StringVar(&r.topology, "redis-topology", "standalone", "Redis deployment: standalone, sentinel or cluster")
	fs.StringVar(&redisAddr, "redis-addr", "127.0.0.1:6379", "comma-separated Redis `addresses`: host:port or a unix socket path (standalone: one; sentinel: the sentinels; cluster: some nodes)")
	fs.StringVar(&r.masterName, "redis-master-name", "", "Sentinel master `name` (sentinel topology)")
	fs.StringVar(&r.username, "redis-username", "", "Redis ACL user `name`")
	fs.StringVar(&r.password, "redis-password", "", "Redis `password`")
	fs.StringVar(&redisPasswordFile, "redis-password-file", "", "file holding the Redis password (one line; instead of -redis-password)")
	fs.StringVar(&r.sentinelUsername, "redis-sentinel-username", "", "user `name` for the sentinels")
	fs.StringVar(&r.sentinelPassword, "redis-sentinel-password", "", "`password` for the sentinels")
	fs.IntVar(&r.db, "redis-db", 0, "Redis database `number` (standalone and sentinel)")
	fs.BoolVar(&redisTLS, "redis-tls", false, "connect to Redis over TLS (implied by any -redis-tls-* flag)")
	fs.StringVar(&redisTLSCA, "redis-tls-ca", "", "PEM `file` of the CAs that sign Redis's certificate (default: the system's)")
	fs.StringVar(&redisTLSCert, "redis-tls-cert", "", "PEM client certificate `file` (with -redis-tls-key)")
	fs.StringVar(&redisTLSKey, "redis-tls-key", "", "PEM client key `file` (with -redis-tls-cert)")
	fs.StringVar(&redisTLSServerName, "redis-tls-server-name", "", "server `name` to verify Redis's certificate against (default: the address's host)")
	fs.IntVar(&r.poolSize, "redis-pool-size", 0, "connections per Redis node; 0 takes the client's default (10 per CPU)")
	fs.DurationVar(&r.dialTimeout, "redis-dial-timeout", 0, "Redis connect `timeout`; 0 takes the backend's default (2s)")
	fs.DurationVar(&r.readTimeout, "redis-read-timeout", 0, "Redis read `timeout`; 0 takes the backend's default (1s; calls are bounded by -backend-timeout anyway)")
	fs.DurationVar(&r.writeTimeout, "redis-write-timeout", 0, "Redis write `timeout`; 0 takes the backend's default (1s)")
	fs.DurationVar(&r.batchWindow, "redis-batch-window", 0, "`time` concurrent calls may wait to share one Redis pipeline; 0 or negative: off (the default, see docs/benchmarks.md); 1ns shares pipelines only among calls already waiting")
	fs.IntVar(&r.batchMax, "redis-batch-max", 0, "most calls in one Redis pipeline; 0 takes the backend's default (64)")
	fs.BoolVar(&r.functions, "redis-functions", true, "run the decisions as a Redis Functions library (Redis 7+, loaded on first use; older servers fall back by themselves); false sends scripts with EVALSHA")

	onFailure := fs.String("on-backend-failure", resilient.Unavailable.String(), "answer when the remote backend fails: unavailable (gRPC UNAVAILABLE, Envoy's failure_mode_deny decides), allow, deny, or local (decide in memory with each limit divided by -fallback-replicas)")
	fs.IntVar(&s.fallbackReplicas, "fallback-replicas", 1, "`replicas` sharing the limits: under -on-backend-failure local each limit is divided by it")
	fs.IntVar(&s.breakerFailures, "breaker-failures", resilient.DefaultBreakerFailures, "consecutive failed backend calls that open the circuit breaker (answer at once, without calling Redis); 0 disables it")
	fs.DurationVar(&s.breakerProbeInterval, "breaker-probe-interval", resilient.DefaultProbeInterval, "`time` an open circuit breaker waits before it probes Redis again")
	fs.IntVar(&s.localCacheSize, "local-cache-size", 0, "`entries` of the local over-limit cache, which answers buckets known to be over limit without Redis; 0 off (see docs/operations.md for when it is exact)")
	mode := fs.String("charge-mode", backends.AllOrNothing.String(), "what a request with an over-limit descriptor consumes: all_or_nothing (nothing), charge_always (everything, as envoyproxy/ratelimit), stop_when_over (as its STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT)")
	fs.StringVar(&s.keyPrefix, "key-prefix", "", "`prefix` of every bucket key")

	fs.BoolVar(&s.globalShadowMode, "global-shadow-mode", false, "answer OK to every descriptor while still counting and reporting over-limit decisions")
	fs.BoolVar(&s.globalQuotaMode, "global-quota-mode", false, "treat every rule as in quota mode: over-limit descriptors answer OK and are listed in the dynamic metadata's quotaModeViolations")
	fs.BoolVar(&s.responseHeaders, "response-headers", false, "add rate-limit headers to responses")
	fs.StringVar(&s.headerLimit, "header-limit", "RateLimit-Limit", "`name` of the limit response header")
	fs.StringVar(&s.headerRemaining, "header-remaining", "RateLimit-Remaining", "`name` of the remaining response header")
	fs.StringVar(&s.headerReset, "header-reset", "RateLimit-Reset", "`name` of the reset response header")
	fs.BoolVar(&s.dynamicMetadata, "dynamic-metadata", false, "return the request's descriptors as dynamic metadata")
	headerStyle := fs.String("header-style", "", "rate-limit headers on every answer, from the descriptor closest to its limit: off, reference (-header-limit/-remaining/-reset names, as -response-headers), draft03 (X-RateLimit-*), ietf (RateLimit-Policy and RateLimit) or both (draft03 and ietf); draft03, ietf and both add Retry-After to over-limit answers (default off, or reference with -response-headers)")
	fs.BoolVar(&s.headerResetUnix, "header-reset-unix", false, "make the draft03 X-RateLimit-Reset the Unix time of the reset instead of the seconds until it")
	body := fs.String("over-limit-body", "off", "raw_body of over-limit answers, with its Content-Type: off, problem+json (RFC 9457) or json ({\"error\": {...}})")
	fs.StringVar(&s.problemType, "problem-type", server.DefaultProblemType, "`URI` in the type field of problem+json bodies")

	fs.StringVar(&s.adminTokenFile, "admin-token-file", "", "`file` of bearer tokens for the admin API (one per line, optionally \"name token\"); the admin API is off without it")
	fs.StringVar(&s.adminAddr, "admin-addr", "", "`address` of a listener of its own for the admin API (default: served on -grpc-addr)")
	fs.StringVar(&s.adminTLSCert, "admin-tls-cert", "", "PEM certificate `file` of the admin listener (with -admin-tls-key; needs -admin-addr)")
	fs.StringVar(&s.adminTLSKey, "admin-tls-key", "", "PEM key `file` of the admin listener")
	fs.StringVar(&s.adminClientCA, "admin-client-ca", "", "PEM `file` of the CAs whose client certificates the admin listener requires (mTLS)")
	fs.StringVar(&s.overridesFile, "overrides-file", "ratelimitd-overrides.json", "`file` keeping the admin API's overrides with the memory backend, written atomically")
	fs.StringVar(&s.overridesKey, "overrides-key", "ratelimitd:{overrides}", "Redis hash `key` keeping the admin API's overrides with the redis backend (after -key-prefix)")
	fs.DurationVar(&s.overridesPoll, "overrides-poll", 250*time.Millisecond, "how often every replica checks the override store for changes")

	fs.DurationVar(&s.maxConnectionAge, "max-connection-age", time.Hour, "close gRPC connections after this `time` (with a jitter) so clients rebalance across replicas; 0 never")
	fs.DurationVar(&s.maxConnectionAgeGrace, "max-connection-age-grace", 10*time.Second, "`time` a connection closed for its age gets to finish its calls")
	fs.DurationVar(&s.drainTimeout, "drain-timeout", 10*time.Second, "on SIGTERM or SIGINT, `time` in-flight calls get to finish before they are cut")
	fs.IntVar(&s.grpcMaxRecvMsgSize, "grpc-max-recv-msg-size", defaultMaxRecvMsgSize, "largest gRPC request in `bytes`; a larger one is refused with RESOURCE_EXHAUSTED before it is decoded")
	fs.IntVar(&s.grpcStreamWorkers, "grpc-stream-workers", defaultStreamWorkers, "`number` of long-lived goroutines serving gRPC calls (their grown stacks are reused); 0 starts a goroutine per call, as gRPC does by default")
	fs.IntVar(&s.gcPercent, "gc-percent", defaultGCPercent, "heap growth allowed between garbage collections, in `percent` of the live heap (GOGC), at least -gc-headroom; -1 turns the collector off; a GOGC environment variable replaces both")
	fs.Int64Var(&s.gcHeadroom, "gc-headroom", defaultGCHeadroom, "heap growth in `bytes` always allowed between garbage collections, however small the live heap; 0 leaves -gc-percent alone")

	fs.StringVar(&s.tlsCert, "tls-cert", "", "PEM certificate `file` of the gRPC and HTTP listeners (with -tls-key); reloaded when it changes")
	fs.StringVar(&s.tlsKey, "tls-key", "", "PEM key `file` of the gRPC and HTTP listeners")
	fs.StringVar(&s.tlsClientCA, "tls-client-ca", "", "PEM `file` of the CAs whose client certificates the gRPC listener requires (mTLS); not the HTTP listener; reloaded when it changes")
	fs.BoolVar(&s.httpTLS, "http-tls", true, "serve the HTTP listener over TLS too when -tls-cert is set; false keeps it plain (probes, scrapes)")
	fs.StringVar(&s.debugAddr, "debug-addr", "", "`address` of a listener serving net/http/pprof under /debug/pprof/; off when empty (keep it on loopback)")

	fs.StringVar(&s.otlpEndpoint, "otlp-endpoint", "", "`host:port` of an OTLP gRPC collector to send traces to; tracing is off when empty")
	fs.BoolVar(&s.otlpInsecure, "otlp-insecure", false, "send traces to -otlp-endpoint without TLS")
	fs.Float64Var(&s.traceSampleRatio, "trace-sample-ratio", defaultTraceSampleRatio, "`ratio` of calls without a sampled parent that are traced, 0 to 1; calls whose traceparent says sampled are always traced")

	fs.StringVar(&s.logFormat, "log-format", "text", "log format: text or json")
	fs.TextVar(&s.logLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")

	fs.StringVar(&s.validate, "validate", "", "load the config at `path`, print each rule on one line and exit 0, or print every error and exit 1")

	fs.VisitAll(func(f *flag.Flag) {
		if hasEnv(f.Name) {
			f.Usage += " [$" + envName(f.Name) + "]"
		}
	})
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] || !hasEnv(f.Name) {
			return
		}
		name := envName(f.Name)
		if v := getenv(name); v != "" {
			given[f.Name] = true
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("invalid value %q for %s: %v", v, name, e)
			}
		}
	})
	if err != nil {
		return s, err
	}
	// Last, envoyproxy/ratelimit's own variables (compat.go).
	ref, notes, err := referenceSettings(getenv)
	if err != nil {
		return s, err
	}
	s.notes = notes
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := ref[f.Name]; ok && err == nil && !given[f.Name] && hasEnv(f.Name) {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("invalid value %q for -%s (from envoyproxy/ratelimit's settings): %v", v, f.Name, e)
			}
		}
	})
	if err != nil {
		return s, err
	}

	if s.chargeMode, err = backends.ParseMode(*mode); err != nil {
		return s, err
	}
	if *headerStyle != "" {
		if s.headerStyle, err = server.ParseHeaderStyle(*headerStyle); err != nil {
			return s, fmt.Errorf("-header-style: %w", err)
		}
	}
	if s.overLimitBody, err = server.ParseBodyFormat(*body); err != nil {
		return s, fmt.Errorf("-over-limit-body: %w", err)
	}
	if (s.adminTLSCert == "") != (s.adminTLSKey == "") {
		return s, errors.New("-admin-tls-cert and -admin-tls-key go together")
	}
	if (s.adminTLSCert != "" || s.adminClientCA != "") && s.adminAddr == "" {
		return s, errors.New("-admin-tls-cert and -admin-client-ca need -admin-addr: TLS is for the admin API's own listener")
	}
	if s.adminClientCA != "" && s.adminTLSCert == "" {
		return s, errors.New("-admin-client-ca needs -admin-tls-cert and -admin-tls-key")
	}
	if err := checkTLSSettings(s); err != nil {
		return s, err
	}
	if err := checkTracingSettings(s); err != nil {
		return s, err
	}
	if s.grpcMaxRecvMsgSize <= 0 || s.grpcMaxRecvMsgSize > maxMaxRecvMsgSize {
		return s, fmt.Errorf("-grpc-max-recv-msg-size must be from 1 to %d bytes, not %d", maxMaxRecvMsgSize, s.grpcMaxRecvMsgSize)
	}
	if s.grpcStreamWorkers < 0 || s.grpcStreamWorkers > maxStreamWorkers {
		return s, fmt.Errorf("-grpc-stream-workers must be from 0 to %d, not %d", maxStreamWorkers, s.grpcStreamWorkers)
	}
	if s.gcPercent < -1 || s.gcPercent == 0 {
		return s, fmt.Errorf("-gc-percent must be positive, or -1 to turn the collector off, not %d", s.gcPercent)
	}
	if s.gcHeadroom < 0 {
		return s, fmt.Errorf("-gc-headroom must not be negative, not %d", s.gcHeadroom)
	}
	if s.overridesPoll <= 0 || s.overridesPoll > time.Second {
		return s, fmt.Errorf("-overrides-poll must be from 1ms to 1s (every replica sees a change within it), not %s", s.overridesPoll)
	}
	if s.logFormat != "text" && s.logFormat != "json" {
		return s, fmt.Errorf("unknown log format %q (want text or json)", s.logFormat)
	}
	if s.backend != "memory" && s.backend != "redis" {
		return s, fmt.Errorf("unknown backend %q (want memory or redis)", s.backend)
	}
	if s.onFailure, err = resilient.ParsePolicy(*onFailure); err != nil {
		return s, fmt.Errorf("-on-backend-failure: %w", err)
	}
	if s.fallbackReplicas < 1 {
		return s, fmt.Errorf("-fallback-replicas must be at least 1, not %d", s.fallbackReplicas)
	}
	for name, n := range map[string]int{
		"breaker-failures": s.breakerFailures, "local-cache-size": s.localCacheSize,
		"redis-pool-size": r.poolSize, "redis-batch-max": r.batchMax, "redis-db": r.db,
	} {
		if n < 0 {
			return s, fmt.Errorf("-%s must not be negative", name)
		}
	}
	if v := getenv(testClockOffsetEnv); v != "" {
		if s.clockOffset, err = time.ParseDuration(v); err != nil {
			return s, fmt.Errorf("invalid value %q for %s: %v", v, testClockOffsetEnv, err)
		}
	}
	if s.backend == "redis" {
		if err := parseRedis(r, redisAddr, redisPasswordFile, redisTLS, redisTLSCA, redisTLSCert, redisTLSKey, redisTLSServerName); err != nil {
			return s, err
		}
	}
	if strings.ContainsAny(s.keyPrefix, "{}") {
		// Redis Cluster hashes the first {...} of a key: a brace in the
		// prefix would put every bucket on one slot, or break hash_tag.
		return s, fmt.Errorf("-key-prefix %q must not contain { or }", s.keyPrefix)
	}
	if s.memoryMaxBuckets <= 0 {
		return s, fmt.Errorf("-memory-max-buckets must be positive, not %d", s.memoryMaxBuckets)
	}
	for name, d := range map[string]time.Duration{
		"backend-timeout": s.backendTimeout, "drain-timeout": s.drainTimeout, "reload-debounce": s.reloadDebounce,
		"max-connection-age": s.maxConnectionAge, "max-connection-age-grace": s.maxConnectionAgeGrace,
		"breaker-probe-interval": s.breakerProbeInterval, "redis-dial-timeout": r.dialTimeout,
		"redis-read-timeout": r.readTimeout, "redis-write-timeout": r.writeTimeout,
	} {
		if d < 0 {
			return s, fmt.Errorf("-%s must not be negative", name)
		}
	}
	if s.backendTimeout == 0 {
		return s, fmt.Errorf("-backend-timeout must be positive")
	}
	return s, nil
}

// configOptions are the options every config load uses.
func (s settings) configOptions() config.Options {
	return config.Options{MergeDomains: s.mergeDomains, TrailingWildcardsOnly: s.trailingWildcards}
}

// parseRedis completes r from the -redis-* flags that need work: the
// address list, the password file and the TLS files, all read once here.
func parseRedis(r *redisSettings, addrs, passwordFile string, useTLS bool, caFile, certFile, keyFile, serverName string) error {
	switch r.topology {
	case "standalone", "sentinel", "cluster":
	default:
		return fmt.Errorf("unknown -redis-topology %q (want standalone, sentinel or cluster)", r.topology)
	}
	for a := range strings.SplitSeq(addrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			r.addrs = append(r.addrs, a)
		}
	}
	if len(r.addrs) == 0 {
		return errors.New("-redis-addr is empty")
	}
	if r.topology == "standalone" && len(r.addrs) > 1 {
		return fmt.Errorf("-redis-addr: a standalone Redis has one address, not %d (use -redis-topology sentinel or cluster)", len(r.addrs))
	}
	if r.topology == "sentinel" && r.masterName == "" {
		return errors.New("-redis-topology sentinel needs -redis-master-name")
	}
	if passwordFile != "" {
		if r.password != "" {
			return errors.New("-redis-password and -redis-password-file are exclusive")
		}
		b, err := os.ReadFile(passwordFile)
		if err != nil {
			return fmt.Errorf("-redis-password-file: %w", err)
		}
		r.password = strings.TrimRight(string(b), "\r\n")
	}
	if !useTLS && caFile == "" && certFile == "" && keyFile == "" && serverName == "" {
		return nil
	}
	if (certFile == "") != (keyFile == "") {
		return errors.New("-redis-tls-cert and -redis-tls-key go together")
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return fmt.Errorf("-redis-tls-ca: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-redis-tls-ca: no PEM certificate in %s", caFile)
		}
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return fmt.Errorf("-redis-tls-cert, -redis-tls-key: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	r.tls = c
	return nil
}
