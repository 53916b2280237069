// Package template describes what a sandbox starts from: its filesystem
// layers and the metadata that applies at start (env, user, workdir, start
// command, resources), and builds templates. A build runs E2B's builder
// steps (RUN, COPY, ENV, WORKDIR, USER) one by one, each in a build
// sandbox over the layers so far; what a step wrote becomes a read-only,
// content-addressed layer keyed by its parent and its inputs, so building
// the same steps again is served from the layers already on disk. The
// Registry keeps built templates in the store and resolves the names the
// SDKs ask for.
package template

import "github.com/sandpit-dev/sandpit/internal/runtime"

// DefaultEnvdVersion is the envd protocol version sandpit reports to SDKs.
// The SDKs gate features on it; 0.6.13 enables everything in the wire spec.
const DefaultEnvdVersion = "0.6.13"

// Template is an immutable, ready-to-start template.
type Template struct {
	ID      string   // stable id, e.g. "base"
	Names   []string // aliases the SDK may ask for, e.g. "code-interpreter-v1"
	Mounts  []runtime.Mount
	Env     map[string]string
	User    string // default user for processes; "user" when empty
	Workdir string // default cwd; the user's home when empty

	// StartCmd, when set, is started (as User, in Workdir) when a sandbox
	// starts; create returns once ReadyCmd exits 0 (at once when
	// ReadyCmd is empty).
	StartCmd string
	ReadyCmd string

	CPUCount int
	MemoryMB int
	DiskMB   int

	EnvdVersion string

	// Metadata is a snapshot's: the sandbox metadata it was taken with,
	// which sandboxes started from it get unless they set their own.
	Metadata map[string]string `json:",omitempty"`

	// Interpreter warms the code interpreter's kernels at sandbox start,
	// as E2B's code-interpreter template does; other templates start them
	// on first use.
	Interpreter bool
}
