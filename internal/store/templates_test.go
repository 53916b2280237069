package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

func TestTemplates(t *testing.T) {
	ctx := t.Context()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	if err := s.PutTemplate(ctx, TemplateRecord{ID: "t1", Names: []string{"a", "b"}, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutTemplate(ctx, TemplateRecord{ID: "t2", Names: []string{"b"}, CreatedAt: now, UpdatedAt: now}); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("taking a held name: %v, want conflict", err)
	}
	if err := s.PutTemplate(ctx, TemplateRecord{ID: "t1", Names: []string{"a"}, Spec: []byte(`{}`), BuildID: "b1", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	rec, err := s.TemplateByName(ctx, "a")
	if err != nil || rec.ID != "t1" || string(rec.Spec) != "{}" || rec.BuildID != "b1" || len(rec.Names) != 1 {
		t.Fatalf("by name: %+v %v", rec, err)
	}
	if _, err := s.TemplateByName(ctx, "b"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("dropped name: %v", err)
	}
	if err := s.PutBuild(ctx, BuildRecord{ID: "b1", TemplateID: "t1", Status: "ready", Logs: []byte(`[]`), CreatedAt: now, FinishedAt: now}); err != nil {
		t.Fatal(err)
	}
	bs, err := s.ListBuilds(ctx, "t1")
	if err != nil || len(bs) != 1 || bs[0].Status != "ready" || bs[0].FinishedAt.IsZero() {
		t.Fatalf("builds: %+v %v", bs, err)
	}
	if err := s.PutTemplate(ctx, TemplateRecord{ID: "t3", Names: []string{"c"}, TeamID: "team-a", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetTemplatePublic(ctx, "t3", true); err != nil {
		t.Fatal(err)
	}
	if rec, err := s.TemplateByName(ctx, "c"); err != nil || rec.TeamID != "team-a" || !rec.Public {
		t.Fatalf("team and public: %+v %v", rec, err)
	}
	if err := s.SetTemplatePublic(ctx, "nope", true); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("public of a missing template: %v", err)
	}
	if err := s.DeleteTemplate(ctx, "t3"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTemplate(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetBuild(ctx, "b1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("build after delete: %v", err)
	}
	if l, _ := s.ListTemplates(ctx); len(l) != 0 {
		t.Fatalf("templates after delete: %+v", l)
	}
}
