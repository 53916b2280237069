package interp

import (
	"bytes"
	"fmt"
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

// resolveIdentity looks name up. Kernels switch to it only when the agent is
// root (inside the sandbox); otherwise they run as the current user.
func resolveIdentity(name string) (identity, error) {
	cur, err := user.Current()
	if err != nil {
		return identity{}, fmt.Errorf("looking up current user: %w", err)
	}
	if name == "" || name == cur.Username || os.Geteuid() != 0 {
		return identity{name: cur.Username, home: cur.HomeDir}, nil
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

// chown gives path to the kernel user when kernels run as another user.
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

// startProcess starts cmd (whose SysProcAttr the caller set) and a goroutine
// that waits for it; the goroutine ends when the process exits.
func startProcess(cmd *exec.Cmd) (*process, error) {
	p := &process{cmd: cmd, done: make(chan struct{}), stderr: &tailBuffer{max: 8 << 10}}
	if cmd.Stderr == nil {
		cmd.Stderr = p.stderr
	}
	// Children of the kernel that outlive it may hold its pipes open; do
	// not let them delay noticing that the kernel exited.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
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
