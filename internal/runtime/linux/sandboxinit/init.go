package sandboxinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"
)

// Arg is the hidden subcommand under which the daemon starts the agent
// binary as a sandbox's first process. cmd/sandpit-agent (and cmd/sandpit,
// which can stand in for it) dispatch it first thing in main.
const Arg = "sandpit-init"

// Init is the sandbox's first process before it becomes the agent. It runs
// in fresh user, pid, mount, network, ipc and uts namespaces, already mapped
// to the sandbox's host uid range and placed in its cgroup. It receives the
// sandbox's config and detached root mounts from the daemon, builds the
// root filesystem, pivots into it, confines itself (capabilities, seccomp,
// cgroup namespace) and executes the agent. It returns only on failure,
// after telling the daemon why.
func Init() error {
	// Capability bounding sets, the cgroup namespace, credentials and
	// execve are per thread: do all of it on this one.
	goruntime.LockOSThread()
	// initSandbox only returns on failure: on success it has become the
	// agent.
	err := initSandbox(ControlFD)
	_, _ = unix.Write(ControlFD, []byte("error: "+err.Error()))
	return err
}

func initSandbox(ctl int) error {
	cfg, mounts, err := receiveConfig(ctl)
	if err != nil {
		return err
	}
	// The network is set up beside the filesystem: its ioctls wait for
	// the host's rtnl lock, which other sandboxes' setups and teardowns
	// hold. Every thread of the init shares its namespaces; what is per
	// thread (capabilities, the cgroup namespace, credentials) comes
	// after both, on this one.
	netDone := make(chan error, 1)
	go func() { netDone <- configureNet(cfg) }()
	rootErr := buildRoot(cfg, mounts)
	if err := errors.Join(rootErr, <-netDone); err != nil {
		return err
	}
	// The daemon put this process in the sandbox's cgroup before sending
	// the config; rooting the cgroup namespace here hides the host's tree.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("unsharing cgroup namespace: %w", err)
	}
	if err := unix.Close(ExeFD); err != nil {
		return fmt.Errorf("closing the binary: %w", err)
	}
	if err := boundCapabilities(); err != nil {
		return err
	}
	// The agent checks and reports a failure here (envd.Main): the sandbox
	// works without the reservation, and only a fork bomb could end it.
	_ = reserveTasks(cfg.Envd.PidsMax)
	envd, err := json.Marshal(cfg.Envd)
	if err != nil {
		return err
	}
	// Seccomp last: from here on mount and friends fail.
	if err := loadSeccomp(cfg.Seccomp); err != nil {
		return err
	}
	for _, fd := range []int{ControlFD, ListenerFD} {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("keeping fd %d across exec: %w", fd, err)
		}
	}
	env := []string{EnvdConfigEnv + "=" + string(envd), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	env = append(env, AgentRuntimeEnv...)
	err = unix.Exec(agentPath, []string{agentPath, "envd"}, env)
	return fmt.Errorf("executing the agent: %w", err)
}

// configureNet names the sandbox and raises its links.
func configureNet(cfg *Config) error {
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return fmt.Errorf("setting hostname: %w", err)
	}
	if err := loopbackUp(); err != nil {
		return err
	}
	if cfg.Net != nil {
		return configureEth0(cfg.Net.Addr, cfg.Net.Gateway)
	}
	return nil
}

// buildRoot attaches the sandbox's root mounts and special filesystems at
// cfg.Stage, makes it the root and detaches the host's, writes the
// sandbox's own files into /etc and masks what it must not see.
func buildRoot(cfg *Config, mounts []int) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	root := cfg.Stage
	for i, target := range cfg.Mounts {
		dst := filepath.Join(root, target)
		if target != "/" {
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return fmt.Errorf("mount point %s: %w", target, err)
			}
		}
		if err := unix.MoveMount(mounts[i], "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("attaching %s: %w", target, err)
		}
		unix.Close(mounts[i])
	}
	if err := mountSpecial(root, cfg, mounts[len(cfg.Mounts)]); err != nil {
		return err
	}
	detached, err := pivot(root)
	if err != nil {
		return err
	}
	// Written after pivot_root, so a template's symlinks resolve inside
	// the sandbox and never on the host. Absolute paths start at the new
	// root, under the host's that is still being detached.
	err = errors.Join(writeHostFiles("/", cfg), maskPaths())
	if derr := detached(); derr != nil {
		return derr
	}
	return err
}

func receiveConfig(ctl int) (*Config, []int, error) {
	// Peek at the message's size first: a fixed buffer large enough for
	// any config (a create may carry megabytes of env) costs every sandbox
	// a megabyte of page faults, and a small one would cut configs short.
	size, _, _, _, err := unix.Recvmsg(ctl, nil, nil, unix.MSG_PEEK|unix.MSG_TRUNC)
	if err != nil {
		return nil, nil, fmt.Errorf("receiving config: %w", err)
	}
	buf := make([]byte, size)
	oob := make([]byte, unix.CmsgSpace(16*4))
	n, oobn, flags, _, err := unix.Recvmsg(ctl, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("receiving config: %w", err)
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		return nil, nil, fmt.Errorf("receiving config: cut short (%d bytes)", n)
	}
	var cfg Config
	if err := json.Unmarshal(buf[:n], &cfg); err != nil {
		return nil, nil, fmt.Errorf("decoding config: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, nil, fmt.Errorf("parsing mount fds: %w", err)
	}
	var fds []int
	for i := range msgs {
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			return nil, nil, fmt.Errorf("parsing mount fds: %w", err)
		}
		fds = append(fds, got...)
	}
	if len(fds) != len(cfg.Mounts)+1 {
		return nil, nil, fmt.Errorf("got %d mounts for %d targets and the agent", len(fds), len(cfg.Mounts))
	}
	return &cfg, fds, nil
}

func mountSpecial(root string, cfg *Config, agentMount int) error {
	const nosuidNodevNoexec = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	tmpSize := "size=" + strconv.Itoa(cfg.TmpMB) + "m"
	type mnt struct {
		src, target, fstype string
		flags               uintptr
		data                string
		optional            bool
	}
	mnts := []mnt{
		{"proc", "/proc", "proc", nosuidNodevNoexec, "", false},
		{"sysfs", "/sys", "sysfs", nosuidNodevNoexec | unix.MS_RDONLY, "", true},
		{"tmpfs", "/dev", "tmpfs", unix.MS_NOSUID | unix.MS_STRICTATIME, "mode=755,size=65536k", false},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5", false},
		{"tmpfs", "/dev/shm", "tmpfs", nosuidNodevNoexec, "mode=1777," + tmpSize, false},
		{"mqueue", "/dev/mqueue", "mqueue", nosuidNodevNoexec, "", true},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777," + tmpSize, false},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=755,size=65536k", false},
	}
	for _, m := range mnts {
		dst := filepath.Join(root, m.target)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return fmt.Errorf("mount point %s: %w", m.target, err)
		}
		if err := unix.Mount(m.src, dst, m.fstype, m.flags, m.data); err != nil {
			if m.optional {
				continue
			}
			return fmt.Errorf("mounting %s on %s: %w", m.fstype, m.target, err)
		}
		if m.target == "/dev" {
			if err := populateDev(root); err != nil {
				return err
			}
		}
	}
	// The agent: this very binary, read-only.
	agent := filepath.Join(root, agentPath)
	if err := os.MkdirAll(filepath.Dir(agent), 0o755); err != nil {
		return fmt.Errorf("agent dir: %w", err)
	}
	if err := touch(agent); err != nil {
		return err
	}
	if err := unix.MoveMount(agentMount, "", unix.AT_FDCWD, agent, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mounting the agent: %w", err)
	}
	return unix.Close(agentMount)
}

func populateDev(root string) error {
	for _, d := range devices {
		dst := filepath.Join(root, "dev", d)
		if err := touch(dst); err != nil {
			return err
		}
		if err := unix.Mount("/dev/"+d, dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding /dev/%s: %w", d, err)
		}
	}
	links := [][2]string{
		{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}, {"/proc/kcore", "core"},
	}
	for _, l := range links {
		if err := os.Symlink(l[0], filepath.Join(root, "dev", l[1])); err != nil {
			return fmt.Errorf("linking /dev/%s: %w", l[1], err)
		}
	}
	return nil
}

func touch(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return fmt.Errorf("creating mount point %s: %w", path, err)
	}
	return f.Close()
}

// writeHostFiles names the sandbox in its own /etc (in the writable layer)
// and, when it has a way out, names its resolvers.
func writeHostFiles(root string, cfg *Config) error {
	files := map[string]string{
		"etc/hostname": cfg.Hostname + "\n",
		"etc/hosts":    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + cfg.Hostname + "\n",
	}
	if cfg.Net != nil {
		// Images often link resolv.conf to a resolver daemon's file
		// that is not running here: replace the link with a file.
		if err := os.Remove(filepath.Join(root, "etc/resolv.conf")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("replacing /etc/resolv.conf: %w", err)
		}
		files["etc/resolv.conf"] = cfg.Net.ResolvConf
	}
	for p, content := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(content), 0o644); err != nil {
			return fmt.Errorf("writing /%s: %w", p, err)
		}
	}
	return nil
}

// pivot makes root the root of the mount namespace and starts detaching
// the host's tree, so that no path inside leads back to it; the returned
// func waits for the detach (and must be called before anything of the
// sandbox's runs). The detach waits for an expedited RCU grace period,
// which every sandbox starting or ending at the same time also queues
// for: the init does its other work meanwhile.
func pivot(root string) (wait func() error, err error) {
	if err := unix.Chdir(root); err != nil {
		return nil, fmt.Errorf("entering new root: %w", err)
	}
	// pivot_root(".", ".") stacks the old root on top of the new one;
	// unmounting it lazily leaves only the new root, with no directory
	// needed to park the old one in. The threads share a working
	// directory: it stays "." until the unmount has resolved it.
	if err := unix.PivotRoot(".", "."); err != nil {
		return nil, fmt.Errorf("pivot_root: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
			done <- fmt.Errorf("detaching the host's root: %w", err)
			return
		}
		done <- unix.Chdir("/")
	}()
	return func() error { return <-done }, nil
}

// maskPaths hides maskedPaths and makes readonlyPaths read-only. The
// masked directories all show one empty read-only tmpfs: every superblock
// is a shrinker, and the kernel sizes each memory cgroup it makes
// afterwards for the most shrinkers it has ever had at once.
func maskPaths() error {
	empty := "" // the masked directory that holds the tmpfs, once mounted
	for _, p := range maskedPaths {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("masking %s: %w", p, err)
		}
		switch {
		case !fi.IsDir():
			err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
		case empty == "":
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "size=0")
			empty = p
		default:
			// Read-only as the tmpfs's superblock is.
			err = unix.Mount(empty, p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("masking %s: %w", p, err)
		}
	}
	for _, p := range readonlyPaths {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("binding %s read-only: %w", p, err)
		}
		if err := unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("remounting %s read-only: %w", p, err)
		}
	}
	return nil
}

// boundCapabilities drops every capability outside the documented set from
// this thread's bounding set, which the agent and all its children inherit
// across execve.
func boundCapabilities() error {
	keep := map[capability.Cap]bool{}
	for _, c := range capabilities {
		keep[c] = true
	}
	last, err := capability.LastCap()
	if err != nil {
		return fmt.Errorf("reading last capability: %w", err)
	}
	for c := capability.Cap(0); c <= last; c++ {
		if keep[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("dropping %s from the bounding set: %w", c, err)
		}
	}
	return nil
}

// RunIfAsked runs the init or the spawner when args (a program's
// arguments after its name) ask for one, and exits with its status;
// otherwise it returns. Every binary the daemon may start sandboxes from
// calls it first thing in main, before anything else touches the process.
func RunIfAsked(args []string) {
	if len(args) == 0 {
		return
	}
	switch args[0] {
	case Arg:
		// Init returns only on failure, having told the daemon why.
		_ = Init()
		os.Exit(1)
	case SpawnerArg:
		if err := Spawner(args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "sandpit spawner:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}
