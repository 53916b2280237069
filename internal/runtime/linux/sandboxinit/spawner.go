package sandboxinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// SpawnerArg is the hidden subcommand of the agent binary that starts
// sandbox inits for the daemon.
//
// Go starts a process in a new user namespace with a real fork, not a
// vfork (the child must wait for its uid map), and a fork of the daemon
// copies its page tables and leaves its whole working set copy-on-write:
// every page it writes afterwards faults, with a TLB shootdown on every
// CPU. Under load that was a fifth of the daemon's CPU. The spawner, a
// small process the daemon starts once, forks instead.
const SpawnerArg = "sandpit-spawner"

// SpawnRequest asks the spawner for an init. It comes with four
// descriptors: the init's control socket, the agent's listener, the agent
// binary and the log to use as stderr.
type SpawnRequest struct {
	HostUID int `json:"host_uid"` // first host uid (and gid) of the sandbox's range
	IDs     int `json:"ids"`      // how many ids the range has
}

// SpawnReply answers a SpawnRequest: the init's pid, with a pidfd of it
// attached, or why there is none.
type SpawnReply struct {
	Pid int    `json:"pid"`
	Err string `json:"err,omitempty"`
}

// SpawnerConns is how many sockets the daemon gives the spawner: creates
// at once wait on its forks only beyond that many.
const SpawnerConns = 4

// spawnFiles is how many descriptors come with a request.
const spawnFiles = 4

// Spawner serves the daemon's requests on the sockets from ControlFD on
// (args[0] says how many: see SpawnerConns), requests on one socket in
// turn and the sockets all at once, until the daemon closes them (or
// goes), reaping the inits it started meanwhile. Inits still running when
// it returns are inherited by the host's init, as when the daemon itself
// goes.
func Spawner(args []string) error {
	conns := 0
	if len(args) == 1 {
		conns, _ = strconv.Atoi(args[0])
	}
	if conns < 1 || conns > 64 {
		return fmt.Errorf("spawner: want the number of its sockets, got %q", args)
	}
	errs := make(chan error, conns)
	for i := range conns {
		go func() { errs <- serveSpawns(ControlFD + i) }()
	}
	var first error
	for range conns {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func serveSpawns(fd int) error {
	c, err := net.FileConn(os.NewFile(uintptr(fd), "spawner"))
	if err != nil {
		return fmt.Errorf("spawner socket: %w", err)
	}
	conn, ok := c.(*net.UnixConn)
	if !ok {
		return errors.New("spawner socket is not a unix socket")
	}
	defer conn.Close()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(spawnFiles*4))
	for {
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if errors.Is(err, io.EOF) || err == nil && n == 0 && oobn == 0 {
			return nil // the daemon is gone
		}
		if err != nil {
			return fmt.Errorf("spawner: reading a request: %w", err)
		}
		reply, pidfd := spawn(buf[:n], oob[:oobn])
		msg, _ := json.Marshal(reply)
		var rights []byte
		if pidfd >= 0 {
			rights = unix.UnixRights(pidfd)
		}
		_, _, err = conn.WriteMsgUnix(msg, rights, nil)
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
		if err != nil {
			return fmt.Errorf("spawner: replying: %w", err)
		}
	}
}

// spawn starts one init and returns its pid and a pidfd of it (-1 on
// failure).
func spawn(msg, oob []byte) (SpawnReply, int) {
	fds, err := parseRights(oob)
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), "fd"+strconv.Itoa(i))
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if err == nil && len(files) != spawnFiles {
		err = fmt.Errorf("got %d descriptors, want %d", len(files), spawnFiles)
	}
	var req SpawnRequest
	if err == nil {
		err = json.Unmarshal(msg, &req)
	}
	if err == nil && (req.HostUID <= 0 || req.IDs <= 0) {
		err = fmt.Errorf("bad uid range %d+%d", req.HostUID, req.IDs)
	}
	if err != nil {
		return SpawnReply{Err: "spawner: " + err.Error()}, -1
	}
	cmd := &exec.Cmd{
		// The init runs as the sandbox's host uid, which may not
		// traverse the directories holding the binary: it execs (and
		// later bind-mounts) the binary through an inherited descriptor.
		Path: "/proc/self/fd/" + strconv.Itoa(ExeFD),
		Args: []string{"sandpit", Arg},
		// The init lives for a few ms and allocates little before it
		// becomes the agent (whose environment it sets afresh): one P
		// and no collector spare it 0.4 of its 1.4 ms of CPU.
		Env:        []string{"GOMAXPROCS=1", "GOGC=off"},
		Dir:        "/",
		ExtraFiles: files[:3], // fds 3, 4, 5: control socket, listener, binary
		Stderr:     files[3],
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
				syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
			UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: req.HostUID, Size: req.IDs}},
			GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: req.HostUID, Size: req.IDs}},
			GidMappingsEnableSetgroups: true,
			// Become the namespace's root before exec, or the init
			// would run as an unmapped uid with no capabilities.
			Credential: &syscall.Credential{Uid: 0, Gid: 0},
			Setsid:     true,
		},
	}
	if err := cmd.Start(); err != nil {
		return SpawnReply{Err: "starting the init: " + err.Error()}, -1
	}
	// A pidfd of its own for the daemon, opened before the child can be
	// reaped (only this process reaps it, below), so it cannot name
	// another process. Not SysProcAttr.PidFD: that shares its open file
	// with the one Wait uses, and the daemon's non-blocking flag would
	// make Wait fail with EAGAIN.
	pidfd, err := unix.PidfdOpen(cmd.Process.Pid, unix.PIDFD_NONBLOCK)
	go func() { _ = cmd.Wait() }() // reap it when it ends
	if err != nil {
		_ = cmd.Process.Kill()
		return SpawnReply{Err: "opening a pidfd of the init: " + err.Error()}, -1
	}
	return SpawnReply{Pid: cmd.Process.Pid}, pidfd
}

func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parsing descriptors: %w", err)
	}
	var fds []int
	for i := range msgs {
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			return nil, fmt.Errorf("parsing descriptors: %w", err)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}
