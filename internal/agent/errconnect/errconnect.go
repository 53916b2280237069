// Package errconnect maps sandpit's error categories (internal/errdefs) to
// Connect error codes: the one place the agent's RPC handlers do so.
package errconnect

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

var codes = []struct {
	category error
	code     connect.Code
}{
	{errdefs.ErrNotFound, connect.CodeNotFound},
	{errdefs.ErrInvalidArgument, connect.CodeInvalidArgument},
	{errdefs.ErrAlreadyExists, connect.CodeAlreadyExists},
	{errdefs.ErrConflict, connect.CodeFailedPrecondition},
	{errdefs.ErrUnauthenticated, connect.CodeUnauthenticated},
	{errdefs.ErrPermissionDenied, connect.CodePermissionDenied},
	{errdefs.ErrResourceExhausted, connect.CodeResourceExhausted},
	{errdefs.ErrUnavailable, connect.CodeUnavailable},
	{errdefs.ErrDeadlineExceeded, connect.CodeDeadlineExceeded},
	{errdefs.ErrNotImplemented, connect.CodeUnimplemented},
	{context.DeadlineExceeded, connect.CodeDeadlineExceeded},
	{context.Canceled, connect.CodeCanceled},
}

// Code returns the Connect code for err's category, CodeInternal when it has
// none.
func Code(err error) connect.Code {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code()
	}
	for _, c := range codes {
		if errors.Is(err, c.category) {
			return c.code
		}
	}
	return connect.CodeInternal
}

// Error converts err to a *connect.Error (nil stays nil). The message is
// err's text: inside a sandbox every path and cause belongs to the user.
func Error(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	return connect.NewError(Code(err), err)
}
