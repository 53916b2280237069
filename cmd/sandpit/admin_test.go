package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/store"
)

// sandpit runs the CLI in-process and returns its exit code and output.
func sandpit(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// mustRun runs the CLI and fails the test unless it succeeds.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := sandpit(t, args...)
	if code != 0 {
		t.Fatalf("sandpit %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// mustFail runs the CLI and checks it fails saying want.
func mustFail(t *testing.T, want string, args ...string) {
	t.Helper()
	code, out, errOut := sandpit(t, args...)
	if code == 0 {
		t.Fatalf("sandpit %s succeeded: %s", strings.Join(args, " "), out)
	}
	if !strings.Contains(errOut, want) {
		t.Errorf("sandpit %s: stderr %q, want it to say %q", strings.Join(args, " "), errOut, want)
	}
}

// jsonLines decodes output that is one JSON object a line.
func jsonLines[T any](t *testing.T, out string) []T {
	t.Helper()
	var all []T
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var v T
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("line %q is not the JSON expected: %v", sc.Text(), err)
		}
		all = append(all, v)
	}
	return all
}

// openDaemonStore opens the database as a running daemon holds it.
func openDaemonStore(t *testing.T, dir string) *store.SQLite {
	t.Helper()
	st, err := store.OpenSQLite(t.Context(), filepath.Join(dir, "sandpit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestTeamsCLI(t *testing.T) {
	dir := t.TempDir()
	daemon := openDaemonStore(t, dir)

	// Flags after the name, and before the verb.
	out := mustRun(t, "teams", "create", "acme", "--max-sandboxes", "3", "--max-lifetime", "24h",
		"--creates-per-second=0.5", "--data-dir", dir)
	if !strings.Contains(out, "created team acme") {
		t.Errorf("create said %q", out)
	}
	mustRun(t, "teams", "--data-dir", dir, "--max-memory-mb", "2048", "--max-egress-rate", "1MiB",
		"--max-egress-conns", "16", "create", "beta")

	out = mustRun(t, "teams", "list", "--data-dir", dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("teams list:\n%s", out)
	}
	acmeRow := strings.Fields(lines[1])
	// NAME ID SANDBOXES CREATES/S BURST LIFETIME CPUS MEMORY DISK TEMPLATES CREATED
	if got := strings.Join(acmeRow[2:10], " "); acmeRow[0] != "acme" || got != "3 0.5 - 24h - - - -" {
		t.Errorf("acme row = %q, want limits 3 0.5 - 24h and - for the unset ones", lines[1])
	}
	if !strings.Contains(lines[2], "2048 MB") || !strings.Contains(lines[2], "1MiB/s") || !strings.HasPrefix(lines[3], "default") {
		t.Errorf("teams list:\n%s", out)
	}

	type teamLine struct {
		ID                   string  `json:"id"`
		Name                 string  `json:"name"`
		CreatedAt            string  `json:"created_at"`
		MaxSandboxes         int     `json:"max_sandboxes"`
		CreatesPerSecond     float64 `json:"creates_per_second"`
		CreateBurst          int     `json:"create_burst"`
		MaxLifetimeSeconds   float64 `json:"max_lifetime_seconds"`
		MaxCPUs              int     `json:"max_cpus"`
		MaxMemoryMB          int     `json:"max_memory_mb"`
		MaxDiskMB            int     `json:"max_disk_mb"`
		MaxTemplateStorageMB int     `json:"max_template_storage_mb"`
		MaxEgressRate        int64   `json:"max_egress_rate"`
		MaxEgressConns       int     `json:"max_egress_conns"`
	}
	ts := jsonLines[teamLine](t, mustRun(t, "teams", "--json", "list", "--data-dir", dir))
	if len(ts) != 3 || ts[0].Name != "acme" || ts[0].MaxSandboxes != 3 || ts[0].MaxLifetimeSeconds != 86400 ||
		ts[0].CreatesPerSecond != 0.5 || ts[1].MaxMemoryMB != 2048 || ts[2].Name != "default" ||
		ts[1].MaxEgressRate != 1<<20 || ts[1].MaxEgressConns != 16 || ts[0].MaxEgressRate != 0 {
		t.Errorf("teams list --json = %+v", ts)
	}
	if _, err := time.Parse(time.RFC3339, ts[0].CreatedAt); err != nil {
		t.Errorf("created_at %q: %v", ts[0].CreatedAt, err)
	}

	// set changes only the limits given; 0 clears one. The daemon's store
	// sees it at once.
	mustRun(t, "teams", "set", "acme", "--max-sandboxes", "0", "--max-cpus", "2", "--data-dir", dir)
	got, err := daemon.Team(t.Context(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	want := store.Limits{CreatesPerSecond: 0.5, MaxLifetime: 24 * time.Hour, MaxCPUs: 2}
	if got.Limits != want {
		t.Errorf("limits after set = %+v, want %+v", got.Limits, want)
	}
	mustFail(t, "give the limits to change", "teams", "set", "acme", "--data-dir", dir)

	mustFail(t, `team "acme" already exists`, "teams", "create", "acme", "--data-dir", dir)
	mustFail(t, `team name "Bad Name"`, "teams", "create", "Bad Name", "--data-dir", dir)
	mustFail(t, `no team "nope"`, "teams", "set", "nope", "--max-cpus", "1", "--data-dir", dir)
	mustFail(t, `no team "nope"`, "teams", "rm", "nope", "--data-dir", dir)
	mustFail(t, `team "default" cannot be removed`, "teams", "rm", "default", "--data-dir", dir)
	mustFail(t, "--json does not apply to sandpit teams create", "teams", "create", "x", "--json", "--data-dir", dir)
	mustFail(t, `unknown teams command "delete"`, "teams", "delete", "acme", "--data-dir", dir)
	mustFail(t, "must not be negative", "teams", "create", "neg", "--max-cpus", "-1", "--data-dir", dir)

	mustRun(t, "keys", "create", "ci", "--team", "acme", "--data-dir", dir)
	mustFail(t, `team "acme" still has 1 unrevoked key`, "teams", "rm", "acme", "--data-dir", dir)
	out = mustRun(t, "teams", "rm", "beta", "--data-dir", dir)
	if !strings.Contains(out, "removed team beta") {
		t.Errorf("rm said %q", out)
	}
	if _, err := daemon.Team(t.Context(), "beta"); err == nil {
		t.Error("team beta is still there")
	}
}

type keyLine struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	TeamID     string  `json:"team_id"`
	Team       string  `json:"team"`
	Admin      bool    `json:"admin"`
	Prefix     string  `json:"prefix"`
	CreatedAt  string  `json:"created_at"`
	LastUsedAt *string `json:"last_used_at"`
	RevokedAt  *string `json:"revoked_at"`
}

func TestKeysCLI(t *testing.T) {
	dir := t.TempDir()
	daemon := openDaemonStore(t, dir)
	mustRun(t, "teams", "create", "acme", "--max-sandboxes", "2", "--data-dir", dir)

	// The key is the last line, alone on it.
	lastLine := func(out string) string {
		t.Helper()
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		last := lines[len(lines)-1]
		if !store.WellFormedKey(last) {
			t.Fatalf("last line %q of %q is not a key alone", last, out)
		}
		return last
	}
	out := mustRun(t, "keys", "create", "ci", "--team", "acme", "--data-dir", dir)
	ciKey := lastLine(out)
	if !strings.Contains(out, "team acme") {
		t.Errorf("create did not say the team: %q", out)
	}
	opsKey := lastLine(mustRun(t, "keys", "--admin", "--data-dir", dir, "create", "ops"))
	plainKey := lastLine(mustRun(t, "keys", "create", "--data-dir", dir))

	// The running daemon accepts the new keys at once, each for its team.
	p, ok, err := daemon.VerifyKey(t.Context(), ciKey)
	if err != nil || !ok || p.Team.Name != "acme" || p.Admin || p.KeyName != "ci" || p.Team.Limits.MaxSandboxes != 2 {
		t.Errorf("daemon VerifyKey(ci) = %+v, %v, %v", p, ok, err)
	}
	p, ok, err = daemon.VerifyKey(t.Context(), opsKey)
	if err != nil || !ok || p.Team.Name != store.DefaultTeamName || !p.Admin {
		t.Errorf("daemon VerifyKey(ops) = %+v, %v, %v", p, ok, err)
	}
	mustRun(t, "teams", "set", "acme", "--max-sandboxes", "5", "--data-dir", dir)
	if p, _, _ := daemon.VerifyKey(t.Context(), ciKey); p.Team.Limits.MaxSandboxes != 5 {
		t.Errorf("daemon sees max sandboxes %d after the CLI set 5", p.Team.Limits.MaxSandboxes)
	}

	ks := jsonLines[keyLine](t, mustRun(t, "keys", "list", "--json", "--data-dir", dir))
	if len(ks) != 3 || ks[0].Name != "ci" || ks[0].Team != "acme" || ks[0].Admin ||
		ks[1].Name != "ops" || !ks[1].Admin || ks[2].Name != "cli" || ks[2].Team != "default" {
		t.Fatalf("keys list --json = %+v", ks)
	}
	if ks[0].LastUsedAt == nil || ks[2].LastUsedAt != nil || ks[0].RevokedAt != nil || !strings.HasPrefix(ciKey, ks[0].Prefix) {
		t.Errorf("keys list --json = %+v", ks)
	}
	ks = jsonLines[keyLine](t, mustRun(t, "keys", "--team", "acme", "list", "--json", "--data-dir", dir))
	if len(ks) != 1 || ks[0].Name != "ci" {
		t.Errorf("keys list --team acme = %+v", ks)
	}
	out = mustRun(t, "keys", "list", "--data-dir", dir)
	if !strings.HasPrefix(out, "ID") || strings.Count(out, "\n") != 4 || strings.Contains(out, ciKey) {
		t.Errorf("keys list:\n%s", out)
	}

	mustFail(t, `no team "nope"`, "keys", "create", "x", "--team", "nope", "--data-dir", dir)
	mustFail(t, `no team "nope"`, "keys", "list", "--team", "nope", "--data-dir", dir)
	mustFail(t, "--admin does not apply to sandpit keys list", "keys", "list", "--admin", "--data-dir", dir)
	mustFail(t, `no API key matches "key_nope"`, "keys", "revoke", "key_nope", "--data-dir", dir)

	// Revoke by prefix, flags first; the daemon refuses the key at once.
	out = mustRun(t, "keys", "--data-dir", dir, "revoke", ks[0].Prefix+"…")
	if !strings.Contains(out, "revoked key "+ks[0].ID) {
		t.Errorf("revoke said %q", out)
	}
	if _, ok, err := daemon.VerifyKey(t.Context(), ciKey); ok || err != nil {
		t.Errorf("daemon VerifyKey(revoked) = %v, %v", ok, err)
	}
	if out := mustRun(t, "keys", "revoke", ks[0].ID, "--data-dir", dir); !strings.Contains(out, "already revoked") {
		t.Errorf("second revoke said %q", out)
	}

	// The audit log tells what the CLI did, never a key.
	type auditLine struct {
		ID         int64   `json:"id"`
		Time       string  `json:"time"`
		TeamID     string  `json:"team_id"`
		Team       string  `json:"team"`
		KeyID      string  `json:"key_id"`
		KeyName    string  `json:"key_name"`
		Action     string  `json:"action"`
		Target     string  `json:"target"`
		Result     string  `json:"result"`
		Client     string  `json:"client"`
		DurationMS float64 `json:"duration_ms"`
		Detail     string  `json:"detail"`
	}
	jsonOut := mustRun(t, "audit", "--json", "--data-dir", dir)
	entries := jsonLines[auditLine](t, jsonOut)
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action+"/"+e.Team)
		if e.KeyName != "cli" || e.Client != "local" || e.Result != "ok" || e.KeyID != "" || e.Target == "" {
			t.Errorf("CLI audit entry = %+v", e)
		}
		if _, err := time.Parse(time.RFC3339, e.Time); err != nil {
			t.Errorf("time %q: %v", e.Time, err)
		}
	}
	want := "team.create/acme key.create/acme key.create/default key.create/default team.update/acme key.revoke/acme"
	if got := strings.Join(actions, " "); got != want {
		t.Errorf("audit actions = %s\nwant %s", got, want)
	}
	tableOut := mustRun(t, "audit", "--data-dir", dir)
	for _, k := range []string{ciKey, opsKey, plainKey, ciKey[4:], opsKey[4:]} {
		if strings.Contains(jsonOut, k) || strings.Contains(tableOut, k) {
			t.Errorf("the audit log shows a key's secret %.12s…", k)
		}
	}
	if lines := strings.Split(strings.TrimSpace(tableOut), "\n"); len(lines) != 7 || !strings.HasPrefix(lines[0], "TIME") {
		t.Errorf("audit table:\n%s", tableOut)
	}

	// Filters, before and after the flags.
	count := func(args ...string) int {
		t.Helper()
		return len(jsonLines[auditLine](t, mustRun(t, append([]string{"audit", "--json", "--data-dir", dir}, args...)...)))
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--team", "acme"}, 4},
		{[]string{"--team", store.DefaultTeamName, "--action", "key.create"}, 2},
		{[]string{"--action", "key."}, 4},
		{[]string{"--action", "team.create"}, 1},
		{[]string{"--since", "1h"}, 6},
		{[]string{"--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, 0},
		{[]string{"--limit", "2"}, 2},
	} {
		if got := count(tc.args...); got != tc.want {
			t.Errorf("audit %v: %d entries, want %d", tc.args, got, tc.want)
		}
	}
	last := jsonLines[auditLine](t, mustRun(t, "audit", "--limit", "1", "--json", "--data-dir", dir))
	if len(last) != 1 || last[0].Action != "key.revoke" {
		t.Errorf("audit --limit 1 = %+v, want the newest entry", last)
	}
	mustFail(t, `no team "nope"`, "audit", "--team", "nope", "--data-dir", dir)
	mustFail(t, `--since "yesterday"`, "audit", "--since", "yesterday", "--data-dir", dir)
	mustFail(t, "unexpected argument", "audit", "extra", "--data-dir", dir)
}

func TestAdminCLINeedsTheDataDir(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	for _, args := range [][]string{{"teams", "list"}, {"keys", "create"}, {"audit"}} {
		mustFail(t, "no data directory "+missing, append(args, "--data-dir", missing)...)
	}
}

func TestInterleaveFS(t *testing.T) {
	c := newAdminCmd("keys", "", nil)
	c.fs.Bool("admin", false, "")
	c.fs.String("team", "", "")
	got := interleaveFS(c.fs, []string{"create", "--admin", "ops", "--team", "acme", "--data-dir=/x"})
	want := "--admin --team acme --data-dir=/x create ops"
	if strings.Join(got, " ") != want {
		t.Errorf("interleaveFS = %q, want %q", got, want)
	}
}
