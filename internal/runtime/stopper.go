package runtime

import "context"

// Stopper is a Runtime that can end a sandbox's processes but keep its
// filesystem (E2B's filesystem-only pause), and boot it again on that
// filesystem later, as a reboot would.
//
// Stop kills every process of the sandbox and lets go of its memory, its
// cgroup and its network link, keeping its writable layers, its identity
// (uid range, directory) and its place in List. Start boots a stopped
// sandbox again from spec, which must be the spec it was created with
// (its egress policy as it is now): a fresh agent on the same writable
// layers, at the same EnvdSocket. Kill releases a stopped sandbox as any
// other. A sandbox frozen by Pauser.Pause may be stopped: its memory is
// dropped. Stop of a sandbox that is stopped, or Start of one that is
// not, is errdefs.ErrConflict.
type Stopper interface {
	Stop(ctx context.Context, id string) error
	Start(ctx context.Context, spec Spec) (*Sandbox, error)
}
