package envd

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/runtime/linux/sandboxinit"
)

// checkReserved reports whether the init kept room for the agent's threads
// below the sandbox's task limit (sandboxinit's reserveTasks): the agent
// runs as a real user of its own under a lowered RLIMIT_NPROC.
func checkReserved(pidsMax int) error {
	if pidsMax <= 0 {
		return nil
	}
	if uid := unix.Getuid(); uid != sandboxinit.AgentUID {
		return fmt.Errorf("the agent's real user id is %d, not its own %d", uid, sandboxinit.AgentUID)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &lim); err != nil {
		return fmt.Errorf("reading the task limit: %w", err)
	}
	if lim.Max >= uint64(pidsMax) {
		return fmt.Errorf("the task limit %d leaves no room below pids.max %d", lim.Max, pidsMax)
	}
	return nil
}
