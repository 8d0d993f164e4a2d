// Command ratelimitctl is the operator CLI of ratelimitd: it checks config
// files offline (validate, explain), sends ShouldRateLimit calls (check),
// and drives a running ratelimitd's admin API (limits, inspect, reset,
// config).
//
// Usage:
//
//	ratelimitctl validate PATH
//	ratelimitctl explain -config PATH [-domain D] key=value...
//	ratelimitctl check -domain D [-hits N] key=value... [-- key=value...]
//	ratelimitctl limits set -domain D key=value... VALUE
//	ratelimitctl limits get|unset -domain D key=value...
//	ratelimitctl limits list [-domain D] [-page-size N]
//	ratelimitctl inspect -domain D key=value...
//	ratelimitctl reset -domain D key=value...
//	ratelimitctl config [-rules]
//	ratelimitctl noop-server [-listen ADDR]
//	ratelimitctl version | help [command]
//
// Flags may come before, between or after the arguments. VALUE is a limit
// ("500/minute", parsed by config.ParseLimitSpec), "unlimited" or
// "policy=NAME".
//
// Exit codes: 0 ok; 1 error (connection, server error, invalid config);
// 2 usage error (also an argument the server refuses as InvalidArgument);
// 3 not found (no rule matches, no override); 4 over limit (check);
// 5 permission denied (Unauthenticated, PermissionDenied, or the admin API
// is off).
//
// The connection flags fall back to the environment: -addr to
// RATELIMITCTL_ADDR, -token to RATELIMITCTL_TOKEN, -token-file to
// RATELIMITCTL_TOKEN_FILE, and likewise RATELIMITCTL_TLS, _CA, _CERT, _KEY
// and _TIMEOUT. A flag on the command line wins. See docs/ratelimitctl.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
