package template

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// Snapshots. A snapshot is a sandbox's filesystem saved as a template of
// the sandbox's team: the layers the sandbox started from with what it
// wrote on top (one more read-only layer, copied by the runtime), and its
// env, user, workdir and start command. A snapshot ID (or its name) works
// wherever a template ref does: Resolve falls back to the team's
// snapshots. Another team's snapshot answers as an unknown template.

// LayerDir is where built layers live; snapshot and fork layers go there
// too (as snap-* and fork-* dirs), so they are collected as built layers
// are, and are on the filesystem the runtime's state is on.
func (r *Registry) LayerDir() string { return r.cfg.Builder.layers }

// Stack returns from with the layer the runtime copied to dir (one
// subdirectory per mount index; a mount without one is unchanged) on top,
// and env as its environment. What a sandbox's init writes at every start
// (/etc/hosts, the agent) is dropped from the layer first.
func Stack(from *Template, dir string, env map[string]string) (*Template, error) {
	t := from.clone()
	t.Env = maps.Clone(env)
	if len(t.Mounts) > 0 && t.Mounts[0].Target == "/" {
		if err := dropInitFiles(filepath.Join(dir, "0")); err != nil {
			return nil, err
		}
	}
	t.addLayer(dir)
	return t, nil
}

// SnapshotArgs says what to record as a snapshot.
type SnapshotArgs struct {
	Team, TeamName string
	// Name is "", "name" or "name:tag" (an optional "namespace/" is
	// ignored): a snapshot of a name the team has replaces it.
	Name       string
	SandboxID  string
	TemplateID string
	// Template is what the sandbox runs with the layer on top (Stack).
	Template *Template
	// Bytes is the size of that layer: what the team's template storage
	// counts for the snapshot.
	Bytes int64
}

// Snapshot describes one snapshot as E2B's SnapshotInfo does.
type Snapshot struct {
	ID string
	// SnapshotID is what the SDKs use: "namespace/name:tag" for a named
	// snapshot, "id:default" for another.
	SnapshotID string
	Names      []string
	SandboxID  string
	TemplateID string
	CreatedAt  time.Time
}

// CheckSnapshotName validates a snapshot name ("name" or "name:tag",
// optionally "namespace/name:tag") and returns its name and tag.
func (r *Registry) CheckSnapshotName(ctx context.Context, team, ref string) (name, tag string, err error) {
	if ref == "" {
		return "", "", nil
	}
	name, tag = splitRef(ref)
	if tag == "" {
		tag = DefaultTag
	}
	if !nameRe.MatchString(name) {
		return "", "", errdefs.New(errdefs.ErrInvalidArgument,
			fmt.Sprintf("invalid snapshot name %q: use lowercase letters, digits, '.', '_' and '-'", ref))
	}
	if _, err := checkTags([]string{tag}); err != nil {
		return "", "", err
	}
	// A template's name resolves first: a snapshot of that name could
	// never be started by it.
	if r.builtinNamed(name, name) != nil || slices.Contains(r.cfg.Reserved, name) {
		return "", "", errdefs.New(errdefs.ErrConflict, fmt.Sprintf("snapshot name %q is a template's name", name))
	}
	if _, err := r.cfg.Store.TemplateByName(ctx, name); err == nil {
		return "", "", errdefs.New(errdefs.ErrConflict, fmt.Sprintf("snapshot name %q is a template's name", name))
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return "", "", err
	}
	return name, tag, nil
}

// SaveSnapshot records a snapshot.
func (r *Registry) SaveSnapshot(ctx context.Context, args SnapshotArgs) (Snapshot, error) {
	if r.cfg.Snapshots == nil {
		return Snapshot{}, errdefs.New(errdefs.ErrNotImplemented, "this server keeps no snapshots")
	}
	name, tag, err := r.CheckSnapshotName(ctx, args.Team, args.Name)
	if err != nil {
		return Snapshot{}, err
	}
	if tag == "" {
		tag = DefaultTag // an unnamed snapshot is "id:default" too
	}
	t := args.Template.clone()
	t.ID, t.Names = "", nil
	spec, err := json.Marshal(t)
	if err != nil {
		return Snapshot{}, fmt.Errorf("encoding snapshot: %w", err)
	}
	rec, err := r.cfg.Snapshots.PutSnapshot(ctx, store.SnapshotRecord{
		ID: newID(), TeamID: args.Team, Name: name, Tag: tag,
		SandboxID: args.SandboxID, TemplateID: args.TemplateID, Spec: spec, Bytes: args.Bytes, CreatedAt: time.Now(),
	})
	if err != nil {
		return Snapshot{}, err
	}
	r.log.Info("snapshot saved", "snapshot", rec.ID, "sandbox_id", args.SandboxID, "name", name)
	return snapshotInfo(rec, args.TeamName), nil
}

func snapshotInfo(rec store.SnapshotRecord, teamName string) Snapshot {
	s := Snapshot{ID: rec.ID, SnapshotID: rec.ID + ":" + DefaultTag, Names: []string{}, SandboxID: rec.SandboxID, TemplateID: rec.TemplateID, CreatedAt: rec.CreatedAt}
	if rec.Name != "" {
		full := rec.Name + ":" + rec.Tag
		if teamName != "" {
			full = teamName + "/" + full
		}
		s.SnapshotID, s.Names = full, []string{full}
	}
	return s
}

// SnapshotFilter selects the snapshots Snapshots lists.
type SnapshotFilter struct {
	Team, TeamName string
	SandboxID      string
	// Name is a snapshot's name or ID, optionally "namespace/" and
	// ":tag" qualified.
	Name  string
	Limit int
	Next  string
}

// Snapshots lists a team's snapshots, newest first, a page at a time.
func (r *Registry) Snapshots(ctx context.Context, f SnapshotFilter) ([]Snapshot, string, error) {
	if r.cfg.Snapshots == nil {
		return nil, "", nil
	}
	sf := store.SnapshotFilter{TeamID: f.Team, SandboxID: f.SandboxID, Limit: f.Limit, Next: f.Next}
	if f.Name != "" {
		sf.Name, sf.Tag = splitRef(f.Name)
	}
	recs, next, err := r.cfg.Snapshots.ListSnapshots(ctx, sf)
	if err != nil {
		return nil, "", err
	}
	out := make([]Snapshot, 0, len(recs))
	for _, rec := range recs {
		out = append(out, snapshotInfo(rec, f.TeamName))
	}
	return out, next, nil
}

// snapshot finds team's snapshot ref names: by name (and tag, default
// when none), else by ID. Another team's is not found.
func (r *Registry) snapshot(ctx context.Context, team, ref string) (store.SnapshotRecord, error) {
	if r.cfg.Snapshots == nil {
		return store.SnapshotRecord{}, notFound(ref)
	}
	name, tag := splitRef(ref)
	if tag == "" {
		tag = DefaultTag
	}
	if team != AllTeams {
		rec, err := r.cfg.Snapshots.SnapshotByName(ctx, team, name, tag)
		if err == nil {
			return rec, nil
		}
		if !errors.Is(err, errdefs.ErrNotFound) {
			return rec, err
		}
	}
	if tag != DefaultTag {
		return store.SnapshotRecord{}, notFound(ref)
	}
	rec, err := r.cfg.Snapshots.GetSnapshot(ctx, name)
	if errors.Is(err, errdefs.ErrNotFound) || err == nil && team != AllTeams && rec.TeamID != team {
		return store.SnapshotRecord{}, notFound(ref)
	}
	return rec, err
}

// resolveSnapshot is Resolve for a snapshot: the template it saved, with
// the snapshot's ID.
func (r *Registry) resolveSnapshot(ctx context.Context, team, ref string) (*Template, error) {
	rec, err := r.snapshot(ctx, team, ref)
	if err != nil {
		return nil, err
	}
	var t Template
	if err := json.Unmarshal(rec.Spec, &t); err != nil {
		return nil, fmt.Errorf("decoding snapshot %s: %w", rec.ID, err)
	}
	t.ID, t.Names = rec.ID, nil
	if rec.Name != "" {
		t.Names = []string{rec.Name + ":" + rec.Tag}
	}
	return &t, nil
}

// IsSnapshot reports whether ref names a snapshot of team rather than
// one of its templates (Delete removes either).
func (r *Registry) IsSnapshot(ctx context.Context, team, ref string) bool {
	if _, err := r.owned(ctx, team, ref); err == nil {
		return false
	}
	_, err := r.snapshot(ctx, team, ref)
	return err == nil
}

// DeleteSnapshot removes team's snapshot ref names. Sandboxes started
// from it run on: its layer goes at the next GC (daemon start).
func (r *Registry) DeleteSnapshot(ctx context.Context, team, ref string) error {
	rec, err := r.snapshot(ctx, team, ref)
	if err != nil {
		return err
	}
	if err := r.cfg.Snapshots.DeleteSnapshot(ctx, rec.ID); err != nil {
		return err
	}
	r.log.Info("snapshot removed", "snapshot", rec.ID)
	return nil
}

// snapshotBytes is the size of the layers team's snapshots added.
func (r *Registry) snapshotBytes(ctx context.Context, team string) (int64, error) {
	if r.cfg.Snapshots == nil {
		return 0, nil
	}
	recs, _, err := r.cfg.Snapshots.ListSnapshots(ctx, store.SnapshotFilter{TeamID: team})
	if err != nil {
		return 0, err
	}
	var n int64
	for _, rec := range recs {
		n += rec.Bytes
	}
	return n, nil
}

// snapshotSpecs returns the spec of every snapshot, for GC.
func (r *Registry) snapshotSpecs(ctx context.Context) ([][]byte, error) {
	if r.cfg.Snapshots == nil {
		return nil, nil
	}
	recs, _, err := r.cfg.Snapshots.ListSnapshots(ctx, store.SnapshotFilter{})
	if err != nil {
		return nil, err
	}
	specs := make([][]byte, 0, len(recs))
	for _, rec := range recs {
		specs = append(specs, rec.Spec)
	}
	return specs, nil
}

// NewLayerDir returns a fresh path under LayerDir for a runtime to copy a
// sandbox's layer to (it must not exist yet): snap-* for snapshots,
// fork-* for forks.
func (r *Registry) NewLayerDir(kind string) (string, error) {
	if err := os.MkdirAll(r.LayerDir(), 0o755); err != nil {
		return "", fmt.Errorf("creating layer dir: %w", err)
	}
	return filepath.Join(r.LayerDir(), strings.TrimSuffix(kind, "-")+"-"+newID()), nil
}
