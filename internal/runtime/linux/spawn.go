package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/runtime/linux/sandboxinit"
)

// spawner starts sandbox inits through a small helper process (see
// sandboxinit.SpawnerArg), started on first use and again if it dies.
// Requests go one at a time: a spawn takes a fraction of a millisecond.
type spawner struct {
	exe string

	mu   sync.Mutex
	conn *net.UnixConn // nil until started
}

// spawnTimeout bounds one request, so a wedged helper fails creates rather
// than hanging them; the next request starts a new helper.
const spawnTimeout = 10 * time.Second

// spawn starts an init on host uids [hostUID, hostUID+ids) with the given
// control socket, agent listener, agent binary and stderr, and returns
// its pid and a non-blocking pidfd of it.
func (s *spawner) spawn(hostUID, ids int, ctl, listener, exe, stderr *os.File) (int, *os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		if err := s.start(); err != nil {
			return 0, nil, err
		}
	}
	pid, pidfd, err := s.request(hostUID, ids, ctl, listener, exe, stderr)
	var failed spawnFailed
	if err != nil && !errors.As(err, &failed) {
		// The helper may be gone or out of step: start afresh next time.
		s.stopLocked()
	}
	return pid, pidfd, err
}

// spawnFailed is the helper's own answer that an init did not start: the
// helper is fine and stays.
type spawnFailed string

func (e spawnFailed) Error() string { return string(e) }

func (s *spawner) request(hostUID, ids int, files ...*os.File) (int, *os.File, error) {
	msg, err := json.Marshal(sandboxinit.SpawnRequest{HostUID: hostUID, IDs: ids})
	if err != nil {
		return 0, nil, err
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	if err := s.conn.SetDeadline(time.Now().Add(spawnTimeout)); err != nil {
		return 0, nil, fmt.Errorf("spawner: %w", err)
	}
	if _, _, err := s.conn.WriteMsgUnix(msg, unix.UnixRights(fds...), nil); err != nil {
		return 0, nil, fmt.Errorf("spawner: sending a request: %w", err)
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := s.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return 0, nil, fmt.Errorf("spawner: reading the reply: %w", err)
	}
	if n == 0 {
		return 0, nil, errors.New("spawner: it exited")
	}
	var reply sandboxinit.SpawnReply
	if err := json.Unmarshal(buf[:n], &reply); err != nil {
		return 0, nil, fmt.Errorf("spawner: reading the reply: %w", err)
	}
	var pidfd *os.File
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) == 1 {
		if got, err := unix.ParseUnixRights(&msgs[0]); err == nil && len(got) == 1 {
			pidfd = os.NewFile(uintptr(got[0]), "pidfd") // non-blocking: PIDFD_NONBLOCK
		}
	}
	switch {
	case reply.Err != "":
		if pidfd != nil {
			pidfd.Close()
		}
		return 0, nil, spawnFailed(reply.Err)
	case pidfd == nil || reply.Pid <= 0:
		return 0, nil, errors.New("spawner: a reply without a process")
	}
	return reply.Pid, pidfd, nil
}

// start runs the helper: the agent binary, which is small, so its forks
// are cheap. It ends when its socket closes (close, or the daemon going).
func (s *spawner) start() error {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("spawner socket: %w", err)
	}
	ours := os.NewFile(uintptr(pair[0]), "spawner")
	theirs := os.NewFile(uintptr(pair[1]), "spawner-child")
	defer theirs.Close()
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return fmt.Errorf("spawner socket: %w", err)
	}
	cmd := exec.Command(s.exe, sandboxinit.SpawnerArg)
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		c.Close()
		return fmt.Errorf("starting the spawner: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	s.conn = c.(*net.UnixConn)
	return nil
}

// close ends the helper; inits it started keep running.
func (s *spawner) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *spawner) stopLocked() {
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
}
