// Package agent is envd, the in-sandbox agent. It runs inside the sandbox as
// PID 1 of its pid namespace and serves, over the daemon's socket, the envd
// HTTP endpoints (/health, /envs, /init, /metrics), the process.Process
// Connect service, the routes other packages mount (filesystem.Filesystem,
// /files), the code-interpreter handler (requests with E2b-Sandbox-Port
// 49999), and port forwarding (HTTP CONNECT to a loopback port inside the
// sandbox). For code inside the sandbox it also serves envd and the code
// interpreter where E2B has them, on TCP ports 49983 and 49999.
//
// It imports nothing server-only: only the generated wire code, errdefs and
// its own subpackages.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/sandpit-dev/sandpit/gen/proto/process/processconnect"
	"github.com/sandpit-dev/sandpit/internal/agent/process"
	"github.com/sandpit-dev/sandpit/internal/agent/settings"
)

// InterpreterPort is the E2b-Sandbox-Port of code-interpreter traffic.
const InterpreterPort = "49999"

// maxProcessMessageBytes bounds one message of the process service (after
// decompression): a command with its environment, or one piece of stdin
// (the SDKs send sendStdin's data as one message).
const maxProcessMessageBytes = 16 << 20

// The ports E2B's envd and code interpreter listen on inside a sandbox, on
// every address; code and tools in the sandbox expect them there (see
// Listeners).
const (
	EnvdListenPort        = 49983
	InterpreterListenPort = 49999
)

// Config configures an Agent. Only Logger has a fallback (discard);
// everything else may be zero.
type Config struct {
	// AccessToken, when set, is required as X-Access-Token (see §3.1 of the
	// wire spec for the exceptions).
	AccessToken string
	// Env is the sandbox-global environment (served at /envs, given to
	// every process).
	Env map[string]string
	// DefaultUser runs processes that name no user ("user" when empty).
	DefaultUser string
	// DefaultWorkdir is the default cwd and the base of relative paths (the
	// user's home when empty).
	DefaultWorkdir string
	Logger         *slog.Logger

	// Interpreter serves requests whose E2b-Sandbox-Port is 49999 (the
	// code-interpreter API); nil answers them 404. The agent does not check
	// the access token for it (upstream's interpreter does no auth either).
	Interpreter http.Handler
	// Mounts add routes to the envd side (filesystem.Filesystem, /files).
	Mounts []Mount
}

// Deps is what the agent hands a Mount.
type Deps struct {
	Logger *slog.Logger
	// Settings are the live env, token, default user and workdir (POST
	// /init changes them).
	Settings *settings.Settings
}

// Route is one handler on the envd side.
type Route struct {
	// Pattern is an http.ServeMux pattern, e.g. "/filesystem.Filesystem/"
	// (as returned by the generated New...Handler) or "/files".
	Pattern string
	Handler http.Handler
	// OwnAuth means the handler checks the access token itself (e.g.
	// /files, which also accepts signatures); the agent then lets requests
	// through without X-Access-Token. Use Settings.CheckToken.
	OwnAuth bool
}

// Mount builds routes once the agent's dependencies exist, e.g.
//
//	func(d agent.Deps) []agent.Route {
//		path, h := filesystemconnect.NewFilesystemHandler(fs.New(d.Settings, d.Logger))
//		return []agent.Route{{Pattern: path, Handler: h}}
//	}
type Mount func(Deps) []Route

// Agent is envd. Create it with New; it is an http.Handler.
type Agent struct {
	logger      *slog.Logger
	settings    *settings.Settings
	reaper      *process.Reaper
	processes   *process.Service
	mux         *http.ServeMux
	interpreter http.Handler
	metrics     *metricsSampler
	tunnels     *tunnels
	closeOnce   sync.Once
	closeErr    error
}

var _ http.Handler = (*Agent)(nil)

// New builds the agent and starts its child reaper. Close releases it
// (Serve does so when it returns). It marks every inherited descriptor
// (3 and up) close-on-exec, so pass the listener to Serve as a net.Listener
// (net.FileListener dups it) rather than relying on a raw descriptor number.
// Processes get an environment built from Config alone, never the agent's.
func New(cfg Config) *Agent {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Agent{
		logger: logger,
		settings: settings.New(settings.Values{
			Env:            cfg.Env,
			AccessToken:    cfg.AccessToken,
			DefaultUser:    cfg.DefaultUser,
			DefaultWorkdir: cfg.DefaultWorkdir,
		}),
		mux:         http.NewServeMux(),
		interpreter: cfg.Interpreter,
		metrics:     &metricsSampler{},
		tunnels:     newTunnels(),
	}
	if err := process.CloseOnExecInherited(); err != nil {
		logger.Warn("inherited descriptors may leak into processes", "err", err)
	}
	a.reaper = process.NewReaper(logger.With("logger", "reaper"))
	a.processes = process.New(process.Config{
		Logger:   logger.With("logger", "processSvc"),
		Settings: a.settings,
		Reaper:   a.reaper,
	})

	a.mux.Handle("GET /health", http.HandlerFunc(a.health))
	a.mux.Handle("POST /init", http.HandlerFunc(a.init))
	a.mux.Handle("GET /envs", a.authed(http.HandlerFunc(a.envs)))
	a.mux.Handle("GET /metrics", a.authed(http.HandlerFunc(a.serveMetrics)))
	// The SDKs expect uncompressed responses (wire spec §4.1). A larger
	// message than maxProcessMessageBytes is refused (resource_exhausted)
	// before it is read, so a client cannot make the agent hold it.
	a.mux.Handle("/"+processconnect.ProcessName+"/", a.authed(LazyHandler(func() http.Handler {
		_, h := a.processes.Handler(connect.WithCompression("gzip", nil, nil), connect.WithReadMaxBytes(maxProcessMessageBytes))
		return h
	})))
	deps := Deps{Logger: logger, Settings: a.settings}
	for _, m := range cfg.Mounts {
		for _, r := range m(deps) {
			h := r.Handler
			if !r.OwnAuth {
				h = a.authed(h)
			}
			a.mux.Handle(r.Pattern, h)
		}
	}
	a.mux.Handle("/", a.authed(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not found")
	})))
	return a
}

// LazyHandler is an http.Handler that build makes at its first request.
// Making a Connect service's handler resolves the service's protobuf
// descriptors: at start that was a fifth of the agent's CPU before it
// could answer, which every create waited for and which a sandbox that
// never calls the service paid for nothing.
func LazyHandler(build func() http.Handler) http.Handler {
	get := sync.OnceValue(build)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { get().ServeHTTP(w, r) })
}

// Settings returns the agent's live settings (for handlers built outside
// Config.Mounts, such as an interpreter that needs the env).
func (a *Agent) Settings() *settings.Settings { return a.settings }

// Reaper returns the agent's child reaper. Anything else in the agent's OS
// process that starts children must do so through it (Reaper.Start), never
// with exec.Cmd.Wait, which would race with it.
func (a *Agent) Reaper() *process.Reaper { return a.reaper }

// Handler returns the agent as an http.Handler.
func (a *Agent) Handler() http.Handler { return a }

// ServeHTTP routes a request: CONNECT tunnels, code-interpreter traffic,
// then the envd routes.
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodConnect:
		// No token: only the daemon (root on the host) can reach the
		// agent's socket, and it decides who may reach a sandbox's ports.
		a.tunnel(w, r)
	case r.Header.Get("E2b-Sandbox-Port") == InterpreterPort:
		a.serveInterpreter(w, r)
	default:
		a.mux.ServeHTTP(w, r)
	}
}

// Listeners are where an agent serves.
type Listeners struct {
	// Daemon is the socket the daemon reaches the agent on: every route,
	// code-interpreter traffic (E2b-Sandbox-Port 49999) and CONNECT
	// tunnels included. Required.
	Daemon net.Listener
	// Envd, if not nil, serves envd to code inside the sandbox, as E2B's
	// envd answers on EnvdListenPort: the same routes and token checks, but no
	// CONNECT tunnels (code in the sandbox reaches its ports directly).
	Envd net.Listener
	// Interpreter, if not nil, serves the code interpreter alone, as
	// E2B's answers on InterpreterListenPort.
	Interpreter net.Listener
}

// Serve serves HTTP on ln, the daemon's socket, until ctx is done; see
// ServeListeners.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	return a.ServeListeners(ctx, Listeners{Daemon: ln})
}

// ServeListeners serves HTTP on ls until ctx is done, then stops: open
// streams are cancelled, tunnels closed, and the agent is closed (its
// processes killed). It returns nil after a stop through ctx.
func (a *Agent) ServeListeners(ctx context.Context, ls Listeners) error {
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	type served struct {
		srv *http.Server
		ln  net.Listener
	}
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 30 * time.Second,
			BaseContext:       func(net.Listener) context.Context { return base },
			ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelDebug),
		}
	}
	all := []served{{newServer(a), ls.Daemon}}
	if ls.Envd != nil {
		all = append(all, served{newServer(http.HandlerFunc(a.serveInSandbox)), ls.Envd})
	}
	if ls.Interpreter != nil {
		all = append(all, served{newServer(http.HandlerFunc(a.serveInterpreter)), ls.Interpreter})
	}
	errc := make(chan error, len(all))
	for _, s := range all {
		go func() { errc <- s.srv.Serve(s.ln) }()
	}
	pending := len(all)
	var err error
	select {
	case serr := <-errc:
		pending--
		err = fmt.Errorf("serving envd: %w", serr)
	case <-ctx.Done():
	}
	cancelBase()
	a.tunnels.closeAll()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, s := range all {
		if serr := s.srv.Shutdown(shutdownCtx); serr != nil {
			err = errors.Join(err, serr, s.srv.Close())
		}
	}
	for ; pending > 0; pending-- {
		if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
	}
	if cerr := a.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		return fmt.Errorf("stopping envd: %w", err)
	}
	return nil
}

// serveInSandbox serves envd to code inside the sandbox.
func (a *Agent) serveInSandbox(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		writeError(w, http.StatusMethodNotAllowed, "CONNECT tunnels are for the daemon's socket")
		return
	}
	a.ServeHTTP(w, r)
}

// serveInterpreter serves the code interpreter to code inside the sandbox.
func (a *Agent) serveInterpreter(w http.ResponseWriter, r *http.Request) {
	if a.interpreter == nil {
		writeError(w, http.StatusNotFound, "no code interpreter in this sandbox")
		return
	}
	a.interpreter.ServeHTTP(w, r)
}

// Close kills the agent's processes, closes its tunnels and stops the
// reaper. Idempotent.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		a.tunnels.closeAll()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.closeErr = a.processes.Close(ctx)
		a.reaper.Close()
	})
	return a.closeErr
}
