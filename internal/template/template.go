// Package template describes what a sandbox starts from: its filesystem
// layers and the metadata that applies at start (env, user, workdir,
// resources). Building templates (builder steps, OCI import) grows here.
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

	CPUCount int
	MemoryMB int
	DiskMB   int

	EnvdVersion string
}
