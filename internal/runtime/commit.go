package runtime

import "context"

// Committer is an optional capability of a Runtime, found by type
// assertion: turning what a sandbox wrote into read-only layers that other
// sandboxes can start from (template builds).
type Committer interface {
	// Commit stops every process of sandbox id, moves the writable layer
	// of each of its mounts to dir/<i> (i is the mount's index in the
	// Spec the sandbox was created with) and releases the sandbox as Kill
	// does. The moved layers carry the ownership the sandbox saw (its
	// root's files are owned by host uid 0), so they can serve as a
	// Mount's Layers for any sandbox; overlay whiteouts and opaque
	// directories are kept. dir must not exist and must be on the same
	// filesystem as the runtime's state. An unknown id is an
	// errdefs.ErrNotFound; on error the sandbox is gone and dir is
	// removed.
	Commit(ctx context.Context, id, dir string) error
}
