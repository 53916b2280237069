package store

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

func tagNames(recs []TagRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Tag+"="+r.BuildID)
	}
	return out
}

func TestTags(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	now := time.Now()
	if err := s.PutTemplate(ctx, TemplateRecord{ID: "t1", Names: []string{"app"}, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"b1", "b2"} {
		if err := s.PutBuild(ctx, BuildRecord{ID: b, TemplateID: "t1", Status: "ready", Spec: []byte(`{"b":"` + b + `"}`), CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := s.GetBuild(ctx, "b2"); err != nil || string(b.Spec) != `{"b":"b2"}` {
		t.Fatalf("build spec: %q %v", b.Spec, err)
	}
	if err := s.SetTags(ctx, "t1", "b1", []string{"default", "v1"}, now); err != nil {
		t.Fatal(err)
	}
	later := now.Add(time.Second)
	if err := s.SetTags(ctx, "t1", "b2", []string{"v2", "default"}, later); err != nil {
		t.Fatal(err)
	}
	tags, err := s.ListTags(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tagNames(tags), []string{"default=b2", "v1=b1", "v2=b2"}; !slices.Equal(got, want) {
		t.Fatalf("tags = %v, want %v", got, want)
	}
	// Moving a tag restamps it: createdAt is when it was pointed at its build.
	if !tags[0].CreatedAt.Equal(later) || !tags[1].CreatedAt.Equal(now) {
		t.Fatalf("tag times: %+v", tags)
	}
	if tag, err := s.GetTag(ctx, "t1", "v1"); err != nil || tag.BuildID != "b1" || tag.TemplateID != "t1" {
		t.Fatalf("GetTag: %+v %v", tag, err)
	}
	if _, err := s.GetTag(ctx, "t1", "v9"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("GetTag of a missing tag: %v", err)
	}

	// Tags point only at builds of their own template.
	if err := s.SetTags(ctx, "t1", "nope", []string{"x"}, now); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("tagging a missing build: %v", err)
	}
	if err := s.PutTemplate(ctx, TemplateRecord{ID: "t2", Names: []string{"other"}, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetTags(ctx, "t2", "b1", []string{"x"}, now); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("tagging another template's build: %v", err)
	}

	// Removal is all or nothing, and names the missing tag.
	err = s.DeleteTags(ctx, "t1", []string{"v1", "v7"})
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), `"v7"`) {
		t.Fatalf("removing a missing tag: %v", err)
	}
	if tags, _ := s.ListTags(ctx, "t1"); len(tags) != 3 {
		t.Fatalf("a failed removal removed tags: %v", tagNames(tags))
	}
	if err := s.DeleteTags(ctx, "t1", []string{"v1", "default"}); err != nil {
		t.Fatal(err)
	}
	if tags, _ := s.ListTags(ctx, "t1"); !slices.Equal(tagNames(tags), []string{"v2=b2"}) {
		t.Fatalf("after removal: %v", tagNames(tags))
	}

	if err := s.DeleteTemplate(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if tags, err := s.ListTags(ctx, "t1"); err != nil || len(tags) != 0 {
		t.Fatalf("tags of a removed template: %v %v", tagNames(tags), err)
	}
}

// TestTagsMigrationKeepsOldTemplates opens a database written before tags
// existed: every built template's build becomes its default tag and keeps
// its spec, so `name` still resolves to what it did.
func TestTagsMigrationKeepsOldTemplates(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	const before = 2 // the schema version that had templates but no tags
	for i, m := range migrations()[:before] {
		if _, err := db.ExecContext(ctx, m); err != nil {
			t.Fatalf("migration %d: %v", i+1, err)
		}
	}
	stmts := []string{
		fmt.Sprintf("PRAGMA user_version = %d", before),
		`INSERT INTO templates (id, spec, build_id, created_at, updated_at) VALUES ('t1', '{"v":2}', 'b2', 1, 5)`,
		`INSERT INTO templates (id, spec, build_id, created_at, updated_at) VALUES ('t2', NULL, '', 1, 1)`,
		`INSERT INTO template_names (name, template_id) VALUES ('built', 't1'), ('unbuilt', 't2')`,
		`INSERT INTO template_builds (id, template_id, status, created_at) VALUES ('b1', 't1', 'ready', 1), ('b2', 't1', 'ready', 2), ('b3', 't2', 'error', 3)`,
	}
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tags, err := s.ListTags(ctx, "t1")
	if err != nil || !slices.Equal(tagNames(tags), []string{"default=b2"}) || !tags[0].CreatedAt.Equal(time.Unix(0, 5)) {
		t.Fatalf("migrated tags: %+v %v", tags, err)
	}
	if b, err := s.GetBuild(ctx, "b2"); err != nil || string(b.Spec) != `{"v":2}` {
		t.Fatalf("migrated build spec: %q %v", b.Spec, err)
	}
	if b, err := s.GetBuild(ctx, "b1"); err != nil || b.Spec != nil {
		t.Fatalf("an older build got a spec: %q %v", b.Spec, err)
	}
	if tags, err := s.ListTags(ctx, "t2"); err != nil || len(tags) != 0 {
		t.Fatalf("an unbuilt template got tags: %v %v", tagNames(tags), err)
	}
}
