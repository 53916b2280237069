// Package filesystem implements envd's filesystem.Filesystem Connect
// service: stat, make dir, move, list, remove, and directory watching, both
// streamed (WatchDir) and polled (CreateWatcher/GetWatcherEvents/
// RemoveWatcher). Every path is resolved inside the sandbox root through
// internal/safepath, as the user named by the request's Basic auth (else the
// sandbox's default user), whose home anchors "~" and relative paths.
package filesystem

import (
	"errors"
	"log/slog"
	"net/http"
	"sync"

	"connectrpc.com/connect"

	"github.com/sandpit-dev/sandpit/gen/proto/filesystem/filesystemconnect"
	"github.com/sandpit-dev/sandpit/internal/agent/errconnect"
	"github.com/sandpit-dev/sandpit/internal/agent/settings"
	"github.com/sandpit-dev/sandpit/internal/agent/users"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/safepath"
)

// Defaults for Config.
const (
	DefaultMaxWatchers   = 256
	DefaultMaxQueued     = 10000
	DefaultMaxWatchesPer = 8192
)

// Config configures a Service.
type Config struct {
	// Root is the sandbox's root ("/" inside the sandbox); required. The
	// Service does not close it.
	Root *safepath.Root
	// Settings give the default user and workdir; required.
	Settings *settings.Settings
	Logger   *slog.Logger
	// MaxWatchers bounds the polled watchers alive at once
	// (DefaultMaxWatchers when zero).
	MaxWatchers int
	// MaxQueued bounds the events a polled watcher keeps between polls;
	// older ones are dropped first (DefaultMaxQueued when zero).
	MaxQueued int
	// MaxWatchesPer bounds the directories one recursive watch follows
	// (DefaultMaxWatchesPer when zero).
	MaxWatchesPer int
}

// Service implements filesystemconnect.FilesystemHandler.
type Service struct {
	root          *safepath.Root
	settings      *settings.Settings
	logger        *slog.Logger
	maxWatchers   int
	maxQueued     int
	maxWatchesPer int

	mu       sync.Mutex
	watchers map[string]*pollWatcher
	closed   bool
}

var _ filesystemconnect.FilesystemHandler = (*Service)(nil)

// New returns a Service. Close it to stop its polled watchers.
func New(cfg Config) (*Service, error) {
	if cfg.Root == nil || cfg.Settings == nil {
		return nil, errors.New("filesystem: Config.Root and Config.Settings are required")
	}
	s := &Service{
		root:          cfg.Root,
		settings:      cfg.Settings,
		logger:        cfg.Logger,
		maxWatchers:   cfg.MaxWatchers,
		maxQueued:     cfg.MaxQueued,
		maxWatchesPer: cfg.MaxWatchesPer,
		watchers:      map[string]*pollWatcher{},
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.maxWatchers <= 0 {
		s.maxWatchers = DefaultMaxWatchers
	}
	if s.maxQueued <= 0 {
		s.maxQueued = DefaultMaxQueued
	}
	if s.maxWatchesPer <= 0 {
		s.maxWatchesPer = DefaultMaxWatchesPer
	}
	return s, nil
}

// MaxMessageBytes bounds a request message (after decompression): paths
// and watcher ids are short, and a larger message is refused with
// resource_exhausted before it is read, rather than held in the agent's
// memory.
const MaxMessageBytes = 1 << 20

// Handler returns the path and handler to mount (see filesystemconnect).
// Errors leave the handler through errconnect. Responses are never
// compressed (the SDKs expect identity, wire spec §4.1) and requests are
// bounded by MaxMessageBytes; opts come after those defaults and may
// override them.
func (s *Service) Handler(opts ...connect.HandlerOption) (string, http.Handler) {
	opts = append([]connect.HandlerOption{
		connect.WithCompression("gzip", nil, nil),
		connect.WithReadMaxBytes(MaxMessageBytes),
	}, opts...)
	return filesystemconnect.NewFilesystemHandler(s, opts...)
}

// Close stops every polled watcher and waits for their goroutines. Streamed
// watches end with their RPCs. Idempotent; CreateWatcher fails with
// unavailable afterwards.
func (s *Service) Close() error {
	s.mu.Lock()
	s.closed = true
	ws := s.watchers
	s.watchers = map[string]*pollWatcher{}
	s.mu.Unlock()
	for _, w := range ws {
		w.stop()
	}
	return nil
}

// identity is who a request acts as.
type identity struct {
	account  safepath.Account
	workdir  string
	accounts *safepath.Accounts
	// root is the sandbox root as the account: what the user may not do,
	// the request may not either.
	root *safepath.Root
}

// identify resolves the request's user: Basic auth, else the default user.
// An unknown user is unauthenticated, with envd's message.
func (s *Service) identify(h http.Header) (identity, error) {
	name, err := users.FromHeader(h)
	if err != nil {
		return identity{}, err
	}
	v := s.settings.Get()
	if name == "" {
		name = v.DefaultUser
	}
	accts, err := s.root.Accounts()
	if err != nil {
		return identity{}, err
	}
	acct, ok := accts.User(name)
	if !ok {
		return identity{}, errdefs.New(errdefs.ErrUnauthenticated, "error looking up user '"+name+"'")
	}
	return identity{account: acct, workdir: v.WorkdirOf(acct.Name), accounts: accts, root: s.root.As(acct.Cred())}, nil
}

// do runs fn with id's root switched to the user once for all of fn's
// operations (see safepath.Root.Do).
func (id identity) do(fn func(id identity) error) error {
	return id.root.Do(func(r *safepath.Root) error {
		id.root = r
		return fn(id)
	})
}

// resolve turns a client path into a clean absolute path for id.
func (id identity) resolve(p string) (string, error) {
	return safepath.Resolve(p, id.account.Home, id.workdir)
}

// rpcError converts err for the wire and logs what is the agent's fault.
func (s *Service) rpcError(op string, err error) error {
	ce := errconnect.Error(err)
	var cerr *connect.Error
	if errors.As(ce, &cerr) && cerr.Code() == connect.CodeInternal {
		s.logger.Error("filesystem rpc failed", "op", op, "err", err)
	}
	return ce
}
