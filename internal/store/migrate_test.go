package store

import (
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// TestMigrateFromBeforeTeams opens a database the previous release wrote
// (the first three migrations, with keys, sandboxes and a template with
// builds and tags) and checks that everything lands in the team "default":
// its keys still work, as admins; its sandbox and template stay usable.
func TestMigrateFromBeforeTeams(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sandpit.db")
	old, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range migrations()[:3] {
		if _, err := old.ExecContext(ctx, m); err != nil {
			t.Fatalf("old migration %d: %v", i+1, err)
		}
	}
	t0 := time.Date(2026, 10, 1, 9, 0, 0, 0, time.UTC)
	live, revoked := newKey(), newKey()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`PRAGMA user_version = 3`, nil},
		{`INSERT INTO api_keys (id, name, key_hash, prefix, created_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?)`,
			[]any{"key_live", "first", keyHash(live), displayPrefix(live), t0.UnixNano(), t0.Add(time.Hour).UnixNano()}},
		{`INSERT INTO api_keys (id, name, key_hash, prefix, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)`,
			[]any{"key_old", "old", keyHash(revoked), displayPrefix(revoked), t0.UnixNano(), t0.Add(time.Minute).UnixNano()}},
		{`INSERT INTO sandboxes (id, template_id, alias, metadata, env, cpu, mem, disk, started_at, end_at, state,
			access_token, secure, allow_internet, pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			[]any{"sb1", "tpl1", "mine", `{"user":"a"}`, `{"FOO":"bar"}`, 2, 512, 1024, t0.UnixNano(),
				t0.Add(time.Hour).UnixNano(), "paused", "tok", 1, 1, 0}},
		{`INSERT INTO templates (id, spec, build_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`,
			[]any{"tpl1", []byte(`{"layers":["b2"]}`), "b2", t0.UnixNano(), t0.Add(time.Minute).UnixNano()}},
		{`INSERT INTO template_names (name, template_id) VALUES ('mine', 'tpl1')`, nil},
		{`INSERT INTO template_builds (id, template_id, status, created_at, finished_at, spec) VALUES (?, ?, ?, ?, ?, ?)`,
			[]any{"b1", "tpl1", "ready", t0.UnixNano(), t0.UnixNano(), []byte(`{"layers":["b1"]}`)}},
		{`INSERT INTO template_builds (id, template_id, status, created_at, finished_at, spec) VALUES (?, ?, ?, ?, ?, ?)`,
			[]any{"b2", "tpl1", "ready", t0.Add(time.Minute).UnixNano(), t0.Add(time.Minute).UnixNano(), []byte(`{"layers":["b2"]}`)}},
		{`INSERT INTO template_tags (template_id, tag, build_id, created_at) VALUES ('tpl1', 'default', 'b2', ?), ('tpl1', 'v1', 'b1', ?)`,
			[]any{t0.UnixNano(), t0.UnixNano()}},
	} {
		if _, err := old.ExecContext(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("opening the old database: %v", err)
	}
	defer s.Close()
	var version int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version != len(migrations()) {
		t.Errorf("user_version = %d, %v; want %d", version, err, len(migrations()))
	}
	def, err := s.Team(ctx, DefaultTeamName)
	if err != nil {
		t.Fatalf("no default team after migrating: %v", err)
	}
	if !uuidShape.MatchString(def.ID) || def.Limits != (Limits{}) {
		t.Errorf("default team = %+v", def)
	}

	keys, err := s.ListKeys(ctx, DefaultTeamName)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("keys in default = %+v, want both old keys", keys)
	}
	for _, k := range keys {
		if k.TeamID != def.ID || k.TeamName != DefaultTeamName || !k.Admin {
			t.Errorf("old key %s = %+v, want an admin of default", k.ID, k)
		}
	}
	if keys[0].ID != "key_live" || !keys[0].LastUsedAt.Equal(t0.Add(time.Hour)) || !keys[1].Revoked() {
		t.Errorf("old keys lost their history: %+v", keys)
	}
	p, ok, err := s.VerifyKey(ctx, live)
	if err != nil || !ok || p.KeyID != "key_live" || !p.Admin || p.Team.ID != def.ID {
		t.Errorf("VerifyKey(old key) = %+v, %v, %v", p, ok, err)
	}
	if _, ok, err := s.VerifyKey(ctx, revoked); err != nil || ok {
		t.Errorf("VerifyKey(old revoked key) = %v, %v; want false", ok, err)
	}

	sb, err := s.GetSandbox(ctx, "sb1")
	if err != nil {
		t.Fatal(err)
	}
	if sb.TeamID != def.ID || sb.State != "paused" || sb.Env["FOO"] != "bar" || sb.AccessToken != "tok" || !sb.Secure {
		t.Errorf("old sandbox = %+v", sb)
	}

	tpl, err := s.TemplateByName(ctx, "mine")
	if err != nil {
		t.Fatal(err)
	}
	if tpl.ID != "tpl1" || tpl.TeamID != def.ID || tpl.Public || tpl.BuildID != "b2" || string(tpl.Spec) != `{"layers":["b2"]}` {
		t.Errorf("old template = %+v", tpl)
	}
	for tag, build := range map[string]string{"default": "b2", "v1": "b1"} {
		tr, err := s.GetTag(ctx, "tpl1", tag)
		if err != nil || tr.BuildID != build {
			t.Errorf("tag %s = %+v, %v; want build %s", tag, tr, err, build)
		}
	}
	builds, err := s.ListBuilds(ctx, "tpl1")
	if err != nil || len(builds) != 2 || string(builds[1].Spec) != `{"layers":["b1"]}` {
		t.Errorf("old builds = %+v, %v", builds, err)
	}

	// The migrated database takes new teams, keys and audit entries.
	if _, _, err := s.CreateKey(ctx, NewKey{Name: "new"}); err != nil {
		t.Errorf("CreateKey after migrating: %v", err)
	}
	if err := s.AppendAudit(ctx, []AuditEntry{{Action: "team.create", Target: "x"}}); err != nil {
		t.Errorf("AppendAudit after migrating: %v", err)
	}
	if err := s.DeleteTeam(ctx, DefaultTeamName); err == nil {
		t.Error("the migrated default team could be removed")
	}

	// Reopening runs no migration twice.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	defer s2.Close()
	def2, err := s2.Team(ctx, DefaultTeamName)
	if err != nil || def2.ID != def.ID {
		t.Errorf("default team after reopening = %+v, %v; want ID %s", def2, err, def.ID)
	}
	if teams, err := s2.ListTeams(ctx); err != nil || len(teams) != 1 {
		t.Errorf("teams after reopening = %+v, %v", teams, err)
	}
	var n int
	if err := s2.db.QueryRowContext(ctx, `SELECT count(*) FROM sandboxes WHERE team_id = ''`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d sandboxes without a team, %v", n, err)
	}
}
