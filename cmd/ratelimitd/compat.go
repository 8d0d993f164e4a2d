package main

// envoyproxy/ratelimit is configured through its own environment variables
// (GRPC_PORT, RUNTIME_ROOT, REDIS_URL, ...). A user who swaps its binary
// for ours keeps them, so they are read as a third source: a flag wins, then
// its RATELIMITD_* variable, then the reference's variable, then our default.
// docs/migrating.md lists the mapping, with what to set for the variables
// not read here.

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// referenceVars are the envoyproxy/ratelimit variables ratelimitd knows. When
// any of them is set, its listen defaults apply too (0.0.0.0, not loopback),
// as the reference's do: a Deployment written for it keeps working.
var referenceVars = []string{
	"HOST", "PORT", "GRPC_HOST", "GRPC_PORT", "GRPC_UDS",
	"RUNTIME_ROOT", "RUNTIME_SUBDIRECTORY", "RUNTIME_APPDIRECTORY",
	"MERGE_DOMAIN_CONFIG", "CONFIG_TYPE", "LOG_LEVEL", "LOG_FORMAT",
	"BACKEND_TYPE", "REDIS_TYPE", "REDIS_URL", "REDIS_SOCKET_TYPE", "REDIS_AUTH",
	"REDIS_SENTINEL_AUTH", "REDIS_TLS", "REDIS_TLS_CACERT", "REDIS_TLS_CLIENT_CERT",
	"REDIS_TLS_CLIENT_KEY", "REDIS_POOL_SIZE", "REDIS_PIPELINE_WINDOW",
	"REDIS_PIPELINE_LIMIT", "REDIS_TIMEOUT", "LOCAL_CACHE_SIZE_IN_BYTES",
	"CACHE_KEY_PREFIX", "STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT", "SHADOW_MODE",
	"RESPONSE_DYNAMIC_METADATA", "LIMIT_RESPONSE_HEADERS_ENABLED",
	"LIMIT_LIMIT_HEADER", "LIMIT_REMAINING_HEADER", "LIMIT_RESET_HEADER",
	"GRPC_MAX_CONNECTION_AGE", "GRPC_MAX_CONNECTION_AGE_GRACE", "USE_STATSD",
	"REDIS_PERSECOND", "REDIS_TLS_SKIP_HOSTNAME_VERIFICATION", "TRACING_ENABLED",
	"FORCE_START_WITHOUT_INITIAL_CONFIG",
}

// localCacheEntryBytes converts LOCAL_CACHE_SIZE_IN_BYTES (the size of the
// reference's freecache) into entries of our over-limit cache.
const localCacheEntryBytes = 128

// referenceSettings translates the envoyproxy/ratelimit variables found by
// getenv into flag values (flag name → value, as on a command line). It
// returns the notes worth logging at start (settings read, settings that
// have no equivalent) and an error for a setting that cannot be honoured
// without changing behaviour (another config source, another backend).
func referenceSettings(getenv func(string) string) (vals map[string]string, notes []string, err error) {
	vals = map[string]string{}
	var seen []string
	for _, name := range referenceVars {
		if getenv(name) != "" {
			seen = append(seen, name)
		}
	}
	if len(seen) == 0 {
		return vals, nil, nil
	}
	notes = append(notes, "read envoyproxy/ratelimit settings from the environment: "+strings.Join(seen, ", "))
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	isTrue := func(name string) (bool, error) {
		v := getenv(name)
		if v == "" {
			return false, nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, fmt.Errorf("invalid value %q for %s: want true or false", v, name)
		}
		return b, nil
	}
	setBool := func(flagName, varName string) error {
		if getenv(varName) == "" {
			return nil
		}
		b, err := isTrue(varName)
		if err == nil {
			vals[flagName] = strconv.FormatBool(b)
		}
		return err
	}
	setString := func(flagName, varName string) {
		if v := getenv(varName); v != "" {
			vals[flagName] = v
		}
	}

	// Listeners: the reference's defaults are 0.0.0.0:8081 and 0.0.0.0:8080.
	if env("GRPC_UDS", "") != "" {
		return nil, nil, fmt.Errorf("GRPC_UDS is not supported: listen on TCP with -grpc-addr")
	}
	for _, name := range []string{"GRPC_PORT", "PORT"} {
		if v := getenv(name); v != "" {
			if n, err := strconv.Atoi(v); err != nil || n < 0 || n > 65535 {
				return nil, nil, fmt.Errorf("invalid value %q for %s: want a port number", v, name)
			}
		}
	}
	vals["grpc-addr"] = net.JoinHostPort(env("GRPC_HOST", "0.0.0.0"), env("GRPC_PORT", "8081"))
	vals["http-addr"] = net.JoinHostPort(env("HOST", "0.0.0.0"), env("PORT", "8080"))

	// Config: $RUNTIME_ROOT/$RUNTIME_SUBDIRECTORY/$RUNTIME_APPDIRECTORY.
	if t := env("CONFIG_TYPE", "FILE"); !strings.EqualFold(t, "FILE") {
		return nil, nil, fmt.Errorf("CONFIG_TYPE=%s is not supported: ratelimitd loads its config from files (-config)", t)
	}
	if getenv("RUNTIME_ROOT") != "" || getenv("RUNTIME_SUBDIRECTORY") != "" {
		vals["config"] = filepath.Join(env("RUNTIME_ROOT", "/srv/runtime_data/current"), getenv("RUNTIME_SUBDIRECTORY"), env("RUNTIME_APPDIRECTORY", "config"))
	}
	if err := setBool("merge-domains", "MERGE_DOMAIN_CONFIG"); err != nil {
		return nil, nil, err
	}

	// Logs: logrus level names.
	if v := getenv("LOG_LEVEL"); v != "" {
		switch l := strings.ToLower(v); l {
		case "trace", "debug":
			vals["log-level"] = "debug"
		case "info":
			vals["log-level"] = "info"
		case "warn", "warning":
			vals["log-level"] = "warn"
		case "error", "fatal", "panic":
			vals["log-level"] = "error"
		default:
			return nil, nil, fmt.Errorf("invalid value %q for LOG_LEVEL: want debug, info, warn or error", v)
		}
	}
	setString("log-format", "LOG_FORMAT")

	// Behaviour.
	setString("key-prefix", "CACHE_KEY_PREFIX")
	stop, err := isTrue("STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT")
	if err != nil {
		return nil, nil, err
	}
	if stop {
		vals["charge-mode"] = "stop_when_over"
	}
	for flagName, varName := range map[string]string{
		"global-shadow-mode": "SHADOW_MODE",
		"dynamic-metadata":   "RESPONSE_DYNAMIC_METADATA",
		"response-headers":   "LIMIT_RESPONSE_HEADERS_ENABLED",
	} {
		if err := setBool(flagName, varName); err != nil {
			return nil, nil, err
		}
	}
	setString("header-limit", "LIMIT_LIMIT_HEADER")
	setString("header-remaining", "LIMIT_REMAINING_HEADER")
	setString("header-reset", "LIMIT_RESET_HEADER")
	setString("max-connection-age", "GRPC_MAX_CONNECTION_AGE")
	setString("max-connection-age-grace", "GRPC_MAX_CONNECTION_AGE_GRACE")

	// Backend: the reference's default is Redis; with neither BACKEND_TYPE
	// nor REDIS_URL set there is no Redis to point at, so memory stays.
	switch b := strings.ToLower(getenv("BACKEND_TYPE")); {
	case b == "redis" || (b == "" && getenv("REDIS_URL") != ""):
		if err := referenceRedis(getenv, vals); err != nil {
			return nil, nil, err
		}
	case b == "":
	default:
		return nil, nil, fmt.Errorf("BACKEND_TYPE=%s is not supported: use redis, or leave it unset for the embedded memory backend", getenv("BACKEND_TYPE"))
	}
	if v := getenv("LOCAL_CACHE_SIZE_IN_BYTES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, nil, fmt.Errorf("invalid value %q for LOCAL_CACHE_SIZE_IN_BYTES: want a byte count", v)
		}
		vals["local-cache-size"] = strconv.Itoa(n / localCacheEntryBytes)
	}

	for _, name := range []string{"USE_STATSD", "REDIS_PERSECOND", "REDIS_TLS_SKIP_HOSTNAME_VERIFICATION", "TRACING_ENABLED", "FORCE_START_WITHOUT_INITIAL_CONFIG"} {
		if on, _ := isTrue(name); on {
			notes = append(notes, name+" is not read by ratelimitd and is ignored (docs/migrating.md says what to set instead, if anything)")
		}
	}
	return vals, notes, nil
}

// referenceRedis translates the reference's REDIS_* variables.
func referenceRedis(getenv func(string) string, vals map[string]string) error {
	vals["backend"] = "redis"
	url := getenv("REDIS_URL")
	if url == "" {
		url = "/var/run/nutcracker/ratelimit.sock" // the reference's default
	}
	parts := strings.Split(url, ",")
	switch t := strings.ToUpper(getenv("REDIS_TYPE")); t {
	case "", "SINGLE":
		vals["redis-topology"] = "standalone"
	case "SENTINEL":
		if len(parts) < 2 {
			return fmt.Errorf("REDIS_URL %q: a SENTINEL url is master-name,sentinel-address[,...]", url)
		}
		vals["redis-topology"] = "sentinel"
		vals["redis-master-name"] = parts[0]
		parts = parts[1:]
	case "CLUSTER":
		vals["redis-topology"] = "cluster"
	default:
		return fmt.Errorf("invalid value %q for REDIS_TYPE: want SINGLE, SENTINEL or CLUSTER", getenv("REDIS_TYPE"))
	}
	vals["redis-addr"] = strings.Join(parts, ",")
	if st := strings.ToLower(getenv("REDIS_SOCKET_TYPE")); st != "" && st != "tcp" && st != "unix" {
		return fmt.Errorf("invalid value %q for REDIS_SOCKET_TYPE: want tcp or unix", getenv("REDIS_SOCKET_TYPE"))
	}
	if auth := getenv("REDIS_AUTH"); auth != "" {
		if user, pass, ok := strings.Cut(auth, ":"); ok {
			vals["redis-username"], vals["redis-password"] = user, pass
		} else {
			vals["redis-password"] = auth
		}
	}
	if auth := getenv("REDIS_SENTINEL_AUTH"); auth != "" {
		if user, pass, ok := strings.Cut(auth, ":"); ok {
			vals["redis-sentinel-username"], vals["redis-sentinel-password"] = user, pass
		} else {
			vals["redis-sentinel-password"] = auth
		}
	}
	if v := getenv("REDIS_TLS"); v != "" {
		vals["redis-tls"] = v
	}
	for flagName, varName := range map[string]string{
		"redis-tls-ca": "REDIS_TLS_CACERT", "redis-tls-cert": "REDIS_TLS_CLIENT_CERT", "redis-tls-key": "REDIS_TLS_CLIENT_KEY",
		"redis-pool-size": "REDIS_POOL_SIZE", "redis-batch-window": "REDIS_PIPELINE_WINDOW", "redis-batch-max": "REDIS_PIPELINE_LIMIT",
	} {
		if v := getenv(varName); v != "" {
			vals[flagName] = v
		}
	}
	if v := getenv("REDIS_TIMEOUT"); v != "" {
		if _, err := time.ParseDuration(v); err != nil {
			return fmt.Errorf("invalid value %q for REDIS_TIMEOUT: %v", v, err)
		}
		vals["redis-dial-timeout"], vals["redis-read-timeout"], vals["redis-write-timeout"] = v, v, v
	}
	return nil
}
