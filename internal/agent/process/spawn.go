package process

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	pb "github.com/sandpit-dev/sandpit/gen/proto/process"
	"github.com/sandpit-dev/sandpit/internal/agent/users"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// defaultPath is PATH for processes when neither the sandbox nor the call
// sets one.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// defaultTerm is TERM in a PTY when the call does not set one.
const defaultTerm = "xterm-256color"

// buildEnv returns the environment in E2B's order: PATH, HOME, USER, LOGNAME,
// then the sandbox-global env, then the call's (later wins).
func buildEnv(u *users.User, global, call map[string]string, isPTY bool) []string {
	keys := []string{"PATH", "HOME", "USER", "LOGNAME"}
	env := map[string]string{"PATH": defaultPath, "HOME": u.Home, "USER": u.Name, "LOGNAME": u.Name}
	add := func(m map[string]string) {
		for k, v := range m {
			if _, ok := env[k]; !ok {
				keys = append(keys, k)
			}
			env[k] = v
		}
	}
	add(global)
	add(call)
	if isPTY {
		if _, ok := env["TERM"]; !ok {
			add(map[string]string{"TERM": defaultTerm})
		}
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+env[k])
	}
	return out
}

// resolveCwd picks the working directory: the call's (~ expands to the
// user's home, a relative path is taken from the default workdir or the
// home), else the default workdir, else the home, else /.
func resolveCwd(cwd *string, u *users.User, defaultWorkdir string) (string, error) {
	base := defaultWorkdir
	if base == "" {
		base = u.Home
	}
	if cwd == nil || *cwd == "" {
		if st, err := os.Stat(base); err == nil && st.IsDir() {
			return base, nil
		}
		return "/", nil
	}
	p := *cwd
	switch {
	case p == "~":
		p = u.Home
	case strings.HasPrefix(p, "~/"):
		p = filepath.Join(u.Home, p[2:])
	case !filepath.IsAbs(p):
		p = filepath.Join(base, p)
	}
	st, err := os.Stat(p)
	if err != nil || !st.IsDir() {
		return "", errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("cwd '%s' does not exist", *cwd))
	}
	return p, nil
}

// lookPath finds cmd in the process's PATH (not the agent's).
func lookPath(cmd string, env []string) (string, error) {
	if strings.Contains(cmd, "/") {
		return cmd, nil
	}
	path := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, cmd)
		st, err := os.Stat(p)
		if err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("executable file '%s' not found in $PATH", cmd))
}

// credential is the SysProcAttr credential for u. An agent that is not root
// can only run processes as itself.
func credential(u *users.User) (*syscall.Credential, error) {
	euid := uint32(os.Geteuid())
	if euid == 0 {
		return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}, nil
	}
	if u.UID == euid {
		return nil, nil
	}
	return nil, errdefs.New(errdefs.ErrPermissionDenied, fmt.Sprintf("cannot run as user '%s': the agent is not root", u.Name))
}

// spawnSpec is a validated StartRequest.
type spawnSpec struct {
	req     *pb.StartRequest
	user    *users.User
	path    string
	argv    []string
	env     []string
	cwd     string
	cred    *syscall.Credential
	ptySize *pty.Winsize
}

// spawn starts the process described by sp through the reaper, subscribes
// sub (so no output is missed) and starts its pumps and waiter.
func (s *Service) spawn(sp *spawnSpec) (*proc, *subscriber, error) {
	p := &proc{
		tag:    sp.req.Tag,
		config: sp.req.GetProcess(),
		isPTY:  sp.ptySize != nil,
		exit:   make(chan unix.WaitStatus, 1),
		done:   make(chan struct{}),
		subs:   map[*subscriber]struct{}{},
	}
	sys := &syscall.SysProcAttr{Setsid: true, Credential: sp.cred}

	// parentFiles are ours after the start; childFiles are closed once the
	// child has them.
	var parentFiles, childFiles []*os.File
	fail := func(err error) (*proc, *subscriber, error) {
		for _, f := range append(parentFiles, childFiles...) {
			_ = f.Close()
		}
		return nil, nil, err
	}
	var stdio [3]*os.File
	var outputs []*os.File
	var wraps []func([]byte) *pb.ProcessEvent_DataEvent
	if p.isPTY {
		master, slave, err := openPTY(sp.ptySize)
		if err != nil {
			return fail(fmt.Errorf("opening pty: %w", err))
		}
		parentFiles = append(parentFiles, master)
		childFiles = append(childFiles, slave)
		stdio = [3]*os.File{slave, slave, slave}
		sys.Setctty = true
		sys.Ctty = 0
		p.master, p.in = master, master
		outputs = []*os.File{master}
		wraps = append(wraps, ptyEvent)
	} else {
		if sp.req.Stdin == nil || sp.req.GetStdin() {
			r, w, err := os.Pipe()
			if err != nil {
				return fail(fmt.Errorf("creating stdin pipe: %w", err))
			}
			parentFiles, childFiles = append(parentFiles, w), append(childFiles, r)
			stdio[0], p.in = r, w
		} else {
			null, err := os.Open(os.DevNull)
			if err != nil {
				return fail(fmt.Errorf("opening %s: %w", os.DevNull, err))
			}
			childFiles = append(childFiles, null)
			stdio[0] = null
		}
		for i, wrap := range []func([]byte) *pb.ProcessEvent_DataEvent{stdoutEvent, stderrEvent} {
			r, w, err := os.Pipe()
			if err != nil {
				return fail(fmt.Errorf("creating output pipe: %w", err))
			}
			parentFiles, childFiles = append(parentFiles, r), append(childFiles, w)
			stdio[i+1] = w
			outputs = append(outputs, r)
			wraps = append(wraps, wrap)
		}
	}

	attr := &syscall.ProcAttr{
		Dir:   sp.cwd,
		Env:   sp.env,
		Files: []uintptr{stdio[0].Fd(), stdio[1].Fd(), stdio[2].Fd()},
		Sys:   sys,
	}
	pid, err := s.reaper.Start(func() (int, error) {
		return syscall.ForkExec(sp.path, sp.argv, attr)
	}, func(ws unix.WaitStatus) { p.exit <- ws })
	if err != nil {
		return fail(startError(sp, err))
	}
	for _, f := range childFiles {
		_ = f.Close()
	}
	p.pid = uint32(pid)
	p.inFile = p.in
	sub := p.subscribe()
	s.register(p)

	var pumps sync.WaitGroup
	for i, f := range outputs {
		pumps.Add(1)
		go func() {
			defer pumps.Done()
			p.pump(f, wraps[i])
		}()
	}
	go p.wait(outputs, &pumps, s.drainGrace, s.exited)
	return p, sub, nil
}

// startError describes a failed fork/exec for the client.
func startError(sp *spawnSpec, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("starting process '%s': no such file or directory", sp.argv[0]))
	case errors.Is(err, fs.ErrPermission):
		return errdefs.New(errdefs.ErrPermissionDenied, fmt.Sprintf("starting process '%s': permission denied", sp.argv[0]))
	}
	return fmt.Errorf("starting process '%s': %w", sp.argv[0], err)
}

// openPTY opens a PTY of the given size. The master is made non-blocking
// and registered with Go's poller (creack/pty leaves it blocking), so reads
// honour deadlines and Close interrupts them.
func openPTY(size *pty.Winsize) (master, slave *os.File, err error) {
	m, sl, err := pty.Open()
	if err != nil {
		return nil, nil, err
	}
	if err := pty.Setsize(sl, size); err != nil {
		_, _ = m.Close(), sl.Close()
		return nil, nil, fmt.Errorf("setting pty size: %w", err)
	}
	fd, err := unix.FcntlInt(m.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	_ = m.Close()
	if err != nil {
		_ = sl.Close()
		return nil, nil, fmt.Errorf("duplicating pty master: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_, _ = unix.Close(fd), sl.Close()
		return nil, nil, fmt.Errorf("making pty master non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), sl, nil
}

// resizePTY sets the window size of the PTY whose master is f.
func resizePTY(f *os.File, cols, rows uint32) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)})
	})
	if err != nil {
		return err
	}
	return ioErr
}
