package sandbox_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// committer lets the fake runtime serve a template Builder it never uses.
type committer struct{ *fake.Fake }

func (committer) Commit(context.Context, string, string) error { return errors.New("not used") }

// newSnapEnv is a Manager over the fake runtime whose templates and
// snapshots a real Registry keeps.
func newSnapEnv(t *testing.T) (*sandbox.Manager, *fake.Fake, *template.Registry) {
	m, rt, reg, _ := newSnapEnvStore(t)
	return m, rt, reg
}

func newSnapEnvStore(t *testing.T) (*sandbox.Manager, *fake.Fake, *template.Registry, *store.SQLite) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenSQLite(t.Context(), filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	rt := fake.New(fake.Options{})
	b, err := template.NewBuilder(template.BuilderConfig{Runtime: committer{rt}, LayerDir: filepath.Join(dir, "layers")})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := template.NewRegistry(t.Context(), template.RegistryConfig{
		Dir: filepath.Join(dir, "templates"), Store: st, Snapshots: st, Builder: b,
		Builtin: []*template.Template{{ID: "base", Env: map[string]string{"T": "1"}, Mounts: []runtime.Mount{{Target: "/", Layers: []string{"/layers/base"}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := sandbox.NewManager(sandbox.Config{Runtime: rt, Store: st, Templates: reg, Snapshots: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = m.Close(context.Background())
		_ = reg.Close()
		_ = rt.Close()
		_ = st.Close()
	})
	return m, rt, reg, st
}

var teamA, teamB = store.Team{ID: "ta", Name: "team-a"}, store.Team{ID: "tb", Name: "team-b"}

// TestSnapshotCreateFrom: a snapshot is the sandbox's layers with what it
// wrote on top, its env and metadata; sandboxes of its team start from
// it by id or name; another team sees neither the sandbox nor the
// snapshot.
func TestSnapshotCreateFrom(t *testing.T) {
	m, rt, _ := newSnapEnv(t)
	ctx := t.Context()
	parent, err := m.Create(ctx, sandbox.CreateRequest{Team: teamA, Template: "base", EnvVars: map[string]string{"MINE": "x"}, Metadata: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Snapshot(ctx, sandbox.SnapshotRequest{Team: teamB, ID: parent.ID}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("another team's snapshot of the sandbox: %v, want not found", err)
	}
	if _, err := m.Snapshot(ctx, sandbox.SnapshotRequest{Team: teamA, ID: parent.ID, Name: "Bad!"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a bad name: %v, want invalid", err)
	}
	snap, err := m.Snapshot(ctx, sandbox.SnapshotRequest{Team: teamA, TeamName: teamA.Name, ID: parent.ID, Name: "mysnap"})
	if err != nil {
		t.Fatal(err)
	}
	if snap.SnapshotID != "team-a/mysnap:default" {
		t.Errorf("snapshot id %q", snap.SnapshotID)
	}
	if _, err := m.Create(ctx, sandbox.CreateRequest{Team: teamB, Template: snap.SnapshotID}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("another team starts the snapshot: %v, want not found", err)
	}
	for _, ref := range []string{snap.SnapshotID, snap.ID} {
		child, err := m.Create(ctx, sandbox.CreateRequest{Team: teamA, Template: ref, Metadata: map[string]string{"own": "1"}})
		if err != nil {
			t.Fatalf("starting %q: %v", ref, err)
		}
		spec, _ := rt.Spec(child.ID)
		top := spec.Mounts[0].Layers[0]
		if from, err := os.ReadFile(filepath.Join(top, "from")); err != nil || string(from) != parent.ID || spec.Mounts[0].Layers[1] != "/layers/base" {
			t.Errorf("%q starts over %v (%q, %v), want the parent's layer over base", ref, spec.Mounts[0].Layers, from, err)
		}
		if spec.Env["MINE"] != "x" || spec.Env["T"] != "1" || spec.Env["E2B_SANDBOX_ID"] != child.ID {
			t.Errorf("%q env %v", ref, spec.Env)
		}
		if child.Metadata["k"] != "v" || child.Metadata["own"] != "1" || child.TemplateID != snap.ID {
			t.Errorf("%q info %+v", ref, child)
		}
	}
}

// TestFork: count forks start from one copy of the parent's layer, with
// its env, metadata and network, each its own sandbox; the copy goes with
// the last of them; a bad count and an unknown parent fail the request.
func TestFork(t *testing.T) {
	m, rt, _ := newSnapEnv(t)
	ctx := t.Context()
	parent, err := m.Create(ctx, sandbox.CreateRequest{Team: teamA, Template: "base", EnvVars: map[string]string{"MINE": "x"}, Metadata: map[string]string{"k": "v"}, Secure: true,
		AutoPause: true, AutoResume: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, -1, sandbox.MaxForks + 1} {
		if _, err := m.Fork(ctx, sandbox.ForkRequest{Team: teamA, ID: parent.ID, Count: n}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("count %d: %v, want invalid", n, err)
		}
	}
	if _, err := m.Fork(ctx, sandbox.ForkRequest{Team: teamB, ID: parent.ID, Count: 1}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("another team forks: %v, want not found", err)
	}
	res, err := m.Fork(ctx, sandbox.ForkRequest{Team: teamA, ID: parent.ID, Count: 3})
	if err != nil || len(res) != 3 {
		t.Fatalf("fork: %v, %d results", err, len(res))
	}
	var layer string
	seen := map[string]bool{parent.ID: true}
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if seen[r.Info.ID] {
			t.Errorf("fork id %s twice", r.Info.ID)
		}
		seen[r.Info.ID] = true
		spec, _ := rt.Spec(r.Info.ID)
		top := spec.Mounts[0].Layers[0]
		if layer == "" {
			layer = filepath.Dir(top)
		}
		if filepath.Dir(top) != layer || !strings.HasPrefix(filepath.Base(layer), "fork-") {
			t.Errorf("fork %s over %v, want the one fork layer %s", r.Info.ID, spec.Mounts[0].Layers, layer)
		}
		if spec.Env["MINE"] != "x" || spec.Env["E2B_SANDBOX_ID"] != r.Info.ID || r.Info.Metadata["k"] != "v" || !r.Info.Secure || r.Info.AccessToken == parent.AccessToken {
			t.Errorf("fork %+v env %v", r.Info, spec.Env)
		}
		if !r.Info.AutoPause || !r.Info.AutoResume {
			t.Errorf("fork %s lost its parent's lifecycle: %+v", r.Info.ID, r.Info)
		}
		if r.Info.TemplateID != "base" || r.Info.EndAt.Sub(r.Info.StartedAt) != sandbox.DefaultForkTimeout {
			t.Errorf("fork of template %q for %v", r.Info.TemplateID, r.Info.EndAt.Sub(r.Info.StartedAt))
		}
	}
	if _, err := m.Get(ctx, parent.ID); err != nil {
		t.Errorf("the parent after the fork: %v", err)
	}
	for i, r := range res {
		if _, err := os.Stat(layer); err != nil {
			t.Fatalf("the fork layer went with %d of 3 forks left: %v", 3-i, err)
		}
		if err := m.Kill(ctx, r.Info.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(layer); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the fork layer outlived its forks: %v", err)
	}
	if err := m.Kill(ctx, parent.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Fork(ctx, sandbox.ForkRequest{Team: teamA, ID: parent.ID, Count: 1, Timeout: time.Minute}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("forking a killed sandbox: %v, want not found", err)
	}
}

// TestForkLayerUnderSnapshot: a fork's layer that a snapshot stands on
// outlives the forks, in this run and the next (a sandbox started from the
// snapshot after a restart does not take it along when it goes).
func TestForkLayerUnderSnapshot(t *testing.T) {
	m, rt, reg, st := newSnapEnvStore(t)
	ctx := t.Context()
	parent, err := m.Create(ctx, sandbox.CreateRequest{Team: teamA, Template: "base"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Fork(ctx, sandbox.ForkRequest{Team: teamA, ID: parent.ID, Count: 1})
	if err != nil || res[0].Err != nil {
		t.Fatalf("fork: %v %+v", err, res)
	}
	child := res[0].Info
	spec, _ := rt.Spec(child.ID)
	layer := filepath.Dir(spec.Mounts[0].Layers[0])
	snap, err := m.Snapshot(ctx, sandbox.SnapshotRequest{Team: teamA, ID: child.ID})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Kill(ctx, child.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(layer); err != nil {
		t.Fatalf("the fork layer a snapshot stands on went with its fork: %v", err)
	}
	// The next run of the daemon.
	m2, err := sandbox.NewManager(sandbox.Config{Runtime: rt, Store: st, Templates: reg, Snapshots: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m2.Close(context.Background()) })
	x, err := m2.Create(ctx, sandbox.CreateRequest{Team: teamA, Template: snap.SnapshotID})
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Kill(ctx, x.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(layer); err != nil {
		t.Fatalf("a sandbox of the next run took the snapshot's fork layer along: %v", err)
	}
}
