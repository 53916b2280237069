package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// Snapshots persists snapshots: a sandbox's filesystem and settings saved
// as a template of the sandbox's team. What a snapshot is (layers, env,
// start command) is the template package's business: the store keeps it
// as an opaque JSON document.
type Snapshots interface {
	// PutSnapshot stores rec. When rec has a Name and its team already
	// has a snapshot of that name and tag, that one takes rec's content
	// and keeps its ID (as E2B gives a name's template a new build); the
	// stored record is returned either way.
	PutSnapshot(ctx context.Context, rec SnapshotRecord) (SnapshotRecord, error)
	// GetSnapshot returns the snapshot with id, or errdefs.ErrNotFound.
	GetSnapshot(ctx context.Context, id string) (SnapshotRecord, error)
	// SnapshotByName returns team's snapshot called name:tag, or
	// errdefs.ErrNotFound.
	SnapshotByName(ctx context.Context, team, name, tag string) (SnapshotRecord, error)
	// ListSnapshots returns a page of snapshots, newest first, and the
	// cursor of the next page ("" on the last).
	ListSnapshots(ctx context.Context, f SnapshotFilter) ([]SnapshotRecord, string, error)
	// DeleteSnapshot removes a snapshot; removing a missing one is fine.
	DeleteSnapshot(ctx context.Context, id string) error
}

var _ Snapshots = (*SQLite)(nil)

// SnapshotRecord is one snapshot as persisted.
type SnapshotRecord struct {
	ID         string
	TeamID     string
	Name, Tag  string // Name is empty for an unnamed snapshot
	SandboxID  string // the sandbox it was taken of
	TemplateID string // the template that sandbox started from
	Spec       []byte
	// Bytes is the size of the layer the snapshot added, what its team's
	// template storage counts.
	Bytes     int64
	CreatedAt time.Time
}

// SnapshotFilter selects snapshots to list. An empty TeamID lists every
// team's (for collecting unused layers).
type SnapshotFilter struct {
	TeamID    string
	SandboxID string // "" for any
	// Name matches a snapshot's name, or its ID; Tag, when set, its tag.
	Name, Tag string
	Limit     int    // 0: no limit
	Next      string // cursor from a previous page
}

// PutSnapshot implements Snapshots.
func (s *SQLite) PutSnapshot(ctx context.Context, rec SnapshotRecord) (SnapshotRecord, error) {
	if rec.ID == "" || rec.TeamID == "" {
		return rec, errdefs.New(errdefs.ErrInvalidArgument, "snapshot record without id or team")
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return rec, fmt.Errorf("writing snapshot %s: %w", rec.ID, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if rec.Name != "" {
		var id string
		err := tx.QueryRowContext(ctx, `SELECT id FROM snapshots WHERE team_id = ? AND name = ? AND tag = ?`, rec.TeamID, rec.Name, rec.Tag).Scan(&id)
		switch {
		case err == nil:
			rec.ID = id
		case !errors.Is(err, sql.ErrNoRows):
			return rec, fmt.Errorf("writing snapshot %s: %w", rec.ID, err)
		}
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO snapshots (id, team_id, name, tag, sandbox_id, template_id, spec, bytes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		 ON CONFLICT(id) DO UPDATE SET sandbox_id = excluded.sandbox_id, template_id = excluded.template_id,
		 spec = excluded.spec, bytes = excluded.bytes, created_at = excluded.created_at`,
		rec.ID, rec.TeamID, rec.Name, rec.Tag, rec.SandboxID, rec.TemplateID, rec.Spec, rec.Bytes, rec.CreatedAt.UnixNano()); err != nil {
		return rec, fmt.Errorf("writing snapshot %s: %w", rec.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return rec, fmt.Errorf("writing snapshot %s: %w", rec.ID, err)
	}
	return rec, nil
}

const snapshotColumns = `rowid, id, team_id, name, tag, sandbox_id, template_id, spec, bytes, created_at`

func scanSnapshot(r scanner) (SnapshotRecord, int64, error) {
	var rec SnapshotRecord
	var row, created int64
	if err := r.Scan(&row, &rec.ID, &rec.TeamID, &rec.Name, &rec.Tag, &rec.SandboxID, &rec.TemplateID, &rec.Spec, &rec.Bytes, &created); err != nil {
		return rec, 0, err
	}
	rec.CreatedAt = fromNanos(created)
	return rec, row, nil
}

func (s *SQLite) oneSnapshot(ctx context.Context, what, where string, args ...any) (SnapshotRecord, error) {
	rec, _, err := scanSnapshot(s.db.QueryRowContext(ctx, `SELECT `+snapshotColumns+` FROM snapshots WHERE `+where, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return rec, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("snapshot %s not found", what))
	}
	if err != nil {
		return rec, fmt.Errorf("reading snapshot %s: %w", what, err)
	}
	return rec, nil
}

// GetSnapshot implements Snapshots.
func (s *SQLite) GetSnapshot(ctx context.Context, id string) (SnapshotRecord, error) {
	return s.oneSnapshot(ctx, id, `id = ?`, id)
}

// SnapshotByName implements Snapshots.
func (s *SQLite) SnapshotByName(ctx context.Context, team, name, tag string) (SnapshotRecord, error) {
	return s.oneSnapshot(ctx, name+":"+tag, `team_id = ? AND name = ? AND tag = ? AND name != ''`, team, name, tag)
}

// ListSnapshots implements Snapshots. The cursor is the last row's id in
// the table, opaque to clients.
func (s *SQLite) ListSnapshots(ctx context.Context, f SnapshotFilter) ([]SnapshotRecord, string, error) {
	var where []string
	var args []any
	if f.TeamID != "" {
		where, args = append(where, "team_id = ?"), append(args, f.TeamID)
	}
	if f.SandboxID != "" {
		where, args = append(where, "sandbox_id = ?"), append(args, f.SandboxID)
	}
	if f.Name != "" {
		where, args = append(where, "(name = ? OR id = ?)"), append(args, f.Name, f.Name)
	}
	if f.Tag != "" {
		where, args = append(where, "tag = ?"), append(args, f.Tag)
	}
	if f.Next != "" {
		row, err := parseCursor(f.Next)
		if err != nil {
			return nil, "", err
		}
		where, args = append(where, "rowid < ?"), append(args, row)
	}
	q := `SELECT ` + snapshotColumns + ` FROM snapshots`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	return queryPage(ctx, s, "snapshots", q+` ORDER BY rowid DESC`, args, f.Limit, scanSnapshot)
}

// DeleteSnapshot implements Snapshots.
func (s *SQLite) DeleteSnapshot(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM snapshots WHERE id = ?`, id); err != nil {
		return fmt.Errorf("removing snapshot %s: %w", id, err)
	}
	return nil
}
