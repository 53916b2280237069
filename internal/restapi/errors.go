package restapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/sandpit-dev/sandpit/gen/openapi"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// statusOf maps an error's category to its HTTP status. It is the one
// place that does so.
func statusOf(err error) int {
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errdefs.ErrInvalidArgument):
		return http.StatusBadRequest
	case errors.Is(err, errdefs.ErrAlreadyExists), errors.Is(err, errdefs.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, errdefs.ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, errdefs.ErrPermissionDenied):
		return http.StatusForbidden
	case errors.Is(err, errdefs.ErrResourceExhausted):
		return http.StatusTooManyRequests
	case errors.Is(err, errdefs.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, errdefs.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, errdefs.ErrNotImplemented):
		return http.StatusNotImplemented
	default:
		return http.StatusInternalServerError
	}
}

// categories are the errdefs sentinels a client message may hang off.
func categories() []error {
	return []error{
		errdefs.ErrNotFound, errdefs.ErrInvalidArgument, errdefs.ErrAlreadyExists,
		errdefs.ErrConflict, errdefs.ErrUnauthenticated, errdefs.ErrPermissionDenied,
		errdefs.ErrResourceExhausted, errdefs.ErrUnavailable, errdefs.ErrDeadlineExceeded,
		errdefs.ErrNotImplemented,
	}
}

// clientMessage is the part of err written for clients: the message of
// the error that directly wraps a category (errdefs.New's message), not the
// context wrapped around it on the way up, which may name host paths.
func clientMessage(err error) (string, bool) {
	switch e := err.(type) {
	case interface{ Unwrap() error }:
		inner := e.Unwrap()
		for _, c := range categories() {
			if inner == c {
				return err.Error(), true
			}
		}
		if inner != nil {
			return clientMessage(inner)
		}
	case interface{ Unwrap() []error }:
		for _, inner := range e.Unwrap() {
			if msg, ok := clientMessage(inner); ok {
				return msg, true
			}
		}
	}
	return "", false
}

// writeError writes err as E2B's error body, {"code": status, "message":
// ...}. Server-side failures get a generic message; their cause goes to the
// log only.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	body := s.errorBody(r, err)
	status := int(body.Code)
	// E2B's Python SDK retries 429s and 503s unless told Should-Retry:
	// false, waiting Retry-After seconds when given.
	// Without advice, a 429 (the daemon at capacity) is worth a retry
	// soon.
	if retry, after, ok := errdefs.Retry(err); ok {
		w.Header().Set("Should-Retry", strconv.FormatBool(retry))
		if retry && after > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64((after+time.Second-1)/time.Second), 10))
		}
	} else if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, body)
}

// errorBody is err as E2B's error body, {"code": status, "message": ...}:
// server-side failures get a generic message, their cause goes to the log
// only.
func (s *server) errorBody(r *http.Request, err error) openapi.Error {
	status := statusOf(err)
	msg, ok := clientMessage(err)
	if !ok || status == http.StatusInternalServerError {
		msg = http.StatusText(status)
		if status == http.StatusInternalServerError {
			msg = "internal server error; the server log has details"
		}
	}
	if status >= 500 {
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	return openapi.Error{Code: int32(status), Message: msg}
}

// writeJSON writes v as a JSON response with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"code":500,"message":"encoding the response failed"}`)
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
