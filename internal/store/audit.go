package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// defaultAuditLimit is how many entries QueryAudit returns when the query
// says none.
const defaultAuditLimit = 1000

var _ Audit = (*SQLite)(nil)

const appendAuditQuery = `INSERT INTO audit_log
	(time, team_id, team_name, key_id, key_name, action, target, result, client, duration, detail)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// AppendAudit implements Audit. An entry without a time is stamped now; an
// entry without an action is refused, and then none is stored.
func (s *SQLite) AppendAudit(ctx context.Context, entries []AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	for _, e := range entries {
		if e.Action == "" {
			return errdefs.New(errdefs.ErrInvalidArgument, "audit entry without an action")
		}
	}
	now := s.now()
	// Volatile (commit.go): the entries reach the store after the
	// requests they record were answered, so a crash of the daemon
	// could already lose the newest; an fsync per batch would add only
	// a power loss to that, at the price of every create behind it
	// waiting for the disk.
	err := s.writeVolatile(ctx, func(ctx context.Context, tx *sql.Tx) error {
		stmt := tx.StmtContext(ctx, s.stmts.appendAudit)
		for _, e := range entries {
			at := e.Time
			if at.IsZero() {
				at = now
			}
			if _, err := stmt.ExecContext(ctx, at.UnixNano(), e.TeamID, e.TeamName, e.KeyID, e.KeyName,
				e.Action, e.Target, e.Result, e.Client, int64(e.Duration), e.Detail); err != nil {
				return fmt.Errorf("entry %s: %w", e.Action, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("appending %d audit entries: %w", len(entries), err)
	}
	return nil
}

// QueryAudit implements Audit. q.Team may also name a team removed since
// (by the name or ID its entries carry); a team that neither exists nor
// appears in the log is errdefs.ErrNotFound.
func (s *SQLite) QueryAudit(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	var where []string
	var args []any
	if q.Team != "" {
		t, err := findTeam(ctx, s.stmts.findTeam, q.Team)
		switch {
		case err == nil:
			where, args = append(where, "team_id = ?"), append(args, t.ID)
		case errors.Is(err, errdefs.ErrNotFound):
			var n int
			if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM
				(SELECT 1 FROM audit_log WHERE team_id = ? OR team_name = ? LIMIT 1)`, q.Team, q.Team).Scan(&n); err != nil {
				return nil, fmt.Errorf("reading the audit log: %w", err)
			}
			if n == 0 {
				return nil, err
			}
			where, args = append(where, "(team_id = ? OR team_name = ?)"), append(args, q.Team, q.Team)
		default:
			return nil, err
		}
	}
	if !q.Since.IsZero() {
		where, args = append(where, "time >= ?"), append(args, q.Since.UnixNano())
	}
	if q.Action != "" {
		if strings.HasSuffix(q.Action, ".") {
			where, args = append(where, "substr(action, 1, ?) = ?"), append(args, len(q.Action), q.Action)
		} else {
			where, args = append(where, "action = ?"), append(args, q.Action)
		}
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultAuditLimit
	}
	query := `SELECT id, time, team_id, team_name, key_id, key_name, action, target, result, client, duration, detail
		FROM audit_log`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	// The newest limit entries, turned oldest first below.
	query += " ORDER BY time DESC, id DESC LIMIT ?"
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("reading the audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var at, dur int64
		if err := rows.Scan(&e.ID, &at, &e.TeamID, &e.TeamName, &e.KeyID, &e.KeyName, &e.Action,
			&e.Target, &e.Result, &e.Client, &dur, &e.Detail); err != nil {
			return nil, fmt.Errorf("reading the audit log: %w", err)
		}
		e.Time, e.Duration = fromNanos(at), time.Duration(dur)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the audit log: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}

// PruneAudit implements Audit.
func (s *SQLite) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM audit_log WHERE time < ?`, before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("pruning the audit log: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("pruning the audit log: %w", err)
	}
	return n, nil
}
