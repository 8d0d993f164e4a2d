package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/ratelimitd/ratelimitd/backends"
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
	reloadDebounce     time.Duration

	backend          string
	memoryMaxBuckets int
	backendTimeout   time.Duration
	chargeMode       backends.Mode
	keyPrefix        string

	globalShadowMode bool
	responseHeaders  bool
	headerLimit      string
	headerRemaining  string
	headerReset      string
	dynamicMetadata  bool

	maxConnectionAge      time.Duration
	maxConnectionAgeGrace time.Duration
	drainTimeout          time.Duration

	logFormat string
	logLevel  slog.Level

	// validate, when set, is the path to load and print instead of serving.
	validate string
}

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
// unset). Usage and flag errors are written to stderr; -h returns
// flag.ErrHelp.
func parseSettings(args []string, getenv func(string) string, stderr io.Writer) (settings, error) {
	var s settings
	fs := flag.NewFlagSet("ratelimitd", flag.ContinueOnError)
	fs.SetOutput(stderr)

	fs.StringVar(&s.grpcAddr, "grpc-addr", "127.0.0.1:8081", "`address` of the gRPC server (RLS, health, reflection); port 0 picks a free port")
	fs.StringVar(&s.httpAddr, "http-addr", "127.0.0.1:8080", "`address` of the HTTP server (/healthcheck, /healthz, /readyz, /json, /metrics, /rlconfig); port 0 picks a free port")
	fs.StringVar(&s.configPath, "config", "examples/quickstart/config", "config `path`: a YAML file, or a directory whose *.yaml and *.yml files are loaded (hidden files skipped); watched for changes")
	fs.BoolVar(&s.mergeDomains, "merge-domains", false, "let several config files declare the same domain and merge their descriptors")
	fs.DurationVar(&s.reloadDebounce, "reload-debounce", 200*time.Millisecond, "quiet `time` after the last change on disk before the config is reloaded")

	fs.StringVar(&s.backend, "backend", "memory", "where bucket state lives: memory")
	fs.IntVar(&s.memoryMaxBuckets, "memory-max-buckets", 1_000_000, "most buckets the memory backend keeps (see docs/operations.md for what happens when full)")
	fs.DurationVar(&s.backendTimeout, "backend-timeout", 10*time.Millisecond, "deadline of one call to a remote backend (Redis); past it the call answers UNAVAILABLE")
	mode := fs.String("charge-mode", backends.AllOrNothing.String(), "what a request with an over-limit descriptor consumes: all_or_nothing (nothing), charge_always (everything, as envoyproxy/ratelimit), stop_when_over (as its STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT)")
	fs.StringVar(&s.keyPrefix, "key-prefix", "", "`prefix` of every bucket key")

	fs.BoolVar(&s.globalShadowMode, "global-shadow-mode", false, "answer OK to every descriptor while still counting and reporting over-limit decisions")
	fs.BoolVar(&s.responseHeaders, "response-headers", false, "add rate-limit headers to responses")
	fs.StringVar(&s.headerLimit, "header-limit", "RateLimit-Limit", "`name` of the limit response header")
	fs.StringVar(&s.headerRemaining, "header-remaining", "RateLimit-Remaining", "`name` of the remaining response header")
	fs.StringVar(&s.headerReset, "header-reset", "RateLimit-Reset", "`name` of the reset response header")
	fs.BoolVar(&s.dynamicMetadata, "dynamic-metadata", false, "return the request's descriptors as dynamic metadata")

	fs.DurationVar(&s.maxConnectionAge, "max-connection-age", time.Hour, "close gRPC connections after this `time` (with a jitter) so clients rebalance across replicas; 0 never")
	fs.DurationVar(&s.maxConnectionAgeGrace, "max-connection-age-grace", 10*time.Second, "`time` a connection closed for its age gets to finish its calls")
	fs.DurationVar(&s.drainTimeout, "drain-timeout", 10*time.Second, "on SIGTERM or SIGINT, `time` in-flight calls get to finish before they are cut")

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
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("invalid value %q for %s: %v", v, name, e)
			}
		}
	})
	if err != nil {
		return s, err
	}

	if s.chargeMode, err = backends.ParseMode(*mode); err != nil {
		return s, err
	}
	if s.logFormat != "text" && s.logFormat != "json" {
		return s, fmt.Errorf("unknown log format %q (want text or json)", s.logFormat)
	}
	if s.backend != "memory" {
		return s, fmt.Errorf("unknown backend %q (want memory)", s.backend)
	}
	if s.memoryMaxBuckets <= 0 {
		return s, fmt.Errorf("-memory-max-buckets must be positive, not %d", s.memoryMaxBuckets)
	}
	for name, d := range map[string]time.Duration{
		"backend-timeout": s.backendTimeout, "drain-timeout": s.drainTimeout, "reload-debounce": s.reloadDebounce,
		"max-connection-age": s.maxConnectionAge, "max-connection-age-grace": s.maxConnectionAgeGrace,
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
