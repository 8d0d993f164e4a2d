package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ratelimitd/ratelimitd/backends"
)

// Errors are plain values inside the package; this file is the one place
// that maps them to gRPC codes (and, through the codes, to HTTP statuses and
// metric labels).
//
// A backend failure is UNAVAILABLE, never a response with overall_code
// UNKNOWN: Envoy lets UNKNOWN through whatever failure_mode_deny says, while
// an RPC error obeys failure_mode_deny, so the operator decides what a
// broken backend means (Kuadrant/limitador answers UNAVAILABLE for the same
// reason).

// errNoConfig is returned before the first config was loaded.
var errNoConfig = errors.New("no rate limit configuration loaded")

// invalidRequestError is a request the server refuses to decide. Its text is
// the whole gRPC status message.
type invalidRequestError struct{ msg string }

func (e *invalidRequestError) Error() string { return e.msg }

func invalidf(format string, args ...any) error {
	return &invalidRequestError{msg: fmt.Sprintf(format, args...)}
}

// backendError is a failed backend call. kind is its
// ratelimitd_backend_errors_total label (see backendErrorKind).
type backendError struct {
	err  error
	kind string
}

func (e *backendError) Error() string { return "server: backend apply: " + e.err.Error() }
func (e *backendError) Unwrap() error { return e.err }

// classify returns the gRPC code and the requests_total label of err.
func classify(err error) (codes.Code, string) {
	var inv *invalidRequestError
	var be *backendError
	switch {
	case errors.As(err, &inv):
		return codes.InvalidArgument, codeInvalidArgument
	case errors.Is(err, errNoConfig):
		return codes.FailedPrecondition, codeFailedPrecondition
	case errors.As(err, &be):
		// The caller going away is not the backend's fault; a deadline,
		// ours or the caller's, is reported as the backend being unavailable.
		if errors.Is(be.err, context.Canceled) && !errors.Is(be.err, backends.ErrUnavailable) {
			return codes.Canceled, codeCanceled
		}
		return codes.Unavailable, codeUnavailable
	}
	return codes.Internal, codeInternal
}

// toStatus turns err into the error returned to gRPC callers.
func toStatus(err error) error {
	code, _ := classify(err)
	var inv *invalidRequestError
	if errors.As(err, &inv) {
		return status.Error(code, inv.msg)
	}
	return status.Error(code, err.Error())
}

// httpStatus maps the gRPC code of a failed /json call to an HTTP status.
func httpStatus(code codes.Code) int {
	switch code {
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.FailedPrecondition, codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.Canceled:
		return 499 // client closed request, as nginx
	}
	return http.StatusInternalServerError
}
