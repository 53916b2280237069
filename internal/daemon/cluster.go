package daemon

import (
	"context"
	"errors"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/template"
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

// Templates is the daemon's template registry: a cluster node shares its
// builds with the other nodes through it (template.Registry.SetRemote).
func (d *Daemon) Templates() *template.Registry { return d.templates }

// TemplateNames lists the IDs and names of the built templates the daemon
// holds (built here or pulled from the cluster's registry): placement
// prefers a node that holds a sandbox's template.
func (d *Daemon) TemplateNames(ctx context.Context) ([]string, error) {
	infos, err := d.templates.List(ctx, template.AllTeams)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, in := range infos {
		if in.Builtin || in.BuildID == "" {
			continue
		}
		out = append(out, in.ID)
		out = append(out, in.Names...)
	}
	return out, nil
}
