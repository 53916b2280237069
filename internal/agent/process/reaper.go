package process

import (
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"sync"

	"golang.org/x/sys/unix"
)

// Reaper owns the wait4 calls of the whole agent process. The agent runs as
// PID 1 of the sandbox's pid namespace, so orphans are re-parented to it and
// must be reaped; exec.Cmd.Wait would race with that, so every child is
// started through Reaper.Start and its exit status is handed to the callback
// registered with it. Children nobody registered (orphans) are just reaped.
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

	mu      sync.Mutex
	waiters map[int]func(unix.WaitStatus)
}

// NewReaper starts the reaper goroutine; Close stops it.
func NewReaper(logger *slog.Logger) *Reaper {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Reaper{
		logger:  logger,
		sigs:    make(chan os.Signal, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		waiters: map[int]func(unix.WaitStatus){},
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
// onExit for that pid. onExit runs on the reaper goroutine once, with the
// child's wait status; it must not block or call back into the Reaper. The
// lock held across fork and registration means a child that exits at once is
// still delivered to onExit.
func (r *Reaper) Start(fork func() (int, error), onExit func(unix.WaitStatus)) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := fork()
	if err != nil {
		return 0, err
	}
	r.waiters[pid] = onExit
	return pid, nil
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

// reap collects every child that has exited.
func (r *Reaper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return // ECHILD: no children; 0: none exited yet
		}
		r.mu.Lock()
		fn := r.waiters[pid]
		delete(r.waiters, pid)
		r.mu.Unlock()
		if fn == nil {
			r.logger.Debug("reaped orphan", "pid", pid, "status", int(ws))
			continue
		}
		fn(ws)
	}
}
