package interp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"sync"
	"time"
)

// Config configures a Server. The zero value of every field but Logger has
// a default.
type Config struct {
	// Logger receives the server's logs. Required.
	Logger *slog.Logger
	// Env returns the sandbox's global environment variables (from the
	// template and the agent's /init). It is read when a kernel starts and
	// before every execution, so later changes reach running kernels. Nil
	// means the agent's own environment.
	Env func() map[string]string
	// User is the user kernels run as when the server runs as root (inside
	// a sandbox: "root", as in E2B's code-interpreter template). Empty, or
	// a server not running as root, means the current user.
	User string
	// Workdir is the working directory of contexts created without a cwd.
	// Default: the kernel user's home directory.
	Workdir string
	// Python is the interpreter with ipykernel. Default /usr/bin/python3.
	Python string
	// Node is the Node.js binary for JavaScript and TypeScript. Default
	// /usr/bin/node.
	Node string
	// Bash is the shell for bash contexts. Default /bin/bash.
	Bash string
	// R is the R binary; R contexts need IRkernel. Default /usr/bin/R.
	R string
	// TypeScript is the directory of the typescript npm package used to
	// strip types (of every TypeScript cell, and of JavaScript cells that
	// use TypeScript syntax). Default /usr/share/nodejs/typescript (Debian's
	// node-typescript); TypeScript is unavailable when it is missing.
	TypeScript string
	// Spares is the number of warm spare kernels kept per language, so
	// that a new context, a restart or a recovery does not wait for a
	// kernel start. Nil means one Python spare; a language absent from the
	// map has none. Spares start with the first request, so an idle
	// sandbox holds only its default kernel.
	Spares map[string]int
	// TempDir holds kernels' private directories. Default os.TempDir().
	TempDir string
	// StartTimeout bounds a kernel start. Default 60s.
	StartTimeout time.Duration
	// InterruptGrace is how long an interrupted execution may take to stop
	// before its kernel is killed and restarted. Default 5s.
	InterruptGrace time.Duration
	// Keepalive is the silence after which /execute writes a keepalive
	// line. Default 5s.
	Keepalive time.Duration
	// StartProcess starts a kernel process; the caller of the Server waits
	// for it with cmd.Wait. Nil means cmd.Start. The agent, which reaps
	// orphans as PID 1, passes its reaper's StartCmd so that it leaves
	// kernels to this package.
	StartProcess func(cmd *exec.Cmd) error
}

func (c *Config) setDefaults(id identity) {
	if c.Workdir == "" {
		c.Workdir = id.home
	}
	if c.Python == "" {
		c.Python = "/usr/bin/python3"
	}
	if c.Node == "" {
		c.Node = "/usr/bin/node"
	}
	if c.Bash == "" {
		c.Bash = "/bin/bash"
	}
	if c.R == "" {
		c.R = "/usr/bin/R"
	}
	if c.TypeScript == "" {
		c.TypeScript = "/usr/share/nodejs/typescript"
	}
	if c.Spares == nil {
		c.Spares = map[string]int{langPython: 1}
	}
	if c.TempDir == "" {
		c.TempDir = os.TempDir()
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 60 * time.Second
	}
	if c.InterruptGrace == 0 {
		c.InterruptGrace = 5 * time.Second
	}
	if c.Keepalive == 0 {
		c.Keepalive = 5 * time.Second
	}
}

// Server serves the code-interpreter HTTP API. Create it with New; it is
// ready to serve at once (the default contexts' kernels start in the
// background, and the first execution waits for its own). Close stops it.
type Server struct {
	log  *slog.Logger
	cfg  Config
	id   identity
	mux  *http.ServeMux
	pool *pool

	closing    chan struct{}  // closed by Close: ends kernel starts and background work
	bg         sync.WaitGroup // background goroutines (context attachments)
	fillSpares sync.Once
	// defaultStarted is closed once the default contexts' kernel starts
	// ended (successfully or not).
	defaultStarted chan struct{}

	mu       sync.Mutex
	closed   bool
	contexts map[string]*execContext
	defaults map[string]*execContext // default context per language
}

// New creates a Server and starts the kernels of the default contexts in
// the background.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		return nil, errors.New("interp: Config.Logger is required")
	}
	id, err := resolveIdentity(cfg.User)
	if err != nil {
		return nil, fmt.Errorf("interp: %w", err)
	}
	cfg.setDefaults(id)
	s := &Server{
		log:      cfg.Logger,
		cfg:      cfg,
		id:       id,
		contexts: map[string]*execContext{},
		defaults: map[string]*execContext{},
	}
	s.closing = make(chan struct{})
	s.pool = newPool(s.startKernel, cfg.Spares)
	s.routes()

	// The default contexts, as E2B starts them: Python, and JavaScript
	// where Node is installed. Their kernels start one after the other
	// (Python first: most first executions are Python), then the spares.
	py := s.newDefaultContext(langPython)
	var js *execContext
	if s.supported(langJavaScript) == nil {
		js = s.newDefaultContext(langJavaScript)
	}
	s.defaultStarted = make(chan struct{})
	s.attachInBackground(py, func() {
		if js == nil {
			close(s.defaultStarted)
			return
		}
		s.attachInBackground(js, func() { close(s.defaultStarted) })
	})
	return s, nil
}

// ServeHTTP serves /execute, /contexts and /health.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/health" {
		// The sandbox is in use: warm the spares (after the default
		// kernels, so that two kernels do not start at once).
		s.fillSpares.Do(func() {
			s.background(func() {
				select {
				case <-s.defaultStarted:
					s.pool.fill()
				case <-s.closing:
				}
			})
		})
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /execute", s.handleExecute)
	s.mux.HandleFunc("POST /contexts", s.handleCreateContext)
	s.mux.HandleFunc("GET /contexts", s.handleListContexts)
	s.mux.HandleFunc("DELETE /contexts/{id}", s.handleDeleteContext)
	s.mux.HandleFunc("POST /contexts/{id}/restart", s.handleRestartContext)
	s.mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, "OK")
	})
}

// Close stops every kernel and background goroutine, waiting for them
// until ctx is done. Executions in progress end with an error line. Close
// may be called more than once.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	cs := make([]*execContext, 0, len(s.contexts))
	for _, c := range s.contexts {
		cs = append(cs, c)
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, c := range cs {
			c.shutdown()
		}
		s.bg.Wait()
		s.pool.close()
		// Kernels attached while the contexts above were shutting down.
		for _, c := range cs {
			c.shutdown()
		}
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("interp: closing: %w", ctx.Err())
	}
}

// background runs f in a goroutine that Close waits for, unless the Server
// is closing.
func (s *Server) background(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		f()
	}()
}

// supported reports whether lang has a kernel on this machine.
func (s *Server) supported(lang string) error {
	var bin string
	switch lang {
	case langPython:
		bin = s.cfg.Python
	case langJavaScript:
		bin = s.cfg.Node
	case langTypeScript:
		if _, err := os.Stat(s.cfg.TypeScript); err != nil {
			return fmt.Errorf("%w: typescript needs the typescript package (Debian node-typescript)", errUnsupportedLanguage)
		}
		bin = s.cfg.Node
	case langBash:
		bin = s.cfg.Bash
	case langR:
		bin = s.cfg.R
	default:
		return fmt.Errorf("%w: %q", errUnsupportedLanguage, lang)
	}
	if _, err := exec.LookPath(bin); err != nil {
		return fmt.Errorf("%w: %s is not installed", errUnsupportedLanguage, lang)
	}
	return nil
}

// lifetime returns a context that is canceled when the Server closes.
func (s *Server) lifetime() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// startKernel starts a fresh kernel for lang with the current global env.
func (s *Server) startKernel(lang string) (*handle, error) {
	ctx, cancel := s.lifetime()
	defer cancel()
	env := s.globalEnv()
	o := kernelOpts{
		log:            s.log.With("language", lang),
		id:             s.id,
		env:            s.kernelEnv(env),
		dir:            s.cfg.Workdir,
		tmp:            s.cfg.TempDir,
		startTimeout:   s.cfg.StartTimeout,
		interruptGrace: s.cfg.InterruptGrace,
		start:          s.cfg.StartProcess,
	}
	if _, err := os.Stat(o.dir); err != nil {
		o.dir = "/"
	}
	started := time.Now()
	var (
		k   kernel
		err error
	)
	switch lang {
	case langPython:
		k, err = startJupyter(ctx, pythonSpec(s.cfg.Python), o)
	case langR:
		k, err = startJupyter(ctx, rSpec(s.cfg.R), o)
	case langJavaScript, langTypeScript:
		// JavaScript cells with TypeScript syntax (import type) are
		// stripped too, as E2B's JavaScript kernel does.
		ts := s.cfg.TypeScript
		if _, err := os.Stat(ts); err != nil {
			ts = ""
		}
		k, err = startNode(ctx, s.cfg.Node, lang, ts, o)
	case langBash:
		k, err = startBash(ctx, s.cfg.Bash, o)
	default:
		err = fmt.Errorf("%w: %q", errUnsupportedLanguage, lang)
	}
	if err != nil {
		return nil, fmt.Errorf("starting %s kernel: %w", lang, err)
	}
	s.log.Debug("kernel started", "language", lang, "duration", time.Since(started))
	return &handle{kernel: k, lang: lang, env: env}, nil
}

func (s *Server) globalEnv() map[string]string {
	if s.cfg.Env != nil {
		env := s.cfg.Env()
		out := make(map[string]string, len(env))
		for k, v := range env {
			out[k] = v
		}
		return out
	}
	return nil
}

// kernelEnv is the process environment of a new kernel: the agent's own
// environment (or sensible defaults when Env is set), the kernel user's
// identity, then the global env.
func (s *Server) kernelEnv(global map[string]string) []string {
	m := map[string]string{}
	if s.cfg.Env == nil {
		for _, kv := range os.Environ() {
			for i := 0; i < len(kv); i++ {
				if kv[i] == '=' {
					m[kv[:i]] = kv[i+1:]
					break
				}
			}
		}
	} else {
		m["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
		m["LANG"] = "C.UTF-8"
		m["SHELL"] = "/bin/bash"
	}
	if s.id.cred != nil || s.cfg.Env != nil {
		m["HOME"] = s.id.home
		m["USER"] = s.id.name
		m["LOGNAME"] = s.id.name
	}
	for k, v := range global {
		m[k] = v
	}
	// Figures are shown inline as PNG, whatever the environment says.
	m["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
	env := make([]string, 0, len(m))
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}
