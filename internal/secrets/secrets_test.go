package secrets

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/store"
)

func newTest(t *testing.T) (*Service, *store.SQLite, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenSQLite(t.Context(), filepath.Join(dir, "sandpit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := New(st, dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, st, dir
}

// A value is write-only: what Create returns carries none, the store
// holds it sealed, and only Resolve/Expand open it, for its own team.
func TestValueSealedAndResolvedPerTeam(t *testing.T) {
	s, st, dir := newTest(t)
	ctx := t.Context()
	sec, err := s.Create(ctx, "team-a", "OpenAI-Key", "sk-very-secret", map[string]string{"env": "prod"})
	if err != nil {
		t.Fatal(err)
	}
	if sec.Name != "openai-key" || sec.Version != 1 || !strings.HasPrefix(sec.ID, "sec_") || sec.Metadata["env"] != "prod" {
		t.Errorf("created %+v", sec)
	}
	rec, err := st.GetSecret(ctx, "team-a", sec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rec.Value, []byte("sk-very-secret")) {
		t.Error("the store holds the value in the clear")
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "sandpit.db"))
	if bytes.Contains(raw, []byte("sk-very-secret")) {
		t.Error("the database file holds the value in the clear")
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, %v", fi.Mode(), err)
	}
	got, err := s.Expand(ctx, "team-a", "Bearer ${e2b.secrets.openai-key}")
	if err != nil || got != "Bearer sk-very-secret" {
		t.Errorf("Expand = %q, %v", got, err)
	}
	if _, err := s.Expand(ctx, "team-b", "Bearer ${e2b.secrets.openai-key}"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("another team's Expand: %v, want not found", err)
	}
	if _, err := s.Get(ctx, "team-b", sec.ID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("another team's Get: %v", err)
	}

	// A second Service on the same data dir (a restarted daemon) reads
	// the same key.
	s2, err := New(st, dir)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s2.Resolve(ctx, "team-a", "OPENAI-KEY"); err != nil || v != "sk-very-secret" {
		t.Errorf("after restart: %q, %v", v, err)
	}
	up, err := s2.Update(ctx, "team-a", "openai-key", "sk-2", nil)
	if err != nil || up.Version != 2 || up.Metadata["env"] != "prod" {
		t.Fatalf("update: %+v, %v", up, err)
	}
	if v, _ := s.Resolve(ctx, "team-a", sec.ID); v != "sk-2" {
		t.Errorf("after update: %q", v)
	}
	// A sealed value moved to another row does not open there.
	other, _ := s.Create(ctx, "team-a", "other", "x", nil)
	moved, _ := st.GetSecret(ctx, "team-a", sec.ID)
	if _, err := st.UpdateSecret(ctx, "team-a", other.ID, moved.Value, nil, moved.UpdatedAt); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve(ctx, "team-a", "other"); err == nil {
		t.Error("a value sealed for one secret opened as another's")
	}
}

func TestChecks(t *testing.T) {
	s, _, _ := newTest(t)
	ctx := t.Context()
	for _, c := range []struct{ name, value string }{
		{"", "v"}, {"sec_x", "v"}, {"a{b", "v"}, {"a\x01", "v"}, {"ok", "line\r\nX-Evil: 1"},
	} {
		if _, err := s.Create(ctx, "t", c.name, c.value, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Create(%q, %q) = %v, want invalid argument", c.name, c.value, err)
		}
	}
	if _, err := s.Create(ctx, "t", "dup", "v", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "t", "DUP", "v", nil); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("duplicate: %v", err)
	}
	if got := Names("a ${e2b.secrets.x} b ${e2b.secrets.y-z}"); strings.Join(got, ",") != "x,y-z" {
		t.Errorf("Names = %v", got)
	}
	if _, err := s.Expand(ctx, "t", "${e2b.secrets.missing}"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Expand of a missing secret: %v", err)
	}
	if got, err := s.Expand(ctx, "t", "no placeholders"); err != nil || got != "no placeholders" {
		t.Errorf("Expand plain = %q, %v", got, err)
	}
}
