// Package fake is an in-memory runtime.Runtime for control-plane tests. It
// starts no processes. When given an http.Handler, every sandbox serves that
// handler on a real Unix socket, so tests can drive the proxy path too.
package fake

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/sandboxlog"
)

// Options configure a Fake. The zero value is a runtime whose sandboxes have
// no socket.
type Options struct {
	// Handler, when set, is served on a Unix socket per sandbox
	// (EnvdSocket).
	Handler http.Handler
	// SocketDir holds the sockets; a fresh short temporary directory when
	// empty (Unix socket paths are limited to ~100 bytes).
	SocketDir string
}

// Fake is an in-memory runtime. Its test hooks (Exit, Leave, FailCreate,
// Spec, Kills, Adopts) let a test play the parts of a real runtime.
type Fake struct {
	opts   Options
	exited chan string

	mu        sync.Mutex
	sandboxes map[string]*sandbox
	createErr error
	kills     map[string]int
	adopts    map[string]int
	closed    bool
	ownDir    string // socket dir we created and remove at Close
	pid       int
	hook      func(id string) // see SetHook
}

type sandbox struct {
	paused bool
	// stopped and starts: see stop.go.
	stopped bool
	starts  int
	resumes int
	stats   runtime.Stats
	log     *sandboxlog.Ring
	spec    runtime.Spec
	info    runtime.Sandbox
	server  *http.Server
	ln      net.Listener
}

var (
	_ runtime.Runtime      = (*Fake)(nil)
	_ runtime.EgressSetter = (*Fake)(nil)
	_ runtime.StatsReader  = (*Fake)(nil)
	_ runtime.Pauser       = (*Fake)(nil)
	_ runtime.LogKeeper    = (*Fake)(nil)
	_ runtime.Adopter      = (*Fake)(nil)
)

// New returns a Fake. Close it to stop its socket servers.
func New(opts Options) *Fake {
	return &Fake{
		opts:      opts,
		exited:    make(chan string, 256),
		sandboxes: map[string]*sandbox{},
		kills:     map[string]int{},
		adopts:    map[string]int{},
		pid:       1000,
	}
}

// Create implements runtime.Runtime.
func (f *Fake) Create(ctx context.Context, spec runtime.Spec) (*runtime.Sandbox, error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("creating sandbox %s: %w", spec.ID, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errdefs.New(errdefs.ErrUnavailable, "runtime is closed")
	}
	if err := f.createErr; err != nil {
		f.createErr = nil
		return nil, err
	}
	if spec.ID == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "sandbox id is empty")
	}
	if _, ok := f.sandboxes[spec.ID]; ok {
		return nil, errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("sandbox %s exists", spec.ID))
	}
	f.pid++
	sb := &sandbox{spec: cloneSpec(spec), log: sandboxlog.New()}
	// What a real agent logs first, so tests of the logs API have a line.
	sb.log.Append(sandboxlog.Entry{Level: sandboxlog.LevelInfo, Logger: "envd", Message: "fake agent started"})
	sb.info = runtime.Sandbox{ID: spec.ID, Pid: f.pid}
	prepared := time.Now()
	if f.opts.Handler != nil {
		if err := f.serveLocked(sb); err != nil {
			return nil, err
		}
	}
	sb.info.Created = time.Now()
	sb.info.Stages = []runtime.Stage{
		{Name: "prepare", Duration: prepared.Sub(start)},
		{Name: "start", Duration: sb.info.Created.Sub(prepared)},
	}
	f.sandboxes[spec.ID] = sb
	info := sb.info
	return &info, nil
}

// serveLocked starts sb's socket server. Preconditions: f.mu is held.
func (f *Fake) serveLocked(sb *sandbox) error {
	dir := f.opts.SocketDir
	if dir == "" {
		if f.ownDir == "" {
			d, err := os.MkdirTemp("", "sandpit-fake")
			if err != nil {
				return fmt.Errorf("making socket dir: %w", err)
			}
			f.ownDir = d
		}
		dir = f.ownDir
	}
	path := filepath.Join(dir, sb.spec.ID+".sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", path, err)
	}
	// The goroutine gets its own server: a Start after a Stop replaces
	// sb.server while the old Serve may still be returning.
	srv := &http.Server{Handler: f.opts.Handler, ReadHeaderTimeout: 10 * time.Second}
	sb.ln = ln
	sb.server = srv
	sb.info.EnvdSocket = path
	go func() { _ = srv.Serve(ln) }() // returns when Kill or Close stops the server
	return nil
}

func (sb *sandbox) stop() {
	if sb.server != nil {
		_ = sb.server.Close()
		_ = os.Remove(sb.info.EnvdSocket)
	}
}

// Kill implements runtime.Runtime: idempotent, nil for an unknown id.
func (f *Fake) Kill(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kills[id]++
	sb, ok := f.sandboxes[id]
	if !ok {
		return nil
	}
	delete(f.sandboxes, id)
	sb.stop()
	return nil
}

// List implements runtime.Runtime.
func (f *Fake) List(ctx context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.sandboxes)), nil
}

// Exited implements runtime.Runtime.
func (f *Fake) Exited() <-chan string { return f.exited }

// Close implements runtime.Runtime. Unlike a real runtime it also stops the
// sockets of sandboxes still held, so tests leak nothing; calling it twice
// is fine.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	for _, sb := range f.sandboxes {
		sb.stop()
	}
	if f.ownDir != "" {
		return os.RemoveAll(f.ownDir)
	}
	return nil
}

// Exit simulates sandbox id's first process dying on its own: the sandbox
// stays held (as a real runtime's would until Kill) and its id is delivered
// on Exited. It blocks if 256 exits are undelivered.
func (f *Fake) Exit(id string) {
	f.exited <- id
}

// Leave makes the fake hold a sandbox as if an earlier daemon run had left
// it behind.
func (f *Fake) Leave(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pid++
	f.sandboxes[id] = &sandbox{spec: runtime.Spec{ID: id}, info: runtime.Sandbox{ID: id, Pid: f.pid}, log: sandboxlog.New()}
}

// Adopt implements runtime.Adopter: any sandbox the fake holds (one it
// created, or one Leave left) can be adopted, any number of times, as one
// fake stands for a daemon's runtime before and after a restart; Spec
// then reports the egress policy given. A sandbox it does not hold is
// errdefs.ErrNotFound.
func (f *Fake) Adopt(ctx context.Context, a runtime.Adoption) (*runtime.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.sandboxes[a.ID]
	if !ok {
		return nil, errdefs.New(errdefs.ErrNotFound, "sandbox "+a.ID+" is gone")
	}
	if f.opts.Handler != nil && sb.server == nil {
		if err := f.serveLocked(sb); err != nil {
			return nil, err
		}
	}
	f.adopts[a.ID]++
	sb.spec.Egress = a.Egress
	info := sb.info
	return &info, nil
}

// Adopts counts the Adopt calls that took id.
func (f *Fake) Adopts(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.adopts[id]
}

// SetEgress implements runtime.EgressSetter: Spec reports the new policy.
// Like the Linux runtime, it refuses a sandbox created offline.
func (f *Fake) SetEgress(ctx context.Context, id string, p runtime.EgressPolicy) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.sandboxes[id]
	if !ok {
		return errdefs.New(errdefs.ErrNotFound, "sandbox "+id+" not found")
	}
	if !sb.spec.AllowInternet {
		return errdefs.New(errdefs.ErrConflict, "sandbox "+id+" was created offline")
	}
	sb.spec.Egress = p
	return nil
}

// Stats implements runtime.StatsReader with what SetStats gave.
func (f *Fake) Stats(ctx context.Context, id string) (runtime.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.sandboxes[id]
	if !ok {
		return runtime.Stats{}, errdefs.New(errdefs.ErrNotFound, "sandbox "+id+" not found")
	}
	return sb.stats, nil
}

// Log implements runtime.LogKeeper: a test appends the lines an agent
// would have written.
func (f *Fake) Log(id string) (*sandboxlog.Ring, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.sandboxes[id]
	if !ok {
		return nil, errdefs.New(errdefs.ErrNotFound, "sandbox "+id+" not found")
	}
	return sb.log, nil
}

// SetStats sets what Stats reports for id.
func (f *Fake) SetStats(id string, st runtime.Stats) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if sb, ok := f.sandboxes[id]; ok {
		sb.stats = st
	}
}

// Pause implements runtime.Pauser.
func (f *Fake) Pause(ctx context.Context, id string) error { return f.setPaused(id, true) }

// Resume implements runtime.Pauser. The hook SetHook set runs
// first, without the fake's lock.
func (f *Fake) Resume(ctx context.Context, id string) error {
	f.mu.Lock()
	hook := f.hook
	f.mu.Unlock()
	if hook != nil {
		hook(id)
	}
	if err := f.setPaused(id, false); err != nil {
		return err
	}
	f.mu.Lock()
	if sb, ok := f.sandboxes[id]; ok {
		sb.resumes++
	}
	f.mu.Unlock()
	return nil
}

func (f *Fake) setPaused(id string, p bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.sandboxes[id]
	if !ok {
		return errdefs.New(errdefs.ErrNotFound, "sandbox "+id+" not found")
	}
	sb.paused = p
	return nil
}

// Paused reports whether id is paused.
func (f *Fake) Paused(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.sandboxes[id]
	return ok && sb.paused
}

// FailCreate makes the next Create return err.
func (f *Fake) FailCreate(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.createErr = err
}

// Spec returns the spec sandbox id was created with.
func (f *Fake) Spec(id string) (runtime.Spec, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.sandboxes[id]
	if !ok {
		return runtime.Spec{}, false
	}
	return cloneSpec(sb.spec), true
}

// Kills returns how many times Kill was called for id.
func (f *Fake) Kills(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kills[id]
}

func cloneSpec(s runtime.Spec) runtime.Spec {
	s.Env = maps.Clone(s.Env)
	s.Mounts = slices.Clone(s.Mounts)
	return s
}
