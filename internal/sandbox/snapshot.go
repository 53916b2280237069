package sandbox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// SnapshotStore keeps snapshots and the layers they and forks copy;
// *template.Registry implements it.
type SnapshotStore interface {
	// NewLayerDir returns a fresh path (not yet made) for a layer of kind
	// "snap" or "fork".
	NewLayerDir(kind string) (string, error)
	// CheckSnapshotName validates a snapshot name for team.
	CheckSnapshotName(ctx context.Context, team, ref string) (name, tag string, err error)
	SaveSnapshot(ctx context.Context, args template.SnapshotArgs) (template.Snapshot, error)
}

var _ SnapshotStore = (*template.Registry)(nil)

// snapState is what the Manager keeps for snapshots and forks: what each
// sandbox started from (its template and environment, which its Info does
// not hold), and how many live sandboxes stand on each fork layer, so a
// fork's layer goes with its last sandbox. Its methods are safe for
// concurrent use.
type snapState struct {
	store SnapshotStore

	mu sync.Mutex
	// origins is what each sandbox started from, by id.
	origins map[string]origin
	// forkUsers counts the live sandboxes over each fork layer (a dir
	// under the layer dir). Only a layer made in this run (made) and not
	// pinned (a snapshot's too) goes with its last sandbox: one a
	// snapshot of an earlier run stands on is for the template GC at the
	// next start to judge.
	forkUsers map[string]int
	made      map[string]bool
	pinned    map[string]bool
}

// origin is what a sandbox started from.
type origin struct {
	tpl   *template.Template
	env   map[string]string // the template's env with the request's
	forks []string          // fork layers under it
}

func (s *snapState) init(st SnapshotStore) {
	s.store = st
	s.origins = map[string]origin{}
	s.forkUsers = map[string]int{}
	s.made = map[string]bool{}
	s.pinned = map[string]bool{}
}

// forkLayers returns the fork layer dirs tpl stands on.
func forkLayers(tpl *template.Template) []string {
	var out []string
	for _, m := range tpl.Mounts {
		for _, l := range m.Layers {
			dir := filepath.Dir(l)
			if strings.HasPrefix(filepath.Base(dir), "fork-") && !containsStr(out, dir) {
				out = append(out, dir)
			}
		}
	}
	return out
}

func containsStr(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// remember notes what sandbox id started from.
func (s *snapState) remember(id string, tpl *template.Template, env map[string]string) {
	o := origin{tpl: tpl, env: maps.Clone(env), forks: forkLayers(tpl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.origins[id] = o
	for _, l := range o.forks {
		s.forkUsers[l]++
	}
}

// forget drops what sandbox id started from, and the fork layers nothing
// stands on any more.
func (s *snapState) forget(id string) {
	s.mu.Lock()
	o, ok := s.origins[id]
	delete(s.origins, id)
	var drop []string
	if ok {
		for _, l := range o.forks {
			if s.forkUsers[l]--; s.forkUsers[l] <= 0 {
				delete(s.forkUsers, l)
				if s.made[l] && !s.pinned[l] {
					delete(s.made, l)
					drop = append(drop, l)
				}
			}
		}
	}
	s.mu.Unlock()
	for _, l := range drop {
		_ = os.RemoveAll(l)
	}
}

// made notes a fork layer this run copied: it goes with its last
// sandbox.
func (s *snapState) madeLayer(layer string) {
	s.mu.Lock()
	s.made[layer] = true
	s.mu.Unlock()
}

// unused removes a fork layer no sandbox came to stand on.
func (s *snapState) unused(layer string) {
	s.mu.Lock()
	used := s.forkUsers[layer] > 0 || s.pinned[layer]
	if !used {
		delete(s.made, layer)
	}
	s.mu.Unlock()
	if !used {
		_ = os.RemoveAll(layer)
	}
}

// pin keeps the fork layers tpl stands on for the template GC to decide.
func (s *snapState) pin(tpl *template.Template) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range forkLayers(tpl) {
		s.pinned[l] = true
	}
}

func (s *snapState) originOf(id string) (origin, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.origins[id]
	return o, ok
}

// SnapshotRequest asks for a snapshot of a sandbox.
type SnapshotRequest struct {
	Team     store.Team
	ID       string
	Name     string // "", "name" or "name:tag"
	TeamName string // the namespace of the snapshot's names
}

// Snapshot saves sandbox req.ID's filesystem (what it wrote over its
// template), env, user, workdir, start command and metadata as a snapshot
// of its team that sandboxes can start from. The sandbox stands still only
// while what it wrote is copied; a paused one stays paused. Processes and
// memory are not saved: a sandbox started from a snapshot runs the
// template's start command, as after a reboot.
func (m *Manager) Snapshot(ctx context.Context, req SnapshotRequest) (template.Snapshot, error) {
	snap, err := m.snapshot(ctx, req)
	return snap, m.count(err)
}

func (m *Manager) snapshot(ctx context.Context, req SnapshotRequest) (template.Snapshot, error) {
	start := time.Now()
	rt, err := m.snapshotter()
	if err != nil {
		return template.Snapshot{}, err
	}
	if _, _, err := m.snap.store.CheckSnapshotName(ctx, req.Team.ID, req.Name); err != nil {
		return template.Snapshot{}, err
	}
	info, o, done, err := m.snapshotSource(ctx, req.Team.ID, req.ID)
	if err != nil {
		return template.Snapshot{}, err
	}
	tpl, layer, st, err := m.copyLayer(ctx, rt, "snap", info.ID, o)
	done()
	if err != nil {
		return template.Snapshot{}, err
	}
	tpl.Metadata = maps.Clone(info.Metadata)
	snap, err := m.snap.store.SaveSnapshot(ctx, template.SnapshotArgs{
		Team: req.Team.ID, TeamName: req.TeamName, Name: req.Name,
		SandboxID: info.ID, TemplateID: info.TemplateID, Template: tpl, Bytes: st.Bytes,
	})
	if err != nil {
		_ = os.RemoveAll(layer)
		return template.Snapshot{}, err
	}
	m.snap.pin(tpl)
	m.log.InfoContext(ctx, "sandbox snapshot", "sandbox_id", info.ID, "snapshot", snap.ID,
		"bytes", st.Bytes, "files", st.Files, "frozen", st.Frozen, "copy", st.Total, "duration", time.Since(start))
	return snap, nil
}

func (m *Manager) snapshotter() (runtime.Snapshotter, error) {
	rt, ok := m.rt.(runtime.Snapshotter)
	if !ok || m.snap.store == nil {
		return nil, errdefs.New(errdefs.ErrNotImplemented, "this server cannot snapshot sandboxes")
	}
	return rt, nil
}

// snapshotSource returns a running or paused sandbox of team and what it
// started from, marked busy as a pause or resume marks it (pause.go), so
// none runs during the copy; done, called once, ends the mark. Another
// team's is not found.
func (m *Manager) snapshotSource(ctx context.Context, team, id string) (Info, origin, func(), error) {
	e, done, err := m.begin(ctx, id)
	if err != nil {
		return Info{}, origin{}, nil, err
	}
	info := e.info.clone()
	release := func() {
		m.mu.Lock()
		done()
		m.mu.Unlock()
	}
	m.mu.Unlock()
	if info.TeamID != team {
		release()
		return Info{}, origin{}, nil, notFound(id)
	}
	o, ok := m.snap.originOf(id)
	if !ok {
		release()
		// Adopted from an earlier run of the daemon: what it started
		// from is not known any more.
		return Info{}, origin{}, nil, errdefs.New(errdefs.ErrConflict,
			fmt.Sprintf("sandbox %s was started by an earlier run of the server and cannot be snapshotted", id))
	}
	return info, o, release, nil
}

// copyLayer has the runtime copy what sandbox id wrote to a new layer of
// kind, and returns its template with that layer on top.
func (m *Manager) copyLayer(ctx context.Context, rt runtime.Snapshotter, kind, id string, o origin) (*template.Template, string, runtime.SnapshotStats, error) {
	layer, err := m.snap.store.NewLayerDir(kind)
	if err != nil {
		return nil, "", runtime.SnapshotStats{}, err
	}
	st, err := rt.Snapshot(ctx, id, layer, runtime.SnapshotOptions{Durable: kind == "snap"})
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, "", st, notFound(id)
	}
	if err != nil {
		return nil, "", st, fmt.Errorf("copying the filesystem of sandbox %s: %w", id, err)
	}
	tpl, err := template.Stack(o.tpl, layer, o.env)
	if err != nil {
		_ = os.RemoveAll(layer)
		return nil, "", st, fmt.Errorf("layering the snapshot of sandbox %s: %w", id, err)
	}
	return tpl, layer, st, nil
}
