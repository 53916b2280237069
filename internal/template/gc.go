package template

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
)

// GC removes layers no stored template uses (those of removed templates,
// of failed builds, of steps since changed) and returns how many it
// removed. A running sandbox may still use a layer its template no longer
// does, so call GC only when no sandbox runs: at daemon start, after the
// sandboxes of the last run were reaped and before any build.
func (r *Registry) GC(ctx context.Context) (int, error) {
	recs, err := r.cfg.Store.ListTemplates(ctx)
	if err != nil {
		return 0, err
	}
	dir := r.cfg.Builder.layers
	used := map[string]bool{}
	for _, rec := range recs {
		if rec.Spec == nil {
			continue
		}
		var t Template
		if err := json.Unmarshal(rec.Spec, &t); err != nil {
			return 0, err // never delete on a spec we cannot read
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
	return n, nil
}
