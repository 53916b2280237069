package linux

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// AgentName is the agent binary's file name, looked for beside the
// daemon's own binary.
const AgentName = "sandpit-agent"

// agentSkew is how far apart the two binaries' modification times may be
// for the agent to count as built with the daemon: `make build` writes
// both in one `go build`, seconds apart.
const agentSkew = time.Minute

// agentBinary picks the binary sandboxes start from. sandpit-agent beside
// exe starts in a third of the CPU time of the daemon's own binary (see
// cmd/sandpit-agent), so it is preferred; but an agent left from an earlier
// build would speak an older protocol to this daemon, so one whose
// modification time is not within agentSkew of exe's is passed over, as is
// a missing one, for exe itself, which answers the same subcommands. The
// reason is returned for the log when exe is chosen.
func agentBinary(exe string) (path, why string, err error) {
	return companion(exe, AgentName)
}

// InitName is the init's binary's file name, looked for beside the
// daemon's own binary.
const InitName = "sandpit-init"

// initBinary picks the binary sandbox inits (and the spawner) run from:
// sandpit-init beside exe when it was built with it, on the terms of
// agentBinary. It starts in half the CPU time and page faults of the
// agent binary, which runs the initialisers of every package the agent
// links (cmd/sandpit-init); without it the agent's binary serves, as
// before it existed.
func initBinary(exe, agent string) (path, why string, err error) {
	p, why, err := companion(exe, InitName)
	if err != nil || why != "" {
		return agent, why, err
	}
	return p, "", nil
}

// companion returns the binary named name beside exe if it is an
// executable file built with exe (modification times within agentSkew),
// else exe and the reason.
func companion(exe, name string) (path, why string, err error) {
	self, err := os.Stat(exe)
	if err != nil {
		return "", "", fmt.Errorf("finding own binary: %w", err)
	}
	bin := filepath.Join(filepath.Dir(exe), name)
	fi, err := os.Stat(bin)
	switch {
	case os.IsNotExist(err):
		return exe, bin + " is missing (make build builds it)", nil
	case err != nil:
		return exe, err.Error(), nil
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		return exe, bin + " is not an executable file", nil
	}
	if d := fi.ModTime().Sub(self.ModTime()); d > agentSkew || d < -agentSkew {
		return exe, fmt.Sprintf("%s was built %s apart from %s (make build builds them together)", bin, d.Abs().Round(time.Second), exe), nil
	}
	return bin, "", nil
}
