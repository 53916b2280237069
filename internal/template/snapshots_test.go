package template_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// A snapshot resolves by its ID (with or without :default) and by its
// name for its team only, is removed through Delete as E2B's SDK removes
// it, refuses a template's name, and GC keeps its layer.
func TestSnapshotsResolveDeleteGC(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rt := fake.New(fake.Options{})
	t.Cleanup(func() { rt.Close() })
	b, err := template.NewBuilder(template.BuilderConfig{Runtime: committingFake{rt}, LayerDir: filepath.Join(dir, "layers")})
	if err != nil {
		t.Fatal(err)
	}
	r, err := template.NewRegistry(ctx, template.RegistryConfig{
		Dir: filepath.Join(dir, "templates"), Store: st, Snapshots: st, Builder: b,
		Builtin: []*template.Template{{ID: "base", Mounts: []runtime.Mount{{Target: "/", Layers: []string{"/usr"}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	seedTemplate(t, st, "ta", "tpl", "app", "b1", 1)

	layer, err := r.NewLayerDir("snap")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(layer, "0", "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(layer, "0", "etc", "hosts"), []byte("init's"), 0o644)
	os.WriteFile(filepath.Join(layer, "0", "mine"), []byte("x"), 0o644)
	base, _ := r.Resolve(ctx, "ta", "base")
	tpl, err := template.Stack(base, layer, map[string]string{"A": "1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(layer, "0", "etc", "hosts")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the init's /etc/hosts stayed in the layer: %v", err)
	}
	unnamed, err := r.SaveSnapshot(ctx, template.SnapshotArgs{Team: "ta", TeamName: "team-a", SandboxID: "sb", TemplateID: "base", Template: tpl})
	if err != nil {
		t.Fatal(err)
	}
	before, err := r.StorageUsage(ctx, "ta")
	if err != nil {
		t.Fatal(err)
	}
	named, err := r.SaveSnapshot(ctx, template.SnapshotArgs{Team: "ta", TeamName: "team-a", Name: "mysnap", SandboxID: "sb", Template: tpl, Bytes: 3 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if after, err := r.StorageUsage(ctx, "ta"); err != nil || after-before != 3<<20 {
		t.Errorf("a snapshot of 3 MiB took the team's template storage from %d to %d bytes (%v)", before, after, err)
	}
	if named.SnapshotID != "team-a/mysnap:default" || len(named.Names) != 1 || unnamed.SnapshotID != unnamed.ID+":default" {
		t.Errorf("snapshot ids %q %v and %q", named.SnapshotID, named.Names, unnamed.SnapshotID)
	}
	for _, ref := range []string{unnamed.SnapshotID, unnamed.ID, named.SnapshotID, "mysnap", "mysnap:default"} {
		got, err := r.Resolve(ctx, "ta", ref)
		if err != nil {
			t.Errorf("resolving %q: %v", ref, err)
			continue
		}
		if got.Env["A"] != "1" || len(got.Mounts) != 1 || got.Mounts[0].Layers[0] != filepath.Join(layer, "0") || got.Mounts[0].Layers[1] != "/usr" {
			t.Errorf("%q resolves to %+v", ref, got)
		}
		if _, err := r.Resolve(ctx, "tb", ref); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("another team resolves %q: %v", ref, err)
		}
	}
	if _, err := r.SaveSnapshot(ctx, template.SnapshotArgs{Team: "ta", Name: "app", Template: tpl}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("a snapshot named as a template: %v", err)
	}
	if _, err := r.SaveSnapshot(ctx, template.SnapshotArgs{Team: "ta", Name: "Bad Name", Template: tpl}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a bad name: %v", err)
	}
	if err := r.Delete(ctx, "tb", named.SnapshotID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("another team deletes it: %v", err)
	}
	if err := r.Delete(ctx, "ta", named.SnapshotID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve(ctx, "ta", "mysnap"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("a deleted snapshot resolves: %v", err)
	}
	stray, _ := r.NewLayerDir("fork")
	os.MkdirAll(stray, 0o755)
	if _, err := r.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(layer); err != nil {
		t.Errorf("GC removed the layer of a snapshot: %v", err)
	}
	if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("GC kept an unused fork layer: %v", err)
	}
	page, _, err := r.Snapshots(ctx, template.SnapshotFilter{Team: "ta", SandboxID: "sb"})
	if err != nil || len(page) != 1 || page[0].ID != unnamed.ID {
		t.Errorf("listing: %+v %v", page, err)
	}
}
