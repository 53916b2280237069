package template_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// committingFake lets the fake runtime back a Builder for tests that run
// no build.
type committingFake struct{ *fake.Fake }

func (committingFake) Commit(context.Context, string, string) error {
	return errors.New("this test runs no template builds")
}

// newFakeRegistry is a Registry over a real store whose builder can run
// nothing: for what the registry does around builds.
func newFakeRegistry(t *testing.T) (*template.Registry, *store.SQLite, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenSQLite(t.Context(), filepath.Join(dir, "db"))
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
	r, err := template.NewRegistry(t.Context(), template.RegistryConfig{
		Dir: filepath.Join(dir, "templates"), Store: st, Builder: b, Builtin: []*template.Template{{ID: "base"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, st, dir
}

// TestStoredBuildDecodeErrors: a stored build whose log or request does not
// decode is an error, not an empty log or a request without its tags and
// resources.
func TestStoredBuildDecodeErrors(t *testing.T) {
	r, st, _ := newFakeRegistry(t)
	ctx := t.Context()
	now := time.Now()
	if err := st.PutTemplate(ctx, store.TemplateRecord{ID: "tpl", Names: []string{"app"}, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutBuild(ctx, store.BuildRecord{ID: "done", TemplateID: "tpl", Status: template.StatusError, Reason: "x", Logs: []byte(`[{"message": "trunc`), CreatedAt: now, FinishedAt: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Status(ctx, "", "tpl", "done", 0); err == nil || !strings.Contains(err.Error(), "decoding the log of build done") {
		t.Fatalf("status of a build with a corrupt log: %v, want a decode error", err)
	}
	if err := st.PutBuild(ctx, store.BuildRecord{ID: "waiting", TemplateID: "tpl", Status: template.StatusWaiting, Request: []byte(`{"tags": "not a list"}`), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	err := r.Start(ctx, "", "tpl", "waiting", template.BuildSpec{})
	if err == nil || !strings.Contains(err.Error(), "decoding the request of build waiting") {
		t.Fatalf("starting a build with a corrupt request: %v, want a decode error", err)
	}
	if b, err := st.GetBuild(ctx, "waiting"); err != nil || b.Status != template.StatusWaiting {
		t.Fatalf("the build is %q (%v), want it still waiting", b.Status, err)
	}
}
