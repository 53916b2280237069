// Package runtime declares the contract between the sandbox lifecycle
// (internal/sandbox) and the machinery that isolates a sandbox. The Linux
// implementation lives in runtime/linux; runtime/fake is an in-memory one for
// control-plane tests; runtime/runtimetest is the suite every runtime passes.
package runtime

import (
	"context"
	"github.com/sandpit-dev/sandpit/internal/sandboxlog"
	"net/netip"
	"time"
)

// Resources are the limits applied to one sandbox. Zero means "the runtime's
// default".
type Resources struct {
	CPUCount int // whole CPUs of quota
	MemoryMB int // memory limit; the OOM killer acts inside the sandbox only
	DiskMB   int // size of the writable layer
	PidsMax  int // tasks in the sandbox; fork bombs stop here
}

// Mount is one read-only-layered mount of a template's filesystem.
// Layers are host directories, top-most first, stacked with overlayfs under a
// per-sandbox writable upper dir and shown at Target inside the sandbox.
type Mount struct {
	Target string   // absolute path inside the sandbox, "/" for the root
	Layers []string // host directories, top-most first
}

// Spec says what to start. The runtime owns nothing of it after Create
// returns.
type Spec struct {
	ID       string
	Hostname string
	Mounts   []Mount // "/" first
	// Env is the sandbox-global environment every process sees (E2B
	// envVars); envd serves it at /envs.
	Env map[string]string
	// AccessToken, when non-empty, is required by envd as X-Access-Token.
	AccessToken string
	// DefaultUser and DefaultWorkdir are envd's defaults for processes and
	// relative paths ("user" and its home when empty).
	DefaultUser    string
	DefaultWorkdir string
	Resources      Resources
	AllowInternet  bool
	// Egress narrows where an online sandbox may connect.
	Egress EgressPolicy
	// Interpreter starts the code interpreter's kernels with the sandbox
	// instead of on its first request (code-interpreter templates).
	Interpreter bool
}

// EgressPolicy narrows where an online sandbox may connect, as E2B's
// network.allowOut and denyOut do: an address in Allow gets out even when
// Deny covers it. It never opens what the runtime itself keeps closed
// (the host, private and link-local ranges, other sandboxes).
type EgressPolicy struct {
	Allow, Deny []netip.Prefix
	// Names are domain names the sandbox may reach whatever Deny says:
	// exact ("example.com") or a leading wildcard ("*.example.com", any
	// depth of subdomain, not the apex), lower case. A runtime that has
	// them routes the sandbox's TCP through a proxy that reads the name a
	// connection asks for (TLS SNI, HTTP Host).
	Names []string
	// Intercept: the sandbox has network rules (header transforms) that
	// the runtime's proxy applies, so its TCP goes through that proxy
	// whatever Allow, Deny and Names say. It allows nothing more.
	Intercept bool
	// Limits override the runtime's default limits field by field.
	Limits EgressLimits
}

// EgressLimits bound a sandbox's way out; zero fields leave the
// runtime's defaults.
type EgressLimits struct {
	Rate  uint64 // bytes per second, each way
	Conns int    // TCP connections to the outside open at once
}

// EgressSetter is a Runtime that can change a running sandbox's egress
// policy.
type EgressSetter interface {
	SetEgress(ctx context.Context, id string, p EgressPolicy) error
}

// LogKeeper is a Runtime that keeps each sandbox's recent log (what its
// agent writes to stderr) in a bounded ring, which callers may also
// append to (the template's start command output). The ring lives as long
// as the sandbox; a sandbox adopted after a restart has a fresh ring that
// holds what its agent wrote since.
type LogKeeper interface {
	Log(id string) (*sandboxlog.Ring, error)
}

// Stats is a sandbox's resource use.
type Stats struct {
	CPU       time.Duration // CPU time used since it started
	MemUsed   uint64        // bytes, page cache included
	MemCache  uint64        // bytes of page cache
	DiskUsed  uint64        // bytes used on its writable disk
	DiskTotal uint64        // bytes its writable disk holds
}

// StatsReader is a Runtime that reports a sandbox's resource use.
type StatsReader interface {
	Stats(ctx context.Context, id string) (Stats, error)
}

// Ender is a Runtime that can kill a sandbox in two steps: End sends
// every process of the sandbox SIGKILL and returns at once, and release
// then waits for the kernel to end them and releases the rest, as Kill
// does. Most of a kill is the kernel's teardown (the pid, mount and
// network namespaces, the disk's flush), which waits on RCU grace periods
// and the block layer more than it computes: a caller that need not wait
// for it (the API answering a kill) runs release in the background. The
// sandbox is the caller's to release from End on; until release returns
// its uid range is not reused. An unknown id is released at once (End
// returns a release that does nothing), as Kill would.
type Ender interface {
	End(ctx context.Context, id string) (release func(context.Context) error, err error)
}

// Pauser is a Runtime that can stop a sandbox where it is, memory kept,
// and let it go on later.
type Pauser interface {
	Pause(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
}

// Adopter is a Runtime that can take over a sandbox an earlier run of the
// daemon left running (see Runtime.List), as if it had created it: Kill,
// Exited and the optional capabilities then work on it as on its own.
//
// Adopt checks that the sandbox's first process is the very one the
// earlier run started (a pid reused by another process, or a host reboot,
// is errdefs.ErrNotFound: the caller then Kills it, which removes what is
// left of it). Adopting a sandbox the runtime already holds is
// errdefs.ErrAlreadyExists. A paused sandbox is adopted as it is; the
// caller pauses or resumes it to match its own record.
type Adopter interface {
	Adopt(ctx context.Context, a Adoption) (*Sandbox, error)
}

// Adoption says which sandbox to adopt, with what of its Spec the runtime
// keeps no record of itself.
type Adoption struct {
	ID string
	// Egress is the sandbox's egress policy as last set; the runtime
	// applies it again, so a rule set that a crash interrupted is made
	// whole.
	Egress EgressPolicy
	// Stopped: the sandbox was stopped (runtime.Stopper) and has no
	// processes; the runtime keeps its files for a Start.
	Stopped bool
}

// Sandbox is a running sandbox as the runtime sees it.
type Sandbox struct {
	ID  string
	Pid int // host pid of the sandbox's first process
	// EnvdSocket is the host path of the Unix socket on which the sandbox's
	// agent (envd) serves HTTP. It lives outside the sandbox's network
	// namespace, so the daemon needs no IP plumbing to reach it.
	EnvdSocket string
	// Created is when Create returned.
	Created time.Time
	// Stages times the steps of Create (for the create-latency metric
	// broken down by stage). Steps that run side by side each report
	// their own time, so the stages may add up to more than the whole.
	Stages []Stage
}

// Stage is one timed step of Create.
type Stage struct {
	Name     string
	Duration time.Duration
}

// Runtime creates and destroys isolated sandboxes.
//
// Create returns once the sandbox's agent accepts requests on EnvdSocket; on
// error nothing of the sandbox remains. Kill stops every process of the
// sandbox and releases everything it held (processes, mounts, cgroups,
// sockets, directories); it is idempotent and returns nil for an unknown id.
// Exited reports sandboxes whose processes died on their own.
type Runtime interface {
	Create(ctx context.Context, spec Spec) (*Sandbox, error)
	Kill(ctx context.Context, id string) error
	// List returns the ids of the sandboxes the runtime holds, including
	// ones left by an earlier run of the daemon that Reap has not removed.
	List(ctx context.Context) ([]string, error)
	// Exited delivers the id of a sandbox whose first process exited
	// without Kill (it crashed, or was killed from inside). The caller
	// still calls Kill to release what the sandbox held.
	Exited() <-chan string
	// Close releases the runtime; sandboxes it created keep running.
	Close() error
}
