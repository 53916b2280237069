package process

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Reaper owns the reaping of the agent's children. The agent runs as PID 1
// of the sandbox's pid namespace, so orphans are re-parented to it and must
// be reaped; a blind wait4(-1) would race with exec.Cmd.Wait, so children are
// started through Reaper.Start: with an onExit callback the Reaper waits for
// them and hands over the status; without one (StartCmd, for exec.Cmd users
// in the same OS process) it leaves them to their owner. Every other child
// is an orphan and is just reaped.
//
// On SIGCHLD, while no exec.Cmd user has a child, the Reaper reaps every
// child waitid reports exited. Otherwise it lists its children from
// /proc/self/task/*/children and waits for each it may reap; where that
// file is missing (a kernel without CONFIG_PROC_CHILDREN) it falls back to
// wait4(-1), and then exec.Cmd users must not share the process with it.
//
// When the agent is not PID 1 (tests, a host run), the Reaper makes the
// process a child subreaper so orphans still come to it.
//
// Run one Reaper per OS process: two would steal each other's children.
type Reaper struct {
	logger *slog.Logger
	sigs   chan os.Signal
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once

	// mu is held across a fork and its registration, and across a reaping
	// round, so a round never sees a child it does not know about yet.
	mu       sync.Mutex
	waiters  map[int]func(unix.WaitStatus)
	external map[int]struct{} // waited for by their owner
	// noChildren is set once /proc/self/task/*/children proved missing.
	noChildren bool
}

// NewReaper starts the reaper goroutine; Close stops it.
func NewReaper(logger *slog.Logger) *Reaper {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Reaper{
		logger:   logger,
		sigs:     make(chan os.Signal, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		waiters:  map[int]func(unix.WaitStatus){},
		external: map[int]struct{}{},
	}
	if os.Getpid() != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			logger.Warn("becoming a child subreaper; orphans will not be reaped", "err", err)
		}
	}
	signal.Notify(r.sigs, unix.SIGCHLD)
	go r.run()
	return r
}

// Start calls fork, which starts a child and returns its pid, and registers
// the child. With onExit, the Reaper waits for it and calls onExit once, on
// the reaper goroutine, with its wait status; onExit must not block or call
// back into the Reaper. With onExit nil the caller waits for the child
// itself. The lock held across fork and registration means a child that
// exits at once is still delivered to onExit (or left to its owner).
func (r *Reaper) Start(fork func() (int, error), onExit func(unix.WaitStatus)) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := fork()
	if err != nil {
		return 0, err
	}
	unprotect(pid)
	if onExit == nil {
		r.external[pid] = struct{}{}
	} else {
		r.waiters[pid] = onExit
	}
	return pid, nil
}

// unprotect makes a child the OOM killer's first choice over the agent.
// The daemon shields the agent (oom_score_adj -1000), and children inherit
// that; raising it needs no privilege. A fork returns after the exec,
// before a freshly started program has had time to fork itself.
func unprotect(pid int) {
	_ = os.WriteFile("/proc/"+strconv.Itoa(pid)+"/oom_score_adj", []byte("100"), 0)
}

// StartCmd starts cmd and leaves waiting for it to the caller
// (cmd.Wait works as usual).
func (r *Reaper) StartCmd(cmd *exec.Cmd) error {
	_, err := r.Start(func() (int, error) {
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	}, nil)
	return err
}

// Close stops the reaper goroutine and waits for it. Idempotent. Children
// registered and still running get no onExit call.
func (r *Reaper) Close() {
	r.once.Do(func() {
		signal.Stop(r.sigs)
		close(r.stop)
		<-r.done
	})
}

func (r *Reaper) run() {
	defer close(r.done)
	for {
		r.reap()
		select {
		case <-r.sigs:
		case <-r.stop:
			return
		}
	}
}

type exitCall struct {
	fn func(unix.WaitStatus)
	ws unix.WaitStatus
}

// reap collects every child that has exited and may be reaped.
func (r *Reaper) reap() {
	r.mu.Lock()
	var calls []exitCall
	scan := true
	if !r.noChildren && len(r.external) == 0 {
		calls, scan = r.reapExitedLocked()
	}
	switch {
	case !scan:
	case r.noChildren:
		calls = append(calls, r.reapAnyLocked()...)
	default:
		if pids, err := children(); err != nil {
			r.logger.Warn("listing children failed; reaping any child (exec.Cmd users may lose their status)", "err", err)
			r.noChildren = true
			calls = append(calls, r.reapAnyLocked()...)
		} else {
			calls = append(calls, r.reapListedLocked(pids)...)
		}
	}
	r.mu.Unlock()
	for _, c := range calls {
		c.fn(c.ws)
	}
}

// reapExitedLocked reaps the children that have exited, found one at a
// time by waitid(WNOWAIT), which leaves them be: listing children from
// /proc/self/task/*/children reads a file per thread of the agent at every
// SIGCHLD, a tenth of the agent's CPU for a sandbox that runs a command.
// It is used only while no exec.Cmd user has a child (r.external is
// empty), so every exited child is the Reaper's to reap. It returns
// scan true when waitid's answer cannot be used: the caller then lists.
//
// Preconditions: r.mu is held.
func (r *Reaper) reapExitedLocked() (calls []exitCall, scan bool) {
	for {
		pid, ok := exitedChild()
		if !ok {
			return calls, true
		}
		if pid <= 0 {
			return calls, false
		}
		var ws unix.WaitStatus
		got, err := wait4(pid, &ws)
		if err != nil || got != pid {
			return calls, true // not ours to reap after all: list
		}
		calls = r.dispatchLocked(pid, ws, calls)
	}
}

// exitedChild returns the pid of a child that has exited, without reaping
// it, 0 when none has (or there are no children), or ok false when the
// answer cannot be read.
func exitedChild() (pid int, ok bool) {
	// si_pid follows si_signo, si_errno and si_code in the union, which
	// pointers align to 8 bytes on 64-bit systems; x/sys/unix's Siginfo
	// does not name it.
	const pidOffset = 16
	if unsafe.Sizeof(uintptr(0)) != 8 {
		return 0, false
	}
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			return 0, true
		case err != nil:
			return 0, false
		}
		return int(*(*int32)(unsafe.Add(unsafe.Pointer(&info), pidOffset))), true
	}
}

// reapListedLocked waits for each listed child except external ones, and
// forgets external children that are gone.
//
// Preconditions: r.mu is held.
func (r *Reaper) reapListedLocked(pids []int) []exitCall {
	var calls []exitCall
	listed := make(map[int]bool, len(pids))
	for _, pid := range pids {
		listed[pid] = true
		if _, ok := r.external[pid]; ok {
			continue
		}
		var ws unix.WaitStatus
		got, err := wait4(pid, &ws)
		if err != nil || got != pid {
			continue // still running
		}
		calls = r.dispatchLocked(pid, ws, calls)
	}
	for pid := range r.external {
		if !listed[pid] {
			delete(r.external, pid) // its owner has waited for it
		}
	}
	return calls
}

// reapAnyLocked is the fallback: wait4(-1) until nothing is left to reap.
//
// Preconditions: r.mu is held.
func (r *Reaper) reapAnyLocked() []exitCall {
	var calls []exitCall
	for {
		var ws unix.WaitStatus
		pid, err := wait4(-1, &ws)
		if err != nil || pid <= 0 {
			return calls // ECHILD: no children; 0: none exited yet
		}
		delete(r.external, pid)
		calls = r.dispatchLocked(pid, ws, calls)
	}
}

// dispatchLocked queues pid's onExit, or logs an orphan.
//
// Preconditions: r.mu is held.
func (r *Reaper) dispatchLocked(pid int, ws unix.WaitStatus, calls []exitCall) []exitCall {
	fn := r.waiters[pid]
	delete(r.waiters, pid)
	if fn == nil {
		r.logger.Debug("reaped orphan", "pid", pid, "status", int(ws))
		return calls
	}
	return append(calls, exitCall{fn, ws})
}

// wait4 is a non-blocking wait4 that retries on EINTR.
func wait4(pid int, ws *unix.WaitStatus) (int, error) {
	for {
		got, err := unix.Wait4(pid, ws, unix.WNOHANG, nil)
		if !errors.Is(err, unix.EINTR) {
			return got, err
		}
	}
}

// children lists this process's children from every thread's
// /proc/self/task/TID/children.
func children() ([]int, error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	var pids []int
	found := false
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread exited, or the kernel lacks the file
		}
		if err != nil {
			return nil, err
		}
		found = true
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("no /proc/self/task/*/children: %w", fs.ErrNotExist)
	}
	return pids, nil
}
