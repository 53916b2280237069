package store

import (
	"context"
	"time"
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
}

// Team owns keys, sandboxes, templates and uploads. A team sees and acts
// on its own things only.
type Team struct {
	ID        string // a UUID, E2B's teamID shape
	Name      string // unique
	Limits    Limits
	CreatedAt time.Time
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

// Audit is the append-only record of who did what.
type Audit interface {
	// AppendAudit stores entries in one transaction.
	AppendAudit(ctx context.Context, entries []AuditEntry) error
	// QueryAudit returns matching entries, oldest first.
	QueryAudit(ctx context.Context, q AuditQuery) ([]AuditEntry, error)
	// PruneAudit removes entries older than before and says how many.
	PruneAudit(ctx context.Context, before time.Time) (int64, error)
}
