package linux

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/sandboxlog"
)

// A sandbox outlives the daemon that started it: its init runs in a
// session of its own (no hangup reaches it), with no parent-death signal,
// its mounts live in its own mount namespace, its veth in its own network
// namespace, its nftables rules in the kernel, and its agent logs through a
// FIFO in the sandbox's dir whose write end the agent holds. The next
// runtime over the same state dir rebuilds what it kept in memory from
// that dir (see Adopt): the init's pid and identity (the boot it was
// started in and its start time), its uid range and its link (all in
// stateFile), its cgroup (by id), its agent's socket ("envd.sock") and its
// log FIFO ("log").

// logFIFO is the agent's stderr: a FIFO, so a daemon started later can
// open it again and read on where the one that died stopped. While no
// daemon reads it the agent's log lines fail with EPIPE (the agent
// ignores SIGPIPE) and are lost.
const logFIFO = "log"

// procIdent tells a process from any later one given the same pid: the
// boot it runs in and its start time in clock ticks since boot (field 22
// of /proc/PID/stat).
type procIdent struct {
	Boot  string
	Start uint64
}

func (p procIdent) String() string { return p.Boot + " " + strconv.FormatUint(p.Start, 10) }

func parseIdent(s string) (procIdent, error) {
	boot, start, ok := strings.Cut(strings.TrimSpace(s), " ")
	n, err := strconv.ParseUint(start, 10, 64)
	if !ok || boot == "" || err != nil {
		return procIdent{}, fmt.Errorf("malformed process identity %q", s)
	}
	return procIdent{Boot: boot, Start: n}, nil
}

// bootID is the kernel's id of the current boot.
func bootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("reading the boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// identify returns the identity of the process that has pid now.
func (r *Runtime) identify(pid int) (procIdent, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procIdent{}, err
	}
	start, err := statStartTime(b)
	if err != nil {
		return procIdent{}, fmt.Errorf("process %d: %w", pid, err)
	}
	return procIdent{Boot: r.bootID, Start: start}, nil
}

// statStartTime reads field 22 (starttime) of a /proc/PID/stat line. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ")".
func statStartTime(stat []byte) (uint64, error) {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:]) // from field 3 (state) on
	const startField = 22 - 3
	if len(f) <= startField {
		return 0, errors.New("stat too short")
	}
	return strconv.ParseUint(f[startField], 10, 64)
}

// recordInit writes what identifies a sandbox's init for a later run.
func (r *Runtime) recordInit(b *box, id procIdent) error {
	if err := appendState(b.dir, initLine(b.pid, id)); err != nil {
		return fmt.Errorf("recording init of %s: %w", b.id, err)
	}
	return nil
}

// errNoIdent is recordedInit's answer for a sandbox dir of an older
// version, which recorded no identity of its init.
var errNoIdent = errors.New("no record of which process its init is")

// recordedInit returns the pid a sandbox dir records, and an error saying
// why it is gone unless that pid is still the init the dir was made for.
// A dir with no identity (errNoIdent) is never taken for a live sandbox.
func (r *Runtime) recordedInit(dir string) (int, error) {
	state, err := readState(dir)
	if err != nil {
		return 0, err
	}
	pid := state.pid
	if pid <= 0 {
		return 0, errors.New("no pid recorded")
	}
	if state.ident == "" {
		return pid, errNoIdent
	}
	want, err := parseIdent(state.ident)
	if err != nil {
		return pid, err
	}
	if want.Boot != r.bootID {
		return pid, errors.New("the host rebooted since it started")
	}
	have, err := r.identify(pid)
	if err != nil {
		return pid, errors.New("its init has exited")
	}
	if have != want {
		return pid, errors.New("its pid belongs to another process now")
	}
	return pid, nil
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// Adopt implements runtime.Adopter.
func (r *Runtime) Adopt(ctx context.Context, a runtime.Adoption) (_ *runtime.Sandbox, err error) {
	id := a.ID
	if id == "" || id != filepath.Base(id) || id == "." || id == ".." {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("cannot adopt sandbox %q: not a sandbox id", id))
	}
	if _, err := r.box(id); err == nil {
		return nil, errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("sandbox %s is held already", id))
	}
	dir := r.sandboxDir(id)
	gone := func(why error) error {
		return errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("sandbox %s is gone: %v", id, why))
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, gone(errors.New("it has no state dir"))
	}
	if a.Stopped {
		return r.adoptStopped(id, dir)
	}
	pid, err := r.recordedInit(dir)
	if err != nil {
		return nil, gone(err)
	}
	// The pidfd pins the process: checked once more after opening it, the
	// identity holds for as long as the pidfd is open.
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, gone(errors.New("its init has exited"))
	}
	pidfd := os.NewFile(uintptr(fd), "pidfd")
	defer func() {
		if err != nil {
			pidfd.Close()
		}
	}()
	if _, err := r.recordedInit(dir); err != nil {
		return nil, gone(err)
	}
	state, err := readState(dir)
	if err == nil && state.slot < 0 {
		err = errors.New("no slot recorded")
	}
	if err != nil {
		return nil, fmt.Errorf("adopting %s: reading its uid range: %w", id, err)
	}
	slot := state.slot
	group, err := r.cfg.Cgroups.Load(id)
	if err != nil {
		return nil, fmt.Errorf("adopting %s: loading its cgroup: %w", id, err)
	}
	b := &box{id: id, dir: dir, slot: slot, pid: pid, pidfd: pidfd, group: group, disk: -1,
		done: make(chan struct{}), log: sandboxlog.New()}
	if idx := state.link; idx >= 0 {
		if r.cfg.Egress == nil {
			return nil, fmt.Errorf("adopting %s: it has a network link and this runtime has no egress", id)
		}
		link := r.cfg.Egress.Link(idx)
		link.Pid = pid
		if err := r.cfg.Egress.Adopt(link, egressPolicy(id, a.Egress)); err != nil {
			return nil, fmt.Errorf("adopting %s: %w", id, err)
		}
		b.link = &link
	}
	// Its disk is the overlays' (inside the sandbox) until a Stop: a
	// Start after that binds it anew (reattachDisk), and a snapshot
	// mounts it from its loop device meanwhile.
	if err := r.reopenLog(b); err != nil {
		r.log.Warn("the log of an adopted sandbox cannot be read", "sandbox_id", id, "err", err)
	}

	r.mu.Lock()
	if _, held := r.boxes[id]; held {
		r.mu.Unlock()
		b.closeLog()
		return nil, errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("sandbox %s is held already", id))
	}
	r.boxes[id] = b
	r.slots[slot] = id
	r.mu.Unlock()
	go func() {
		if err := waitPidfd(pidfd); err != nil {
			return // the runtime closed
		}
		close(b.done)
	}()
	go r.watch(b, b.done)
	return &runtime.Sandbox{ID: id, Pid: pid, EnvdSocket: filepath.Join(dir, "envd.sock"), Created: time.Now()}, nil
}

// waitPidfd returns when the process of a non-blocking pidfd has exited
// (the pidfd turns readable), or with an error when the pidfd is closed.
// It waits in the runtime's poller, not on a thread of its own.
func waitPidfd(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Read(func(fd uintptr) bool {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		return err == nil && n > 0
	})
}

// openLog makes the sandbox's log FIFO, starts reading it into the
// sandbox's ring and returns the write end for the init's stderr.
func (r *Runtime) openLog(b *box) (*os.File, error) {
	path := filepath.Join(b.dir, logFIFO)
	// A Start after a Stop boots again where the last init's FIFO is.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("log FIFO for %s: %w", b.id, err)
	}
	if err := unix.Mkfifo(path, 0o600); err != nil {
		return nil, fmt.Errorf("log FIFO for %s: %w", b.id, err)
	}
	rd, err := openLogReader(b)
	if err != nil {
		return nil, err
	}
	// The write end is open before the reading starts: a FIFO with no
	// writer reads as ended.
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		rd.Close()
		return nil, fmt.Errorf("log FIFO for %s: %w", b.id, err)
	}
	b.logR = rd
	go r.follow(b.id, b.log, rd)
	return w, nil
}

// reopenLog follows the log FIFO of a sandbox an earlier run started,
// whose agent holds the write end.
func (r *Runtime) reopenLog(b *box) error {
	rd, err := openLogReader(b)
	if err != nil {
		return err
	}
	b.logR = rd
	go r.follow(b.id, b.log, rd)
	return nil
}

// openLogReader opens the read end of a sandbox's log FIFO. Non-blocking:
// the open does not wait for a writer, and reads wait in the poller.
func openLogReader(b *box) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(b.dir, logFIFO), os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the log of %s: %w", b.id, err)
	}
	return f, nil
}

// closeLog stops following the sandbox's log.
func (b *box) closeLog() {
	if b.logR != nil {
		_ = b.logR.Close()
	}
}

// follow logs the lines of the sandbox's init and agent output from rd,
// keeping them in ring, until rd ends.
func (r *Runtime) follow(id string, ring *sandboxlog.Ring, rd *os.File) {
	defer rd.Close()
	br := bufio.NewReaderSize(rd, sandboxlog.MaxLine)
	for {
		line, err := readLine(br)
		if err != nil {
			return
		}
		e := sandboxlog.ParseAgentLine(line, time.Now())
		ring.Append(e)
		// The sandbox logs API serves the agent's lines; the daemon's
		// own log repeats only what needs an operator's eye, or every
		// command would be two lines in it.
		lv := slog.LevelDebug
		switch e.Level {
		case sandboxlog.LevelWarn:
			lv = slog.LevelWarn
		case sandboxlog.LevelError:
			lv = slog.LevelError
		}
		r.log.Log(context.Background(), lv, "agent", "sandbox_id", id, "line", string(line))
	}
}

// adoptStopped takes over a sandbox an earlier run stopped (Stop): it has
// no processes, only its files, uid range and disk, which Start boots
// again.
func (r *Runtime) adoptStopped(id, dir string) (*runtime.Sandbox, error) {
	if _, err := os.Stat(filepath.Join(dir, stoppedMark)); err != nil {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("sandbox %s is gone: it was not stopped", id))
	}
	state, err := readState(dir)
	if err == nil && state.slot < 0 {
		err = errors.New("no slot recorded")
	}
	if err != nil {
		return nil, fmt.Errorf("adopting %s: reading its uid range: %w", id, err)
	}
	slot := state.slot
	done := make(chan struct{})
	close(done) // its last init is long gone
	b := &box{id: id, dir: dir, slot: slot, stopped: true, disk: -1, done: done, log: sandboxlog.New()}
	if err := r.reattachDisk(b, true); err != nil {
		return nil, fmt.Errorf("adopting %s: %w", id, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, held := r.boxes[id]; held {
		b.closeDisk()
		return nil, errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("sandbox %s is held already", id))
	}
	r.boxes[id] = b
	r.slots[slot] = id
	return &runtime.Sandbox{ID: id, EnvdSocket: filepath.Join(dir, "envd.sock"), Created: time.Now()}, nil
}

// reattachDisk gives an adopted box the handle on its disk's mount and the
// link its overlays name their upper dirs by, as Create left them, so
// Start and Snapshot work on it as on one this run made. The disk's loop
// device is found; a stopped sandbox's may have been let go with its last
// mount, and is then bound anew.
func (r *Runtime) reattachDisk(b *box, stopped bool) error {
	img := filepath.Join(b.dir, "disk.img")
	if _, err := os.Lstat(img); err != nil || r.disks == nil {
		b.layers = filepath.Join(b.dir, "layers")
		return nil
	}
	// A device still bound to the image is used, whatever the sandbox's
	// state: the last mount of the disk may still be going away, and a
	// second device on the same image would be a second filesystem on it.
	dev, err := r.loopOf(img)
	if err != nil && stopped {
		var loopFile *os.File
		if dev, loopFile, err = r.disks.loop(img); err != nil {
			return err
		}
		defer loopFile.Close() // the mount holds the device from here
	}
	if err != nil {
		return err
	}
	fd, err := mountDisk(dev)
	if err != nil {
		return err
	}
	link := filepath.Join(b.dir, "disk")
	if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
		unix.Close(fd)
		return fmt.Errorf("relinking the disk: %w", err)
	}
	if err := os.Symlink("/proc/self/fd/"+strconv.Itoa(fd), link); err != nil {
		unix.Close(fd)
		return fmt.Errorf("relinking the disk: %w", err)
	}
	b.disk, b.layers = fd, link
	return nil
}
