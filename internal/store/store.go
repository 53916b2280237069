// Package store persists the daemon's state: teams, their API keys, the
// sandboxes the daemon runs, templates and the audit log. Store is the contract; SQLite (embedded, the default) implements it
// beside it, and a PostgreSQL implementation can follow for scale-out.
//
// Every write is durable when its method returns: a crash loses no
// acknowledged write.
package store

import (
	"context"
	"time"
)

// Store is the daemon's persistent state. Methods are safe for concurrent
// use. Close releases the store; calling it twice is fine.
type Store interface {
	Keys
	Teams
	Sandboxes
	Audit
	Close() error
}

// Keys manages API keys. Keys look exactly like "e2b_" followed by 40
// lowercase hex digits, because the Python SDK rejects other shapes before
// sending a request. Only a SHA-256 hash of a key is stored; its plaintext is
// shown once, by CreateKey.
type Keys interface {
	// CreateKey makes a new key as nk says and returns its plaintext,
	// which cannot be recovered later. An empty name is
	// errdefs.ErrInvalidArgument, an unknown team errdefs.ErrNotFound.
	CreateKey(ctx context.Context, nk NewKey) (plaintext string, info KeyInfo, err error)
	// ListKeys returns the keys of team (a name or ID; "" is every team),
	// revoked ones included, oldest first. An unknown team is
	// errdefs.ErrNotFound.
	ListKeys(ctx context.Context, team string) ([]KeyInfo, error)
	// RevokeKey revokes the key whose id or display prefix is idOrPrefix.
	// Revoking a revoked key is fine. An unknown key gives
	// errdefs.ErrNotFound, a prefix that names several keys
	// errdefs.ErrConflict.
	RevokeKey(ctx context.Context, idOrPrefix string) error
	// VerifyKey reports whether plaintext is a key that exists and is not
	// revoked, and if so who it acts for, with its team's limits as
	// stored now; it records the key's use. A malformed or unknown key is
	// (Principal{}, false, nil); the error is for the store failing.
	VerifyKey(ctx context.Context, plaintext string) (Principal, bool, error)
}

// KeyInfo describes a key without revealing it.
type KeyInfo struct {
	ID       string
	Name     string
	TeamID   string
	TeamName string
	// Admin keys may also read every team's audit log over HTTP.
	Admin bool
	// Prefix is the start of the key, e.g. "e2b_1a2b3c4d", safe to show.
	Prefix     string
	CreatedAt  time.Time
	LastUsedAt time.Time // zero if never used
	RevokedAt  time.Time // zero if not revoked
}

// Revoked reports whether the key was revoked.
func (k KeyInfo) Revoked() bool { return !k.RevokedAt.IsZero() }

// Sandboxes records the sandboxes the daemon runs, so that a restarted
// daemon knows what an earlier run left behind.
type Sandboxes interface {
	// PutSandbox inserts rec, or replaces the record with the same ID.
	// A running sandbox's record is durable against a crash of the
	// daemon, not of the host, which ends the sandbox with it.
	PutSandbox(ctx context.Context, rec SandboxRecord) error
	// GetSandbox returns the record with id, or errdefs.ErrNotFound.
	GetSandbox(ctx context.Context, id string) (SandboxRecord, error)
	// ListSandboxes returns every record, oldest start first.
	ListSandboxes(ctx context.Context) ([]SandboxRecord, error)
	// SetSandboxEnd changes a sandbox's deadline; errdefs.ErrNotFound if
	// there is no such record.
	SetSandboxEnd(ctx context.Context, id string, end time.Time) error
	// SetSandboxState changes a sandbox's state ("running", "paused";
	// filesystemOnly for a pause that kept no memory) and
	// deadline together; errdefs.ErrNotFound if there is no such record.
	SetSandboxState(ctx context.Context, id, state string, filesystemOnly bool, end time.Time) error
	// SetSandboxNetwork changes a sandbox's network rules (nil: none) and
	// whether what they do not allow is blocked; errdefs.ErrNotFound if
	// there is no such record.
	SetSandboxNetwork(ctx context.Context, id string, n *SandboxNetwork, internetBlocked bool) error
	// SetSandboxTraffic replaces a sandbox's traffic settings (nil:
	// none); errdefs.ErrNotFound if there is no such record.
	SetSandboxTraffic(ctx context.Context, id string, t *SandboxTraffic) error
	// DeleteSandbox removes the record with id; removing a missing record
	// is fine.
	DeleteSandbox(ctx context.Context, id string) error
}

// SandboxRecord is one sandbox as persisted.
type SandboxRecord struct {
	ID         string
	TeamID     string // the team that owns the sandbox
	TemplateID string
	Alias      string
	Metadata   map[string]string
	Env        map[string]string
	CPUCount   int
	MemoryMB   int
	DiskMB     int
	StartedAt  time.Time
	EndAt      time.Time
	State      string
	// AccessToken is envd's access token; empty when the sandbox is not
	// secure.
	AccessToken   string
	Secure        bool
	AllowInternet bool
	Pid           int
	// What a restarted daemon needs to take the sandbox over as it was.
	EnvdVersion     string
	AutoPause       bool            // the timeout pauses rather than kills
	InternetBlocked bool            // what Network does not allow is denied
	Network         *SandboxNetwork // nil: no rules
	// The lifecycle as asked at create, and how the sandbox is paused.
	AutoPauseFilesystemOnly bool
	AutoResume              bool
	PausedFilesystemOnly    bool
	// Origin is what the sandbox was made from (JSON owned by the
	// sandbox package): what a filesystem-only resume boots again, and
	// what a snapshot or fork of it stands on.
	Origin []byte
	// Traffic is the sandbox's private-port token, Host mask and egress
	// transforms; nil when it has none of them.
	Traffic *SandboxTraffic
}

// SandboxTraffic is what a sandbox's traffic carries beyond its network
// rules: E2B's network.allowPublicTraffic (a token), maskRequestHost and
// rules (header transforms on the way out).
type SandboxTraffic struct {
	// AccessToken is required of every request to the sandbox's ports
	// but envd's; empty when its ports are public.
	AccessToken     string `json:"accessToken,omitempty"`
	MaskRequestHost string `json:"maskRequestHost,omitempty"`
	// Rules maps a host pattern to its rules, as E2B's network.rules.
	Rules map[string][]TrafficRule `json:"rules,omitempty"`
}

// TrafficRule is one of E2B's network rules for a host: the headers set
// on the sandbox's requests to it. Values may hold secret placeholders
// (${e2b.secrets.NAME}), resolved only on the way out.
type TrafficRule struct {
	Headers map[string]string `json:"headers,omitempty"`
}

// SandboxNetwork is a sandbox's network rules as the client gave them
// (E2B's network.allowOut and denyOut).
type SandboxNetwork struct {
	AllowOut []string `json:"allowOut,omitempty"`
	DenyOut  []string `json:"denyOut,omitempty"`
	// EgressRate (bytes/s) and EgressConns are the sandbox's own limits
	// (sandpitNetworkLimits at create); zero: the daemon's defaults.
	EgressRate  uint64 `json:"egressRate,omitempty"`
	EgressConns int    `json:"egressConns,omitempty"`
}
