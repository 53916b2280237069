package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// SetTags implements Templates.
func (s *SQLite) SetTags(ctx context.Context, templateID, buildID string, tags []string, at time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("tagging build %s: %w", buildID, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var owner string
	err = tx.QueryRowContext(ctx, `SELECT template_id FROM template_builds WHERE id = ?`, buildID).Scan(&owner)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && owner != templateID) {
		return errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("build %q of template %q not found", buildID, templateID))
	}
	if err != nil {
		return fmt.Errorf("tagging build %s: %w", buildID, err)
	}
	for _, tag := range tags {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO template_tags (template_id, tag, build_id, created_at) VALUES (?, ?, ?, ?)
			 ON CONFLICT(template_id, tag) DO UPDATE SET build_id = excluded.build_id, created_at = excluded.created_at`,
			templateID, tag, buildID, at.UnixNano()); err != nil {
			return fmt.Errorf("tagging build %s as %s: %w", buildID, tag, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("tagging build %s: %w", buildID, err)
	}
	return nil
}

// GetTag implements Templates.
func (s *SQLite) GetTag(ctx context.Context, templateID, tag string) (TagRecord, error) {
	rec := TagRecord{TemplateID: templateID, Tag: tag}
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT build_id, created_at FROM template_tags WHERE template_id = ? AND tag = ?`,
		templateID, tag).Scan(&rec.BuildID, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return TagRecord{}, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("template %q has no tag %q", templateID, tag))
	}
	if err != nil {
		return TagRecord{}, fmt.Errorf("reading tag %s of template %s: %w", tag, templateID, err)
	}
	rec.CreatedAt = time.Unix(0, created)
	return rec, nil
}

// ListTags implements Templates.
func (s *SQLite) ListTags(ctx context.Context, templateID string) ([]TagRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT tag, build_id, created_at FROM template_tags WHERE template_id = ? ORDER BY tag`, templateID)
	if err != nil {
		return nil, fmt.Errorf("listing tags of template %s: %w", templateID, err)
	}
	defer rows.Close()
	var out []TagRecord
	for rows.Next() {
		rec := TagRecord{TemplateID: templateID}
		var created int64
		if err := rows.Scan(&rec.Tag, &rec.BuildID, &created); err != nil {
			return nil, fmt.Errorf("listing tags of template %s: %w", templateID, err)
		}
		rec.CreatedAt = time.Unix(0, created)
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing tags of template %s: %w", templateID, err)
	}
	return out, nil
}

// DeleteTags implements Templates.
func (s *SQLite) DeleteTags(ctx context.Context, templateID string, tags []string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("removing tags of template %s: %w", templateID, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	for _, tag := range tags {
		res, err := tx.ExecContext(ctx, `DELETE FROM template_tags WHERE template_id = ? AND tag = ?`, templateID, tag)
		if err != nil {
			return fmt.Errorf("removing tag %s of template %s: %w", tag, templateID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("removing tag %s of template %s: %w", tag, templateID, err)
		}
		if n == 0 {
			return errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("template %q has no tag %q", templateID, tag))
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("removing tags of template %s: %w", templateID, err)
	}
	return nil
}
