// Package linux runs sandboxes as process trees in fresh Linux namespaces
// (user, pid, mount, network, ipc, uts, cgroup), each with its own overlayfs
// root over idmapped template layers, its own cgroup, a seccomp allow-list
// and a bounded capability set. The daemon re-executes its own binary
// (Init) as a sandbox's first process; that process builds the root, pivots
// into it and becomes the in-sandbox agent.
package linux

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/cgroup"
	"github.com/sandpit-dev/sandpit/internal/egress"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux/sandboxinit"
	"github.com/sandpit-dev/sandpit/internal/sandboxlog"
	"github.com/sandpit-dev/sandpit/internal/seccomp"
)

// Config configures the Linux runtime.
type Config struct {
	// StateDir holds one directory per sandbox (writable layers, the agent's
	// socket). It must be on a filesystem that can host overlayfs upper dirs.
	StateDir string
	// Exe is the binary each sandbox's init and agent run from. When
	// empty: sandpit-agent beside the running binary if it was built with
	// it, else the running binary (see agentBinary).
	Exe string
	// InitExe is the binary each sandbox's init and the spawner of inits
	// run from. When empty: sandpit-init beside the running binary if
	// Exe was empty too and it was built with it (see initBinary), else
	// Exe, which answers the same subcommands.
	InitExe string
	Cgroups cgroup.Manager
	Logger  *slog.Logger
	// UIDBase is the first host uid of the ranges sandboxes map their ids
	// onto; each sandbox gets its own 65536 ids. Default 1<<20. The state
	// dir records it: New refuses (RangeError) a different one while
	// sandboxes of the old one are left there.
	UIDBase int
	// MaxSandboxes bounds how many sandboxes run at once, and so the uid
	// ids used: [UIDBase, UIDBase+MaxSandboxes*65536). Default 4096.
	MaxSandboxes int
	// Egress connects sandboxes that allow internet access. Nil leaves
	// every sandbox with loopback only.
	Egress *egress.Egress
	// DiskQuota puts each sandbox's writable layers on a filesystem of
	// their own, Resources.DiskMB in size (1024 when zero), so a sandbox
	// that fills its disk fills only its own. A runtime with disk quotas
	// cannot Commit (the layers go with the sandbox).
	DiskQuota bool
}

const idsPerSandbox = 65536

// Runtime implements runtime.Runtime with Linux namespaces.
type Runtime struct {
	cfg    Config
	log    *slog.Logger
	exited chan string
	// closed ends watchers still waiting to report an exit (Close).
	closed    chan struct{}
	closeOnce sync.Once

	disks   *disks            // nil without disk quotas
	diskErr error             // why DiskQuota could not be had
	bootID  string            // the kernel's boot id, part of every init's identity
	seccomp []unix.SockFilter // every sandbox's system-call filter, assembled once
	spawner *spawner          // starts the inits
	// oomShield: the daemon may lower its agents' OOM scores (it holds
	// CAP_SYS_RESOURCE).
	oomShield bool

	// loops maps a disk image (device and inode) to the loop device it
	// is bound to, as last scanned: adopting many sandboxes scans
	// /sys/block once, not once each.
	loopsMu sync.Mutex
	loops   map[fileID]string

	mu    sync.Mutex
	boxes map[string]*box
	slots map[int]string // uid range slot → sandbox id
	// ending counts the slots of sandboxes whose kill answered and whose
	// release has not freed the slot yet; slotFreed is closed (and
	// replaced) whenever a slot is freed.
	ending    int
	slotFreed chan struct{}
}

var _ runtime.Runtime = (*Runtime)(nil)

type box struct {
	id     string
	dir    string
	slot   int
	pid    int
	group  cgroup.Group
	link   *egress.Link  // nil when the sandbox has loopback only
	layers string        // where the writable layers' upper and work dirs are
	disk   int           // the detached mount of its disk until the overlays hold it; -1 when none
	done   chan struct{} // closed when the init has ended
	// pidfd is the init: the spawner's child, or one an earlier run
	// started (Adopt); nil while none runs (stopped).
	pidfd   *os.File
	logR    *os.File         // the read end of its log FIFO; nil when not read
	killing bool             // guarded by Runtime.mu
	paused  bool             // frozen; guarded by Runtime.mu
	log     *sandboxlog.Ring // the agent's stderr, parsed
	// stopped: Stop ended its processes, its disk is kept for Start
	// (stop.go); guarded by Runtime.mu. op serializes Stop, Start and
	// Kill of it.
	stopped bool
	op      sync.Mutex
}

// New returns a Linux runtime. It creates StateDir and takes note of
// sandboxes left there by an earlier run, so List reports them and their
// uid ranges are not handed out again before Kill reaps them.
func New(cfg Config) (*Runtime, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("linux runtime: StateDir is required")
	}
	if cfg.Cgroups == nil {
		cfg.Cgroups = cgroup.Noop{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding own binary: %w", err)
		}
		agent, why, err := agentBinary(exe)
		if err != nil {
			return nil, err
		}
		if why != "" {
			cfg.Logger.Warn("sandboxes start from the daemon's own binary, which costs each create a few ms of CPU more", "reason", why)
		}
		cfg.Exe = agent
		if cfg.InitExe == "" {
			init, why, err := initBinary(exe, agent)
			if err != nil {
				return nil, err
			}
			if why != "" {
				cfg.Logger.Warn("sandbox inits start from the agent's binary, which costs each create about a ms of CPU more", "reason", why)
			}
			cfg.InitExe = init
		}
	}
	if cfg.InitExe == "" {
		cfg.InitExe = cfg.Exe
	}
	if cfg.UIDBase == 0 {
		cfg.UIDBase = 1 << 20
	}
	if cfg.MaxSandboxes == 0 {
		cfg.MaxSandboxes = 4096
	}
	// Root's alone: the sandboxes' inits never reach into it by path (see
	// stageDir), and it holds their writable layers and sockets.
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state dir: %w", err)
	}
	if err := os.Chmod(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir permissions: %w", err)
	}
	boot, err := bootID()
	if err != nil {
		return nil, err
	}
	filter, err := seccomp.Program()
	if err != nil {
		return nil, err
	}
	r := &Runtime{
		spawner: &spawner{exe: cfg.InitExe},
		seccomp: filter,
		bootID:  boot,
		cfg:     cfg,
		log:     cfg.Logger,
		exited:  make(chan string, 64),
		closed:  make(chan struct{}),
		boxes:   map[string]*box{},
		slots:   map[int]string{},
	}
	if caps, err := capability.NewPid2(0); err == nil && caps.Load() == nil {
		r.oomShield = caps.Get(capability.EFFECTIVE, capability.CAP_SYS_RESOURCE)
	}
	if cfg.DiskQuota {
		d, err := newDisks(cfg.StateDir)
		if err != nil {
			r.diskErr = err
		} else {
			r.disks = d
		}
	}
	leftovers, err := r.leftovers()
	if err != nil {
		return nil, err
	}
	if err := checkRanges(cfg, leftovers); err != nil {
		if r.disks != nil {
			_ = r.disks.close()
		}
		return nil, err
	}
	for id, slot := range leftovers {
		if slot >= 0 {
			r.slots[slot] = id
		}
	}
	return r, nil
}

// Warnings lists the ways this runtime's configuration weakens isolation.
func (r *Runtime) Warnings() []string {
	var w []string
	if r.cfg.Cgroups.Kind() == "none" {
		w = append(w, "cgroups are off: sandboxes have no memory, CPU or task limits")
	}
	if !r.oomShield {
		w = append(w, "the daemon lacks CAP_SYS_RESOURCE: sandbox agents are not shielded from the OOM killer (the processes they start are still its first choice)")
	}
	switch {
	case r.disks != nil:
	case r.diskErr != nil:
		w = append(w, "sandbox disks are not capped ("+r.diskErr.Error()+"): a sandbox can fill the state dir's filesystem")
	default:
		w = append(w, "sandbox disks are not capped (disk quotas off): a sandbox can fill the state dir's filesystem")
	}
	return w
}

func (r *Runtime) Exited() <-chan string { return r.exited }

// Close releases the runtime. Sandboxes keep running, for a later runtime
// to adopt; the cgroup parent is removed when none is left.
func (r *Runtime) Close() error {
	r.closeOnce.Do(func() {
		close(r.closed)
		r.spawner.close()
		if r.disks != nil {
			_ = r.disks.close()
		}
		r.mu.Lock()
		for _, b := range r.boxes {
			b.closeLog()
			if b.pidfd != nil {
				_ = b.pidfd.Close()
			}
		}
		r.mu.Unlock()
	})
	return r.cfg.Cgroups.Prune()
}

func (r *Runtime) sandboxDir(id string) string { return filepath.Join(r.cfg.StateDir, id) }

func (r *Runtime) allocSlot(ctx context.Context, id string) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// A kill answers before its sandbox's slot is free (End): a create
	// that a kill made room for waits the few ms for it rather than
	// failing while the caller sees one sandbox fewer.
	deadline := time.Now().Add(slotWait)
	for {
		for s := 0; s < r.cfg.MaxSandboxes; s++ {
			if _, used := r.slots[s]; !used {
				r.slots[s] = id
				return s, nil
			}
		}
		left := time.Until(deadline)
		if r.ending == 0 || left <= 0 {
			break
		}
		if r.slotFreed == nil {
			r.slotFreed = make(chan struct{})
		}
		freed := r.slotFreed
		r.mu.Unlock()
		t := time.NewTimer(left)
		select {
		case <-freed:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		r.mu.Lock()
		if err := ctx.Err(); err != nil {
			return -1, err
		}
	}
	// The host is full, not the client's quota: a passing condition (503)
	// that clears when a sandbox ends.
	return -1, errdefs.RetryAfter(errdefs.New(errdefs.ErrUnavailable,
		fmt.Sprintf("the daemon runs its maximum of %d sandboxes (sandpit serve --max-sandboxes); retry when one ends", r.cfg.MaxSandboxes)),
		2*time.Second)
}

func (r *Runtime) freeSlot(slot int) {
	r.mu.Lock()
	delete(r.slots, slot)
	r.wakeSlotWaitersLocked()
	r.mu.Unlock()
}

// wakeSlotWaitersLocked has the creates waiting in allocSlot look again.
// Precondition: r.mu is held.
func (r *Runtime) wakeSlotWaitersLocked() {
	if r.slotFreed != nil {
		close(r.slotFreed)
		r.slotFreed = nil
	}
}

// slotWait bounds how long a create waits for the slot of a sandbox whose
// kill is releasing it.
const slotWait = 10 * time.Second

// Create starts a sandbox. See runtime.Runtime.
func (r *Runtime) Create(ctx context.Context, spec runtime.Spec) (_ *runtime.Sandbox, err error) {
	if spec.ID == "" || len(spec.Mounts) == 0 || spec.Mounts[0].Target != "/" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "sandbox spec needs an id and a root mount first")
	}
	st := stages{last: time.Now()}
	slot, err := r.allocSlot(ctx, spec.ID)
	if err != nil {
		return nil, err
	}
	hostUID := r.cfg.UIDBase + slot*idsPerSandbox
	b := &box{id: spec.ID, dir: r.sandboxDir(spec.ID), slot: slot, done: make(chan struct{}), disk: -1, log: sandboxlog.New()}
	defer func() {
		if err != nil {
			r.destroy(b)
		}
	}()

	if err := r.makeDir(b, spec); err != nil {
		return nil, err
	}
	st.mark("dirs")
	// The writable layers (a disk to take, dirs on it that may mean
	// reading its bitmaps back) are ready while the init is forked.
	layersDone := make(chan error, 1)
	go func() {
		start := time.Now()
		err := r.prepareLayers(b, spec, hostUID)
		st.add("layers", time.Since(start))
		layersDone <- err
	}()
	layers := sync.OnceValue(func() error { return <-layersDone })
	sb, err := r.boot(ctx, b, spec, &st, layers)
	if err != nil {
		// destroy releases what the layers took: they must be done.
		_ = layers()
		return nil, err
	}
	r.mu.Lock()
	r.boxes[spec.ID] = b
	r.mu.Unlock()
	go r.watch(b, b.done)
	return sb, nil
}

// boot starts the init of b, whose directory is ready, on its writable
// layers once layers reports them ready: Create's first boot, and Start's
// after a Stop. On error the caller releases what it started.
func (r *Runtime) boot(ctx context.Context, b *box, spec runtime.Spec, st *stages, layers func() error) (_ *runtime.Sandbox, err error) {
	hostUID := r.cfg.UIDBase + b.slot*idsPerSandbox
	sockPath := filepath.Join(b.dir, "envd.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sockPath, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listening for the agent of %s: %w", spec.ID, err)
	}
	ln.SetUnlinkOnClose(false)
	lnFile, err := ln.File()
	ln.Close()
	if err != nil {
		return nil, fmt.Errorf("agent socket of %s: %w", spec.ID, err)
	}
	defer lnFile.Close()

	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("control socket for %s: %w", spec.ID, err)
	}
	ctl := os.NewFile(uintptr(pair[0]), "ctl")
	childCtl := os.NewFile(uintptr(pair[1]), "ctl-child")
	defer ctl.Close()

	stderr, err := r.openLog(b)
	if err != nil {
		childCtl.Close()
		return nil, err
	}
	// The init runs as the sandbox's host uid, which may not traverse the
	// directories holding the binaries: it execs its own through an
	// inherited descriptor instead of its path, and the agent's is
	// mounted into the sandbox from a descriptor too.
	exe, err := os.Open(r.cfg.Exe)
	if err != nil {
		childCtl.Close()
		stderr.Close()
		return nil, fmt.Errorf("opening the agent binary: %w", err)
	}
	defer exe.Close()
	initExe := exe
	if r.cfg.InitExe != r.cfg.Exe {
		if initExe, err = os.Open(r.cfg.InitExe); err != nil {
			childCtl.Close()
			stderr.Close()
			return nil, fmt.Errorf("opening the init binary: %w", err)
		}
		defer initExe.Close()
	}
	pid, pidfd, err := r.spawner.spawn(hostUID, idsPerSandbox, childCtl, lnFile, initExe, stderr)
	childCtl.Close()
	stderr.Close()
	if err != nil {
		return nil, fmt.Errorf("starting init of %s: %w", spec.ID, err)
	}
	b.pid, b.pidfd = pid, pidfd
	// Shield the agent from the OOM killer: a sandbox that runs out of
	// memory loses the process that used it, not its agent (which marks
	// the processes it starts as preferred victims). Lowering a score
	// takes CAP_SYS_RESOURCE, which a daemon may lack (Warnings says so).
	if r.oomShield {
		_ = os.WriteFile("/proc/"+strconv.Itoa(b.pid)+"/oom_score_adj", []byte("-1000"), 0)
	}
	ident, identErr := r.identify(pid)
	done := b.done
	go func() {
		if err := waitPidfd(pidfd); err != nil {
			return // the pidfd was closed: the runtime closed, or a Stop
		}
		if identErr == nil {
			waitReaped(pid, ident.Start)
		}
		close(done)
	}()
	if identErr != nil {
		return nil, fmt.Errorf("identifying init of %s: %w", spec.ID, identErr)
	}
	if err := r.recordInit(b, ident); err != nil {
		return nil, err
	}
	st.mark("spawn")

	// The cgroup, the network link and the root mounts need only the
	// init's pid and namespaces, and the init waits for its config
	// before it runs anything: they are set up side by side. Each waits
	// on the kernel (an RCU grace period to move a task between cgroups,
	// the rtnl lock, the disk), and under load a create spent the sum of
	// those waits instead of the longest.
	var wg sync.WaitGroup
	var groupErr, netErr, mountErr error
	var netCfg *sandboxinit.NetConfig
	var fds []int
	l := limits(spec.Resources)
	wg.Go(func() {
		start := time.Now()
		groupErr = r.placeInGroup(b, spec, l)
		st.add("cgroup", time.Since(start))
	})
	if spec.AllowInternet && r.cfg.Egress != nil {
		wg.Go(func() {
			start := time.Now()
			netCfg, netErr = r.connect(b, spec)
			st.add("net", time.Since(start))
		})
	}
	wg.Go(func() {
		if mountErr = layers(); mountErr != nil {
			return
		}
		start := time.Now()
		fds, mountErr = r.mounts(b, spec, exe)
		st.add("mounts", time.Since(start))
	})
	wg.Wait()
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	if err := errors.Join(groupErr, netErr, mountErr); err != nil {
		return nil, err
	}
	st.last = time.Now()

	targets := make([]string, len(spec.Mounts))
	for i, m := range spec.Mounts {
		targets[i] = m.Target
	}
	tmpMB := spec.Resources.MemoryMB / 2
	if tmpMB <= 0 {
		tmpMB = 256
	}
	icfg := sandboxinit.Config{
		ID: spec.ID, Hostname: spec.Hostname, Stage: stageDir,
		Mounts: targets, TmpMB: tmpMB, Net: netCfg, Seccomp: r.seccomp,
		Envd: sandboxinit.EnvdConfig{Env: spec.Env, AccessToken: spec.AccessToken, DefaultUser: spec.DefaultUser, DefaultWorkdir: spec.DefaultWorkdir, Interpreter: spec.Interpreter, PidsMax: int(l.PidsMax)},
	}
	msg, err := json.Marshal(icfg)
	if err != nil {
		return nil, err
	}
	if err := unix.Sendmsg(int(ctl.Fd()), msg, unix.UnixRights(fds...), nil, 0); err != nil {
		return nil, fmt.Errorf("sending config to %s: %w", spec.ID, err)
	}
	if err := waitReady(ctx, ctl, b); err != nil {
		return nil, fmt.Errorf("starting sandbox %s: %w", spec.ID, err)
	}
	if err := b.group.SetCPUWeight(cgroup.DefaultWeight); err != nil {
		return nil, fmt.Errorf("ending the boot weight of %s: %w", spec.ID, err)
	}
	st.mark("init")
	return &runtime.Sandbox{ID: spec.ID, Pid: b.pid, EnvdSocket: sockPath, Created: time.Now(), Stages: st.list}, nil
}

// makeDir makes the sandbox's host directory and records its uid range.
func (r *Runtime) makeDir(b *box, spec runtime.Spec) error {
	if err := os.Mkdir(b.dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("sandbox %s already exists", spec.ID))
		}
		return fmt.Errorf("creating dir of %s: %w", spec.ID, err)
	}
	if err := appendState(b.dir, slotLine(b.slot)); err != nil {
		return fmt.Errorf("recording uid range of %s: %w", spec.ID, err)
	}
	return nil
}

// prepareLayers lays out the sandbox's writable layers in its directory
// (made by makeDir): on its disk, when it has one, one upper and one work
// dir per mount, owned by the sandbox's root.
func (r *Runtime) prepareLayers(b *box, spec runtime.Spec, hostUID int) error {
	b.layers = filepath.Join(b.dir, "layers")
	if r.disks != nil {
		size := spec.Resources.DiskMB
		if size <= 0 {
			size = 1024
		}
		fd, err := r.disks.take(filepath.Join(b.dir, "disk.img"), size)
		if err != nil {
			return fmt.Errorf("giving %s a %d MB disk: %w", spec.ID, size, err)
		}
		b.disk = fd
		// The overlays name their upper dirs by this link, resolved in
		// this process as they are built, so the host's mount table
		// still shows which sandbox dir a sandbox's layers belong to.
		b.layers = filepath.Join(b.dir, "disk")
		if err := os.Symlink("/proc/self/fd/"+strconv.Itoa(fd), b.layers); err != nil {
			return fmt.Errorf("linking the disk of %s: %w", spec.ID, err)
		}
	}
	for i := range spec.Mounts {
		for _, d := range []string{"upper", "work"} {
			p := filepath.Join(b.layers, strconv.Itoa(i), d)
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("creating writable layer of %s: %w", spec.ID, err)
			}
			if err := os.Chown(p, hostUID, hostUID); err != nil {
				return fmt.Errorf("chowning writable layer of %s: %w", spec.ID, err)
			}
		}
	}
	return nil
}

// mounts builds one detached overlay per template mount, idmapped into the
// sandbox's user namespace, and last a detached mount of the agent binary
// exe. The disk stays open (until destroy) so that Start can mount it
// again after a Stop.
func (r *Runtime) mounts(b *box, spec runtime.Spec, exe *os.File) (_ []int, err error) {
	userns, err := unix.Open("/proc/"+strconv.Itoa(b.pid)+"/ns/user", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening user namespace of %s: %w", spec.ID, err)
	}
	defer unix.Close(userns)
	var fds []int
	defer func() {
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
	}()
	for i, m := range spec.Mounts {
		layer := filepath.Join(b.layers, strconv.Itoa(i))
		fd, err := overlayMount(m.Layers, filepath.Join(layer, "upper"), filepath.Join(layer, "work"), userns)
		if err != nil {
			return nil, fmt.Errorf("mounting %s of %s: %w", m.Target, spec.ID, err)
		}
		fds = append(fds, fd)
	}
	agent, err := fileMount(int(exe.Fd()))
	if err != nil {
		return nil, err
	}
	return append(fds, agent), nil // the last fd is the agent binary
}

// placeInGroup makes b's cgroup and moves its init into it. The boot runs
// at bootWeight among the sandboxes and the agent's "up" brings the group
// down to the weight every sandbox runs at.
func (r *Runtime) placeInGroup(b *box, spec runtime.Spec, l cgroup.Limits) error {
	l.CPUWeight = bootWeight
	g, err := r.cfg.Cgroups.Create(spec.ID, l)
	if err != nil {
		return err
	}
	b.group = g
	if err := g.Add(b.pid); err != nil {
		return fmt.Errorf("placing %s in its cgroup: %w", spec.ID, err)
	}
	return nil
}

// connect gives b a link to the host's egress and returns how the init
// configures its end.
func (r *Runtime) connect(b *box, spec runtime.Spec) (*sandboxinit.NetConfig, error) {
	link, err := r.cfg.Egress.Attach(b.pid)
	if err != nil {
		return nil, fmt.Errorf("connecting %s: %w", spec.ID, err)
	}
	b.link = &link
	if err := appendState(b.dir, linkLine(link.Index)); err != nil {
		return nil, fmt.Errorf("recording link of %s: %w", spec.ID, err)
	}
	if p := spec.Egress; len(p.Allow)+len(p.Deny)+len(p.Names) > 0 || p.Intercept || p.Limits != (runtime.EgressLimits{}) {
		if err := r.cfg.Egress.SetPolicy(link, egressPolicy(spec.ID, p)); err != nil {
			return nil, fmt.Errorf("connecting %s: %w", spec.ID, err)
		}
	}
	return &sandboxinit.NetConfig{Addr: link.Addr, Gateway: link.Gateway, ResolvConf: r.cfg.Egress.ResolvConf()}, nil
}

// waitReady waits for the agent's "ok" (or the init's error) on the control
// socket.
func waitReady(ctx context.Context, ctl *os.File, b *box) error {
	type reply struct {
		msg string
		err error
	}
	ch := make(chan reply, 1)
	go func() {
		buf := make([]byte, 4096)
		n, err := unix.Read(int(ctl.Fd()), buf)
		if n < 0 {
			n = 0
		}
		ch <- reply{string(buf[:n]), err}
	}()
	select {
	case rep := <-ch:
		switch {
		case rep.err != nil:
			return fmt.Errorf("reading from init: %w", rep.err)
		case rep.msg == "ok":
			return nil
		case rep.msg == "":
			return errors.New("init exited before the agent started")
		default:
			return errors.New(rep.msg)
		}
	case <-ctx.Done():
		// Killing the init ends every process of its pid namespace, and
		// with them the last holder of the other end: the read returns.
		// The caller closes ctl, so the reader must be done with it first.
		if !b.kill() {
			_ = unix.Kill(b.pid, unix.SIGKILL)
		}
		<-ch
		return ctx.Err()
	}
}

// readLine reads one line without its newline; a line longer than the
// reader's buffer is cut there and the rest skipped, so a runaway line
// never stops the pipe being drained.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		line = append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = br.ReadSlice('\n')
		}
	}
	if err != nil && len(line) == 0 {
		return nil, err
	}
	return bytes.TrimSuffix(line, []byte("\n")), nil
}

// watch reports a sandbox whose init exits without Kill; done is its
// init's b.done (a Start after a Stop gives the box a new one). It stops
// watching when the runtime closes: the sandbox outlives it.
func (r *Runtime) watch(b *box, done chan struct{}) {
	select {
	case <-done:
	case <-r.closed:
		return
	}
	r.mu.Lock()
	killing := b.killing || b.done != done
	r.mu.Unlock()
	if !killing {
		select {
		case r.exited <- b.id:
		case <-r.closed:
		}
	}
}

var (
	_ runtime.StatsReader = (*Runtime)(nil)
	_ runtime.Pauser      = (*Runtime)(nil)
	_ runtime.LogKeeper   = (*Runtime)(nil)
)

// Log implements runtime.LogKeeper.
func (r *Runtime) Log(id string) (*sandboxlog.Ring, error) {
	b, err := r.box(id)
	if err != nil {
		return nil, err
	}
	return b.log, nil
}

func (r *Runtime) box(id string) (*box, error) {
	r.mu.Lock()
	b, ok := r.boxes[id]
	r.mu.Unlock()
	if !ok {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("sandbox %s not found", id))
	}
	return b, nil
}

// Stats implements runtime.StatsReader: CPU and memory from the sandbox's
// cgroup, disk from its root as the sandbox sees it (the overlay reports
// its writable layer's filesystem).
func (r *Runtime) Stats(ctx context.Context, id string) (runtime.Stats, error) {
	b, err := r.box(id)
	if err != nil {
		return runtime.Stats{}, err
	}
	// A stopped sandbox (stop.go) uses nothing; Start and Stop change
	// what is read below only while it is marked stopped.
	r.mu.Lock()
	group, pid, stopped := b.group, b.pid, b.stopped
	r.mu.Unlock()
	var st runtime.Stats
	if stopped {
		return st, nil
	}
	if group != nil {
		cs, err := group.Stats()
		if err != nil {
			return st, fmt.Errorf("reading the cgroup of %s: %w", id, err)
		}
		st.CPU, st.MemUsed, st.MemCache = cs.CPU, cs.Memory, cs.Cache
	}
	var fs unix.Statfs_t
	if err := unix.Statfs("/proc/"+strconv.Itoa(pid)+"/root", &fs); err == nil {
		st.DiskTotal = fs.Blocks * uint64(fs.Bsize)
		st.DiskUsed = (fs.Blocks - fs.Bfree) * uint64(fs.Bsize)
	}
	return st, nil
}

// Pause implements runtime.Pauser with the cgroup freezer: every task of
// the sandbox stops where it is and keeps its memory.
func (r *Runtime) Pause(ctx context.Context, id string) error {
	b, err := r.box(id)
	if err != nil {
		return err
	}
	if b.group == nil {
		return errdefs.New(errdefs.ErrUnavailable, fmt.Sprintf("sandbox %s has no cgroup to freeze", id))
	}
	if err := b.group.Freeze(); err != nil {
		return fmt.Errorf("freezing %s: %w", id, err)
	}
	r.mu.Lock()
	b.paused = true
	r.mu.Unlock()
	return nil
}

// Resume implements runtime.Pauser.
func (r *Runtime) Resume(ctx context.Context, id string) error {
	b, err := r.box(id)
	if err != nil {
		return err
	}
	if b.group == nil {
		return nil
	}
	if err := b.group.Thaw(); err != nil {
		return fmt.Errorf("thawing %s: %w", id, err)
	}
	r.mu.Lock()
	b.paused = false
	r.mu.Unlock()
	return nil
}

// SetEgress implements runtime.EgressSetter.
func (r *Runtime) SetEgress(ctx context.Context, id string, p runtime.EgressPolicy) error {
	b, err := r.box(id)
	if err != nil {
		return err
	}
	r.mu.Lock()
	link, stopped := b.link, b.stopped
	r.mu.Unlock()
	if stopped {
		return errdefs.New(errdefs.ErrConflict, fmt.Sprintf("sandbox %s is stopped: its next Start applies its policy", id))
	}
	if link == nil {
		return errdefs.New(errdefs.ErrConflict, fmt.Sprintf("sandbox %s has no internet access to narrow: it was created offline (allowInternetAccess false)", id))
	}
	if err := r.cfg.Egress.SetPolicy(*link, egressPolicy(id, p)); err != nil {
		return fmt.Errorf("setting the egress policy of %s: %w", id, err)
	}
	return nil
}

// egressPolicy is p in egress's terms, for sandbox id.
func egressPolicy(id string, p runtime.EgressPolicy) egress.Policy {
	return egress.Policy{Allow: p.Allow, Deny: p.Deny, Names: p.Names, Intercept: p.Intercept, Sandbox: id,
		Limits: egress.Limits{Rate: p.Limits.Rate, Conns: p.Limits.Conns}}
}

// Kill stops a sandbox and releases everything it held. See runtime.Runtime.
func (r *Runtime) Kill(ctx context.Context, id string) error {
	release, err := r.End(ctx, id)
	if err != nil {
		return err
	}
	return release(ctx)
}

var _ runtime.Ender = (*Runtime)(nil)

// End sends the sandbox's processes SIGKILL; release finishes the kill.
// See runtime.Ender.
func (r *Runtime) End(ctx context.Context, id string) (release func(context.Context) error, err error) {
	b, ok := r.takeBox(id)
	if !ok {
		return func(context.Context) error { return nil }, r.reap(ctx, id)
	}
	b.op.Lock() // a Stop or Start in flight finishes first
	alive := r.signal(b)
	r.mu.Lock()
	r.ending++
	r.mu.Unlock()
	return func(context.Context) error {
		defer b.op.Unlock()
		defer func() {
			r.mu.Lock()
			r.ending--
			r.wakeSlotWaitersLocked() // a box may have had no slot
			r.mu.Unlock()
		}()
		return r.release(b, alive)
	}, nil
}

// takeBox removes a sandbox from the runtime's set, marked as being
// killed, so its watcher reports no exit; only the caller that took it
// releases it.
func (r *Runtime) takeBox(id string) (*box, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.boxes[id]
	if ok {
		b.killing = true
		delete(r.boxes, id)
	}
	return b, ok
}

// destroy kills a sandbox's init (the kernel then kills everything in its
// pid namespace and tears down its mount namespace) and removes its cgroup
// and directory.
func (r *Runtime) destroy(b *box) error {
	return r.release(b, r.signal(b))
}

// signal sends b's init SIGKILL, if it has one; it reports whether it had.
func (r *Runtime) signal(b *box) (alive bool) {
	if b.pidfd == nil {
		return false
	}
	r.mu.Lock()
	b.killing = true
	paused := b.paused
	r.mu.Unlock()
	r.signalInit(b, paused)
	return true
}

// release waits for b's signalled init (alive) to be gone and removes
// what b held.
func (r *Runtime) release(b *box, alive bool) error {
	// While the kernel ends the processes, the disk, the link and the
	// directory go too: each waits on the kernel (the disk's detached
	// mount and a veth on an RCU grace period, the disk image on freeing
	// its extents), and under load a kill spent the sum of the waits
	// instead of the longest.
	var wg sync.WaitGroup
	var netErr, dirErr error
	wg.Go(func() {
		if alive && b.disk >= 0 && r.disks != nil {
			// Once the init is gone, no process holds the disk: it can
			// serve another sandbox (disks.recycle). Its image is in the
			// dir, which goes after it.
			r.waitInit(b)
			if r.disks.recycle(b.disk, filepath.Join(b.dir, "disk.img")) {
				b.disk = -1
			}
		}
		b.closeDisk()
		dirErr = os.RemoveAll(b.dir)
	})
	if b.link != nil {
		link := *b.link
		wg.Go(func() {
			if !alive {
				netErr = r.cfg.Egress.Detach(link)
				return
			}
			// The namespace goes with the last process, and the
			// kernel takes the link with it (Egress.Forget says why
			// that is better than deleting it).
			r.waitInit(b)
			netErr = r.cfg.Egress.Forget(link)
		})
	}
	if alive {
		r.waitInit(b)
	}
	if b.pidfd != nil {
		_ = b.pidfd.Close()
	}
	var errs []error
	if b.group != nil {
		errs = append(errs, deleteGroup(b.group))
	} else if g, err := r.cfg.Cgroups.Load(b.id); err == nil {
		errs = append(errs, deleteGroup(g))
	}
	wg.Wait()
	if dirErr != nil {
		// A process that was still writing into a writable layer on the
		// host may have raced the removal: it has ended now.
		dirErr = os.RemoveAll(b.dir)
	}
	if dirErr != nil {
		errs = append(errs, fmt.Errorf("removing dir of %s: %w", b.id, dirErr))
	}
	errs = append(errs, netErr)
	// Only now that no process of the sandbox is left may another
	// sandbox get its uid range.
	if b.slot >= 0 {
		r.freeSlot(b.slot)
	}
	return errors.Join(errs...)
}

// kill sends the sandbox's init SIGKILL; the kernel then kills the rest of
// its pid namespace.
func (b *box) kill() bool {
	// Through the pidfd, so the signal can only reach the init, never a
	// process that reused its pid.
	rc, err := b.pidfd.SyscallConn()
	if err != nil {
		return false
	}
	var sent bool
	_ = rc.Control(func(fd uintptr) {
		sent = unix.PidfdSendSignal(int(fd), unix.SIGKILL, nil, 0) == nil
	})
	return sent
}

// killInit kills b's init (through its pidfd when it was adopted) and
// waits for it: it is reaped only once every task of its pid namespace is
// gone, and with them the mounts of its overlays. paused says b is frozen:
// frozen tasks take their SIGKILL only once thawed.
func (r *Runtime) killInit(b *box, paused bool) {
	r.signalInit(b, paused)
	r.waitInit(b)
}

// signalInit sends b's init SIGKILL, thawing a paused sandbox so that
// its processes can die.
func (r *Runtime) signalInit(b *box, paused bool) {
	if !b.kill() {
		// The pidfd is closed (the runtime closed, or the init has
		// ended): by pid, if the recorded identity shows it is still the
		// init.
		if pid, err := r.recordedInit(b.dir); err == nil && pid == b.pid {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
	if paused && b.group != nil {
		_ = b.group.Thaw()
	}
}

// waitInit waits for b's killed init to be gone.
func (r *Runtime) waitInit(b *box) {
	select {
	case <-b.done:
	case <-r.closed: // an adopted init's waiter stopped with the runtime
		_ = waitGone(context.Background(), b.pid)
	}
}

// closeDisk lets go of the sandbox's disk mount; what is mounted on it
// keeps it alive.
func (b *box) closeDisk() {
	if b.disk >= 0 {
		unix.Close(b.disk)
		b.disk = -1
	}
}

// deleteGroup removes a cgroup once the kernel has let go of its last
// task, which can trail the init's exit by a moment.
func deleteGroup(g cgroup.Group) error {
	var err error
	for delay := time.Millisecond; delay < time.Second; delay *= 2 {
		if err = g.Delete(); err == nil {
			return nil
		}
		time.Sleep(delay)
	}
	return fmt.Errorf("removing cgroup: %w", err)
}

// reap removes a sandbox this runtime did not start (left by an earlier run
// of the daemon): it kills every process in its cgroup, then removes the
// cgroup and the directory.
func (r *Runtime) reap(ctx context.Context, id string) error {
	dir := r.sandboxDir(id)
	state, _ := readState(dir) // what it cannot read stays unknown: -1
	slot := state.slot
	var pids []int
	g, gerr := r.cfg.Cgroups.Load(id)
	if gerr == nil {
		pids, _ = g.Pids()
	}
	// The recorded init is killed only if it is still that process (or,
	// in a dir of an older version, at least a pid namespace's init).
	if p, err := r.recordedInit(dir); p > 0 && !slices.Contains(pids, p) &&
		(err == nil || errors.Is(err, errNoIdent) && isSandboxInit(p)) {
		pids = append(pids, p)
	}
	for _, p := range pids {
		_ = unix.Kill(p, unix.SIGKILL)
	}
	if gerr == nil {
		_ = g.Thaw() // an earlier run may have left it paused
	}
	for _, p := range pids {
		if err := waitGone(ctx, p); err != nil {
			return fmt.Errorf("reaping %s: %w", id, err)
		}
	}
	var errs []error
	if gerr == nil {
		errs = append(errs, deleteGroup(g))
	}
	if state.link >= 0 && r.cfg.Egress != nil {
		errs = append(errs, r.cfg.Egress.Reap(r.cfg.Egress.Link(state.link)))
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, fmt.Errorf("removing dir of %s: %w", id, err))
	}
	if slot >= 0 {
		r.mu.Lock()
		if r.slots[slot] == id {
			delete(r.slots, slot)
		}
		r.mu.Unlock()
	}
	return errors.Join(errs...)
}

// isSandboxInit reports whether pid is the first process of a pid
// namespace (its NSpid ends in 1): a recorded pid that was since reused by
// an unrelated host process is never killed.
func isSandboxInit(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "NSpid:" {
			return f[2] == "1"
		}
	}
	return false
}

// waitReaped returns once the ended process pid, started at start, has
// been reaped by its parent (the spawner, which does so at once), so that
// when Kill returns a sandbox's init is gone from the process table, as
// when the daemon was its parent. A pid reused meanwhile counts as reaped.
// It gives up after a second.
func waitReaped(pid int, start uint64) {
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	for waited, delay := time.Duration(0), 50*time.Microsecond; waited < time.Second; delay = min(2*delay, 20*time.Millisecond) {
		b, err := os.ReadFile(path)
		if err != nil {
			return
		}
		if s, err := statStartTime(b); err != nil || s != start {
			return
		}
		time.Sleep(delay)
		waited += delay
	}
}

func waitGone(ctx context.Context, pid int) error {
	for delay := time.Millisecond; ; delay = min(delay*2, 50*time.Millisecond) {
		if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
			return nil
		}
		// A zombie whose parent is gone is reaped by the host's init.
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && zombie(b) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

func zombie(stat []byte) bool {
	// The state follows the ")" that closes the command name.
	for i := len(stat) - 1; i > 0; i-- {
		if stat[i] == ')' {
			return i+2 < len(stat) && stat[i+2] == 'Z'
		}
	}
	return false
}

// List returns the ids of running sandboxes and of those an earlier run
// left behind. See runtime.Runtime.
func (r *Runtime) List(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	r.mu.Lock()
	for id := range r.boxes {
		seen[id] = true
	}
	r.mu.Unlock()
	left, err := r.leftovers()
	if err != nil {
		return nil, err
	}
	for id := range left {
		seen[id] = true
	}
	groups, err := r.cfg.Cgroups.List()
	if err != nil {
		return nil, err
	}
	for _, id := range groups {
		seen[id] = true
	}
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	return out, nil
}

// leftovers lists sandbox dirs in StateDir that this runtime does not hold,
// with the uid slot each recorded (-1 when unknown).
func (r *Runtime) leftovers() (map[string]int, error) {
	ents, err := os.ReadDir(r.cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("listing sandboxes in state dir: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if _, ok := r.boxes[e.Name()]; ok {
			continue
		}
		state, _ := readState(filepath.Join(r.cfg.StateDir, e.Name()))
		out[e.Name()] = state.slot
	}
	return out, nil
}

// stageDir is where a sandbox's init attaches its root mount before
// pivot_root, in its own private mount namespace, so the host never sees
// it. The init runs as an unprivileged host uid that cannot reach into the
// data dir (root's alone), so the mount point is a directory every host has
// and every uid may look up; the host's own /tmp stays as it is.
const stageDir = "/tmp"

// bootWeight is a sandbox's CPU weight among its siblings from its
// cgroup's making until its agent is up: ten times a running sandbox's.
// A boot is a create a user waits on, a few ms of CPU that sandboxes
// running their own work at full tilt would otherwise stretch to tens
// (bench/loadgo -busy: cold creates beside four sandboxes burning their
// CPU limit, p50 23–29 ms at the default weight, 14–15 at this one).
// Nothing of the user's runs before the weight drops: the template's
// start command comes after the agent's "up".
const bootWeight = 10 * cgroup.DefaultWeight

// Default limits for what a spec leaves at zero.
const (
	defaultCPUs     = 2
	defaultMemoryMB = 512
	defaultPidsMax  = 1024
)

func limits(r runtime.Resources) cgroup.Limits {
	l := cgroup.Limits{CPUCount: r.CPUCount, MemoryBytes: int64(r.MemoryMB) << 20, PidsMax: int64(r.PidsMax)}
	if l.CPUCount <= 0 {
		l.CPUCount = defaultCPUs
	}
	if l.MemoryBytes <= 0 {
		l.MemoryBytes = defaultMemoryMB << 20
	}
	if l.PidsMax <= 0 {
		l.PidsMax = defaultPidsMax
	}
	return l
}

// stages times a boot: mark ends a step that ran alone (it took since the
// last mark), add records one of the steps that run side by side.
type stages struct {
	mu   sync.Mutex
	last time.Time
	list []runtime.Stage
}

func (s *stages) mark(name string) {
	now := time.Now()
	s.mu.Lock()
	s.list = append(s.list, runtime.Stage{Name: name, Duration: now.Sub(s.last)})
	s.mu.Unlock()
	s.last = now
}

func (s *stages) add(name string, d time.Duration) {
	s.mu.Lock()
	s.list = append(s.list, runtime.Stage{Name: name, Duration: d})
	s.mu.Unlock()
}
