package sandpit

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"
)

// Error categories. Errors returned by this package wrap at most one of them,
// so callers can branch with errors.Is.
var (
	// ErrNotFound: the sandbox, file, process or code context does not exist
	// (for a sandbox: never existed, was killed, or timed out).
	ErrNotFound = errors.New("not found")
	// ErrAuth: the API key or the sandbox access token was refused, or the
	// user named in a call does not exist in the sandbox.
	ErrAuth = errors.New("authentication failed")
	// ErrTimeout: a deadline passed, the call's own (a command's timeout)
	// or the sandbox's.
	ErrTimeout = errors.New("timed out")
	// ErrRateLimited: the server asked the client to slow down (HTTP 429).
	ErrRateLimited = errors.New("rate limited")
	// ErrInvalidArgument: the server rejected the request's arguments.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrAlreadyExists: the thing to create is already there.
	ErrAlreadyExists = errors.New("already exists")
	// ErrPermission: the sandbox user may not do this (e.g. read root's
	// files as "user").
	ErrPermission = errors.New("permission denied")
	// ErrNotEnoughSpace: the sandbox's disk is full.
	ErrNotEnoughSpace = errors.New("not enough space")
	// ErrUnavailable: the server is busy or could not be reached.
	ErrUnavailable = errors.New("unavailable")
)

// Error is an error reported by the server (or by the path to it). It wraps
// one of the category sentinels, if the status maps to one, and the
// underlying cause.
type Error struct {
	// Op names the operation, e.g. "create sandbox" or "read /etc/hosts".
	Op string
	// StatusCode is the HTTP status of the response; 0 when none arrived.
	StatusCode int
	// Code is the Connect error code (e.g. "not_found") for RPC calls; empty
	// for plain HTTP calls.
	Code string
	// Message is the server's message.
	Message string

	kind  error
	cause error
}

// Error returns "op: message (category)".
func (e *Error) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	switch {
	case e.Message != "":
		b.WriteString(e.Message)
	case e.cause != nil:
		b.WriteString(e.cause.Error())
	case e.kind != nil:
		b.WriteString(e.kind.Error())
	case e.StatusCode != 0:
		b.WriteString(http.StatusText(e.StatusCode))
	default:
		b.WriteString("error")
	}
	if e.kind != nil && e.Message != "" && !strings.Contains(strings.ToLower(e.Message), e.kind.Error()) {
		fmt.Fprintf(&b, " (%s)", e.kind)
	}
	return b.String()
}

// Unwrap returns the category sentinel and the cause, for errors.Is/As.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	return errs
}

// CommandExitError is returned by Run and Wait when a command exits with a
// non-zero code. It carries what the command printed.
type CommandExitError struct {
	// ExitCode is the command's exit code; -1 when a signal killed it.
	ExitCode int
	// Stdout and Stderr are everything the command wrote.
	Stdout, Stderr string
	// Message is the server's description, e.g. "exit status 1".
	Message string
}

// Error returns "command exited with code N: message".
func (e *CommandExitError) Error() string {
	msg := fmt.Sprintf("command exited with code %d", e.ExitCode)
	if e.Message != "" && e.Message != fmt.Sprintf("exit status %d", e.ExitCode) {
		msg += ": " + e.Message
	}
	return msg
}

// kindForStatus maps an HTTP status to a category.
func kindForStatus(status int) error {
	switch status {
	case http.StatusBadRequest:
		return ErrInvalidArgument
	case http.StatusUnauthorized:
		return ErrAuth
	case http.StatusForbidden:
		return ErrPermission
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrAlreadyExists
	case http.StatusTooManyRequests:
		return ErrRateLimited
	case http.StatusServiceUnavailable:
		return ErrUnavailable
	case http.StatusGatewayTimeout:
		return ErrTimeout
	case http.StatusInsufficientStorage:
		return ErrNotEnoughSpace
	}
	return nil
}

// sandboxGone is the message for a 502 on the sandbox path: the proxy no
// longer knows the sandbox.
const sandboxGone = "the sandbox is not running (killed or timed out)"

// sandboxHTTPError builds the error for a non-2xx answer on the sandbox path
// (envd /files, the code interpreter): 502 means the sandbox is gone.
func sandboxHTTPError(op string, status int, msg string) *Error {
	if status == http.StatusBadGateway {
		return &Error{Op: op, StatusCode: status, Message: sandboxGone, kind: ErrNotFound}
	}
	return &Error{Op: op, StatusCode: status, Message: msg, kind: kindForStatus(status)}
}

// rpcError converts an error from a Connect call.
func rpcError(op string, err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return &Error{Op: op, cause: err, kind: transportKind(err)}
	}
	e := &Error{Op: op, Code: ce.Code().String(), Message: ce.Message(), cause: err}
	switch ce.Code() {
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition, connect.CodeOutOfRange:
		e.kind = ErrInvalidArgument
	case connect.CodeUnauthenticated:
		e.kind = ErrAuth
	case connect.CodePermissionDenied:
		e.kind = ErrPermission
	case connect.CodeNotFound:
		e.kind = ErrNotFound
	case connect.CodeAlreadyExists:
		e.kind = ErrAlreadyExists
	case connect.CodeResourceExhausted:
		e.kind = ErrRateLimited
	case connect.CodeDeadlineExceeded:
		e.kind = ErrTimeout
	case connect.CodeCanceled:
		// The caller's context, already in the cause chain.
	case connect.CodeUnavailable:
		// Not a Connect error body: the proxy's 502 for a sandbox it no
		// longer knows (connect-go maps 502 to unavailable).
		if !connect.IsWireError(err) || strings.Contains(ce.Message(), "Bad Gateway") || strings.Contains(ce.Message(), "502") {
			e.kind, e.Message = ErrNotFound, sandboxGone
		} else {
			e.kind = ErrUnavailable
		}
	case connect.CodeUnimplemented:
		// connect-go maps a plain 404 to unimplemented.
		if strings.Contains(ce.Message(), "404") {
			e.kind = ErrNotFound
		}
	}
	if e.kind == nil {
		e.kind = transportKind(err)
	}
	return e
}

// transportKind classifies errors that never reached the server.
func transportKind(err error) error {
	var oe interface{ Timeout() bool }
	if errors.As(err, &oe) && oe.Timeout() {
		return ErrTimeout
	}
	return nil
}
