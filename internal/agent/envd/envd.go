// Package envd is the in-sandbox agent's program: it takes the config and
// sockets the sandbox's init hands over and serves envd, the files API and
// the code interpreter until the sandbox ends.
package envd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/gen/proto/filesystem/filesystemconnect"
	"github.com/sandpit-dev/sandpit/internal/agent"
	"github.com/sandpit-dev/sandpit/internal/agent/files"
	"github.com/sandpit-dev/sandpit/internal/agent/filesystem"
	"github.com/sandpit-dev/sandpit/internal/agent/settings"
	"github.com/sandpit-dev/sandpit/internal/agent/users"
	"github.com/sandpit-dev/sandpit/internal/interp"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux/sandboxinit"
	"github.com/sandpit-dev/sandpit/internal/safepath"
)

// Main runs the in-sandbox agent as the sandbox's first process. The init
// hands it its configuration in the environment, the listening socket and
// the control socket as descriptors.
func Main() error {
	// The init starts the agent with a real user id apart from its
	// effective one (sandboxinit's reserveTasks), which the Go runtime
	// takes for a set-user-id start and answers with GOTRACEBACK=none: a
	// crash would leave no stack in the sandbox's log.
	debug.SetTraceback("single")
	raw := os.Getenv(sandboxinit.EnvdConfigEnv)
	if raw == "" {
		return errors.New("envd runs inside a sandbox; the daemon starts it")
	}
	os.Unsetenv(sandboxinit.EnvdConfigEnv)
	for _, kv := range sandboxinit.AgentRuntimeEnv { // the runtime has read them
		os.Unsetenv(strings.SplitN(kv, "=", 2)[0])
	}
	var cfg sandboxinit.EnvdConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return fmt.Errorf("decoding agent config: %w", err)
	}
	// Our stderr is a pipe the daemon reads, which closes when the daemon
	// stops while the sandbox lives on. A log line must then fail with
	// EPIPE rather than end the agent: Go kills a program writing to a
	// broken pipe on fd 2 unless SIGPIPE is notified. (A handler, unlike
	// SIG_IGN, does not pass to the processes the agent starts.)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	// JSON, so the daemon can keep the lines as the sandbox's log entries
	// (level, message, fields), as E2B's envd logs JSON.
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: utcTime}))
	if err := checkReserved(cfg.PidsMax); err != nil {
		// The sandbox still works; only a fork bomb may now end it.
		log.Warn("the agent keeps no room for itself below the sandbox's task limit", "err", err)
	}
	ln, err := net.FileListener(os.NewFile(sandboxinit.ListenerFD, "envd-listener"))
	if err != nil {
		return fmt.Errorf("agent listener: %w", err)
	}
	root, err := safepath.Open("/")
	if err != nil {
		return fmt.Errorf("opening the sandbox root: %w", err)
	}
	ci := &interpreter{cfg: cfg, log: log}
	fr := &fileRoutes{root: root, log: log}
	a := agent.New(agent.Config{
		AccessToken:    cfg.AccessToken,
		Env:            cfg.Env,
		DefaultUser:    cfg.DefaultUser,
		DefaultWorkdir: cfg.DefaultWorkdir,
		Logger:         log,
		Interpreter:    ci,
		Mounts:         []agent.Mount{fr.mount},
	})
	ci.agent = a
	if cfg.Interpreter {
		go ci.server() // warm the kernels while the first request is on its way
	}
	if _, err := unix.Write(sandboxinit.ControlFD, []byte("ok")); err != nil {
		return fmt.Errorf("telling the daemon the agent is up: %w", err)
	}
	unix.Close(sandboxinit.ControlFD)
	log.Info("envd started", "user", cfg.DefaultUser)
	// Start-up leaves a megabyte of garbage that an idle agent would keep
	// for ever (the first collection comes at 4 MB of heap), and a host
	// holds thousands of idle agents. Collect it off the create path and
	// give the pages back; and again whenever the agent falls quiet after
	// work (memory.go).
	release := newReleaser(releaseAfter, releaseQuiet, nil)
	defer release.stop()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err = a.ServeListeners(ctx, agent.Listeners{
		Daemon:      release.listener(ln),
		Envd:        release.listener(listenInSandbox(log, agent.EnvdListenPort)),
		Interpreter: release.listener(listenInSandbox(log, agent.InterpreterListenPort)),
	})
	ci.close()
	fr.close()
	return err
}

// utcTime logs times in UTC: a time in the local zone would have the
// agent load the zone file at every start, to format its first line.
func utcTime(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey && len(groups) == 0 {
		a.Value = slog.TimeValue(a.Value.Time().UTC())
	}
	return a
}

// releaseAfter is how long after start the agent returns its start-up
// memory: after the create and the first requests it usually serves.
// releaseQuiet is how long it must then be quiet to return what a spell
// of work left (memory.go): long enough that an agent driven by a model,
// which thinks for seconds between commands, is not collected after each.
const (
	releaseAfter = 2 * time.Second
	releaseQuiet = 10 * time.Second
)

// listenInSandbox listens on port in the sandbox's network namespace, for
// code in the sandbox. A port the template already uses is logged and left
// to it: the daemon does not need these listeners.
func listenInSandbox(log *slog.Logger, port int) net.Listener {
	ln, err := listenAll(port)
	if err != nil {
		log.Warn("envd and the code interpreter are not reachable inside the sandbox on this port", "port", port, "err", err)
		return nil
	}
	return ln
}

// listenAll is net.Listen("tcp", ":port") without what the net package
// learns at its first listen (whether the kernel has IPv6 and multipath
// TCP, probed with sockets of each kind, and the backlog limit read from
// /proc), which at every sandbox's start cost a thirtieth of the agent's
// CPU. Like net.Listen it takes IPv4 and IPv6 on one socket, and IPv4
// alone where the kernel has no IPv6.
func listenAll(port int) (net.Listener, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: port}
	if err == unix.EAFNOSUPPORT {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		sa = &unix.SockaddrInet4{Port: port}
	}
	if err != nil {
		return nil, fmt.Errorf("socket for port %d: %w", port, err)
	}
	f := os.NewFile(uintptr(fd), "tcp:"+strconv.Itoa(port))
	defer f.Close() // FileListener keeps a duplicate
	if _, v6 := sa.(*unix.SockaddrInet6); v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return nil, fmt.Errorf("taking IPv4 on port %d too: %w", port, err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return nil, fmt.Errorf("listening on port %d: %w", port, err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("binding port %d: %w", port, err)
	}
	// The kernel caps the backlog at net.core.somaxconn.
	if err := unix.Listen(fd, 4096); err != nil {
		return nil, fmt.Errorf("listening on port %d: %w", port, err)
	}
	return net.FileListener(f)
}

// fileRoutes mounts the filesystem service and /files on the agent.
type fileRoutes struct {
	root *safepath.Root
	log  *slog.Logger
	fs   *filesystem.Service
}

func (f *fileRoutes) mount(d agent.Deps) []agent.Route {
	fs, err := filesystem.New(filesystem.Config{Root: f.root, Settings: d.Settings, Logger: f.log})
	if err != nil {
		f.log.Error("filesystem service", "err", err)
		return nil
	}
	fh, err := files.New(files.Config{Root: f.root, Settings: d.Settings, Logger: f.log})
	if err != nil {
		f.log.Error("files handler", "err", err)
		return nil
	}
	f.fs = fs
	h := agent.LazyHandler(func() http.Handler {
		_, h := fs.Handler()
		return h
	})
	return []agent.Route{{Pattern: "/" + filesystemconnect.FilesystemName + "/", Handler: h}, {Pattern: files.Pattern, Handler: fh, OwnAuth: true}}
}

// close ends the polled watchers.
func (f *fileRoutes) close() {
	if f.fs != nil {
		_ = f.fs.Close()
	}
	_ = f.root.Close()
}

// interpreter starts the code-interpreter server on first use (or at once
// for code-interpreter templates): idle kernels cost tens of megabytes, which
// a sandbox that never runs code should not pay.
type interpreter struct {
	cfg   sandboxinit.EnvdConfig
	log   *slog.Logger
	agent *agent.Agent

	once sync.Once
	srv  *interp.Server
	err  error
}

func (c *interpreter) server() (*interp.Server, error) {
	c.once.Do(func() {
		live := c.agent.Settings()
		c.srv, c.err = interp.New(interp.Config{
			Logger: c.log,
			Env:    func() map[string]string { return live.Get().Env },
			// As in E2B's code-interpreter template, kernels run as root
			// and start in the default user's working directory.
			User:         "root",
			Workdir:      interpreterWorkdir(c.cfg),
			StartProcess: c.agent.Reaper().StartCmd,
		})
		if c.err != nil {
			c.log.Error("code interpreter", "err", c.err)
		}
	})
	return c.srv, c.err
}

// interpreterWorkdir is where contexts start: the template's workdir, else
// the default user's home.
func interpreterWorkdir(cfg sandboxinit.EnvdConfig) string {
	if cfg.DefaultWorkdir != "" {
		return cfg.DefaultWorkdir
	}
	name := cfg.DefaultUser
	if name == "" {
		name = settings.DefaultUser
	}
	if u, err := users.Lookup(name); err == nil && u.Home != "" {
		return u.Home
	}
	return "/"
}

func (c *interpreter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	srv, err := c.server()
	if err != nil {
		http.Error(w, "the code interpreter cannot start in this sandbox", http.StatusServiceUnavailable)
		return
	}
	srv.ServeHTTP(w, r)
}

func (c *interpreter) close() {
	c.once.Do(func() {}) // waits for a start in flight; none starts after
	if c.srv != nil {
		_ = c.srv.Close(context.Background())
	}
}
