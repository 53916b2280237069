package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// DefaultTeamName names the team the first key, and every key of a data dir
// from before teams, belong to.
const DefaultTeamName = "default"

// Limits bound what a team may use. Zero in a field means no limit.
type Limits struct {
	MaxSandboxes     int           // concurrent sandboxes (running and paused)
	CreatesPerSecond float64       // token bucket rate of sandbox creates
	CreateBurst      int           // bucket size; 0 means max(1, ceil(CreatesPerSecond))
	MaxLifetime      time.Duration // longest a sandbox may live from its start
	MaxCPUs          int           // per sandbox
	MaxMemoryMB      int           // per sandbox
	MaxDiskMB        int           // per sandbox
	// MaxTemplateStorageMB bounds the total size of the team's template
	// layers and uploads.
	MaxTemplateStorageMB int
	// MaxEgressRate (bytes per second, each way) and MaxEgressConns bound
	// what a create may ask for in sandpitNetworkLimits, and lower the
	// server's defaults for the team's sandboxes when those are higher.
	MaxEgressRate  int64
	MaxEgressConns int
}

// Team owns keys, sandboxes, templates and uploads. A team sees and acts
// on its own things only.
type Team struct {
	ID        string // a UUID, E2B's teamID shape
	Name      string // unique; see ValidTeamName
	Limits    Limits
	CreatedAt time.Time
}

// Teams manages teams and their limits.
type Teams interface {
	// CreateTeam makes a team. A taken name is errdefs.ErrAlreadyExists, a
	// name ValidTeamName refuses or a negative limit
	// errdefs.ErrInvalidArgument.
	CreateTeam(ctx context.Context, name string, l Limits) (Team, error)
	// Team finds a team by name or ID, or gives errdefs.ErrNotFound naming
	// it.
	Team(ctx context.Context, nameOrID string) (Team, error)
	// ListTeams returns every team, by name.
	ListTeams(ctx context.Context) ([]Team, error)
	// SetTeamLimits replaces a team's limits and returns the team as it
	// now is.
	SetTeamLimits(ctx context.Context, nameOrID string, l Limits) (Team, error)
	// DeleteTeam removes a team and its revoked keys. It refuses, with
	// errdefs.ErrConflict saying what is left, the default team and a team
	// that still has unrevoked keys, sandboxes or templates.
	DeleteTeam(ctx context.Context, nameOrID string) error
}

// NewKey says what key to make.
type NewKey struct {
	Name string
	Team string // team name or ID; "" is DefaultTeamName
	// Admin keys may also read every team's audit log over HTTP.
	Admin bool
}

// Principal is who a verified key acts for. Team carries the team's
// limits as stored when the key was checked, so limit changes made while
// the daemon runs apply to the next request.
type Principal struct {
	KeyID   string
	KeyName string
	Admin   bool
	Team    Team
}

// AuditEntry is one recorded action. It never holds a key's secret.
type AuditEntry struct {
	ID       int64 // assigned by the store, increasing
	Time     time.Time
	TeamID   string
	TeamName string // as it was when recorded
	// KeyID and KeyName are empty for sandbox traffic, which a sandbox's
	// access token authorizes rather than a key.
	KeyID    string
	KeyName  string
	Action   string // "sandbox.create", "files.write", "process.start", "team.create", ...
	Target   string // the sandbox, template, build, key or team acted on
	Result   string // the HTTP status ("201", "404") or an error kind
	Client   string // the client's address
	Duration time.Duration
	Detail   string // e.g. a process start's command line, truncated
}

// AuditQuery selects audit entries.
type AuditQuery struct {
	Team   string    // name or ID; "" is every team
	Since  time.Time // zero is from the start
	Action string    // an exact action, or a prefix ending in "." ("sandbox.")
	Limit  int       // the newest Limit entries, still oldest first; 0 is 1000
}

// Audit is the append-only record of who did what: entries are never
// changed, and removed only by PruneAudit.
type Audit interface {
	// AppendAudit stores entries in one transaction.
	AppendAudit(ctx context.Context, entries []AuditEntry) error
	// QueryAudit returns matching entries, oldest first.
	QueryAudit(ctx context.Context, q AuditQuery) ([]AuditEntry, error)
	// PruneAudit removes entries older than before and says how many.
	PruneAudit(ctx context.Context, before time.Time) (int64, error)
}

var (
	teamNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	uuidRE     = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// ValidTeamName reports whether name may name a team: 1 to 63 lowercase
// letters, digits, "-" and "_", starting with a letter or digit, and not
// shaped like a team ID (a UUID), so that a name or ID always means one
// team.
func ValidTeamName(name string) bool {
	return teamNameRE.MatchString(name) && !uuidRE.MatchString(name)
}

// checkLimits refuses limits no team can have.
func checkLimits(l Limits) error {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"max sandboxes", int64(l.MaxSandboxes)},
		{"create burst", int64(l.CreateBurst)},
		{"max lifetime", int64(l.MaxLifetime)},
		{"max CPUs", int64(l.MaxCPUs)},
		{"max memory", int64(l.MaxMemoryMB)},
		{"max disk", int64(l.MaxDiskMB)},
		{"max template storage", int64(l.MaxTemplateStorageMB)},
		{"max egress rate", l.MaxEgressRate},
		{"max egress connections", int64(l.MaxEgressConns)},
	} {
		if f.v < 0 {
			return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("%s must not be negative (0 means no limit)", f.name))
		}
	}
	if l.CreatesPerSecond < 0 || math.IsNaN(l.CreatesPerSecond) || math.IsInf(l.CreatesPerSecond, 0) {
		return errdefs.New(errdefs.ErrInvalidArgument, "creates per second must be a finite number, not negative (0 means no limit)")
	}
	return nil
}

// teamColumns are a team's columns in a query that calls the teams table t.
const teamColumns = `t.id, t.name, t.max_sandboxes, t.creates_per_second, t.create_burst, t.max_lifetime,
	t.max_cpus, t.max_memory_mb, t.max_disk_mb, t.max_template_storage_mb, t.max_egress_rate, t.max_egress_conns, t.created_at`

// scanTeam scans a row whose columns are before, then teamColumns.
func scanTeam(r scanner, before ...any) (Team, error) {
	var t Team
	var lifetime, created int64
	dest := append(before,
		&t.ID, &t.Name, &t.Limits.MaxSandboxes, &t.Limits.CreatesPerSecond, &t.Limits.CreateBurst, &lifetime,
		&t.Limits.MaxCPUs, &t.Limits.MaxMemoryMB, &t.Limits.MaxDiskMB, &t.Limits.MaxTemplateStorageMB,
		&t.Limits.MaxEgressRate, &t.Limits.MaxEgressConns, &created)
	if err := r.Scan(dest...); err != nil {
		return Team{}, err
	}
	t.Limits.MaxLifetime = time.Duration(lifetime)
	t.CreatedAt = fromNanos(created)
	return t, nil
}

const findTeamQuery = `SELECT ` + teamColumns + ` FROM teams t WHERE t.id = ? OR t.name = ?`

// findTeam returns the team whose name or ID is ref. stmt is the store's
// findTeam statement, or that statement in a transaction.
func findTeam(ctx context.Context, stmt *sql.Stmt, ref string) (Team, error) {
	row := stmt.QueryRowContext(ctx, ref, ref)
	t, err := scanTeam(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Team{}, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("no team %q", ref))
	}
	if err != nil {
		return Team{}, fmt.Errorf("reading team %s: %w", ref, err)
	}
	return t, nil
}

// CreateTeam implements Teams.
func (s *SQLite) CreateTeam(ctx context.Context, name string, l Limits) (Team, error) {
	if !ValidTeamName(name) {
		return Team{}, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf(
			"team name %q: use 1 to 63 lowercase letters, digits, - and _, starting with a letter or digit", name))
	}
	if err := checkLimits(l); err != nil {
		return Team{}, err
	}
	t := Team{ID: newUUID(), Name: name, Limits: l, CreatedAt: s.now().UTC()}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Team{}, fmt.Errorf("creating team %s: %w", name, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM teams WHERE name = ?`, name).Scan(&n); err != nil {
		return Team{}, fmt.Errorf("creating team %s: %w", name, err)
	}
	if n > 0 {
		return Team{}, errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("team %q already exists", name))
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO teams (id, name, max_sandboxes, creates_per_second, create_burst,
		max_lifetime, max_cpus, max_memory_mb, max_disk_mb, max_template_storage_mb,
		max_egress_rate, max_egress_conns, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.Name, l.MaxSandboxes, l.CreatesPerSecond, l.CreateBurst, int64(l.MaxLifetime),
		l.MaxCPUs, l.MaxMemoryMB, l.MaxDiskMB, l.MaxTemplateStorageMB,
		l.MaxEgressRate, l.MaxEgressConns, t.CreatedAt.UnixNano()); err != nil {
		return Team{}, fmt.Errorf("creating team %s: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return Team{}, fmt.Errorf("creating team %s: %w", name, err)
	}
	return t, nil
}

// Team implements Teams.
func (s *SQLite) Team(ctx context.Context, nameOrID string) (Team, error) {
	return findTeam(ctx, s.stmts.findTeam, nameOrID)
}

// ListTeams implements Teams.
func (s *SQLite) ListTeams(ctx context.Context) ([]Team, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+teamColumns+` FROM teams t ORDER BY t.name`)
	if err != nil {
		return nil, fmt.Errorf("listing teams: %w", err)
	}
	defer rows.Close()
	var out []Team
	for rows.Next() {
		t, err := scanTeam(rows)
		if err != nil {
			return nil, fmt.Errorf("reading team: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing teams: %w", err)
	}
	return out, nil
}

// SetTeamLimits implements Teams.
func (s *SQLite) SetTeamLimits(ctx context.Context, nameOrID string, l Limits) (Team, error) {
	if err := checkLimits(l); err != nil {
		return Team{}, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Team{}, fmt.Errorf("setting limits of team %s: %w", nameOrID, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	t, err := findTeam(ctx, tx.StmtContext(ctx, s.stmts.findTeam), nameOrID)
	if err != nil {
		return Team{}, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE teams SET max_sandboxes = ?, creates_per_second = ?, create_burst = ?,
		max_lifetime = ?, max_cpus = ?, max_memory_mb = ?, max_disk_mb = ?, max_template_storage_mb = ?,
		max_egress_rate = ?, max_egress_conns = ? WHERE id = ?`,
		l.MaxSandboxes, l.CreatesPerSecond, l.CreateBurst, int64(l.MaxLifetime),
		l.MaxCPUs, l.MaxMemoryMB, l.MaxDiskMB, l.MaxTemplateStorageMB,
		l.MaxEgressRate, l.MaxEgressConns, t.ID); err != nil {
		return Team{}, fmt.Errorf("setting limits of team %s: %w", t.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return Team{}, fmt.Errorf("setting limits of team %s: %w", t.Name, err)
	}
	t.Limits = l
	return t, nil
}

// DeleteTeam implements Teams. The checks and the removal share one
// transaction, so a key or sandbox made meanwhile cannot be orphaned.
func (s *SQLite) DeleteTeam(ctx context.Context, nameOrID string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("removing team %s: %w", nameOrID, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	t, err := findTeam(ctx, tx.StmtContext(ctx, s.stmts.findTeam), nameOrID)
	if err != nil {
		return err
	}
	if t.Name == DefaultTeamName {
		return errdefs.New(errdefs.ErrConflict, fmt.Sprintf("team %q cannot be removed", DefaultTeamName))
	}
	var left []string
	for _, c := range []struct {
		query string
		what  string
	}{
		{`SELECT count(*) FROM api_keys WHERE team_id = ? AND revoked_at IS NULL`, "unrevoked key"},
		{`SELECT count(*) FROM sandboxes WHERE team_id = ?`, "sandbox"},
		{`SELECT count(*) FROM templates WHERE team_id = ?`, "template"},
	} {
		var n int
		if err := tx.QueryRowContext(ctx, c.query, t.ID).Scan(&n); err != nil {
			return fmt.Errorf("removing team %s: %w", t.Name, err)
		}
		switch {
		case n == 1:
			left = append(left, "1 "+c.what)
		case n > 1 && c.what == "sandbox":
			left = append(left, fmt.Sprintf("%d sandboxes", n))
		case n > 1:
			left = append(left, fmt.Sprintf("%d %ss", n, c.what))
		}
	}
	if len(left) > 0 {
		return errdefs.New(errdefs.ErrConflict, fmt.Sprintf("team %q still has %s: revoke, kill or remove them first",
			t.Name, strings.Join(left, ", ")))
	}
	for _, q := range []string{`DELETE FROM api_keys WHERE team_id = ?`, `DELETE FROM teams WHERE id = ?`} {
		if _, err := tx.ExecContext(ctx, q, t.ID); err != nil {
			return fmt.Errorf("removing team %s: %w", t.Name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("removing team %s: %w", t.Name, err)
	}
	return nil
}
