package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// Templates persists built templates, their names and their builds. What a
// template is (layers, env, start command) is the template package's
// business: the store keeps it as an opaque JSON document.
type Templates interface {
	// PutTemplate inserts rec or replaces the template with the same ID
	// (its team and Public too), and makes rec.Names point at it. A name that another template holds
	// is an errdefs.ErrConflict.
	PutTemplate(ctx context.Context, rec TemplateRecord) error
	// GetTemplate returns the template with id, or errdefs.ErrNotFound.
	GetTemplate(ctx context.Context, id string) (TemplateRecord, error)
	// TemplateByName returns the template a name points at, or
	// errdefs.ErrNotFound.
	TemplateByName(ctx context.Context, name string) (TemplateRecord, error)
	// ListTemplates returns every template, oldest first.
	ListTemplates(ctx context.Context) ([]TemplateRecord, error)
	// DeleteTemplate removes a template, its names and its builds;
	// removing a missing one is fine.
	DeleteTemplate(ctx context.Context, id string) error
	// SetTemplatePublic says whether every team may start the template;
	// errdefs.ErrNotFound if there is no such template.
	SetTemplatePublic(ctx context.Context, id string, public bool) error
	// PutBuild inserts rec or replaces the build with the same ID.
	PutBuild(ctx context.Context, rec BuildRecord) error
	// GetBuild returns the build with id, or errdefs.ErrNotFound.
	GetBuild(ctx context.Context, id string) (BuildRecord, error)
	// ListBuilds returns a template's builds, newest first.
	ListBuilds(ctx context.Context, templateID string) ([]BuildRecord, error)

	// SetTags points each of tags at build buildID of template
	// templateID, moving those that pointed at another build, in one
	// transaction; at becomes their CreatedAt. A build that is not the
	// template's is errdefs.ErrNotFound.
	SetTags(ctx context.Context, templateID, buildID string, tags []string, at time.Time) error
	// GetTag returns one tag of a template, or errdefs.ErrNotFound.
	GetTag(ctx context.Context, templateID, tag string) (TagRecord, error)
	// ListTags returns a template's tags, sorted by tag; none for a
	// missing template.
	ListTags(ctx context.Context, templateID string) ([]TagRecord, error)
	// DeleteTags removes tags from a template, all or none: a tag the
	// template does not have is errdefs.ErrNotFound naming it, and then
	// nothing is removed.
	DeleteTags(ctx context.Context, templateID string, tags []string) error
}

var _ Templates = (*SQLite)(nil)

// TemplateRecord is one template as persisted.
type TemplateRecord struct {
	ID    string
	Names []string
	// TeamID is the team that owns the template; empty for none (the
	// ready-made ones).
	TeamID string
	// Public templates may be started by every team.
	Public bool
	// Spec is the template as of its last successful build (JSON owned
	// by the template package); nil before the first one.
	Spec      []byte
	BuildID   string // the build Spec came from
	CreatedAt time.Time
	UpdatedAt time.Time
}

// BuildRecord is one build of a template.
type BuildRecord struct {
	ID         string
	TemplateID string
	Status     string // "waiting", "building", "ready", "error"
	Request    []byte // what was asked for (JSON owned by the template package)
	Reason     string // why it failed
	ReasonStep string // which step failed ("base", "finalize" or an index)
	Logs       []byte // log entries (JSON owned by the template package)
	// Spec is the template the build made (JSON owned by the template
	// package); nil until it succeeded.
	Spec       []byte
	CreatedAt  time.Time
	FinishedAt time.Time // zero while it runs
}

// TagRecord is a tag of a template: a name for one of its builds.
type TagRecord struct {
	TemplateID string
	Tag        string
	BuildID    string
	CreatedAt  time.Time // when the tag was pointed at BuildID
}

// PutTemplate implements Templates.
func (s *SQLite) PutTemplate(ctx context.Context, rec TemplateRecord) error {
	if rec.ID == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "template record without id")
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("writing template %s: %w", rec.ID, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	for _, n := range rec.Names {
		var owner string
		err := tx.QueryRowContext(ctx, `SELECT template_id FROM template_names WHERE name = ?`, n).Scan(&owner)
		if err == nil && owner != rec.ID {
			return errdefs.New(errdefs.ErrConflict, fmt.Sprintf("template name %q is taken by another template", n))
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("writing template %s: %w", rec.ID, err)
		}
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO templates (id, spec, build_id, created_at, updated_at, team_id, public) VALUES (?, ?, ?, ?, ?, ?, ?)
		 ON CONFLICT(id) DO UPDATE SET spec = excluded.spec, build_id = excluded.build_id, updated_at = excluded.updated_at,
		 team_id = excluded.team_id, public = excluded.public`,
		rec.ID, rec.Spec, rec.BuildID, rec.CreatedAt.UnixNano(), rec.UpdatedAt.UnixNano(), rec.TeamID, rec.Public); err != nil {
		return fmt.Errorf("writing template %s: %w", rec.ID, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM template_names WHERE template_id = ?`, rec.ID); err != nil {
		return fmt.Errorf("writing names of template %s: %w", rec.ID, err)
	}
	for _, n := range rec.Names {
		if _, err := tx.ExecContext(ctx, `INSERT INTO template_names (name, template_id) VALUES (?, ?)`, n, rec.ID); err != nil {
			return fmt.Errorf("writing names of template %s: %w", rec.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("writing template %s: %w", rec.ID, err)
	}
	return nil
}

// GetTemplate implements Templates.
func (s *SQLite) GetTemplate(ctx context.Context, id string) (TemplateRecord, error) {
	row := s.stmts.getTemplate.QueryRowContext(ctx, id)
	return s.scanTemplate(ctx, row, id)
}

const getTemplateQuery = `SELECT id, spec, build_id, created_at, updated_at, team_id, public FROM templates WHERE id = ?`

// TemplateByName implements Templates.
func (s *SQLite) TemplateByName(ctx context.Context, name string) (TemplateRecord, error) {
	row := s.stmts.templateByName.QueryRowContext(ctx, name)
	return s.scanTemplate(ctx, row, name)
}

const templateByNameQuery = `SELECT t.id, t.spec, t.build_id, t.created_at, t.updated_at, t.team_id, t.public
		FROM templates t JOIN template_names n ON n.template_id = t.id WHERE n.name = ?`

func (s *SQLite) scanTemplate(ctx context.Context, row *sql.Row, ref string) (TemplateRecord, error) {
	var rec TemplateRecord
	var created, updated int64
	err := row.Scan(&rec.ID, &rec.Spec, &rec.BuildID, &created, &updated, &rec.TeamID, &rec.Public)
	if errors.Is(err, sql.ErrNoRows) {
		return TemplateRecord{}, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("template %q not found", ref))
	}
	if err != nil {
		return TemplateRecord{}, fmt.Errorf("reading template %s: %w", ref, err)
	}
	rec.CreatedAt, rec.UpdatedAt = time.Unix(0, created), time.Unix(0, updated)
	rec.Names, err = s.templateNames(ctx, rec.ID)
	return rec, err
}

const templateNamesQuery = `SELECT name FROM template_names WHERE template_id = ? ORDER BY name`

func (s *SQLite) templateNames(ctx context.Context, id string) ([]string, error) {
	rows, err := s.stmts.templateNames.QueryContext(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("reading names of template %s: %w", id, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// ListTemplates implements Templates.
func (s *SQLite) ListTemplates(ctx context.Context) ([]TemplateRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM templates ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing templates: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing templates: %w", err)
	}
	out := make([]TemplateRecord, 0, len(ids))
	for _, id := range ids {
		rec, err := s.GetTemplate(ctx, id)
		if errors.Is(err, errdefs.ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// DeleteTemplate implements Templates.
func (s *SQLite) DeleteTemplate(ctx context.Context, id string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("removing template %s: %w", id, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	for _, q := range []string{
		`DELETE FROM template_names WHERE template_id = ?`,
		`DELETE FROM template_tags WHERE template_id = ?`,
		`DELETE FROM template_builds WHERE template_id = ?`,
		`DELETE FROM templates WHERE id = ?`,
	} {
		if _, err := tx.ExecContext(ctx, q, id); err != nil {
			return fmt.Errorf("removing template %s: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("removing template %s: %w", id, err)
	}
	return nil
}

// SetTemplatePublic implements Templates.
func (s *SQLite) SetTemplatePublic(ctx context.Context, id string, public bool) error {
	res, err := s.db.ExecContext(ctx, `UPDATE templates SET public = ? WHERE id = ?`, public, id)
	if err != nil {
		return fmt.Errorf("making template %s public=%t: %w", id, public, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("making template %s public=%t: %w", id, public, err)
	}
	if n == 0 {
		return errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("template %q not found", id))
	}
	return nil
}

const buildColumns = `id, template_id, status, request, reason, reason_step, logs, spec, created_at, finished_at`

// PutBuild implements Templates.
func (s *SQLite) PutBuild(ctx context.Context, rec BuildRecord) error {
	if rec.ID == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "build record without id")
	}
	var finished int64
	if !rec.FinishedAt.IsZero() {
		finished = rec.FinishedAt.UnixNano()
	}
	_, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO template_builds (`+buildColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		rec.ID, rec.TemplateID, rec.Status, rec.Request, rec.Reason, rec.ReasonStep, rec.Logs, rec.Spec,
		rec.CreatedAt.UnixNano(), finished)
	if err != nil {
		return fmt.Errorf("writing build %s: %w", rec.ID, err)
	}
	return nil
}

// GetBuild implements Templates.
func (s *SQLite) GetBuild(ctx context.Context, id string) (BuildRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+buildColumns+` FROM template_builds WHERE id = ?`, id)
	if err != nil {
		return BuildRecord{}, fmt.Errorf("reading build %s: %w", id, err)
	}
	out, err := scanBuilds(rows)
	if err != nil {
		return BuildRecord{}, fmt.Errorf("reading build %s: %w", id, err)
	}
	if len(out) == 0 {
		return BuildRecord{}, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("build %q not found", id))
	}
	return out[0], nil
}

// ListBuilds implements Templates.
func (s *SQLite) ListBuilds(ctx context.Context, templateID string) ([]BuildRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+buildColumns+` FROM template_builds
		WHERE template_id = ? ORDER BY created_at DESC, id`, templateID)
	if err != nil {
		return nil, fmt.Errorf("listing builds of %s: %w", templateID, err)
	}
	out, err := scanBuilds(rows)
	if err != nil {
		return nil, fmt.Errorf("listing builds of %s: %w", templateID, err)
	}
	return out, nil
}

func scanBuilds(rows *sql.Rows) ([]BuildRecord, error) {
	defer rows.Close()
	var out []BuildRecord
	for rows.Next() {
		var rec BuildRecord
		var created, finished int64
		if err := rows.Scan(&rec.ID, &rec.TemplateID, &rec.Status, &rec.Request, &rec.Reason,
			&rec.ReasonStep, &rec.Logs, &rec.Spec, &created, &finished); err != nil {
			return nil, err
		}
		rec.CreatedAt = time.Unix(0, created)
		if finished != 0 {
			rec.FinishedAt = time.Unix(0, finished)
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}
