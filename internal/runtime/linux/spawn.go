package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/runtime/linux/sandboxinit"
)

// spawner starts sandbox inits through a small helper process (see
// sandboxinit.SpawnerArg), started on first use and again if it dies. It
// talks to the helper over sandboxinit.SpawnerConns sockets, one request
// at a time on each, so that creates at once fork at once.
type spawner struct {
	exe string

	mu    sync.Mutex
	gen   int                // counts helpers started, so a stale conn is not put back
	conns chan *net.UnixConn // idle sockets of the running helper; nil until started
	all   []*net.UnixConn
}

// spawnTimeout bounds one request, so a wedged helper fails creates rather
// than hanging them; the next request starts a new helper.
const spawnTimeout = 10 * time.Second

// spawn starts an init on host uids [hostUID, hostUID+ids) with the given
// control socket, agent listener, agent binary and stderr, and returns
// its pid and a non-blocking pidfd of it.
func (s *spawner) spawn(hostUID, ids int, ctl, listener, exe, stderr *os.File) (int, *os.File, error) {
	conns, gen, err := s.running()
	if err != nil {
		return 0, nil, err
	}
	conn, ok := <-conns
	if !ok {
		return 0, nil, errors.New("spawner: it was restarted meanwhile")
	}
	pid, pidfd, err := request(conn, hostUID, ids, ctl, listener, exe, stderr)
	var failed spawnFailed
	if err != nil && !errors.As(err, &failed) {
		// The helper may be gone or out of step: start afresh next time.
		s.mu.Lock()
		if s.gen == gen {
			s.stopLocked()
		}
		s.mu.Unlock()
		return pid, pidfd, err
	}
	s.mu.Lock()
	if s.gen == gen {
		conns <- conn
	}
	s.mu.Unlock()
	return pid, pidfd, err
}

// running returns the idle sockets of the helper, starting it if need be.
func (s *spawner) running() (chan *net.UnixConn, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		if err := s.start(); err != nil {
			return nil, 0, err
		}
	}
	return s.conns, s.gen, nil
}

// spawnFailed is the helper's own answer that an init did not start: the
// helper is fine and stays.
type spawnFailed string

func (e spawnFailed) Error() string { return string(e) }

func request(conn *net.UnixConn, hostUID, ids int, files ...*os.File) (int, *os.File, error) {
	msg, err := json.Marshal(sandboxinit.SpawnRequest{HostUID: hostUID, IDs: ids})
	if err != nil {
		return 0, nil, err
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	if err := conn.SetDeadline(time.Now().Add(spawnTimeout)); err != nil {
		return 0, nil, fmt.Errorf("spawner: %w", err)
	}
	if _, _, err := conn.WriteMsgUnix(msg, unix.UnixRights(fds...), nil); err != nil {
		return 0, nil, fmt.Errorf("spawner: sending a request: %w", err)
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
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
// are cheap. It ends when its sockets close (close, or the daemon going).
func (s *spawner) start() error {
	n := sandboxinit.SpawnerConns
	var ours []*net.UnixConn
	var theirs []*os.File
	defer func() {
		for _, f := range theirs {
			f.Close()
		}
	}()
	fail := func(err error) error {
		for _, c := range ours {
			c.Close()
		}
		return err
	}
	for range n {
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fail(fmt.Errorf("spawner socket: %w", err))
		}
		theirs = append(theirs, os.NewFile(uintptr(pair[1]), "spawner-child"))
		f := os.NewFile(uintptr(pair[0]), "spawner")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return fail(fmt.Errorf("spawner socket: %w", err))
		}
		ours = append(ours, c.(*net.UnixConn))
	}
	cmd := exec.Command(s.exe, sandboxinit.SpawnerArg, strconv.Itoa(n))
	cmd.ExtraFiles = theirs // fds 3 on
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("starting the spawner: %w", err))
	}
	go func() { _ = cmd.Wait() }()
	s.gen++
	s.all = ours
	s.conns = make(chan *net.UnixConn, n)
	for _, c := range ours {
		s.conns <- c
	}
	return nil
}

// close ends the helper; inits it started keep running.
func (s *spawner) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

// stopLocked closes the helper's sockets, which ends it. A spawn holding
// one fails on it; the next starts a new helper.
func (s *spawner) stopLocked() {
	for _, c := range s.all {
		_ = c.Close()
	}
	if s.conns != nil {
		close(s.conns)
	}
	s.all, s.conns = nil, nil
	s.gen++
}
