package runtime

import (
	"context"
	"time"
)

// Snapshotter is an optional capability of a Runtime, found by type
// assertion: copying what a running (or paused) sandbox wrote into
// read-only layers other sandboxes can start from, while it keeps
// running (snapshots and forks).
type Snapshotter interface {
	// Snapshot stops every process of sandbox id where it is (as Pause
	// does) for as long as the copy takes, copies the writable layer of
	// each of its mounts to dir/<i> (i is the mount's index in the Spec
	// the sandbox was created with; a mount with nothing written gets no
	// dir) and lets the sandbox go on, unless it was paused before. The
	// copy carries the ownership the sandbox saw (its root's files are
	// owned by host uid 0), keeps overlay whiteouts and opaque
	// directories, and, when opts.Durable, is on disk when Snapshot
	// returns. dir must not exist. An unknown id is an
	// errdefs.ErrNotFound; on error dir is removed and the sandbox runs
	// on as before.
	Snapshot(ctx context.Context, id, dir string, opts SnapshotOptions) (SnapshotStats, error)
}

// SnapshotOptions tune a Snapshot.
type SnapshotOptions struct {
	// Durable makes the copy survive a host crash before Snapshot
	// returns (snapshots). A fork's layer lives no longer than its
	// sandboxes, which a host crash ends anyway, so forks skip the
	// flush.
	Durable bool
}

// SnapshotStats is what a Snapshot copied and how long the sandbox stood
// still for it.
type SnapshotStats struct {
	Bytes  int64         // file data copied
	Files  int           // entries copied
	Frozen time.Duration // how long the sandbox's processes were stopped
	Total  time.Duration // how long Snapshot took
}
