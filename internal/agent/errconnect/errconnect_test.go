package errconnect

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"connectrpc.com/connect"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

func TestError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want connect.Code
	}{
		{errdefs.New(errdefs.ErrNotFound, "x"), connect.CodeNotFound},
		{fmt.Errorf("op: %w", errdefs.ErrInvalidArgument), connect.CodeInvalidArgument},
		{errdefs.ErrUnauthenticated, connect.CodeUnauthenticated},
		{errdefs.ErrConflict, connect.CodeFailedPrecondition},
		{context.DeadlineExceeded, connect.CodeDeadlineExceeded},
		{errors.New("boom"), connect.CodeInternal},
		{connect.NewError(connect.CodeAborted, errors.New("a")), connect.CodeAborted},
	} {
		if got := connect.CodeOf(Error(tc.err)); got != tc.want {
			t.Errorf("Error(%v) code %v, want %v", tc.err, got, tc.want)
		}
	}
	if Error(nil) != nil {
		t.Error("Error(nil) != nil")
	}
	if msg := Error(errdefs.New(errdefs.ErrNotFound, "process with pid 1 not found")).(*connect.Error).Message(); msg != "process with pid 1 not found" {
		t.Errorf("message %q", msg)
	}
}
