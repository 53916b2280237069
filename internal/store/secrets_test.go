package store

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// Secrets are per team: a name is taken once within a team, another
// team's secret is not found by ID or name, updates add a version, lists
// page, deletes are final, and it all survives reopening.
func TestSecrets(t *testing.T) {
	s, path := openTest(t)
	ctx := t.Context()
	at := time.Unix(1700000000, 0).UTC()
	for i := range 3 {
		if err := s.CreateSecret(ctx, SecretRecord{ID: fmt.Sprintf("sec_%d", i), TeamID: "a", Name: fmt.Sprintf("n%d", i),
			Version: 1, Value: []byte("v"), CreatedAt: at, UpdatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateSecret(ctx, SecretRecord{ID: "sec_x", TeamID: "a", Name: "n1", Version: 1, Value: []byte("v")}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("taken name: %v, want already exists", err)
	}
	if err := s.CreateSecret(ctx, SecretRecord{ID: "sec_b", TeamID: "b", Name: "n1", Version: 1, Value: []byte("b's")}); err != nil {
		t.Errorf("another team's name: %v", err)
	}
	if _, err := s.GetSecret(ctx, "b", "n2"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("team b reads a's secret by name: %v", err)
	}
	if _, err := s.GetSecret(ctx, "a", "sec_b"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("team a reads b's secret by id: %v", err)
	}
	if got, err := s.GetSecret(ctx, "b", "n1"); err != nil || got.ID != "sec_b" {
		t.Errorf("team b's own n1: %+v, %v", got, err)
	}
	if err := s.DeleteSecret(ctx, "a", "sec_b"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("team a deletes b's secret: %v", err)
	}
	later := at.Add(time.Hour)
	up, err := s.UpdateSecret(ctx, "a", "n1", []byte("v2"), map[string]string{"k": "v"}, later)
	if err != nil || up.Version != 2 || string(up.Value) != "v2" || up.Metadata["k"] != "v" || !up.UpdatedAt.Equal(later) || !up.CreatedAt.Equal(at) {
		t.Fatalf("update: %+v, %v", up, err)
	}
	var names []string
	next := ""
	for range 5 {
		page, n, err := s.ListSecrets(ctx, "a", 2, next)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			names = append(names, r.Name)
		}
		if next = n; next == "" {
			break
		}
	}
	if fmt.Sprint(names) != "[n0 n1 n2]" {
		t.Errorf("pages = %v", names)
	}
	if err := s.DeleteSecret(ctx, "a", "sec_0"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSecret(ctx, "a", "n0"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	s.Close()
	s2, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.GetSecret(ctx, "a", "sec_1")
	if err != nil || got.Version != 2 || string(got.Value) != "v2" {
		t.Errorf("after reopening: %+v, %v", got, err)
	}
}

// A sandbox's traffic settings are kept with its record and replaced on
// their own.
func TestSandboxTraffic(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	rec := SandboxRecord{ID: "sb", TemplateID: "base", State: "running",
		Traffic: &SandboxTraffic{AccessToken: "tok", MaskRequestHost: "localhost:${PORT}"}}
	if err := s.PutSandbox(ctx, rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSandbox(ctx, "sb")
	if err != nil || got.Traffic == nil || got.Traffic.AccessToken != "tok" || got.Traffic.MaskRequestHost != "localhost:${PORT}" {
		t.Fatalf("got %+v, %v", got.Traffic, err)
	}
	rules := map[string][]TrafficRule{"api.example.com": {{Headers: map[string]string{"Authorization": "Bearer ${e2b.secrets.k}"}}}}
	if err := s.SetSandboxTraffic(ctx, "sb", &SandboxTraffic{AccessToken: "tok", Rules: rules}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetSandbox(ctx, "sb")
	if got.Traffic.Rules["api.example.com"][0].Headers["Authorization"] != "Bearer ${e2b.secrets.k}" || got.Traffic.MaskRequestHost != "" {
		t.Errorf("after SetSandboxTraffic: %+v", got.Traffic)
	}
	if err := s.SetSandboxTraffic(ctx, "nope", nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown sandbox: %v", err)
	}
	if err := s.PutSandbox(ctx, SandboxRecord{ID: "plain", TemplateID: "base", State: "running"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetSandbox(ctx, "plain"); got.Traffic != nil {
		t.Errorf("plain sandbox traffic = %+v, want nil", got.Traffic)
	}
}
