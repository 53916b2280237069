package store

import (
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

func openTest(t *testing.T) (*SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sandpit.db")
	s, err := OpenSQLite(t.Context(), path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func TestOpenSetsDurablePragmas(t *testing.T) {
	s, _ := openTest(t)
	var mode string
	if err := s.db.QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
	var sync int
	if err := s.db.QueryRowContext(t.Context(), "PRAGMA synchronous").Scan(&sync); err != nil {
		t.Fatal(err)
	}
	if sync != 2 { // FULL
		t.Errorf("synchronous = %d, want 2 (FULL)", sync)
	}
}

func TestReopenKeepsDataAndSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sandpit.db")
	s, err := OpenSQLite(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	plain, _, err := s.CreateKey(t.Context(), NewKey{Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	s2, err := OpenSQLite(t.Context(), path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	_, ok, err := s2.VerifyKey(t.Context(), plain)
	if err != nil || !ok {
		t.Fatalf("VerifyKey after reopen = %v, %v; want true", ok, err)
	}
}

func TestCreateKeyShape(t *testing.T) {
	s, _ := openTest(t)
	seen := map[string]bool{}
	for range 20 {
		plain, info, err := s.CreateKey(t.Context(), NewKey{Name: "k"})
		if err != nil {
			t.Fatal(err)
		}
		if !WellFormedKey(plain) || len(plain) != 44 {
			t.Fatalf("key %q is not e2b_ + 40 lowercase hex", plain)
		}
		if !strings.HasPrefix(plain, info.Prefix) || len(info.Prefix) != len("e2b_")+8 {
			t.Errorf("prefix %q of %q", info.Prefix, plain)
		}
		if seen[plain] {
			t.Fatalf("duplicate key %q", plain)
		}
		seen[plain] = true
	}
	if _, _, err := s.CreateKey(t.Context(), NewKey{Name: "  "}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("empty name: err = %v, want invalid argument", err)
	}
}

func TestKeyStoresOnlyHash(t *testing.T) {
	s, _ := openTest(t)
	plain, _, err := s.CreateKey(t.Context(), NewKey{Name: "k"})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	err = s.db.QueryRowContext(t.Context(),
		`SELECT count(*) FROM api_keys WHERE id LIKE ? OR name LIKE ? OR prefix = ? OR CAST(key_hash AS TEXT) LIKE ?`,
		"%"+plain+"%", "%"+plain+"%", plain, "%"+plain[4:]+"%").Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("plaintext key found in %d rows", n)
	}
}

func TestWellFormedKey(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"e2b_" + strings.Repeat("a", 40), true},
		{"e2b_" + strings.Repeat("0123456789", 4), true},
		{"e2b_" + strings.Repeat("A", 40), false},
		{"e2b_" + strings.Repeat("a", 39), false},
		{"e2b_" + strings.Repeat("a", 41), false},
		{"e2b_" + strings.Repeat("g", 40), false},
		{"E2B_" + strings.Repeat("a", 40), false},
		{strings.Repeat("a", 44), false},
		{"", false},
	} {
		if got := WellFormedKey(tc.in); got != tc.want {
			t.Errorf("WellFormedKey(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestVerifyAndRevoke(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	a, ainfo, err := s.CreateKey(ctx, NewKey{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	b, binfo, err := s.CreateKey(ctx, NewKey{Name: "b"})
	if err != nil {
		t.Fatal(err)
	}
	c, cinfo, err := s.CreateKey(ctx, NewKey{Name: "c"})
	if err != nil {
		t.Fatal(err)
	}

	verify := func(key string, want bool) {
		t.Helper()
		_, got, err := s.VerifyKey(ctx, key)
		if err != nil {
			t.Fatalf("VerifyKey: %v", err)
		}
		if got != want {
			t.Errorf("VerifyKey(%.12s…) = %v, want %v", key, got, want)
		}
	}
	verify(a, true)
	verify(b, true)
	verify("", false)
	verify("e2b_"+strings.Repeat("0", 40), false)
	verify(a[:len(a)-1]+flip(a[len(a)-1]), false) // same prefix, wrong key
	verify(strings.ToUpper(a), false)

	keys, err := s.ListKeys(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || keys[0].ID != ainfo.ID || keys[1].ID != binfo.ID {
		t.Fatalf("ListKeys = %+v", keys)
	}
	if keys[0].LastUsedAt.IsZero() {
		t.Errorf("key a has no last_used_at after a successful verify")
	}
	if !keys[2].LastUsedAt.IsZero() {
		t.Errorf("key c has last_used_at but was never used")
	}

	// Revoke by id, by display prefix with an ellipsis, and by whole key.
	for _, tc := range []struct {
		ref  string
		key  string
		info KeyInfo
	}{
		{ainfo.ID, a, ainfo},
		{binfo.Prefix + "…", b, binfo},
		{c, c, cinfo},
	} {
		if err := s.RevokeKey(ctx, tc.ref); err != nil {
			t.Fatalf("RevokeKey(%q): %v", tc.ref, err)
		}
		verify(tc.key, false)
		if err := s.RevokeKey(ctx, tc.ref); err != nil {
			t.Errorf("RevokeKey twice: %v", err)
		}
	}
	keys, err = s.ListKeys(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !k.Revoked() {
			t.Errorf("key %s not revoked", k.ID)
		}
	}

	for _, tc := range []struct {
		ref  string
		want error
	}{
		{"key_nope", errdefs.ErrNotFound},
		{"e2b_ffffffff", errdefs.ErrNotFound},
		{"", errdefs.ErrInvalidArgument},
	} {
		if err := s.RevokeKey(ctx, tc.ref); !errors.Is(err, tc.want) {
			t.Errorf("RevokeKey(%q) = %v, want %v", tc.ref, err, tc.want)
		}
	}
}

func TestRevokeAmbiguousPrefix(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	_, info, err := s.CreateKey(ctx, NewKey{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	// Force a second key onto the same display prefix.
	if _, err := s.db.ExecContext(ctx,
		`INSERT INTO api_keys (id, name, key_hash, prefix, created_at) VALUES ('key_x', 'x', x'00', ?, 0)`,
		info.Prefix); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeKey(ctx, info.Prefix); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("RevokeKey(ambiguous) = %v, want conflict", err)
	}
}

func TestLastUsedWrittenAtMostOncePerMinute(t *testing.T) {
	s, _ := openTest(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	key, _, err := s.CreateKey(t.Context(), NewKey{Name: "k"})
	if err != nil {
		t.Fatal(err)
	}
	lastUsed := func() time.Time {
		keys, err := s.ListKeys(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		return keys[0].LastUsedAt
	}
	if _, _, err := s.VerifyKey(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	first := lastUsed()
	now = now.Add(time.Second)
	if _, _, err := s.VerifyKey(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(); !got.Equal(first) {
		t.Errorf("last_used_at moved within a minute: %v -> %v", first, got)
	}
	now = now.Add(2 * time.Minute)
	if _, _, err := s.VerifyKey(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(); !got.Equal(now) {
		t.Errorf("last_used_at = %v, want %v", got, now)
	}
}

func TestSandboxRecords(t *testing.T) {
	s, path := openTest(t)
	ctx := t.Context()
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 123456789, time.UTC)
	recs := []SandboxRecord{
		{
			ID: "ib", TemplateID: "base", Alias: "base:latest",
			TeamID:   "team-1",
			Metadata: map[string]string{"user": "abc", "quote": `"'&=`},
			Env:      map[string]string{"FOO": "bar"},
			CPUCount: 2, MemoryMB: 512, DiskMB: 1024,
			StartedAt: t0.Add(time.Second), EndAt: t0.Add(301 * time.Second),
			State: "running", AccessToken: "tok", Secure: true, AllowInternet: true, Pid: 42,
		},
		{
			ID: "ia", TemplateID: "code-interpreter-v1",
			CPUCount: 1, MemoryMB: 256, DiskMB: 512,
			StartedAt: t0, EndAt: t0.Add(time.Minute), State: "running",
		},
	}
	for _, r := range recs {
		if err := s.PutSandbox(ctx, r); err != nil {
			t.Fatalf("PutSandbox(%s): %v", r.ID, err)
		}
	}
	got, err := s.GetSandbox(ctx, "ib")
	if err != nil {
		t.Fatal(err)
	}
	if !equalRecord(got, recs[0]) {
		t.Errorf("GetSandbox = %+v\nwant %+v", got, recs[0])
	}
	if _, err := s.GetSandbox(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("GetSandbox(unknown) = %v, want not found", err)
	}

	newEnd := t0.Add(time.Hour)
	if err := s.SetSandboxEnd(ctx, "ia", newEnd); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSandboxEnd(ctx, "nope", newEnd); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("SetSandboxEnd(unknown) = %v, want not found", err)
	}

	// A second connection sees every acknowledged write.
	s2, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	list, err := s2.ListSandboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "ia" || list[1].ID != "ib" {
		t.Fatalf("ListSandboxes = %+v, want ia then ib", list)
	}
	if !list[0].EndAt.Equal(newEnd) {
		t.Errorf("end = %v, want %v", list[0].EndAt, newEnd)
	}
	if list[0].Metadata == nil || len(list[0].Metadata) != 0 {
		t.Errorf("nil metadata should read back as an empty map, got %#v", list[0].Metadata)
	}

	// Replace, then delete (twice).
	recs[1].State = "paused"
	if err := s.PutSandbox(ctx, recs[1]); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetSandbox(ctx, "ia"); got.State != "paused" {
		t.Errorf("state after replace = %q", got.State)
	}
	for range 2 {
		if err := s.DeleteSandbox(ctx, "ia"); err != nil {
			t.Fatalf("DeleteSandbox: %v", err)
		}
	}
	list, err = s.ListSandboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != "ib" {
		t.Errorf("after delete: %+v", list)
	}
	if err := s.PutSandbox(ctx, SandboxRecord{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("PutSandbox without id = %v", err)
	}
}

func TestConcurrentWrites(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Go(func() {
			for j := range 8 {
				id := string(rune('a'+i)) + string(rune('a'+j))
				if err := s.PutSandbox(ctx, SandboxRecord{ID: id, State: "running"}); err != nil {
					errs <- err
				}
				if _, _, err := s.CreateKey(ctx, NewKey{Name: id}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, err := s.ListSandboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 64 {
		t.Errorf("got %d sandboxes, want 64", len(list))
	}
}

func equalRecord(a, b SandboxRecord) bool {
	return a.ID == b.ID && a.TemplateID == b.TemplateID && a.Alias == b.Alias &&
		maps.Equal(a.Metadata, b.Metadata) && maps.Equal(a.Env, b.Env) &&
		a.CPUCount == b.CPUCount && a.MemoryMB == b.MemoryMB && a.DiskMB == b.DiskMB &&
		a.StartedAt.Equal(b.StartedAt) && a.EndAt.Equal(b.EndAt) && a.State == b.State &&
		a.AccessToken == b.AccessToken && a.Secure == b.Secure && a.AllowInternet == b.AllowInternet &&
		a.Pid == b.Pid && a.TeamID == b.TeamID
}

func flip(c byte) string {
	if c == '0' {
		return "1"
	}
	return "0"
}

// TestSandboxTakeOverFields: what a restarted daemon needs to take a
// sandbox over (envd version, auto-pause, network rules, state) is
// written, changed and read back.
func TestSandboxTakeOverFields(t *testing.T) {
	s, path := openTest(t)
	ctx := t.Context()
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	rec := SandboxRecord{
		ID: "ix", TemplateID: "base", StartedAt: t0, EndAt: t0.Add(time.Minute), State: "running",
		AllowInternet: true, EnvdVersion: "0.2.0", AutoPause: true, InternetBlocked: true,
		Network:    &SandboxNetwork{AllowOut: []string{"1.1.1.1"}, DenyOut: []string{"0.0.0.0/0"}},
		AutoResume: true, AutoPauseFilesystemOnly: true, Origin: []byte(`{"template":{}}`),
	}
	if err := s.PutSandbox(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSandbox(ctx, SandboxRecord{ID: "iy", TemplateID: "base", StartedAt: t0, EndAt: t0, State: "running"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSandbox(ctx, "ix")
	if err != nil {
		t.Fatal(err)
	}
	if got.EnvdVersion != "0.2.0" || !got.AutoPause || !got.InternetBlocked || got.Network == nil ||
		!slices.Equal(got.Network.AllowOut, rec.Network.AllowOut) || !slices.Equal(got.Network.DenyOut, rec.Network.DenyOut) {
		t.Fatalf("read back %+v (network %+v)", got, got.Network)
	}
	if got, _ := s.GetSandbox(ctx, "iy"); got.Network != nil || got.AutoPause || got.InternetBlocked {
		t.Errorf("a record without rules reads back %+v", got)
	}

	end := t0.Add(24 * time.Hour)
	if err := s.SetSandboxState(ctx, "ix", "paused", true, end); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSandboxNetwork(ctx, "ix", nil, false); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		s.SetSandboxState(ctx, "nope", "paused", false, end),
		s.SetSandboxNetwork(ctx, "nope", nil, false),
	} {
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("changing an unknown record: %v, want not found", err)
		}
	}
	s2, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err = s2.GetSandbox(ctx, "ix")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != "paused" || !got.PausedFilesystemOnly || !got.EndAt.Equal(end) || got.Network != nil || got.InternetBlocked {
		t.Errorf("after the changes: %+v", got)
	}
	if !got.AutoResume || !got.AutoPauseFilesystemOnly || string(got.Origin) != `{"template":{}}` {
		t.Errorf("lifecycle and origin read back as %+v", got)
	}
}
