package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// Secrets persists team-owned secrets (E2B's secrets API). The store
// keeps a secret's value as the bytes it is given: sealing it is the
// secrets package's business. A secret is named by its ID or its name,
// and only within its team: another team's secret is not found.
type Secrets interface {
	// CreateSecret stores rec; errdefs.ErrAlreadyExists when its team
	// has a secret of that name.
	CreateSecret(ctx context.Context, rec SecretRecord) error
	// GetSecret returns team's secret whose ID or name is ref, or
	// errdefs.ErrNotFound.
	GetSecret(ctx context.Context, team, ref string) (SecretRecord, error)
	// ListSecrets returns a page of team's secrets, oldest first, and
	// the cursor of the next page ("" on the last). limit 0 lists all.
	ListSecrets(ctx context.Context, team string, limit int, next string) ([]SecretRecord, string, error)
	// UpdateSecret stores a new value (and metadata, when not nil) as the
	// next version of team's secret ref, and returns the result;
	// errdefs.ErrNotFound when there is no such secret.
	UpdateSecret(ctx context.Context, team, ref string, value []byte, metadata map[string]string, now time.Time) (SecretRecord, error)
	// DeleteSecret removes team's secret ref; errdefs.ErrNotFound when
	// there is no such secret.
	DeleteSecret(ctx context.Context, team, ref string) error
}

var _ Secrets = (*SQLite)(nil)

// SecretRecord is one secret as persisted.
type SecretRecord struct {
	ID        string
	TeamID    string
	Name      string
	Version   int64
	Metadata  map[string]string
	Value     []byte // as given to the store (sealed)
	CreatedAt time.Time
	UpdatedAt time.Time
}

const secretColumns = `rowid, id, team_id, name, version, metadata, value, created_at, updated_at`

func scanSecret(r scanner) (SecretRecord, int64, error) {
	var rec SecretRecord
	var row, created, updated int64
	var meta string
	if err := r.Scan(&row, &rec.ID, &rec.TeamID, &rec.Name, &rec.Version, &meta, &rec.Value, &created, &updated); err != nil {
		return rec, 0, err
	}
	var err error
	if rec.Metadata, err = decodeMap(meta); err != nil {
		return rec, 0, fmt.Errorf("decoding metadata of secret %s: %w", rec.ID, err)
	}
	rec.CreatedAt, rec.UpdatedAt = fromNanos(created), fromNanos(updated)
	return rec, row, nil
}

// CreateSecret implements Secrets.
func (s *SQLite) CreateSecret(ctx context.Context, rec SecretRecord) error {
	if rec.ID == "" || rec.TeamID == "" || rec.Name == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "secret record without id, team or name")
	}
	meta, err := encodeMap(rec.Metadata)
	if err != nil {
		return fmt.Errorf("encoding metadata of secret %s: %w", rec.ID, err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("writing secret %s: %w", rec.ID, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM secrets WHERE team_id = ? AND name = ?`, rec.TeamID, rec.Name).Scan(&n); err != nil {
		return fmt.Errorf("writing secret %s: %w", rec.ID, err)
	}
	if n > 0 {
		return errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("a secret named %q already exists", rec.Name))
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO secrets (id, team_id, name, version, metadata, value, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		rec.ID, rec.TeamID, rec.Name, rec.Version, meta, rec.Value, rec.CreatedAt.UnixNano(), rec.UpdatedAt.UnixNano()); err != nil {
		return fmt.Errorf("writing secret %s: %w", rec.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("writing secret %s: %w", rec.ID, err)
	}
	return nil
}

// GetSecret implements Secrets.
func (s *SQLite) GetSecret(ctx context.Context, team, ref string) (SecretRecord, error) {
	rec, _, err := scanSecret(s.db.QueryRowContext(ctx,
		`SELECT `+secretColumns+` FROM secrets WHERE team_id = ? AND (id = ? OR name = ?)`, team, ref, ref))
	if errors.Is(err, sql.ErrNoRows) {
		return rec, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("secret %s not found", ref))
	}
	if err != nil {
		return rec, fmt.Errorf("reading secret %s: %w", ref, err)
	}
	return rec, nil
}

// ListSecrets implements Secrets. The cursor is the last row's id in the
// table, opaque to clients.
func (s *SQLite) ListSecrets(ctx context.Context, team string, limit int, next string) ([]SecretRecord, string, error) {
	q := `SELECT ` + secretColumns + ` FROM secrets WHERE team_id = ?`
	args := []any{team}
	if next != "" {
		row, err := parseCursor(next)
		if err != nil {
			return nil, "", err
		}
		q, args = q+` AND rowid > ?`, append(args, row)
	}
	return queryPage(ctx, s, "secrets", q+` ORDER BY rowid`, args, limit, scanSecret)
}

// UpdateSecret implements Secrets.
func (s *SQLite) UpdateSecret(ctx context.Context, team, ref string, value []byte, metadata map[string]string, now time.Time) (SecretRecord, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return SecretRecord{}, fmt.Errorf("updating secret %s: %w", ref, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	rec, _, err := scanSecret(tx.QueryRowContext(ctx,
		`SELECT `+secretColumns+` FROM secrets WHERE team_id = ? AND (id = ? OR name = ?)`, team, ref, ref))
	if errors.Is(err, sql.ErrNoRows) {
		return rec, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("secret %s not found", ref))
	}
	if err != nil {
		return rec, fmt.Errorf("updating secret %s: %w", ref, err)
	}
	rec.Version++
	rec.Value = value
	rec.UpdatedAt = now
	if metadata != nil {
		rec.Metadata = metadata
	}
	meta, err := encodeMap(rec.Metadata)
	if err != nil {
		return rec, fmt.Errorf("encoding metadata of secret %s: %w", rec.ID, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE secrets SET version = ?, value = ?, metadata = ?, updated_at = ? WHERE id = ?`,
		rec.Version, rec.Value, meta, now.UnixNano(), rec.ID); err != nil {
		return rec, fmt.Errorf("updating secret %s: %w", rec.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return rec, fmt.Errorf("updating secret %s: %w", rec.ID, err)
	}
	return rec, nil
}

// DeleteSecret implements Secrets.
func (s *SQLite) DeleteSecret(ctx context.Context, team, ref string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM secrets WHERE team_id = ? AND (id = ? OR name = ?)`, team, ref, ref)
	if err != nil {
		return fmt.Errorf("deleting secret %s: %w", ref, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("deleting secret %s: %w", ref, err)
	} else if n == 0 {
		return errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("secret %s not found", ref))
	}
	return nil
}
