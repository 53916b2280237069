package template

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// Teams. A stored template belongs to the team that first requested a
// build of it (store.TemplateRecord.TeamID), and so do its builds, tags
// and the uploads its builds copy. A team sees its own templates, the
// builtins and public templates; everything else answers exactly as an
// unknown template does, so a team cannot learn another's template IDs or
// names by probing. Changing a template (building into it, its tags,
// removing it, making it public) needs ownership: a public template of
// another team is one to start, not to change. Names stay global: a
// name another team holds cannot be built into (errdefs.ErrConflict).
//
// The team "" is an ordinary team, the one callers that know no teams
// act for (tests, data dirs from before teams until they are migrated);
// it never means "every team".

// AllTeams, given as a team, acts for every team at once, as the owner of
// every template: for the daemon's own callers that need all of them (the
// warm pool's templates, garbage collection). It is never a store.Team ID,
// and no API request acts for it.
const AllTeams = "*"

// visibleTo reports whether team may see and start rec.
func visibleTo(rec store.TemplateRecord, team string) bool {
	return team == AllTeams || rec.TeamID == team || rec.Public
}

// ownedBy reports whether team may change rec.
func ownedBy(rec store.TemplateRecord, team string) bool {
	return team == AllTeams || rec.TeamID == team
}

// notFound is the error of a template ref names that the caller cannot
// see, the same whether it exists or not.
func notFound(ref string) error {
	name, _ := splitRef(ref)
	return errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("template %q not found", name))
}

// buildNotFound is notFound for a build.
func buildNotFound(buildID string) error {
	return errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("build %q not found", buildID))
}

// SetPublic makes the stored template ref names public (every team may
// start it) or private to its team, and returns its names. Only its team
// may; a builtin is public already and cannot be changed
// (errdefs.ErrPermissionDenied). Who may make templates public at all is
// the caller's business: a public name is one every team may start.
func (r *Registry) SetPublic(ctx context.Context, team, ref string, public bool) ([]string, error) {
	name, _ := splitRef(ref)
	rec, err := r.owned(ctx, team, ref)
	if errors.Is(err, errdefs.ErrNotFound) && r.builtinNamed(ref, name) != nil {
		return nil, errdefs.New(errdefs.ErrPermissionDenied, fmt.Sprintf("template %q is built into sandpit and public to every team", name))
	}
	if err != nil {
		return nil, err
	}
	if rec.Public != public {
		if err := r.cfg.Store.SetTemplatePublic(ctx, rec.ID, public); err != nil {
			return nil, fmt.Errorf("making template %s public=%t: %w", rec.ID, public, err)
		}
		r.log.Info("template visibility changed", "template", rec.ID, "public", public)
	}
	return rec.Names, nil
}

// StorageUsage returns how many bytes team's templates take: the layers
// the builds in use made (each template's latest good build and every
// build a tag names, each layer counted once per team), the team's
// uploads and the layers its snapshots added. A layer's size is measured when the build that made it
// finishes; builds from before that count nothing.
func (r *Registry) StorageUsage(ctx context.Context, team string) (int64, error) {
	recs, err := r.cfg.Store.ListTemplates(ctx)
	if err != nil {
		return 0, err
	}
	layers := map[string]int64{}
	for _, rec := range recs {
		if rec.TeamID != team {
			continue
		}
		ids, err := r.buildsInUse(ctx, rec)
		if err != nil {
			return 0, err
		}
		for _, id := range ids {
			b, err := r.cfg.Store.GetBuild(ctx, id)
			if errors.Is(err, errdefs.ErrNotFound) {
				continue
			}
			if err != nil {
				return 0, err
			}
			req, err := decodeRequest(b)
			if err != nil {
				return 0, err
			}
			for k, n := range req.LayerBytes {
				layers[k] = n
			}
		}
	}
	var total int64
	for _, n := range layers {
		total += n
	}
	r.upMu.Lock()
	_, up, err := r.usage(team)
	r.upMu.Unlock()
	if err != nil {
		return 0, err
	}
	snaps, err := r.snapshotBytes(ctx, team)
	if err != nil {
		return 0, err
	}
	return total + up + snaps, nil
}

// buildsInUse returns the builds of rec whose layers it uses: its latest
// good build and every build a tag points at.
func (r *Registry) buildsInUse(ctx context.Context, rec store.TemplateRecord) ([]string, error) {
	tags, err := r.cfg.Store.ListTags(ctx, rec.ID)
	if err != nil {
		return nil, err
	}
	var ids []string
	seen := map[string]bool{}
	if rec.BuildID != "" {
		ids, seen[rec.BuildID] = append(ids, rec.BuildID), true
	}
	for _, tg := range tags {
		if !seen[tg.BuildID] {
			ids, seen[tg.BuildID] = append(ids, tg.BuildID), true
		}
	}
	return ids, nil
}

// layerBytes measures the layers (cache keys under the builder's layer
// dir) a build made: the total size of their regular files.
func (r *Registry) layerBytes(keys []string) map[string]int64 {
	out := make(map[string]int64, len(keys))
	for _, k := range keys {
		var n int64
		_ = filepath.WalkDir(filepath.Join(r.cfg.Builder.layers, k), func(_ string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // measure what can be read
			}
			if d.Type().IsRegular() {
				if info, err := d.Info(); err == nil {
					n += info.Size()
				}
			}
			return nil
		})
		out[k] = n
	}
	return out
}

// StorageLimitError is the errdefs.ErrResourceExhausted error of a team
// (who: "team NAME") whose template storage, used bytes, is at or over
// its limit in MB.
func StorageLimitError(who string, used int64, limitMB int) error {
	return errdefs.New(errdefs.ErrResourceExhausted, fmt.Sprintf(
		"the template storage of %s is at its limit: %.1f MB used of MaxTemplateStorageMB %d MB; remove templates or tags (their layers count until no tag names them), or wait for uploads no build uses to go (after %s)",
		who, float64(used)/(1<<20), limitMB, uploadGrace))
}
