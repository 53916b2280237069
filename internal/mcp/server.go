// Package mcp serves sandpit's sandboxes to MCP clients (Claude Desktop,
// IDEs, agent frameworks) as tools and resources: create a sandbox, run code
// and commands in it, read, write and list its files, kill it. It is built on
// the official MCP Go SDK and drives the daemon through sandpit's public Go
// SDK, the same client for both transports: stdio (`sandpit mcp`, one
// session, any daemon) and streamable HTTP at the daemon's /mcp (a session
// per client, each acting for the API key that opened it).
package mcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// Defaults of Config.
const (
	// DefaultTemplate has the code interpreter warm, so run_code works in
	// the sandboxes the server creates unless a client asks otherwise.
	DefaultTemplate = "code-interpreter-v1"
	// DefaultMaxOutput bounds each stream of output a tool returns.
	DefaultMaxOutput = 16 << 10
	// DefaultSessionSandboxTimeout is the lifetime of a session's sandbox
	// between two uses: each use extends it, so a session that ends without
	// saying so (a client killed) leaves nothing for longer than this.
	DefaultSessionSandboxTimeout = 15 * time.Minute
)

// Config is what New needs. Client is required.
type Config struct {
	// Client reaches the daemon; every tool acts as its API key's team.
	Client *sandpit.Client
	// Logger receives what goes wrong outside a tool's answer (nil: none).
	Logger *slog.Logger
	// Version is reported to clients as the server's version.
	Version string
	// Template is the template of sandboxes created without one.
	Template string
	// MaxOutput is the most bytes of each output (stdout, stderr, a file)
	// a tool returns; the rest is cut from the middle, with a note.
	MaxOutput int
	// SessionSandboxTimeout is the idle lifetime of the session sandbox.
	SessionSandboxTimeout time.Duration
}

func (c *Config) setDefaults() error {
	if c.Client == nil {
		return errors.New("mcp: Config.Client is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Template == "" {
		c.Template = DefaultTemplate
	}
	if c.MaxOutput <= 0 {
		c.MaxOutput = DefaultMaxOutput
	}
	if c.SessionSandboxTimeout <= 0 {
		c.SessionSandboxTimeout = DefaultSessionSandboxTimeout
	}
	return nil
}

// Server is one MCP session's view of sandpit: the MCP server with the
// tools and resources, and the session's state (its sandbox, the handles
// on sandboxes it has used, named code contexts). A Server serves one
// session; the HTTP handler makes one per session.
type Server struct {
	cfg Config
	srv *mcp.Server

	mu sync.Mutex
	// session is the sandbox calls without sandbox_id use; nil until the
	// first such call.
	session *sandpit.Sandbox
	// sessionTouched is when the session sandbox's timeout was last
	// extended.
	sessionTouched time.Time
	// handles are the sandboxes the session has reached, by ID, so a call
	// does not connect anew each time.
	handles map[string]*sandpit.Sandbox
	// contexts are the named code contexts, by sandbox ID and name.
	contexts map[[2]string]sandpit.CodeContext
}

// New returns a Server for one session.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		handles:  map[string]*sandpit.Sandbox{},
		contexts: map[[2]string]sandpit.CodeContext{},
	}
	s.srv = mcp.NewServer(&mcp.Implementation{Name: "sandpit", Title: "sandpit sandboxes", Version: cfg.Version},
		&mcp.ServerOptions{Instructions: instructions, Logger: cfg.Logger})
	s.addTools()
	s.addResources()
	return s, nil
}

// instructions tell the client's model how the tools fit together.
const instructions = `sandpit runs code in isolated Linux sandboxes (Debian userland, Python 3, bash). ` +
	`Tools that take sandbox_id use this session's own sandbox when it is left out: it is created on first use ` +
	`and killed when the session ends. Use create_sandbox only for extra or differently configured sandboxes, ` +
	`and kill_sandbox when done with them. Files in a sandbox are also resources: sandbox://SANDBOX_ID/PATH.`

// MCP returns the MCP server, for a transport to run.
func (s *Server) MCP() *mcp.Server { return s.srv }

// Run serves one session over t (e.g. &mcp.StdioTransport{}) until it
// ends or ctx is done, then kills the session sandbox.
func (s *Server) Run(ctx context.Context, t mcp.Transport) error {
	err := s.srv.Run(ctx, t)
	s.Close()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// Close kills the session sandbox, if any. The session's other sandboxes
// (create_sandbox's) live on until their timeout or kill_sandbox. Closing
// twice is fine.
func (s *Server) Close() {
	s.mu.Lock()
	sb := s.session
	s.session = nil
	s.mu.Unlock()
	if sb == nil {
		return
	}
	if err := sb.Close(); err != nil {
		s.cfg.Logger.Warn("killing the MCP session's sandbox", "sandbox_id", sb.ID, "err", err)
	}
}

// sandbox returns the handle on the sandbox id names, or on the session
// sandbox when id is empty (creating it on first use; ss, when not nil, is
// the session whose end kills it).
func (s *Server) sandbox(ctx context.Context, ss *mcp.ServerSession, id string) (*sandpit.Sandbox, error) {
	if id == "" {
		return s.sessionSandbox(ctx, ss)
	}
	s.mu.Lock()
	sb, ok := s.handles[id]
	s.mu.Unlock()
	if ok {
		return sb, nil
	}
	sb, err := s.cfg.Client.Connect(ctx, id)
	if err != nil {
		return nil, sandboxError(id, err)
	}
	s.mu.Lock()
	s.handles[id] = sb
	s.mu.Unlock()
	return sb, nil
}

// sessionSandbox returns the session's sandbox, creating it on first use
// and extending its life on later ones.
func (s *Server) sessionSandbox(ctx context.Context, ss *mcp.ServerSession) (*sandpit.Sandbox, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sb := s.session; sb != nil {
		// Extend at most once a minute: each extension is a request.
		if time.Since(s.sessionTouched) > time.Minute {
			if err := sb.SetTimeout(ctx, s.cfg.SessionSandboxTimeout); err != nil {
				if errors.Is(err, sandpit.ErrNotFound) {
					// It timed out or was killed: start a fresh one.
					s.session = nil
					return s.createSessionSandbox(ctx, ss)
				}
				return nil, sandboxError(sb.ID, err)
			}
			s.sessionTouched = time.Now()
		}
		return sb, nil
	}
	return s.createSessionSandbox(ctx, ss)
}

// createSessionSandbox starts the session sandbox.
// Preconditions: s.mu is held and s.session is nil.
func (s *Server) createSessionSandbox(ctx context.Context, ss *mcp.ServerSession) (*sandpit.Sandbox, error) {
	sb, err := s.cfg.Client.Create(ctx, sandpit.WithTemplate(s.cfg.Template),
		sandpit.WithTimeout(s.cfg.SessionSandboxTimeout),
		sandpit.WithMetadata(map[string]string{"created_by": "mcp", "mcp_session": "true"}))
	if err != nil {
		return nil, fmt.Errorf("creating this session's sandbox (template %s): %w", s.cfg.Template, err)
	}
	s.session, s.sessionTouched = sb, time.Now()
	s.handles[sb.ID] = sb
	if ss != nil {
		// The session owns its sandbox: when it ends (the client said
		// goodbye, or it timed out) the sandbox goes too.
		go func() {
			_ = ss.Wait()
			s.Close()
		}()
	}
	return sb, nil
}

// forget drops what the session holds of a sandbox that is gone.
func (s *Server) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.handles, id)
	for k := range s.contexts {
		if k[0] == id {
			delete(s.contexts, k)
		}
	}
	if s.session != nil && s.session.ID == id {
		s.session = nil
	}
}

// sandboxError says what a client can do about a sandbox it cannot reach.
func sandboxError(id string, err error) error {
	if errors.Is(err, sandpit.ErrNotFound) {
		return fmt.Errorf("no sandbox %q: it may have timed out or been killed; create one with create_sandbox, "+
			"or leave sandbox_id out to use this session's sandbox", id)
	}
	return fmt.Errorf("reaching sandbox %s: %w", id, err)
}
