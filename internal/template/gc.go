package template

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// GC removes layers no stored template or snapshot uses (those of removed templates,
// of failed builds, of builds no tag names any more, of steps since
// changed) and returns how many it removed; then it collects uploads no
// build uses (CollectUploads). A template uses the layers of
// its latest good build and of every build a tag points at, however old.
// A running sandbox may still use a layer its template no longer does:
// running names what every sandbox that runs was made from, and GC is
// called before any build (at daemon start, once the sandboxes of the last
// run are taken over or reaped).
func (r *Registry) GC(ctx context.Context, running ...*Template) (int, error) {
	specs, err := r.specsInUse(ctx)
	if err != nil {
		return 0, err
	}
	for _, t := range running {
		spec, err := json.Marshal(t)
		if err != nil {
			return 0, fmt.Errorf("reading what a sandbox runs on: %w", err)
		}
		specs = append(specs, spec)
	}
	snaps, err := r.snapshotSpecs(ctx)
	if err != nil {
		return 0, err
	}
	specs = append(specs, snaps...)
	dir := r.cfg.Builder.layers
	used := map[string]bool{}
	for _, spec := range specs {
		var t Template
		if err := json.Unmarshal(spec, &t); err != nil {
			return 0, fmt.Errorf("reading a template spec: %w", err) // never delete on a spec we cannot read
		}
		for _, m := range t.Mounts {
			for _, l := range m.Layers {
				rel, err := filepath.Rel(dir, l)
				if err != nil || strings.HasPrefix(rel, "..") {
					continue // not a built layer (base's, the host's /usr)
				}
				used[strings.Split(rel, string(filepath.Separator))[0]] = true
			}
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if used[e.Name()] || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return n, err
		}
		n++
	}
	r.log.Info("template layers collected", "removed", n, "kept", len(used))
	if _, err := r.CollectUploads(ctx); err != nil {
		return n, err
	}
	return n, nil
}

// specsInUse returns the spec of every template's latest good build and
// of every build a tag points at.
func (r *Registry) specsInUse(ctx context.Context) ([][]byte, error) {
	recs, err := r.cfg.Store.ListTemplates(ctx)
	if err != nil {
		return nil, err
	}
	var specs [][]byte
	for _, rec := range recs {
		if rec.Spec != nil {
			specs = append(specs, rec.Spec)
		}
		tags, err := r.cfg.Store.ListTags(ctx, rec.ID)
		if err != nil {
			return nil, err
		}
		seen := map[string]bool{rec.BuildID: true}
		for _, tg := range tags {
			if seen[tg.BuildID] {
				continue
			}
			seen[tg.BuildID] = true
			b, err := r.cfg.Store.GetBuild(ctx, tg.BuildID)
			if errors.Is(err, errdefs.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if b.Spec != nil {
				specs = append(specs, b.Spec)
			}
		}
	}
	return specs, nil
}
