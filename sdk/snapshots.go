package sandpit

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sandpit-dev/sandpit/gen/openapi"
)

// Snapshot is a sandbox's filesystem saved so sandboxes can start from it:
// pass its ID to WithTemplate. It keeps the sandbox's files, env, user,
// workdir and metadata, not its processes or memory: a sandbox started from
// it runs the template's start command, as after a reboot.
type Snapshot struct {
	// ID is "namespace/name:tag" for a named snapshot, "id:default" for
	// another.
	ID    string
	Names []string
}

// SnapshotOption configures Client.CreateSnapshot.
type SnapshotOption interface{ applySnapshot(*snapshotConfig) }

// SnapshotListOption configures Client.Snapshots.
type SnapshotListOption interface{ applySnapshotList(*snapshotListConfig) }

// ForkOption configures Client.Fork.
type ForkOption interface{ applyFork(*forkConfig) }

type snapshotConfig struct{ name string }

type snapshotListConfig struct {
	sandboxID, name string
	limit           int
}

type forkConfig struct {
	count   int
	timeout time.Duration
}

// WithSnapshotName names a snapshot ("name" or "name:tag"; a snapshot of
// a name the team has replaces it), or filters Snapshots by name or ID.
func WithSnapshotName(name string) interface {
	SnapshotOption
	SnapshotListOption
} {
	return snapshotNameOption(name)
}

type snapshotNameOption string

func (o snapshotNameOption) applySnapshot(c *snapshotConfig)         { c.name = string(o) }
func (o snapshotNameOption) applySnapshotList(c *snapshotListConfig) { c.name = string(o) }

// WithSnapshotsOf filters Snapshots to those taken of one sandbox.
func WithSnapshotsOf(sandboxID string) SnapshotListOption { return snapshotsOfOption(sandboxID) }

type snapshotsOfOption string

func (o snapshotsOfOption) applySnapshotList(c *snapshotListConfig) { c.sandboxID = string(o) }

// WithSnapshotPageSize sets how many snapshots one request fetches (at
// most 100, the default).
func WithSnapshotPageSize(n int) SnapshotListOption { return snapshotPageOption(n) }

type snapshotPageOption int

func (o snapshotPageOption) applySnapshotList(c *snapshotListConfig) { c.limit = int(o) }

// WithCount sets how many sandboxes Fork starts (default 1).
func WithCount(n int) ForkOption { return countOption(n) }

type countOption int

func (o countOption) applyFork(c *forkConfig) { c.count = int(o) }

// WithForkTimeout sets the forks' lifetime (default: the server's, 15s as
// on E2B).
func WithForkTimeout(d time.Duration) ForkOption { return forkTimeoutOption(d) }

type forkTimeoutOption time.Duration

func (o forkTimeoutOption) applyFork(c *forkConfig) { c.timeout = time.Duration(o) }

// CreateSnapshot saves sandbox id's filesystem as a snapshot of its team.
// The sandbox stands still only while what it wrote is copied.
func (c *Client) CreateSnapshot(ctx context.Context, id string, opts ...SnapshotOption) (Snapshot, error) {
	var cfg snapshotConfig
	for _, o := range opts {
		o.applySnapshot(&cfg)
	}
	body := openapi.SandboxSnapshotRequest{}
	if cfg.name != "" {
		body.Name = &cfg.name
	}
	var out openapi.SnapshotInfo
	if _, err := c.api(ctx, "snapshot sandbox "+id, http.MethodPost, "/sandboxes/"+url.PathEscape(id)+"/snapshots", body, &out); err != nil {
		return Snapshot{}, err
	}
	return Snapshot{ID: out.SnapshotID, Names: out.Names}, nil
}

// CreateSnapshot is Client.CreateSnapshot of this sandbox.
func (sb *Sandbox) CreateSnapshot(ctx context.Context, opts ...SnapshotOption) (Snapshot, error) {
	return sb.client.CreateSnapshot(ctx, sb.ID, opts...)
}

// Snapshots yields the team's snapshots, newest first, fetching pages as
// the loop needs them. On error it yields the error once and stops.
func (c *Client) Snapshots(ctx context.Context, opts ...SnapshotListOption) iter.Seq2[Snapshot, error] {
	var cfg snapshotListConfig
	for _, o := range opts {
		o.applySnapshotList(&cfg)
	}
	return func(yield func(Snapshot, error) bool) {
		next := ""
		for {
			q := url.Values{}
			if cfg.sandboxID != "" {
				q.Set("sandboxID", cfg.sandboxID)
			}
			if cfg.name != "" {
				q.Set("name", cfg.name)
			}
			if cfg.limit > 0 {
				q.Set("limit", strconv.Itoa(cfg.limit))
			}
			if next != "" {
				q.Set("nextToken", next)
			}
			path := "/snapshots"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			var page []openapi.SnapshotInfo
			h, err := c.api(ctx, "list snapshots", http.MethodGet, path, nil, &page)
			if err != nil {
				yield(Snapshot{}, err)
				return
			}
			for _, s := range page {
				if !yield(Snapshot{ID: s.SnapshotID, Names: s.Names}, nil) {
					return
				}
			}
			token := h.Get("X-Next-Token")
			if token == "" || token == next {
				return
			}
			next = token
		}
	}
}

// DeleteSnapshot removes a snapshot by its ID. It reports false when there
// was none (or it is another team's). Sandboxes started from it keep
// running.
func (c *Client) DeleteSnapshot(ctx context.Context, snapshotID string) (bool, error) {
	_, err := c.api(ctx, "delete snapshot "+snapshotID, http.MethodDelete, "/templates/"+url.PathEscape(snapshotID), nil, nil)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// ForkResult is one fork: a running sandbox, or why it did not start.
type ForkResult struct {
	Sandbox *Sandbox
	Err     error
}

// Fork starts sandboxes from sandbox id's filesystem while it keeps
// running: what it wrote is copied once into a layer every fork shares,
// each with its own writable layer on top, so forks and parent never see
// each other's later writes. Forks get its env, metadata and network
// rules, not its processes or memory (the template's start command runs
// in each). Each fork starts or fails on its own; the error is for the
// request (a count below 1 is ErrInvalidArgument, an unknown sandbox
// ErrNotFound).
func (c *Client) Fork(ctx context.Context, id string, opts ...ForkOption) ([]ForkResult, error) {
	cfg := forkConfig{count: 1}
	for _, o := range opts {
		o.applyFork(&cfg)
	}
	n := int32(cfg.count)
	body := openapi.SandboxForkRequest{Count: &n}
	if cfg.timeout > 0 {
		t := timeoutSeconds(cfg.timeout)
		body.Timeout = &t
	}
	var out []openapi.SandboxForkResult
	if _, err := c.api(ctx, "fork sandbox "+id, http.MethodPost, "/sandboxes/"+url.PathEscape(id)+"/fork", body, &out); err != nil {
		return nil, err
	}
	res := make([]ForkResult, len(out))
	for i, f := range out {
		switch {
		case f.Sandbox != nil:
			res[i].Sandbox = c.newSandbox(*f.Sandbox)
		case f.Error != nil:
			res[i].Err = apiErrorFromBody("fork sandbox "+id, *f.Error)
		default:
			res[i].Err = &Error{Op: "fork sandbox " + id, Message: "the server reported neither a sandbox nor an error"}
		}
	}
	return res, nil
}

// Fork is Client.Fork of this sandbox.
func (sb *Sandbox) Fork(ctx context.Context, opts ...ForkOption) ([]ForkResult, error) {
	return sb.client.Fork(ctx, sb.ID, opts...)
}

// apiErrorFromBody is apiError for an error body already decoded.
func apiErrorFromBody(op string, e openapi.Error) *Error {
	return &Error{Op: op, StatusCode: int(e.Code), Message: e.Message, kind: kindForStatus(int(e.Code))}
}
