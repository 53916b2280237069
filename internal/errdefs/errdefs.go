// Package errdefs defines the few error categories sandpit uses internally.
// Packages wrap these with %w and context; the edges (REST handlers, Connect
// handlers, the SDK) map a category to a wire code in one place each.
package errdefs

import "errors"

// Categories. Match them with errors.Is, never by message.
var (
	ErrNotFound          = errors.New("not found")
	ErrInvalidArgument   = errors.New("invalid argument")
	ErrAlreadyExists     = errors.New("already exists")
	ErrConflict          = errors.New("conflict")
	ErrUnauthenticated   = errors.New("unauthenticated")
	ErrPermissionDenied  = errors.New("permission denied")
	ErrResourceExhausted = errors.New("resource exhausted")
	ErrUnavailable       = errors.New("unavailable")
	ErrDeadlineExceeded  = errors.New("deadline exceeded")
	ErrNotImplemented    = errors.New("not implemented")
)

// userError carries a message written for clients alongside a category.
type userError struct {
	category error
	msg      string
}

func (e *userError) Error() string { return e.msg }
func (e *userError) Unwrap() error { return e.category }

// New returns an error in category whose message is safe to show a client.
// Use it where the message is the whole story; wrap with fmt.Errorf("...: %w")
// where a cause from below should stay in the logs.
func New(category error, msg string) error {
	return &userError{category: category, msg: msg}
}
