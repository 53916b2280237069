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
// synchronous=FULL, so a write acknowledged by a method survives a crash.
type SQLite struct {
	db  *sql.DB
	now func() time.Time

	mu sync.Mutex
	// touched holds, per key id, when VerifyKey last wrote last_used_at.
	touched map[string]time.Time
}

var _ Store = (*SQLite)(nil)

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
	s := &SQLite{db: db, now: time.Now, touched: map[string]time.Time{}}
	if err := s.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("migrating database %s: %w", path, err)
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

// Close closes the database; calling it twice is fine.
func (s *SQLite) Close() error { return s.db.Close() }

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
		// Sandboxes outlive the daemon: what a restarted one needs to
		// take a sandbox over as it was, which only memory held before.
		`ALTER TABLE sandboxes ADD COLUMN envd_version TEXT NOT NULL DEFAULT '';
	ALTER TABLE sandboxes ADD COLUMN auto_pause INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE sandboxes ADD COLUMN internet_blocked INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE sandboxes ADD COLUMN network TEXT NOT NULL DEFAULT '';`,
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

// CreateKey implements Keys.
func (s *SQLite) CreateKey(ctx context.Context, name string) (string, KeyInfo, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "", KeyInfo{}, errdefs.New(errdefs.ErrInvalidArgument, "key name must not be empty")
	}
	plain := newKey()
	info := KeyInfo{
		ID:        newID("key_", 12),
		Name:      name,
		Prefix:    displayPrefix(plain),
		CreatedAt: s.now().UTC(),
	}
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO api_keys (id, name, key_hash, prefix, created_at) VALUES (?, ?, ?, ?, ?)`,
		info.ID, info.Name, keyHash(plain), info.Prefix, info.CreatedAt.UnixNano())
	if err != nil {
		return "", KeyInfo{}, fmt.Errorf("inserting key %s: %w", info.ID, err)
	}
	return plain, info, nil
}

// ListKeys implements Keys.
func (s *SQLite) ListKeys(ctx context.Context) ([]KeyInfo, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT id, name, prefix, created_at, last_used_at, revoked_at FROM api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	defer rows.Close()
	var out []KeyInfo
	for rows.Next() {
		var k KeyInfo
		var created int64
		var used, revoked sql.NullInt64
		if err := rows.Scan(&k.ID, &k.Name, &k.Prefix, &created, &used, &revoked); err != nil {
			return nil, fmt.Errorf("reading key: %w", err)
		}
		k.CreatedAt = fromNanos(created)
		k.LastUsedAt = fromNullNanos(used)
		k.RevokedAt = fromNullNanos(revoked)
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	return out, nil
}

// RevokeKey implements Keys. idOrPrefix may be a key id, a display prefix
// (with or without a trailing "…" or "..."), or a whole key.
func (s *SQLite) RevokeKey(ctx context.Context, idOrPrefix string) error {
	ref := strings.TrimSpace(idOrPrefix)
	ref = strings.TrimSuffix(strings.TrimSuffix(ref, "…"), "...")
	if ref == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "key id or prefix must not be empty")
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
		return fmt.Errorf("finding key %q: %w", ref, err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return fmt.Errorf("finding key %q: %w", ref, err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("finding key %q: %w", ref, err)
	}
	switch len(ids) {
	case 0:
		return errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("no API key matches %q", ref))
	case 1:
	default:
		return errdefs.New(errdefs.ErrConflict, fmt.Sprintf("%q matches %d keys; give the key id", ref, len(ids)))
	}
	_, err = s.db.ExecContext(ctx,
		`UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`,
		s.now().UnixNano(), ids[0])
	if err != nil {
		return fmt.Errorf("revoking key %s: %w", ids[0], err)
	}
	return nil
}

// VerifyKey implements Keys. The key's display prefix finds candidate rows;
// their hashes are compared in constant time.
func (s *SQLite) VerifyKey(ctx context.Context, plaintext string) (bool, error) {
	if !WellFormedKey(plaintext) {
		return false, nil
	}
	want := keyHash(plaintext)
	rows, err := s.db.QueryContext(ctx,
		`SELECT id, key_hash FROM api_keys WHERE prefix = ? AND revoked_at IS NULL`, displayPrefix(plaintext))
	if err != nil {
		return false, fmt.Errorf("verifying key: %w", err)
	}
	var match string
	for rows.Next() {
		var id string
		var h []byte
		if err := rows.Scan(&id, &h); err != nil {
			rows.Close()
			return false, fmt.Errorf("verifying key: %w", err)
		}
		if subtle.ConstantTimeCompare(h, want) == 1 {
			match = id
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("verifying key: %w", err)
	}
	if match == "" {
		return false, nil
	}
	s.touch(ctx, match)
	return true, nil
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
	started_at, end_at, state, access_token, secure, allow_internet, pid,
	envd_version, auto_pause, internet_blocked, network`

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
	_, err = s.db.ExecContext(ctx,
		`INSERT OR REPLACE INTO sandboxes (`+sandboxColumns+`)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		rec.ID, rec.TemplateID, rec.Alias, meta, env, rec.CPUCount, rec.MemoryMB, rec.DiskMB,
		rec.StartedAt.UnixNano(), rec.EndAt.UnixNano(), rec.State, rec.AccessToken,
		rec.Secure, rec.AllowInternet, rec.Pid,
		rec.EnvdVersion, rec.AutoPause, rec.InternetBlocked, network)
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
	res, err := s.db.ExecContext(ctx, `UPDATE sandboxes SET end_at = ? WHERE id = ?`, end.UnixNano(), id)
	return oneRow(res, err, "updating end of sandbox", id)
}

// SetSandboxState implements Sandboxes.
func (s *SQLite) SetSandboxState(ctx context.Context, id, state string, end time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE sandboxes SET state = ?, end_at = ? WHERE id = ?`, state, end.UnixNano(), id)
	return oneRow(res, err, "updating state of sandbox", id)
}

// SetSandboxNetwork implements Sandboxes.
func (s *SQLite) SetSandboxNetwork(ctx context.Context, id string, n *SandboxNetwork, internetBlocked bool) error {
	network, err := encodeNetwork(n)
	if err != nil {
		return fmt.Errorf("encoding network of %s: %w", id, err)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE sandboxes SET network = ?, internet_blocked = ? WHERE id = ?`, network, internetBlocked, id)
	return oneRow(res, err, "updating network of sandbox", id)
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

// DeleteSandbox implements Sandboxes.
func (s *SQLite) DeleteSandbox(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sandboxes WHERE id = ?`, id); err != nil {
		return fmt.Errorf("deleting sandbox %s: %w", id, err)
	}
	return nil
}

type scanner interface{ Scan(dest ...any) error }

func scanSandbox(r scanner) (SandboxRecord, error) {
	var rec SandboxRecord
	var meta, env, network string
	var started, end int64
	err := r.Scan(&rec.ID, &rec.TemplateID, &rec.Alias, &meta, &env, &rec.CPUCount, &rec.MemoryMB, &rec.DiskMB,
		&started, &end, &rec.State, &rec.AccessToken, &rec.Secure, &rec.AllowInternet, &rec.Pid,
		&rec.EnvdVersion, &rec.AutoPause, &rec.InternetBlocked, &network)
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
