package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"reflect"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// A warm pool keeps sandboxes of some templates started ahead of demand, so
// a create hands one over in the time it takes to record it. Pooled
// sandboxes ("spares") are started exactly as a create would start them
// (start command and ready check included, kernels warm for
// code-interpreter templates); a claim only sets the request's environment
// through the agent's /init. They are invisible to the API until claimed,
// belong to no team until then (a claim comes after the create's team
// limits admitted it), and have no deadline until then.
//
// The sizes StartPool is given are each template's floor. With
// Config.WarmPoolMemory set, the pool also grows with demand and shrinks
// back when idle, and templates it was not given get a pool of their own
// while they see demand (pool_plan.go says how); one goroutine, the pool's
// controller, decides and starts refills, at most WarmPoolParallel at a
// time.

// pooled is one spare.
type pooled struct {
	tpl    *template.Template // the build it was started from
	id     string
	token  string
	socket string
	pid    int
	stages []runtime.Stage
}

// poolTemplate is the warm pool of one template. Its fields are guarded by
// Manager.mu.
type poolTemplate struct {
	tpl   *template.Template // what refills start
	floor int                // the configured size: never shrunk below
	// target is the size the controller fills to (pool_plan.go).
	target int
	// spares are ready to be claimed, oldest first; starting counts
	// refills in flight.
	spares   []pooled
	starting int
	// claims are the times of the eligible creates (those that could
	// take a spare, whether one was there or not) of the last
	// demandWindow, oldest first; lastClaim is the latest.
	claims    []time.Time
	lastClaim time.Time
	// refill is a moving average of how long one spare takes to start.
	refill time.Duration
	// spareMem is what one spare holds, in bytes: measured on the
	// latest spares when the runtime reports it, defaultSpareMemory
	// until then.
	spareMem int64
	// failures counts refills that failed in a row; none is tried
	// before retryAt.
	failures int
	retryAt  time.Time
	// holdSince is when refills of pt began to wait for claims in
	// flight (pool_plan.go); zero when they do not.
	holdSince time.Time
	// dynamic marks a pool the operator did not configure, made for a
	// template that saw demand (pool_plan.go); team and teamMax are the
	// latest creating team's id and max-sandboxes limit, and teamRoom
	// the sandboxes it may still have (pool_plan.go).
	dynamic  bool
	team     string
	teamMax  int
	teamRoom int
}

// StartPool keeps sizes[template ref] sandboxes of each template warm, at
// least: with Config.WarmPoolMemory set, more while demand asks for them.
// Call it once, after Recover. The pool stops with Close, which kills
// every unclaimed sandbox.
func (m *Manager) StartPool(ctx context.Context, sizes map[string]int) error {
	pts := map[string]*poolTemplate{}
	for ref, n := range sizes {
		if n <= 0 {
			continue
		}
		// The operator names the pool's templates: any team's.
		tpl, err := m.templates.Resolve(ctx, template.AllTeams, ref)
		if err != nil {
			return fmt.Errorf("warm pool: %w", err)
		}
		pts[tpl.ID] = &poolTemplate{tpl: tpl, floor: min(n, maxSpares), target: min(n, maxSpares),
			lastClaim: m.clock.Now(), spareMem: defaultSpareMemory}
	}
	if len(pts) == 0 {
		return nil
	}
	m.mu.Lock()
	if m.closed || m.pool != nil {
		m.mu.Unlock()
		return nil
	}
	if m.poolBudget > 0 {
		floors := int64(0)
		for _, pt := range pts {
			floors += int64(pt.floor) * pt.spareMem
		}
		if floors > m.poolBudget {
			m.log.Warn("warm pool: the configured sizes alone may hold more than the pool's memory budget; they are kept, and the pool does not grow",
				"budget_bytes", m.poolBudget, "estimate_bytes", floors)
		}
	}
	m.pool = pts
	for id := range pts { // zero, not absent, until the first claim
		m.metrics.poolClaims.WithLabelValues(id, "hit")
		m.metrics.poolClaims.WithLabelValues(id, "miss")
	}
	m.work.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.work.Done()
		m.runPool()
	}()
	return nil
}

// wakePool makes the pool's controller look again (a claim, a refill done,
// a cold create over). It never blocks.
func (m *Manager) wakePool() {
	select {
	case m.poolWake <- struct{}{}:
	default:
	}
}

// runPool is the pool's controller: it sizes the pool and starts refills
// whenever woken, and at least every poolTick (demand ages out, idle
// spares go, failed refills are retried), until Close.
func (m *Manager) runPool() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // ends with runPool: cancel closes ctx
		select {
		case <-m.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		next := poolTick
		if m.adjustPool(ctx) {
			next = maxHold
		}
		tick := m.clock.AfterFunc(next, m.wakePool)
		select {
		case <-ctx.Done():
			tick.Stop()
			return
		case <-m.poolWake:
			tick.Stop()
		}
	}
}

// adjustPool does one round of the controller: new targets, spares past
// them killed, refills started. It reports whether refills wait for claims
// in flight.
func (m *Manager) adjustPool(ctx context.Context) (holding bool) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return false
	}
	plan := m.planPoolLocked(m.clock.Now(), int(m.cold.Load()), int(m.claiming.Load()))
	tpls := make([]*template.Template, len(plan.start))
	for i, pt := range plan.start {
		pt.starting++
		tpls[i] = pt.tpl
		m.work.Add(1) // closed is false and mu is held: Close waits for it
	}
	for id, pt := range m.pool {
		m.metrics.poolSpares.WithLabelValues(id).Set(float64(len(pt.spares)))
		m.metrics.poolTarget.WithLabelValues(id).Set(float64(pt.target))
		m.metrics.poolSpareMemory.WithLabelValues(id).Set(float64(pt.spareMem))
	}
	for _, id := range plan.gone {
		for _, v := range []*prometheus.GaugeVec{m.metrics.poolSpares, m.metrics.poolTarget, m.metrics.poolSpareMemory} {
			v.DeleteLabelValues(id)
		}
		m.metrics.poolClaims.DeletePartialMatch(prometheus.Labels{"template": id})
	}
	m.mu.Unlock()
	for i, pt := range plan.start {
		go m.refill(ctx, pt, tpls[i])
	}
	for _, p := range plan.kill {
		m.log.Debug("warm pool: shrinking", "template", p.tpl.ID, "sandbox_id", p.id)
		m.discard(ctx, p.id)
	}
	return plan.holding
}

// refill starts one spare of pt from tpl, its template when the refill was
// planned. The caller counted it in pt.starting and m.work.
func (m *Manager) refill(ctx context.Context, pt *poolTemplate, tpl *template.Template) {
	defer m.work.Done()
	defer m.wakePool()
	began := time.Now()
	p, err := m.startSpare(ctx, tpl)
	took := time.Since(began)
	m.mu.Lock()
	pt.starting--
	switch {
	case err != nil && ctx.Err() != nil: // Close
		m.mu.Unlock()
		return
	case err != nil:
		pt.failures++
		// Back off so a broken template does not spin.
		pt.retryAt = m.clock.Now().Add(time.Duration(min(pt.failures, 30)) * time.Second)
		m.mu.Unlock()
		m.log.Warn("warm pool: starting a sandbox", "template", tpl.ID, "err", err)
		return
	case m.closed:
		// Close has drained the pool already and waits for this
		// goroutine: kill the latecomer before returning.
		m.mu.Unlock()
		m.discard(context.WithoutCancel(ctx), p.id)
		return
	}
	pt.failures = 0
	pt.refill = ewma(pt.refill, took)
	pt.spares = append(pt.spares, p)
	m.mu.Unlock()
	m.measureSpare(ctx, pt, p.id)
}

// startSpare starts a sandbox of tpl as a create would, unclaimed.
func (m *Manager) startSpare(ctx context.Context, tpl *template.Template) (pooled, error) {
	p := pooled{tpl: tpl, id: newSandboxID(), token: newToken()}
	sb, err := m.rt.Create(ctx, m.spec(p.id, tpl, p.token, withE2BEnv(tpl.Env, p.id, tpl), true))
	if err != nil {
		return pooled{}, err
	}
	if err := startTemplate(ctx, m.bg, tpl, sb.EnvdSocket, p.token, m.sandboxLog(p.id)); err != nil {
		m.discard(context.WithoutCancel(ctx), p.id)
		return pooled{}, err
	}
	p.socket, p.pid, p.stages = sb.EnvdSocket, sb.Pid, sb.Stages
	return p, nil
}

// measureSpare updates pt's memory per spare from what the runtime says a
// fresh one holds: its cgroup's memory less the page cache, which the
// kernel takes back under pressure (and which is mostly the template's
// shared files).
func (m *Manager) measureSpare(ctx context.Context, pt *poolTemplate, id string) {
	sr, ok := m.rt.(runtime.StatsReader)
	if !ok {
		return
	}
	st, err := sr.Stats(ctx, id)
	if err != nil || st.MemUsed <= st.MemCache {
		return // claimed and gone, or no cgroup to read: keep the estimate
	}
	used := int64(st.MemUsed - st.MemCache)
	m.mu.Lock()
	if pt.spareMem == defaultSpareMemory {
		pt.spareMem = used
	} else {
		pt.spareMem = (3*pt.spareMem + used) / 4
	}
	pt.spareMem = max(pt.spareMem, minSpareMemory)
	m.mu.Unlock()
}

// ewma moves avg a quarter of the way towards sample.
func ewma(avg, sample time.Duration) time.Duration {
	if avg == 0 {
		return sample
	}
	return (3*avg + sample) / 4
}

// claimIf takes a warm sandbox of tpl out of the pool when want is true
// (the create could use one); the caller hands it over (handOver). ok is
// false when the pool has none. Every eligible create counts as demand for
// tpl's pool. When ok, the caller calls claimDone as its create returns.
func (m *Manager) claimIf(want bool, team store.Team, tpl *template.Template) (pooled, bool) {
	if !want {
		return pooled{}, false
	}
	m.mu.Lock()
	now := m.clock.Now()
	pt := m.pool[tpl.ID]
	if pt == nil {
		pt = m.candidateLocked(tpl, now)
	}
	if pt == nil {
		m.mu.Unlock()
		return pooled{}, false
	}
	if pt.dynamic {
		pt.team, pt.teamMax = team.ID, team.Limits.MaxSandboxes
		if !sameBuild(pt.tpl, tpl) {
			pt.tpl = tpl // the spares of the old build go (pool_plan.go)
		}
	}
	pt.claims = append(pt.claims, now)
	if len(pt.claims) > maxClaims {
		pt.claims = slices.Delete(pt.claims, 0, len(pt.claims)-maxClaims)
	}
	pt.lastClaim = now
	// The newest spare of this very build: the template may have been
	// rebuilt, or another of its tags asked for, since the pool started,
	// and those spares are not this one.
	i := len(pt.spares) - 1
	for i >= 0 && !sameBuild(pt.spares[i].tpl, tpl) {
		i--
	}
	var p pooled
	if i >= 0 {
		p = pt.spares[i]
		pt.spares = slices.Delete(pt.spares, i, i+1)
		m.claiming.Add(1)
	}
	m.mu.Unlock()
	m.wakePool()
	if i < 0 {
		m.metrics.poolClaims.WithLabelValues(tpl.ID, "miss").Inc()
		return pooled{}, false
	}
	m.metrics.poolClaims.WithLabelValues(tpl.ID, "hit").Inc()
	return p, true
}

// handOver makes claimed spare p the sandbox rec records: its agent gets
// the create's environment (env, before the E2B variables are added)
// while rec is written, and both are done before it returns, so the
// create answers with a sandbox that is durable and set up as a cold one
// would be. The agent's round trip and the store's commit each take a
// few milliseconds, mostly waiting on another process or the disk, so
// doing them at once takes the longer of the two rather than both.
//
// On error the spare is killed and its record gone; setUp reports that
// the agent failed (the create may start a sandbox cold instead), and
// false that the record could not be written.
func (m *Manager) handOver(ctx context.Context, p pooled, rec store.SandboxRecord, env map[string]string, tpl *template.Template) (setUp bool, err error) {
	initErr := make(chan error, 1)
	if maps.Equal(env, tpl.Env) {
		initErr <- nil // started with these
	} else {
		go func() { initErr <- initEnv(ctx, p.socket, p.token, withE2BEnv(env, p.id, tpl)) }()
	}
	putErr := m.store.PutSandbox(ctx, rec)
	ierr := <-initErr
	switch {
	case putErr != nil:
		m.discard(ctx, p.id)
		return true, fmt.Errorf("recording sandbox %s: %w", p.id, putErr)
	case ierr != nil:
		if err := m.store.DeleteSandbox(context.WithoutCancel(ctx), p.id); err != nil {
			m.log.Warn("warm pool: removing the record of a claimed sandbox that failed", "sandbox_id", p.id, "err", err)
		}
		m.discard(ctx, p.id)
		return false, fmt.Errorf("setting the environment of claimed sandbox %s: %w", p.id, ierr)
	}
	return true, nil
}

// candidateLocked makes tpl's pool, dynamic and empty, for its demand to be
// counted, or returns nil when the pool cannot have one: none was
// started or it is closed, it has no memory budget, maxDynamicPools are
// counting already, or tpl is a snapshot's (usually started once; its
// layers may go with it). Preconditions: m.mu is held.
func (m *Manager) candidateLocked(tpl *template.Template, now time.Time) *poolTemplate {
	if m.pool == nil || m.poolBudget == 0 || len(tpl.Metadata) > 0 {
		return nil
	}
	n := 0
	for _, pt := range m.pool {
		if pt.dynamic {
			n++
		}
	}
	if n >= maxDynamicPools {
		return nil
	}
	pt := &poolTemplate{tpl: tpl, dynamic: true, lastClaim: now, spareMem: defaultSpareMemory}
	m.pool[tpl.ID] = pt
	return pt
}

// claimDone marks the end of a create that took a spare: refills waiting
// for it may go.
func (m *Manager) claimDone() {
	m.claiming.Add(-1)
	m.wakePool()
}

// coldDone marks the end of a create that found no spare: refills held
// back for it may go.
func (m *Manager) coldDone() {
	m.cold.Add(-1)
	m.wakePool()
}

// sameBuild reports whether a sandbox started from a would be the one a
// create from b starts.
func sameBuild(a, b *template.Template) bool {
	return reflect.DeepEqual(a.Mounts, b.Mounts) && maps.Equal(a.Env, b.Env) && a.User == b.User &&
		a.Workdir == b.Workdir && a.StartCmd == b.StartCmd && a.ReadyCmd == b.ReadyCmd &&
		a.Interpreter == b.Interpreter && a.CPUCount == b.CPUCount && a.MemoryMB == b.MemoryMB
}

// dropPooled forgets a pooled sandbox that exited; it reports whether id
// was one.
func (m *Manager) dropPooled(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, pt := range m.pool {
		if i := slices.IndexFunc(pt.spares, func(p pooled) bool { return p.id == id }); i >= 0 {
			pt.spares = slices.Delete(pt.spares, i, i+1)
			return true
		}
	}
	return false
}

// drainPoolLocked empties the pool and returns what it held, for Close.
// Preconditions: m.mu is held.
func (m *Manager) drainPoolLocked() []pooled {
	var out []pooled
	for _, pt := range m.pool {
		out = append(out, pt.spares...)
		pt.spares = nil
	}
	m.pool = nil
	return out
}

// initEnv sets a sandbox's global environment through its agent.
func initEnv(ctx context.Context, socket, token string, env map[string]string) error {
	body, err := json.Marshal(map[string]any{"envVars": env})
	if err != nil {
		return err
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://envd/init", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Access-Token", token)
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("posting /init: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("posting /init: %s", resp.Status)
	}
	return nil
}
