// Package sandbox is the sandbox lifecycle: it creates sandboxes through a
// runtime.Runtime, records them in the store, kills them at their deadline,
// reaps the ones that die on their own, and answers the control plane's
// questions about them. The Manager is the one owner of every sandbox the
// daemon runs.
//
// Wiring, at daemon start:
//
//	m, err := sandbox.NewManager(sandbox.Config{Runtime: rt, Store: st, Templates: tpl, Logger: log})
//	err = m.Recover(ctx) // take over what an earlier run left running
//	...
//	err = m.Close(ctx) // at shutdown: stop timers; kill everything unless KeepOnClose
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/sandboxlog"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// Defaults for Config fields left zero.
const (
	DefaultTimeout    = 300 * time.Second
	DefaultMaxTimeout = 24 * time.Hour
	DefaultCPUCount   = 2
	DefaultMemoryMB   = 512
	DefaultDiskMB     = 1024
)

// killTimeout bounds a Kill the Manager starts on its own (deadline, exit).
const killTimeout = 30 * time.Second

// Config is what a Manager needs. Runtime, Store and Templates are required.
type Config struct {
	Runtime   runtime.Runtime
	Store     store.Sandboxes
	Templates Templates
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Metrics, when set, receives the Manager's collectors.
	Metrics prometheus.Registerer
	// DefaultTimeout is a sandbox's lifetime when a request names none
	// (300 s when zero); MaxTimeout caps any timeout (24 h when zero).
	DefaultTimeout time.Duration
	MaxTimeout     time.Duration
	// DefaultDiskMB is the disk of a sandbox whose template names none
	// (DefaultDiskMB, 1 GiB, when zero: E2B's hobby tier).
	DefaultDiskMB int
	// EgressCeiling bounds the limits a create may ask for in
	// Network.Limits; zero fields bound nothing.
	EgressCeiling runtime.EgressLimits
	// EgressDefault are the limits the runtime gives a sandbox that asks
	// for none (zero fields: unbounded); a team's maximum lowers them.
	EgressDefault runtime.EgressLimits
	// Clock defaults to the wall clock.
	Clock Clock
	// Snapshots, when set, keeps snapshots and fork layers
	// (snapshot.go); without it Snapshot and Fork are unavailable.
	Snapshots SnapshotStore
	// KeepOnClose leaves the sandboxes running at Close, for the next
	// Manager over the same runtime and store to take over (Recover);
	// only the warm pool's spares are killed. By default Close kills
	// every sandbox.
	KeepOnClose bool
	// WarmPoolMemory, in bytes, lets the warm pool grow past the sizes
	// StartPool is given while demand asks for it, as far as its spares'
	// memory stays within it, and shrink back when idle (pool_plan.go).
	// Zero keeps those sizes fixed.
	WarmPoolMemory int64
	// WarmPoolParallel bounds the warm pool's refills in flight (the
	// number of CPUs when zero).
	WarmPoolParallel int
	// Reaped, when set, is told of each sandbox Recover found gone (a
	// host reboot ended it) and why, for the record.
	Reaped func(ctx context.Context, rec store.SandboxRecord, why error)
	// Host bounds what the daemon as a whole takes on (admission.go);
	// the zero value bounds nothing.
	Host HostLimits
	// InterceptCA, when set, is the PEM certificate of the daemon's
	// interception CA (internal/intercept): sandboxes created with
	// network rules are made to trust it (traffic.go). Empty: none is.
	InterceptCA []byte
}

// Manager owns the daemon's sandboxes. Its methods are safe for concurrent
// use. Each sandbox has one deadline timer (an AfterFunc) and the Manager
// runs one goroutine that reaps sandboxes the runtime reports exited; Close
// stops both.
type Manager struct {
	rt        runtime.Runtime
	store     store.Sandboxes
	templates Templates
	log       *slog.Logger
	clock     Clock
	metrics   *metrics
	defTO     time.Duration
	maxTO     time.Duration
	defDiskMB int
	// egressCeiling is Config.EgressCeiling.
	egressCeiling runtime.EgressLimits
	egressDefault runtime.EgressLimits // Config.EgressDefault
	keep          bool                 // Config.KeepOnClose
	reaped        func(ctx context.Context, rec store.SandboxRecord, why error)
	// interceptCA is Config.InterceptCA.
	interceptCA []byte

	// poolBudget and poolParallel are Config.WarmPoolMemory and
	// WarmPoolParallel; poolWake nudges the pool's controller (pool.go).
	poolBudget   int64
	poolParallel int
	poolWake     chan struct{}
	// cold counts creates in flight that found no warm sandbox,
	// claiming those that took one.
	cold, claiming atomic.Int32

	// routes maps id to *route for Lookup, without taking mu.
	routes sync.Map
	// snap is what snapshots and forks keep (snapshot.go).
	snap snapState

	stop        chan struct{} // closed by Close: stops watchExited
	watcherDone chan struct{} // closed when watchExited returns
	// bg is cancelled by Close: it bounds what follows a sandbox past
	// its create (the start command's output).
	bg       context.Context
	bgCancel context.CancelFunc

	mu sync.Mutex
	// sandboxes holds every running sandbox by id.
	sandboxes map[string]*entry
	// closed is set by Close; no sandbox is added after it.
	closed bool
	// pool holds the warm pool of each template by id (pool.go); nil
	// without one.
	pool map[string]*poolTemplate
	// ended keeps the logs of the last keepEndedLogs sandboxes that went
	// (killed, expired or crashed), as E2B serves an ended sandbox's
	// logs; endedOrder is their ids, oldest first.
	ended      map[string]endedLog
	endedOrder []string
	// teams tracks each team's sandboxes and create rate (limits.go);
	// teamLabels are the team label values given out so far.
	teams      map[string]*teamUse
	teamLabels map[string]struct{}
	// host tracks the creates against Config.Host (admission.go).
	host *hostUse
	// work counts Creates and Manager-started kills in flight; Add only
	// with mu held and closed false, so Close's Wait sees them all.
	work sync.WaitGroup
}

// entry is one running sandbox. Fields are guarded by Manager.mu.
type entry struct {
	log     *sandboxlog.Ring // its runtime's log of it; nil when none
	pausing bool             // a Pause is freezing it
	// samples are its resource use as Metrics read it; lastCPU and
	// lastAt are the latest reading's CPU time and when it was taken.
	samples []Metric
	lastCPU time.Duration
	lastAt  time.Time
	info    Info
	route   *route
	// team is the team's metrics label; maxEnd, when set, is the last
	// deadline the team's max-lifetime allows.
	team   string
	maxEnd time.Time
	timer  Timer
	// gen counts deadline changes; a timer armed for an older gen is
	// stale and does nothing when it fires.
	gen uint64
	// boot: see lifecycle.go. busy, while a pause or a resume of it
	// runs, is closed when that ends.
	boot bootRecipe
	busy chan struct{}
}

// route is what Lookup needs, readable without locks.
type route struct {
	socket string
	token  string
	end    atomic.Int64 // deadline, Unix nanoseconds
	paused atomic.Bool  // no traffic while paused
	// traffic is the sandbox's Traffic, never changed once stored (a
	// change stores another); nil when it has none.
	traffic atomic.Pointer[Traffic]
}

// NewManager returns a Manager and starts its exit watcher. Call Recover
// next, and Close at shutdown.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Runtime == nil || cfg.Store == nil || cfg.Templates == nil {
		return nil, errors.New("sandbox.NewManager: Runtime, Store and Templates are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.DefaultTimeout <= 0 {
		cfg.DefaultTimeout = DefaultTimeout
	}
	if cfg.MaxTimeout <= 0 {
		cfg.MaxTimeout = DefaultMaxTimeout
	}
	if cfg.DefaultDiskMB <= 0 {
		cfg.DefaultDiskMB = DefaultDiskMB
	}
	if cfg.WarmPoolParallel <= 0 {
		cfg.WarmPoolParallel = goruntime.NumCPU()
	}
	if cfg.DefaultTimeout > cfg.MaxTimeout {
		return nil, fmt.Errorf("sandbox.NewManager: default timeout %v exceeds max timeout %v", cfg.DefaultTimeout, cfg.MaxTimeout)
	}
	met, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("registering sandbox metrics: %w", err)
	}
	m := &Manager{
		rt:            cfg.Runtime,
		store:         cfg.Store,
		templates:     cfg.Templates,
		log:           cfg.Logger,
		clock:         cfg.Clock,
		metrics:       met,
		defTO:         cfg.DefaultTimeout,
		maxTO:         cfg.MaxTimeout,
		defDiskMB:     cfg.DefaultDiskMB,
		egressCeiling: cfg.EgressCeiling,
		egressDefault: cfg.EgressDefault,
		keep:          cfg.KeepOnClose,
		reaped:        cfg.Reaped,
		interceptCA:   cfg.InterceptCA,
		stop:          make(chan struct{}),
		watcherDone:   make(chan struct{}),
		sandboxes:     map[string]*entry{},
		teams:         map[string]*teamUse{},
		teamLabels:    map[string]struct{}{},
		host:          newHostUse(cfg.Host),
	}
	m.poolBudget, m.poolParallel = max(0, cfg.WarmPoolMemory), cfg.WarmPoolParallel
	m.poolWake = make(chan struct{}, 1)
	m.snap.init(cfg.Snapshots)
	m.bg, m.bgCancel = context.WithCancel(context.Background())
	for _, st := range []State{StateRunning, StatePaused} {
		m.metrics.sandboxes.WithLabelValues(string(st)).Set(0)
	}
	if cfg.Metrics != nil {
		if err := cfg.Metrics.Register(pausedCollector{m}); err != nil {
			return nil, fmt.Errorf("registering sandbox metrics: %w", err)
		}
	}
	go m.watchExited()
	return m, nil
}

// DefaultDiskMB is the disk of a sandbox whose template names none.
func (m *Manager) DefaultDiskMB() int { return m.defDiskMB }

// DefaultTimeout is the lifetime given to sandboxes created without one.
func (m *Manager) DefaultTimeout() time.Duration { return m.defTO }

// CheckTimeout returns an errdefs.ErrInvalidArgument unless d is a timeout
// the Manager accepts: at least 1 s, at most the configured maximum.
func (m *Manager) CheckTimeout(d time.Duration) error {
	if d < time.Second || d > m.maxTO {
		return errdefs.New(errdefs.ErrInvalidArgument,
			fmt.Sprintf("timeout must be between 1 and %d seconds", int64(m.maxTO/time.Second)))
	}
	return nil
}

// Lookup returns the host path of the envd socket of running sandbox id.
// It takes no lock and is meant for the proxy's hot path. A sandbox past its
// deadline is not found even if its timer has not fired yet.
func (m *Manager) Lookup(id string) (socketPath string, ok bool) {
	v, ok := m.routes.Load(id)
	if !ok {
		return "", false
	}
	r := v.(*route)
	if m.clock.Now().UnixNano() >= r.end.Load() || r.paused.Load() {
		return "", false
	}
	return r.socket, true
}

// FindByToken returns the running sandbox whose envd access token makes
// match true. Signed file URLs name no sandbox, only a signature made with
// its token; trying each live sandbox's token is cheap (one hash each).
func (m *Manager) FindByToken(match func(token string) bool) (id, socketPath string, ok bool) {
	now := m.clock.Now().UnixNano()
	m.routes.Range(func(k, v any) bool {
		r := v.(*route)
		if r.token != "" && now < r.end.Load() && !r.paused.Load() && match(r.token) {
			id, socketPath, ok = k.(string), r.socket, true
			return false
		}
		return true
	})
	return id, socketPath, ok
}

// Get returns the running sandbox id, or errdefs.ErrNotFound.
func (m *Manager) Get(ctx context.Context, id string) (Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.sandboxes[id]
	if !ok {
		return Info{}, m.count(notFound(id))
	}
	return e.info.clone(), nil
}

// Kill kills the sandbox id and forgets it. An unknown id (never created,
// already killed, or expired) is errdefs.ErrNotFound.
func (m *Manager) Kill(ctx context.Context, id string) error {
	if _, ok := m.remove(id); !ok {
		return m.count(notFound(id))
	}
	m.log.InfoContext(ctx, "killing sandbox", "sandbox_id", id, "reason", "request")
	// The sandbox is no longer the Manager's: finish releasing it even if
	// the caller goes away.
	ctx = context.WithoutCancel(ctx)
	en, ok := m.rt.(runtime.Ender)
	if !ok {
		return m.count(m.release(ctx, id))
	}
	finish, err := en.End(ctx, id)
	if err != nil {
		return m.count(errors.Join(fmt.Errorf("killing sandbox %s: %w", id, err), m.forget(ctx, id)))
	}
	// The caller has what it asked for once the processes are sent
	// SIGKILL: no route leads to the sandbox and it is listed nowhere.
	// The kernel's teardown (tens of ms under load) and the record's
	// removal go on without it; Close waits for them.
	rest := func(ctx context.Context) {
		var errs []error
		if err := finish(ctx); err != nil {
			errs = append(errs, fmt.Errorf("killing sandbox %s: %w", id, err))
		}
		if err := m.forget(ctx, id); err != nil {
			errs = append(errs, err)
		}
		if err := m.count(errors.Join(errs...)); err != nil {
			m.log.Warn("releasing a killed sandbox", "sandbox_id", id, "err", err)
		}
	}
	if !m.goBackground(rest) {
		rest(ctx) // Close is under way: it waits for no background work now
	}
	return nil
}

// remove takes id out of the Manager: no more routes, no timer. It reports
// whether id was there; only the caller that removed it releases it.
func (m *Manager) remove(id string) (*entry, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.sandboxes[id]
	if !ok {
		return nil, false
	}
	m.removeLocked(e)
	return e, true
}

// removeLocked forgets e. Preconditions: m.mu is held and e is in
// m.sandboxes.
func (m *Manager) removeLocked(e *entry) {
	if e.log != nil {
		m.keepEndedLogLocked(e.info.ID, e.info.TeamID, e.log)
	}
	delete(m.sandboxes, e.info.ID)
	m.teamLocked(e.info.TeamID).live--
	m.routes.Delete(e.info.ID)
	if e.timer != nil {
		e.timer.Stop()
	}
	e.gen++
	m.countState(e.team, e.info.State, "")
}

// release kills id in the runtime and deletes its record.
func (m *Manager) release(ctx context.Context, id string) error {
	var errs []error
	if err := m.rt.Kill(ctx, id); err != nil {
		errs = append(errs, fmt.Errorf("killing sandbox %s: %w", id, err))
	}
	errs = append(errs, m.forget(ctx, id))
	return errors.Join(errs...)
}

// forget deletes the record of killed sandbox id.
func (m *Manager) forget(ctx context.Context, id string) error {
	err := m.store.DeleteSandbox(ctx, id)
	m.snap.forget(id)
	if err != nil {
		return fmt.Errorf("forgetting sandbox %s: %w", id, err)
	}
	return nil
}

// background runs f as Manager-owned work unless the Manager is closed,
// with a context bounded by killTimeout. It reports whether f ran.
func (m *Manager) background(f func(ctx context.Context)) bool {
	if !m.addWork() {
		return false
	}
	defer m.work.Done()
	bounded(f)
	return true
}

// goBackground is background in a goroutine of its own: it reports
// whether it started f.
func (m *Manager) goBackground(f func(ctx context.Context)) bool {
	if !m.addWork() {
		return false
	}
	go func() {
		defer m.work.Done()
		bounded(f)
	}()
	return true
}

// addWork counts one piece of work that Close waits for, unless the
// Manager is closed; it reports whether it did.
func (m *Manager) addWork() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.work.Add(1)
	return true
}

// bounded runs f with a context that ends after killTimeout.
func bounded(f func(ctx context.Context)) {
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	f(ctx)
}

// watchExited reaps sandboxes whose processes died on their own. It returns
// when Close closes m.stop or the runtime closes its channel.
func (m *Manager) watchExited() {
	defer close(m.watcherDone)
	exited := m.rt.Exited()
	for {
		select {
		case <-m.stop:
			return
		case id, ok := <-exited:
			if !ok {
				return
			}
			m.background(func(ctx context.Context) {
				if m.dropPooled(id) {
					m.log.WarnContext(ctx, "a warm sandbox exited", "sandbox_id", id)
				} else {
					_, owned := m.remove(id)
					m.log.WarnContext(ctx, "sandbox exited on its own", "sandbox_id", id, "owned", owned)
				}
				// The runtime still holds what the sandbox had: release it
				// even if it was being killed anyway (Kill is idempotent).
				if err := m.release(ctx, id); err != nil {
					m.log.ErrorContext(ctx, "releasing exited sandbox", "sandbox_id", id, "err", err)
				}
			})
		}
	}
}

// Close kills every sandbox (with KeepOnClose, only the warm pool's and
// forgets the others, which keep running and keep their records), stops
// every timer and the exit watcher, and waits for work in flight (creates,
// kills) to finish or ctx to end. Later calls to Create fail with
// errdefs.ErrUnavailable. Calling Close twice is fine.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	var all []*entry
	for _, e := range m.sandboxes {
		all = append(all, e)
	}
	for _, e := range all {
		m.removeLocked(e)
	}
	warm := m.drainPoolLocked()
	m.mu.Unlock()
	close(m.stop)
	m.bgCancel()

	var errs []error
	if m.keep {
		if len(all) > 0 {
			m.log.InfoContext(ctx, "leaving sandboxes running for the next start", "sandboxes", len(all))
		}
		all = nil
	}
	for _, e := range all {
		if err := m.release(ctx, e.info.ID); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range warm {
		if err := m.release(ctx, p.id); err != nil {
			errs = append(errs, err)
		}
	}
	done := make(chan struct{})
	go func() { // ends when work drains; Close waits for it or ctx
		m.work.Wait()
		<-m.watcherDone
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("waiting for sandbox work to finish: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// NotFound is the error for a sandbox id that does not exist, or that the
// asker may not see: the two must not be told apart.
func NotFound(id string) error {
	return notFound(id)
}

func notFound(id string) error {
	return errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("sandbox %q not found", id))
}
