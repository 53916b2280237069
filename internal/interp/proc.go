package interp

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// identity is who kernels run as.
type identity struct {
	name string
	home string
	// cred is nil when kernels run as the current user.
	cred *syscall.Credential
}

// resolveIdentity looks name up (empty: the current user). Kernels switch
// to it only when the agent is root (inside the sandbox); otherwise they
// run as the current user. The current user is the effective one, and a
// root agent switches kernels even to root: the agent has a real user id of
// its own (sandboxinit.reserveTasks), which must not pass to them.
func resolveIdentity(name string) (identity, error) {
	cur, err := user.LookupId(strconv.Itoa(os.Geteuid()))
	if err != nil {
		return identity{}, fmt.Errorf("looking up current user: %w", err)
	}
	if os.Geteuid() != 0 {
		return identity{name: cur.Username, home: cur.HomeDir}, nil
	}
	if name == "" {
		name = cur.Username
	}
	u, err := user.Lookup(name)
	if err != nil {
		return identity{}, fmt.Errorf("looking up kernel user %q: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return identity{}, fmt.Errorf("parsing uid of %q: %w", name, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return identity{}, fmt.Errorf("parsing gid of %q: %w", name, err)
	}
	var groups []uint32
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				groups = append(groups, uint32(n))
			}
		}
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}
	return identity{name: u.Username, home: u.HomeDir, cred: cred}, nil
}

// chown gives path to the kernel user when kernels switch users.
func (id identity) chown(path string) error {
	if id.cred == nil {
		return nil
	}
	if err := os.Chown(path, int(id.cred.Uid), int(id.cred.Gid)); err != nil {
		return fmt.Errorf("chowning %s: %w", path, err)
	}
	return nil
}

// sysProcAttr puts a kernel in its own process group (so an interrupt or a
// kill reaches the processes it started) and switches to the kernel user.
func (id identity) sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Setpgid:    true,
		Credential: id.cred,
		Pdeathsig:  syscall.SIGKILL,
	}
}

// process is a started kernel process with its exit watched.
type process struct {
	cmd    *exec.Cmd
	done   chan struct{} // closed after Wait returned
	stderr *tailBuffer
}

// startProcess starts cmd (whose SysProcAttr the caller set) with start
// (nil: cmd.Start) and a goroutine that waits for it; the goroutine ends
// when the process exits.
func startProcess(cmd *exec.Cmd, start func(*exec.Cmd) error) (*process, error) {
	if start == nil {
		start = (*exec.Cmd).Start
	}
	p := &process{cmd: cmd, done: make(chan struct{}), stderr: &tailBuffer{max: 8 << 10}}
	if cmd.Stderr == nil {
		cmd.Stderr = p.stderr
	}
	// Children of the kernel that outlive it may hold its pipes open; do
	// not let them delay noticing that the kernel exited.
	cmd.WaitDelay = time.Second
	if err := start(cmd); err != nil {
		return nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// signal sends sig to the process group of the kernel.
func (p *process) signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("signalling kernel %d: %w", p.cmd.Process.Pid, err)
	}
	return nil
}

// kill kills the process group and waits for the process to be reaped.
func (p *process) kill() {
	_ = p.signal(syscall.SIGKILL)
	<-p.done
}

// tailBuffer keeps the last max bytes written to it (a kernel's stderr, for
// error messages and logs).
type tailBuffer struct {
	max int

	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(bytes.TrimSpace(b.buf))
}

// interruptRepeat is how often an interrupt is re-sent: a SIGINT that lands
// while a kernel is between reading a request and running its code can be
// lost (or end only that preamble), and the code then runs on.
const interruptRepeat = 250 * time.Millisecond

// interrupter interrupts a kernel's execution once its ctx is done: SIGINT
// to the process group, repeated, and SIGKILL after grace. Use it in the
// execution's select loop:
//
//	case <-in.requested():  in.start()
//	case <-in.repeat():     in.resend()
//	case <-in.expired():    in.kill(); return errKernelDied
type interrupter struct {
	p     *process
	log   *slog.Logger
	grace time.Duration

	ctxDone <-chan struct{}
	ticker  *time.Ticker
	timer   *time.Timer
}

func newInterrupter(ctx context.Context, p *process, grace time.Duration, log *slog.Logger) *interrupter {
	return &interrupter{p: p, log: log, grace: grace, ctxDone: ctx.Done()}
}

// requested is closed when the execution's ctx is done, until start.
func (in *interrupter) requested() <-chan struct{} { return in.ctxDone }

func (in *interrupter) repeat() <-chan time.Time {
	if in.ticker == nil {
		return nil
	}
	return in.ticker.C
}

func (in *interrupter) expired() <-chan time.Time {
	if in.timer == nil {
		return nil
	}
	return in.timer.C
}

func (in *interrupter) start() {
	in.ctxDone = nil
	in.log.Debug("interrupting kernel")
	in.resend()
	in.ticker = time.NewTicker(interruptRepeat)
	in.timer = time.NewTimer(in.grace)
}

func (in *interrupter) resend() {
	if err := in.p.signal(syscall.SIGINT); err != nil {
		in.log.Warn("interrupting kernel", "err", err)
	}
}

func (in *interrupter) kill() {
	in.log.Warn("kernel ignored interrupt, killing it", "grace", in.grace)
	in.p.kill()
}

// stop releases the timers.
func (in *interrupter) stop() {
	if in.ticker != nil {
		in.ticker.Stop()
		in.timer.Stop()
	}
}
