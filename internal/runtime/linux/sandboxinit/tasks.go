package sandboxinit

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// AgentUID is the agent's real user id: a user of its own, which no
// process the agent starts runs as (65535, the 16-bit "no user", sits at
// the top of every sandbox's id range).
const AgentUID = 65535

// reserveTasks keeps room for the agent's own threads below the sandbox's
// limit on tasks (its cgroup's pids.max). The agent is the sandbox's first
// process, and a Go program that cannot start a thread dies: a fork bomb
// that filled pids.max would end the sandbox at the agent's next thread.
//
// The kernel counts RLIMIT_NPROC per real user id, threads included, and
// checks it at each fork against the forking process's limit. So the agent
// gets a real user id no other process has (keeping effective and saved
// uid 0, and with them its capabilities) and a limit, soft and hard, below
// pids.max. Its own threads, the only tasks of that user, stay far below
// it; the processes it starts inherit the limit and count as the user they
// switch to, root or any other. One user's bomb then stops short of
// pids.max and leaves the agent room. The cgroup stays the boundary: bombs
// run as two users at once can still fill it.
//
// The init does this on the thread that executes the agent, with a raw
// system call that changes only that thread's credentials: execve builds
// the agent from them. The agent doing it itself took Go's all-threads
// setresuid, which stops the world and signals every thread, at every
// sandbox's start (a tenth of the agent's start-up CPU).
func reserveTasks(pidsMax int) error {
	if pidsMax <= 0 {
		return nil
	}
	lim := uint64(pidsMax - min(64, pidsMax/4))
	if err := unix.Setrlimit(unix.RLIMIT_NPROC, &unix.Rlimit{Cur: lim, Max: lim}); err != nil {
		return fmt.Errorf("limiting processes to %d: %w", lim, err)
	}
	keep := ^uintptr(0) // -1: leave the effective and saved ids
	if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, AgentUID, keep, keep); errno != 0 {
		return fmt.Errorf("taking the agent's own user id %d: %w", AgentUID, errno)
	}
	return nil
}
