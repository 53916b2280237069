package daemon

import (
	"context"
	"errors"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// What a node of a cluster (serve --role node, internal/cluster) reads of
// its daemon: the single-machine daemon itself does not change.

// HasSandbox reports whether the daemon holds sandbox id, running or
// paused: a node deletes the Sandbox objects of sandboxes it no longer has.
func (d *Daemon) HasSandbox(ctx context.Context, id string) (bool, error) {
	_, err := d.manager.Get(ctx, id)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, errdefs.ErrNotFound):
		return false, nil
	default:
		return false, err
	}
}

// SandboxCount is how many sandboxes the daemon's runtime holds, warm pool
// included: the load a node reports for placement.
func (d *Daemon) SandboxCount(ctx context.Context) (int, error) {
	ids, err := d.runtime.List(ctx)
	return len(ids), err
}
