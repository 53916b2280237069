package sandbox_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// pooledReq is a create that can take a warm sandbox.
var pooledReq = sandbox.CreateRequest{Template: "base", Secure: true, AllowInternetAccess: true}

// newPoolEnv is an env whose warm pool may hold budget bytes and refill
// parallel at once.
func newPoolEnv(t *testing.T, budget int64, parallel int) *env {
	t.Helper()
	return newEnvConfig(t, fake.Options{}, templates(), func(c *sandbox.Config) {
		c.WarmPoolMemory = budget
		c.WarmPoolParallel = parallel
	})
}

// held is how many sandboxes the runtime holds.
func (e *env) held(t *testing.T) int {
	t.Helper()
	ids, err := e.rt.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return len(ids)
}

func poolGauge(t *testing.T, e *env, name, tpl string) float64 {
	t.Helper()
	return series(t, e.reg, name, map[string]string{"template": tpl})
}

// settle waits until the base pool has reached its target, holds target
// spares and the runtime holds live+target sandboxes.
func settle(t *testing.T, e *env, live, target int) {
	t.Helper()
	waitFor(t, func() bool {
		return poolGauge(t, e, "sandpit_warm_pool_target", "base") == float64(target) &&
			poolGauge(t, e, "sandpit_warm_pool_sandboxes", "base") == float64(target) &&
			e.held(t) == live+target
	})
}

// A burst of creates grows the pool to the burst and a quarter more, and
// the next burst of that size is served from it.
func TestWarmPoolGrowsWithDemand(t *testing.T) {
	e := newPoolEnv(t, 1<<30, 2)
	if err := e.m.StartPool(t.Context(), map[string]int{"base": 1}); err != nil {
		t.Fatal(err)
	}
	settle(t, e, 0, 1)
	for range 8 { // one instant on the test's clock: a burst
		e.create(t, pooledReq)
	}
	settle(t, e, 8, 10)
	before := series(t, e.reg, "sandpit_warm_pool_claims_total", map[string]string{"template": "base", "result": "hit"})
	for range 8 {
		e.create(t, pooledReq)
	}
	after := series(t, e.reg, "sandpit_warm_pool_claims_total", map[string]string{"template": "base", "result": "hit"})
	if after-before != 8 {
		t.Errorf("the second burst of 8 took %v warm sandboxes, want 8", after-before)
	}
}

// The pool grows only as far as its memory budget: two templates' floors
// are kept and the rest is shared out.
func TestWarmPoolMemoryBudget(t *testing.T) {
	// The fake runtime reports no memory use: every spare counts at the
	// default estimate, 64 MiB, so 256 MiB holds four.
	e := newPoolEnv(t, 256<<20, 2)
	if err := e.m.StartPool(t.Context(), map[string]int{"base": 1, "code-interpreter-v1": 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return e.held(t) == 2 })
	for range 8 {
		e.create(t, pooledReq)
	}
	settle(t, e, 8+1, 3) // base 1+2, big its floor 1
	if got := poolGauge(t, e, "sandpit_warm_pool_target", "big"); got != 1 {
		t.Errorf("big's target = %v, want its floor 1", got)
	}
	if got := poolGauge(t, e, "sandpit_warm_pool_sandbox_memory_bytes", "base"); got != 64<<20 {
		t.Errorf("memory per spare = %v, want the default 64 MiB", got)
	}
	// More rounds of the controller do not go past it.
	for range 3 {
		e.clock.Advance(time.Second)
		settle(t, e, 8+1, 3)
	}
}

// Without a budget the pool keeps its configured size whatever the
// demand.
func TestWarmPoolFixedWithoutBudget(t *testing.T) {
	e := newPoolEnv(t, 0, 2)
	if err := e.m.StartPool(t.Context(), map[string]int{"base": 1}); err != nil {
		t.Fatal(err)
	}
	settle(t, e, 0, 1)
	for range 5 {
		e.create(t, pooledReq)
	}
	settle(t, e, 5, 1)
	e.clock.Advance(time.Second)
	settle(t, e, 5, 1)
}

// A target that fell is not enforced by killing spares until the template
// has been idle for two minutes; then the pool is back at its floor.
func TestWarmPoolShrinksWhenIdle(t *testing.T) {
	e := newPoolEnv(t, 1<<30, 2)
	if err := e.m.StartPool(t.Context(), map[string]int{"base": 1}); err != nil {
		t.Fatal(err)
	}
	settle(t, e, 0, 1)
	for range 4 {
		e.create(t, pooledReq)
	}
	settle(t, e, 4, 5)
	spares, _ := e.rt.List(t.Context())

	// A minute later the demand has aged out: the target is the floor,
	// but the spares stay for a burst that may come back.
	e.clock.Advance(61 * time.Second)
	advanceUntil(t, e, func() bool { return poolGauge(t, e, "sandpit_warm_pool_target", "base") == 1 })
	if got := e.held(t); got != 4+5 {
		t.Fatalf("a minute after the burst the runtime holds %d sandboxes, want 9", got)
	}
	// Two minutes without a claim: the spares past the floor go.
	e.clock.Advance(idle())
	advanceUntil(t, e, func() bool {
		return e.held(t) == 4+1 && poolGauge(t, e, "sandpit_warm_pool_sandboxes", "base") == 1
	})
	killed := 0
	for _, id := range spares {
		killed += e.rt.Kills(id)
	}
	if killed != 4 {
		t.Errorf("%d kills, want the 4 spares past the floor", killed)
	}
}

// heldRuntime holds every Create until its gate is opened (or its ctx
// ends), counting the Creates in flight.
type heldRuntime struct {
	*fake.Fake

	mu             sync.Mutex
	gate           chan struct{}
	inFlight, peak int
}

func newHeld(f *fake.Fake) *heldRuntime {
	return &heldRuntime{Fake: f, gate: make(chan struct{})}
}

// open lets every Create through; shut holds the next ones again.
func (g *heldRuntime) open() { g.mu.Lock(); close(g.gate); g.mu.Unlock() }
func (g *heldRuntime) shut() { g.mu.Lock(); g.gate = make(chan struct{}); g.mu.Unlock() }

func (g *heldRuntime) Create(ctx context.Context, spec runtime.Spec) (*runtime.Sandbox, error) {
	g.mu.Lock()
	g.inFlight++
	g.peak = max(g.peak, g.inFlight)
	gate := g.gate
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.inFlight--
		g.mu.Unlock()
	}()
	select {
	case <-gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Fake.Create(ctx, spec)
}

func (g *heldRuntime) counts() (inFlight, peak int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inFlight, g.peak
}

// Refills overlap, as many as WarmPoolParallel and no more.
func TestWarmPoolRefillsInParallel(t *testing.T) {
	var g *heldRuntime
	e := newEnvConfig(t, fake.Options{}, templates(), func(c *sandbox.Config) {
		g = newHeld(c.Runtime.(*fake.Fake))
		c.Runtime = g
		c.WarmPoolParallel = 3
	})
	if err := e.m.StartPool(t.Context(), map[string]int{"base": 6}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { n, _ := g.counts(); return n == 3 })
	g.open()
	settle(t, e, 0, 6)
	if _, peak := g.counts(); peak != 3 {
		t.Errorf("%d refills ran at once, want 3", peak)
	}
}

// Close kills every spare, refills in flight included, and stops the
// controller's timer.
func TestWarmPoolCloseKillsAll(t *testing.T) {
	var g *heldRuntime
	e := newEnvConfig(t, fake.Options{}, templates(), func(c *sandbox.Config) {
		g = newHeld(c.Runtime.(*fake.Fake))
		c.Runtime = g
		c.WarmPoolParallel = 2
		c.WarmPoolMemory = 1 << 30
		c.KeepOnClose = true // the claimed sandboxes stay: only spares die
	})
	g.open()
	if err := e.m.StartPool(t.Context(), map[string]int{"base": 2}); err != nil {
		t.Fatal(err)
	}
	settle(t, e, 0, 2)
	var live []string
	for range 4 {
		live = append(live, e.create(t, pooledReq).ID)
	}
	settle(t, e, 4, 5)
	// Hold the next refills in Create, then claim two.
	g.shut()
	for range 2 {
		live = append(live, e.create(t, pooledReq).ID)
	}
	waitFor(t, func() bool { n, _ := g.counts(); return n == 2 })
	if err := e.m.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := e.held(t); got != len(live) {
		ids, _ := e.rt.List(t.Context())
		t.Errorf("after Close the runtime holds %v, want only the %d claimed", ids, len(live))
	}
	if n := e.clock.Pending(); n != 0 {
		t.Errorf("%d timers pending after Close", n)
	}
}

// A template the pool was not given gets a pool once it sees demand, as
// big as its team could claim, and loses it when idle.
func TestWarmPoolDynamic(t *testing.T) {
	e := newPoolEnv(t, 1<<30, 2)
	if err := e.m.StartPool(t.Context(), map[string]int{"base": 1}); err != nil {
		t.Fatal(err)
	}
	settle(t, e, 0, 1)
	big := sandbox.CreateRequest{Template: "big", Secure: true, AllowInternetAccess: true}
	for range 9 {
		e.create(t, big)
	}
	e.clock.Advance(time.Second)
	waitFor(t, func() bool { return poolGauge(t, e, "sandpit_warm_pool_target", "big") == 0 && e.held(t) == 9+1 })
	e.create(t, big) // the tenth in a minute: the burst of 9 wants 12
	waitFor(t, func() bool {
		return poolGauge(t, e, "sandpit_warm_pool_target", "big") == 12 &&
			poolGauge(t, e, "sandpit_warm_pool_sandboxes", "big") == 12 && e.held(t) == 10+1+12
	})
	spares, _ := e.rt.List(t.Context())
	// Idle for two minutes: its spares go, and so does its pool.
	e.clock.Advance(idle())
	advanceUntil(t, e, func() bool {
		return e.held(t) == 10+1 && !hasSeries(t, e, "sandpit_warm_pool_target", "big")
	})
	killed := 0
	for _, id := range spares {
		killed += min(1, e.rt.Kills(id))
	}
	if killed != 12 {
		t.Errorf("%d of big's spares killed, want 12", killed)
	}
}

// A dynamic pool holds no more than its team could still claim; the
// configured ones are the operator's and do not care.
func TestWarmPoolDynamicTeamLimit(t *testing.T) {
	e := newPoolEnv(t, 1<<30, 2)
	if err := e.m.StartPool(t.Context(), map[string]int{"base": 1}); err != nil {
		t.Fatal(err)
	}
	settle(t, e, 0, 1)
	team := store.Team{ID: "team-a", Name: "a", Limits: store.Limits{MaxSandboxes: 12}}
	big := sandbox.CreateRequest{Team: team, Template: "big", Secure: true, AllowInternetAccess: true}
	for range 10 {
		e.create(t, big)
	}
	waitFor(t, func() bool {
		return poolGauge(t, e, "sandpit_warm_pool_target", "big") == 2 && e.held(t) == 10+1+2
	})
	// The team starts two more its own way (no token: they cannot take
	// a spare) and is at its limit: the spares it cannot claim go.
	for range 2 {
		e.create(t, sandbox.CreateRequest{Team: team, Template: "big", AllowInternetAccess: true})
	}
	waitFor(t, func() bool {
		return poolGauge(t, e, "sandpit_warm_pool_target", "big") == 0 &&
			poolGauge(t, e, "sandpit_warm_pool_sandboxes", "big") == 0 && e.held(t) == 12+1
	})
}

// advanceUntil waits for cond, moving the clock a second (the pool's
// tick) at a time in case the controller's last look came too early; at
// most 30 s, far from the sandboxes' deadlines.
func advanceUntil(t *testing.T, e *env, cond func() bool) {
	t.Helper()
	for range 30 {
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			if cond() {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		e.clock.Advance(time.Second)
	}
	t.Fatal("condition not met within 30 ticks")
}

// idle is long enough for a template without creates to be idle.
func idle() time.Duration { return 2*time.Minute + time.Second }

func hasSeries(t *testing.T, e *env, name, tpl string) bool {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "template" && lp.GetValue() == tpl {
					return true
				}
			}
		}
	}
	return false
}
