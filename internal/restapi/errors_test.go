package restapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

func TestStatusOfAndClientMessage(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		msg    string // "" when no client message exists
	}{
		{errdefs.New(errdefs.ErrNotFound, "sandbox x not found"), 404, "sandbox x not found"},
		{fmt.Errorf("getting /host/path: %w", errdefs.New(errdefs.ErrNotFound, "sandbox x not found")), 404, "sandbox x not found"},
		{errdefs.New(errdefs.ErrInvalidArgument, "bad"), 400, "bad"},
		{errdefs.New(errdefs.ErrAlreadyExists, "dup"), 409, "dup"},
		{errdefs.New(errdefs.ErrConflict, "busy"), 409, "busy"},
		{errdefs.New(errdefs.ErrUnauthenticated, "who"), 401, "who"},
		{errdefs.New(errdefs.ErrPermissionDenied, "no"), 403, "no"},
		{errdefs.New(errdefs.ErrResourceExhausted, "full"), 429, "full"},
		{errdefs.New(errdefs.ErrUnavailable, "later"), 503, "later"},
		{errdefs.New(errdefs.ErrDeadlineExceeded, "slow"), 504, "slow"},
		{errdefs.New(errdefs.ErrNotImplemented, "soon"), 501, "soon"},
		{fmt.Errorf("waiting: %w", context.DeadlineExceeded), 504, ""},
		{fmt.Errorf("op: %w", errdefs.ErrNotFound), 404, "op: not found"},
		{errors.Join(errors.New("x"), errdefs.New(errdefs.ErrConflict, "joined")), 409, "joined"},
		{errors.New("disk on fire at /var/lib"), 500, ""},
	} {
		if got := statusOf(tc.err); got != tc.status {
			t.Errorf("statusOf(%v) = %d, want %d", tc.err, got, tc.status)
		}
		msg, ok := clientMessage(tc.err)
		if ok != (tc.msg != "") || msg != tc.msg {
			t.Errorf("clientMessage(%v) = %q, %v; want %q", tc.err, msg, ok, tc.msg)
		}
	}
	if http.StatusText(statusOf(nil)) == "" {
		t.Error("nil error has no status")
	}
}
