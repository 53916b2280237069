package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// lastUsedGranularity is how stale a key's last_used_at may get: VerifyKey
// writes it at most this often per key, so checking a key is a read.
const lastUsedGranularity = time.Minute

// SQLite is the embedded Store: one database file in WAL mode with
// synchronous=FULL, so a write acknowledged by a method survives a crash;
// the record of a running sandbox survives a crash of the daemon, not of
// the host, which ends the sandbox too (commit.go).
type SQLite struct {
	db    *sql.DB
	stmts stmts
	now   func() time.Time

	// commits batches the writes of sandbox records and audit entries
	// (commit.go).
	commits commitQueue

	mu sync.Mutex
	// touched holds, per key id, when VerifyKey last wrote last_used_at.
	touched map[string]time.Time
}

var _ Store = (*SQLite)(nil)

// MaxConns caps the database's connections, open and idle alike. Without
// a cap, database/sql opens one per concurrent caller and closes all but
// two when the burst is over: each reopen pays for the pragmas, and SQLite
// keeps the file descriptors of connections closed while others hold
// locks for reuse, so the daemon's descriptors grew with its peak load
// and stayed there. SQLite runs one writer at a time anyway; sixteen
// connections leave readers (WAL) room beside the writers under load.
// No store method holds a connection while it asks for another, so the
// cap cannot deadlock.
const MaxConns = 16

// OpenSQLite opens (creating if needed) the database file at path and brings
// its schema up to date. The file and its -wal and -shm companions are
// root's alone (0600): they hold sandboxes' environment variables and envd
// access tokens, which cannot be hashed because the daemon hands them back
// to clients on connect and signs file URLs with them.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	if err := privateFiles(path); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening database %s: %w", path, err)
	}
	db.SetMaxOpenConns(MaxConns)
	db.SetMaxIdleConns(MaxConns)
	s := &SQLite{db: db, now: time.Now, touched: map[string]time.Time{}}
	if err := s.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("migrating database %s: %w", path, err)
	}
	if err := s.stmts.prepare(ctx, db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("opening database %s: %w", path, err)
	}
	return s, nil
}

// privateFiles creates the database file 0600 before SQLite does (SQLite
// gives -wal and -shm the database file's mode) and takes files an earlier
// version left readable by every host user back to 0600.
func privateFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening database %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("opening database %s: %w", path, err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("securing database file %s: %w", p, err)
		}
	}
	return nil
}

// Close closes the database; calling it twice is fine. The statements
// close first, while the connections they were prepared on are open.
func (s *SQLite) Close() error {
	stmtsErr := s.stmts.close()
	return errors.Join(stmtsErr, s.db.Close())
}

// migrations returns the statements that bring the schema from version i to
// i+1; PRAGMA user_version records how many ran. Append only: never edit a
// migration that shipped.
func migrations() []string {
	return []string{
		`CREATE TABLE api_keys (
		id           TEXT PRIMARY KEY,
		name         TEXT NOT NULL,
		key_hash     BLOB NOT NULL UNIQUE,
		prefix       TEXT NOT NULL,
		created_at   INTEGER NOT NULL,
		last_used_at INTEGER,
		revoked_at   INTEGER
	);
	CREATE INDEX api_keys_prefix ON api_keys(prefix);
	CREATE TABLE sandboxes (
		id             TEXT PRIMARY KEY,
		template_id    TEXT NOT NULL,
		alias          TEXT NOT NULL DEFAULT '',
		metadata       TEXT NOT NULL DEFAULT '{}',
		env            TEXT NOT NULL DEFAULT '{}',
		cpu            INTEGER NOT NULL,
		mem            INTEGER NOT NULL,
		disk           INTEGER NOT NULL,
		started_at     INTEGER NOT NULL,
		end_at         INTEGER NOT NULL,
		state          TEXT NOT NULL,
		access_token   TEXT NOT NULL DEFAULT '',
		secure         INTEGER NOT NULL DEFAULT 0,
		allow_internet INTEGER NOT NULL DEFAULT 1,
		pid            INTEGER NOT NULL DEFAULT 0
	);`,
		`CREATE TABLE templates (
		id         TEXT PRIMARY KEY,
		spec       BLOB,
		build_id   TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE TABLE template_names (
		name        TEXT PRIMARY KEY,
		template_id TEXT NOT NULL REFERENCES templates(id) ON DELETE CASCADE
	);
	CREATE INDEX template_names_template ON template_names(template_id);
	CREATE TABLE template_builds (
		id          TEXT PRIMARY KEY,
		template_id TEXT NOT NULL,
		status      TEXT NOT NULL,
		request     BLOB,
		reason      TEXT NOT NULL DEFAULT '',
		reason_step TEXT NOT NULL DEFAULT '',
		logs        BLOB,
		created_at  INTEGER NOT NULL,
		finished_at INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX template_builds_template ON template_builds(template_id, created_at);`,
		// Tags name builds. Before them, each successful build replaced
		// what a template's name resolved to, which is what the default
		// tag does now: an old template's last good build becomes its
		// default tag and keeps its spec, so old data dirs resolve as
		// they did.
		`ALTER TABLE template_builds ADD COLUMN spec BLOB;
	UPDATE template_builds SET spec = (
		SELECT t.spec FROM templates t WHERE t.id = template_builds.template_id AND t.build_id = template_builds.id);
	CREATE TABLE template_tags (
		template_id TEXT NOT NULL REFERENCES templates(id) ON DELETE CASCADE,
		tag         TEXT NOT NULL,
		build_id    TEXT NOT NULL,
		created_at  INTEGER NOT NULL,
		PRIMARY KEY (template_id, tag)
	);
	INSERT INTO template_tags (template_id, tag, build_id, created_at)
		SELECT id, 'default', build_id, updated_at FROM templates WHERE spec IS NOT NULL AND build_id != '';`,
		// Teams own keys, sandboxes and templates. What a data dir held
		// before them lands in the team "default" (a fresh random UUID,
		// made here so the migration stays plain SQL), and its keys become
		// admin keys: before teams every key could do everything. The
		// team columns carry no REFERENCES because SQLite cannot add a
		// foreign key column with a non-NULL default; the store checks
		// teams itself. audit_log refuses UPDATE in a trigger; rows leave
		// it only through PruneAudit. AUTOINCREMENT keeps ids increasing
		// across pruning.
		`CREATE TABLE teams (
		id                      TEXT PRIMARY KEY,
		name                    TEXT NOT NULL UNIQUE,
		max_sandboxes           INTEGER NOT NULL DEFAULT 0,
		creates_per_second      REAL NOT NULL DEFAULT 0,
		create_burst            INTEGER NOT NULL DEFAULT 0,
		max_lifetime            INTEGER NOT NULL DEFAULT 0,
		max_cpus                INTEGER NOT NULL DEFAULT 0,
		max_memory_mb           INTEGER NOT NULL DEFAULT 0,
		max_disk_mb             INTEGER NOT NULL DEFAULT 0,
		max_template_storage_mb INTEGER NOT NULL DEFAULT 0,
		created_at              INTEGER NOT NULL
	);
	INSERT INTO teams (id, name, created_at) VALUES (
		lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' ||
		substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) ||
		substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))),
		'default', CAST(strftime('%s', 'now') AS INTEGER) * 1000000000);
	ALTER TABLE api_keys ADD COLUMN team_id TEXT NOT NULL DEFAULT '';
	ALTER TABLE api_keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
	UPDATE api_keys SET team_id = (SELECT id FROM teams WHERE name = 'default'), admin = 1;
	CREATE INDEX api_keys_team ON api_keys(team_id);
	ALTER TABLE sandboxes ADD COLUMN team_id TEXT NOT NULL DEFAULT '';
	UPDATE sandboxes SET team_id = (SELECT id FROM teams WHERE name = 'default');
	CREATE INDEX sandboxes_team ON sandboxes(team_id);
	ALTER TABLE templates ADD COLUMN team_id TEXT NOT NULL DEFAULT '';
	ALTER TABLE templates ADD COLUMN public INTEGER NOT NULL DEFAULT 0;
	UPDATE templates SET team_id = (SELECT id FROM teams WHERE name = 'default');
	CREATE INDEX templates_team ON templates(team_id);
	CREATE TABLE audit_log (
		id        INTEGER PRIMARY KEY AUTOINCREMENT,
		time      INTEGER NOT NULL,
		team_id   TEXT NOT NULL DEFAULT '',
		team_name TEXT NOT NULL DEFAULT '',
		key_id    TEXT NOT NULL DEFAULT '',
		key_name  TEXT NOT NULL DEFAULT '',
		action    TEXT NOT NULL,
		target    TEXT NOT NULL DEFAULT '',
		result    TEXT NOT NULL DEFAULT '',
		client    TEXT NOT NULL DEFAULT '',
		duration  INTEGER NOT NULL DEFAULT 0,
		detail    TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX audit_log_team_time ON audit_log(team_id, time);
	CREATE INDEX audit_log_time ON audit_log(time);
	CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
	BEGIN
		SELECT RAISE(ABORT, 'audit_log is append-only');
	END;`,
		// Snapshots: a sandbox's filesystem saved as a template of its
		// team (spec is the template package's JSON). A name and tag
		// name one snapshot of a team at most.
		`CREATE TABLE snapshots (
		id          TEXT PRIMARY KEY,
		team_id     TEXT NOT NULL,
		name        TEXT NOT NULL DEFAULT '',
		tag         TEXT NOT NULL DEFAULT '',
		sandbox_id  TEXT NOT NULL DEFAULT '',
		template_id TEXT NOT NULL DEFAULT '',
		spec        BLOB NOT NULL,
		bytes       INTEGER NOT NULL DEFAULT 0,
		created_at  INTEGER NOT NULL
	);
	CREATE UNIQUE INDEX snapshots_name ON snapshots(team_id, name, tag) WHERE name != '';
	CREATE INDEX snapshots_sandbox ON snapshots(team_id, sandbox_id);`,
		// Sandboxes outlive the daemon: what a restarted one needs to
		// take a sandbox over as it was, which only memory held before.
		`ALTER TABLE sandboxes ADD COLUMN envd_version TEXT NOT NULL DEFAULT '';
	ALTER TABLE sandboxes ADD COLUMN auto_pause INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE sandboxes ADD COLUMN internet_blocked INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE sandboxes ADD COLUMN network TEXT NOT NULL DEFAULT '';
	ALTER TABLE sandboxes ADD COLUMN auto_pause_fs_only INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE sandboxes ADD COLUMN auto_resume INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE sandboxes ADD COLUMN paused_fs_only INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE sandboxes ADD COLUMN origin BLOB;`,
		// Private ports, the Host mask and egress transforms of a
		// sandbox; team-owned secrets, their values sealed.
		`ALTER TABLE sandboxes ADD COLUMN traffic TEXT NOT NULL DEFAULT '';
	CREATE TABLE secrets (
		id         TEXT PRIMARY KEY,
		team_id    TEXT NOT NULL,
		name       TEXT NOT NULL,
		version    INTEGER NOT NULL,
		metadata   TEXT NOT NULL DEFAULT '{}',
		value      BLOB NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE UNIQUE INDEX secrets_name ON secrets(team_id, name);`,
		// A team's ceiling on its sandboxes' egress bandwidth and
		// connections.
		`ALTER TABLE teams ADD COLUMN max_egress_rate INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE teams ADD COLUMN max_egress_conns INTEGER NOT NULL DEFAULT 0;`,
	}
}

func (s *SQLite) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	migrations := migrations()
	if version > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this binary knows (%d)", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	// PRAGMA takes no bound parameters; the value is an int we own.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return fmt.Errorf("recording schema version: %w", err)
	}
	return tx.Commit()
}

// --- keys ---

// CreateKey implements Keys. The team is looked up in the transaction
// that inserts the key, so DeleteTeam cannot remove it in between.
func (s *SQLite) CreateKey(ctx context.Context, nk NewKey) (string, KeyInfo, error) {
	name := strings.TrimSpace(nk.Name)
	if name == "" {
		return "", KeyInfo{}, errdefs.New(errdefs.ErrInvalidArgument, "key name must not be empty")
	}
	teamRef := nk.Team
	if teamRef == "" {
		teamRef = DefaultTeamName
	}
	plain := newKey()
	info := KeyInfo{
		ID:        newID("key_", 12),
		Name:      name,
		Admin:     nk.Admin,
		Prefix:    displayPrefix(plain),
		CreatedAt: s.now().UTC(),
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", KeyInfo{}, fmt.Errorf("inserting key %s: %w", info.ID, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	team, err := findTeam(ctx, tx.StmtContext(ctx, s.stmts.findTeam), teamRef)
	if err != nil {
		return "", KeyInfo{}, err
	}
	info.TeamID, info.TeamName = team.ID, team.Name
	_, err = tx.ExecContext(ctx,
		`INSERT INTO api_keys (id, name, key_hash, prefix, created_at, team_id, admin) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		info.ID, info.Name, keyHash(plain), info.Prefix, info.CreatedAt.UnixNano(), info.TeamID, info.Admin)
	if err != nil {
		return "", KeyInfo{}, fmt.Errorf("inserting key %s: %w", info.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return "", KeyInfo{}, fmt.Errorf("inserting key %s: %w", info.ID, err)
	}
	return plain, info, nil
}

const keyColumns = `k.id, k.name, k.prefix, k.created_at, k.last_used_at, k.revoked_at, k.admin, k.team_id, coalesce(t.name, '')`

// ListKeys implements Keys.
func (s *SQLite) ListKeys(ctx context.Context, team string) ([]KeyInfo, error) {
	query := `SELECT ` + keyColumns + ` FROM api_keys k LEFT JOIN teams t ON t.id = k.team_id`
	var args []any
	if team != "" {
		tm, err := findTeam(ctx, s.stmts.findTeam, team)
		if err != nil {
			return nil, err
		}
		query += ` WHERE k.team_id = ?`
		args = append(args, tm.ID)
	}
	rows, err := s.db.QueryContext(ctx, query+` ORDER BY k.created_at, k.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	defer rows.Close()
	var out []KeyInfo
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("reading key: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	return out, nil
}

func scanKey(r scanner) (KeyInfo, error) {
	var k KeyInfo
	var created int64
	var used, revoked sql.NullInt64
	if err := r.Scan(&k.ID, &k.Name, &k.Prefix, &created, &used, &revoked, &k.Admin, &k.TeamID, &k.TeamName); err != nil {
		return KeyInfo{}, err
	}
	k.CreatedAt = fromNanos(created)
	k.LastUsedAt = fromNullNanos(used)
	k.RevokedAt = fromNullNanos(revoked)
	return k, nil
}

// Key returns the key whose id or display prefix (or whole plaintext) is
// idOrPrefix, as RevokeKey finds it: errdefs.ErrNotFound for none,
// errdefs.ErrConflict for a prefix that names several keys. The CLI uses
// it to say which key it revokes.
func (s *SQLite) Key(ctx context.Context, idOrPrefix string) (KeyInfo, error) {
	id, err := s.findKey(ctx, idOrPrefix)
	if err != nil {
		return KeyInfo{}, err
	}
	row := s.db.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys k LEFT JOIN teams t ON t.id = k.team_id WHERE k.id = ?`, id)
	k, err := scanKey(row)
	if errors.Is(err, sql.ErrNoRows) {
		return KeyInfo{}, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("no API key matches %q", idOrPrefix))
	}
	if err != nil {
		return KeyInfo{}, fmt.Errorf("reading key %s: %w", id, err)
	}
	return k, nil
}

// RevokeKey implements Keys. idOrPrefix may be a key id, a display prefix
// (with or without a trailing "…" or "..."), or a whole key.
func (s *SQLite) RevokeKey(ctx context.Context, idOrPrefix string) error {
	id, err := s.findKey(ctx, idOrPrefix)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx,
		`UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`,
		s.now().UnixNano(), id)
	if err != nil {
		return fmt.Errorf("revoking key %s: %w", id, err)
	}
	return nil
}

// findKey returns the id of the one key idOrPrefix names; see RevokeKey.
func (s *SQLite) findKey(ctx context.Context, idOrPrefix string) (string, error) {
	ref := strings.TrimSpace(idOrPrefix)
	ref = strings.TrimSuffix(strings.TrimSuffix(ref, "…"), "...")
	if ref == "" {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "key id or prefix must not be empty")
	}
	var ids []string
	var query string
	var arg any
	switch {
	case WellFormedKey(ref):
		query, arg = `SELECT id FROM api_keys WHERE key_hash = ?`, keyHash(ref)
	case strings.HasPrefix(ref, KeyPrefix):
		query, arg = `SELECT id FROM api_keys WHERE prefix = ?`, ref
	default:
		query, arg = `SELECT id FROM api_keys WHERE id = ?`, ref
	}
	rows, err := s.db.QueryContext(ctx, query, arg)
	if err != nil {
		return "", fmt.Errorf("finding key %q: %w", ref, err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return "", fmt.Errorf("finding key %q: %w", ref, err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("finding key %q: %w", ref, err)
	}
	switch len(ids) {
	case 0:
		return "", errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("no API key matches %q", ref))
	case 1:
		return ids[0], nil
	default:
		return "", errdefs.New(errdefs.ErrConflict, fmt.Sprintf("%q matches %d keys; give the key id", ref, len(ids)))
	}
}

const verifyKeyQuery = `SELECT k.id, k.name, k.admin, k.key_hash, ` + teamColumns + `
	FROM api_keys k JOIN teams t ON t.id = k.team_id
	WHERE k.prefix = ? AND k.revoked_at IS NULL`

// VerifyKey implements Keys. The key's display prefix finds candidate rows,
// joined with their team in the same query; their hashes are compared in
// constant time.
func (s *SQLite) VerifyKey(ctx context.Context, plaintext string) (Principal, bool, error) {
	if !WellFormedKey(plaintext) {
		return Principal{}, false, nil
	}
	want := keyHash(plaintext)
	rows, err := s.stmts.verifyKey.QueryContext(ctx, displayPrefix(plaintext))
	if err != nil {
		return Principal{}, false, fmt.Errorf("verifying key: %w", err)
	}
	var match Principal
	found := false
	for rows.Next() {
		var p Principal
		var h []byte
		team, err := scanTeam(rows, &p.KeyID, &p.KeyName, &p.Admin, &h)
		if err != nil {
			rows.Close()
			return Principal{}, false, fmt.Errorf("verifying key: %w", err)
		}
		p.Team = team
		if subtle.ConstantTimeCompare(h, want) == 1 {
			match, found = p, true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Principal{}, false, fmt.Errorf("verifying key: %w", err)
	}
	if !found {
		return Principal{}, false, nil
	}
	s.touch(ctx, match.KeyID)
	return match, true, nil
}

// touch records that key id was used, at most once per lastUsedGranularity.
// A failure to record use does not fail verification.
func (s *SQLite) touch(ctx context.Context, id string) {
	now := s.now()
	s.mu.Lock()
	last, ok := s.touched[id]
	if ok && now.Sub(last) < lastUsedGranularity {
		s.mu.Unlock()
		return
	}
	s.touched[id] = now
	s.mu.Unlock()
	_, _ = s.db.ExecContext(ctx, `UPDATE api_keys SET last_used_at = ? WHERE id = ?`, now.UnixNano(), id)
}

// --- sandboxes ---

const sandboxColumns = `id, template_id, alias, metadata, env, cpu, mem, disk,
	started_at, end_at, state, access_token, secure, allow_internet, pid, team_id,
	envd_version, auto_pause, internet_blocked, network,
	auto_pause_fs_only, auto_resume, paused_fs_only, origin, traffic`

const putSandboxQuery = `INSERT OR REPLACE INTO sandboxes (` + sandboxColumns + `)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// PutSandbox implements Sandboxes.
func (s *SQLite) PutSandbox(ctx context.Context, rec SandboxRecord) error {
	if rec.ID == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "sandbox record without id")
	}
	meta, err := encodeMap(rec.Metadata)
	if err != nil {
		return fmt.Errorf("encoding metadata of %s: %w", rec.ID, err)
	}
	env, err := encodeMap(rec.Env)
	if err != nil {
		return fmt.Errorf("encoding env of %s: %w", rec.ID, err)
	}
	network, err := encodeNetwork(rec.Network)
	if err != nil {
		return fmt.Errorf("encoding network of %s: %w", rec.ID, err)
	}
	traffic, err := encodeTraffic(rec.Traffic)
	if err != nil {
		return fmt.Errorf("encoding traffic settings of %s: %w", rec.ID, err)
	}
	// A running sandbox's record need only outlive the daemon, not the
	// host: commit.go. A paused one's outlives a reboot with its files.
	write := s.write
	if rec.State == "" || rec.State == "running" {
		write = s.writeVolatile
	}
	err = write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.StmtContext(ctx, s.stmts.putSandbox).ExecContext(ctx,
			rec.ID, rec.TemplateID, rec.Alias, meta, env, rec.CPUCount, rec.MemoryMB, rec.DiskMB,
			rec.StartedAt.UnixNano(), rec.EndAt.UnixNano(), rec.State, rec.AccessToken,
			rec.Secure, rec.AllowInternet, rec.Pid, rec.TeamID,
			rec.EnvdVersion, rec.AutoPause, rec.InternetBlocked, network,
			rec.AutoPauseFilesystemOnly, rec.AutoResume, rec.PausedFilesystemOnly, rec.Origin, traffic)
		return err
	})
	if err != nil {
		return fmt.Errorf("writing sandbox %s: %w", rec.ID, err)
	}
	return nil
}

// GetSandbox implements Sandboxes.
func (s *SQLite) GetSandbox(ctx context.Context, id string) (SandboxRecord, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+sandboxColumns+` FROM sandboxes WHERE id = ?`, id)
	rec, err := scanSandbox(row)
	if errors.Is(err, sql.ErrNoRows) {
		return SandboxRecord{}, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("sandbox %q not found", id))
	}
	if err != nil {
		return SandboxRecord{}, fmt.Errorf("reading sandbox %s: %w", id, err)
	}
	return rec, nil
}

// ListSandboxes implements Sandboxes.
func (s *SQLite) ListSandboxes(ctx context.Context) ([]SandboxRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+sandboxColumns+` FROM sandboxes ORDER BY started_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing sandboxes: %w", err)
	}
	defer rows.Close()
	var out []SandboxRecord
	for rows.Next() {
		rec, err := scanSandbox(rows)
		if err != nil {
			return nil, fmt.Errorf("reading sandbox: %w", err)
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing sandboxes: %w", err)
	}
	return out, nil
}

// SetSandboxEnd implements Sandboxes.
func (s *SQLite) SetSandboxEnd(ctx context.Context, id string, end time.Time) error {
	return s.update(ctx, "updating end of sandbox", id, `UPDATE sandboxes SET end_at = ? WHERE id = ?`, end.UnixNano(), id)
}

// SetSandboxState implements Sandboxes.
func (s *SQLite) SetSandboxState(ctx context.Context, id, state string, filesystemOnly bool, end time.Time) error {
	return s.update(ctx, "updating state of sandbox", id, `UPDATE sandboxes SET state = ?, paused_fs_only = ?, end_at = ? WHERE id = ?`,
		state, filesystemOnly, end.UnixNano(), id)
}

// SetSandboxNetwork implements Sandboxes.
func (s *SQLite) SetSandboxNetwork(ctx context.Context, id string, n *SandboxNetwork, internetBlocked bool) error {
	network, err := encodeNetwork(n)
	if err != nil {
		return fmt.Errorf("encoding network of %s: %w", id, err)
	}
	return s.update(ctx, "updating network of sandbox", id, `UPDATE sandboxes SET network = ?, internet_blocked = ? WHERE id = ?`, network, internetBlocked, id)
}

// update runs query, an UPDATE of sandbox id's record, as a queued write
// (commit.go); doing names it in errors.
func (s *SQLite) update(ctx context.Context, doing, id, query string, args ...any) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		return oneRow(res, err, doing, id)
	})
}

// oneRow turns an UPDATE of one sandbox's record into its error:
// errdefs.ErrNotFound when no row had id.
func oneRow(res sql.Result, err error, doing, id string) error {
	if err != nil {
		return fmt.Errorf("%s %s: %w", doing, id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s %s: %w", doing, id, err)
	}
	if n == 0 {
		return errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("sandbox %q not found", id))
	}
	return nil
}

const deleteSandboxQuery = `DELETE FROM sandboxes WHERE id = ?`

// DeleteSandbox implements Sandboxes.
func (s *SQLite) DeleteSandbox(ctx context.Context, id string) error {
	// Volatile (commit.go): a deletion a power loss undid leaves a
	// record of a sandbox that is gone, which Recover removes.
	err := s.writeVolatile(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.StmtContext(ctx, s.stmts.deleteSandbox).ExecContext(ctx, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("deleting sandbox %s: %w", id, err)
	}
	return nil
}

type scanner interface{ Scan(dest ...any) error }

func scanSandbox(r scanner) (SandboxRecord, error) {
	var rec SandboxRecord
	var meta, env, network, traffic string
	var started, end int64
	err := r.Scan(&rec.ID, &rec.TemplateID, &rec.Alias, &meta, &env, &rec.CPUCount, &rec.MemoryMB, &rec.DiskMB,
		&started, &end, &rec.State, &rec.AccessToken, &rec.Secure, &rec.AllowInternet, &rec.Pid, &rec.TeamID,
		&rec.EnvdVersion, &rec.AutoPause, &rec.InternetBlocked, &network,
		&rec.AutoPauseFilesystemOnly, &rec.AutoResume, &rec.PausedFilesystemOnly, &rec.Origin, &traffic)
	if err != nil {
		return SandboxRecord{}, err
	}
	rec.StartedAt, rec.EndAt = fromNanos(started), fromNanos(end)
	if rec.Metadata, err = decodeMap(meta); err != nil {
		return SandboxRecord{}, fmt.Errorf("decoding metadata of %s: %w", rec.ID, err)
	}
	if rec.Env, err = decodeMap(env); err != nil {
		return SandboxRecord{}, fmt.Errorf("decoding env of %s: %w", rec.ID, err)
	}
	if network != "" {
		rec.Network = &SandboxNetwork{}
		if err := json.Unmarshal([]byte(network), rec.Network); err != nil {
			return SandboxRecord{}, fmt.Errorf("decoding network of %s: %w", rec.ID, err)
		}
	}
	if traffic != "" {
		rec.Traffic = &SandboxTraffic{}
		if err := json.Unmarshal([]byte(traffic), rec.Traffic); err != nil {
			return SandboxRecord{}, fmt.Errorf("decoding traffic settings of %s: %w", rec.ID, err)
		}
	}
	return rec, nil
}

// encodeNetwork stores nil as "", so no rules and empty rules differ.
func encodeNetwork(n *SandboxNetwork) (string, error) {
	if n == nil {
		return "", nil
	}
	b, err := json.Marshal(n)
	return string(b), err
}

func encodeMap(m map[string]string) (string, error) {
	if m == nil {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	return string(b), err
}

func decodeMap(s string) (map[string]string, error) {
	m := map[string]string{}
	if s == "" {
		return m, nil
	}
	err := json.Unmarshal([]byte(s), &m)
	return m, err
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func fromNullNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromNanos(n.Int64)
}

// SetSandboxTraffic implements Sandboxes.
func (s *SQLite) SetSandboxTraffic(ctx context.Context, id string, t *SandboxTraffic) error {
	traffic, err := encodeTraffic(t)
	if err != nil {
		return fmt.Errorf("encoding traffic settings of %s: %w", id, err)
	}
	return s.update(ctx, "updating traffic settings of sandbox", id, `UPDATE sandboxes SET traffic = ? WHERE id = ?`, traffic, id)
}

// encodeTraffic stores nil as "".
func encodeTraffic(t *SandboxTraffic) (string, error) {
	if t == nil {
		return "", nil
	}
	b, err := json.Marshal(t)
	return string(b), err
}
