package sandbox

import (
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/template"
)

var planT0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// at returns planT0 plus each offset in milliseconds.
func at(ms ...int) []time.Time {
	out := make([]time.Time, len(ms))
	for i, v := range ms {
		out[i] = planT0.Add(time.Duration(v) * time.Millisecond)
	}
	return out
}

func TestBurstDemand(t *testing.T) {
	for _, c := range []struct {
		name   string
		claims []time.Time
		w      time.Duration
		want   int
	}{
		{"none", nil, time.Second, 0},
		{"one", at(0), time.Second, 1},
		{"a burst", at(0, 1, 2, 3), 100 * time.Millisecond, 4},
		{"sequential, slower than refill", at(0, 200, 400, 600), 100 * time.Millisecond, 1},
		{"sequential, faster than refill", at(0, 20, 40, 60, 80, 100, 120), 100 * time.Millisecond, 5},
		{"the biggest of two bursts", at(0, 1, 5000, 5001, 5002), 100 * time.Millisecond, 3},
	} {
		if got := burstDemand(c.claims, c.w); got != c.want {
			t.Errorf("%s: burstDemand = %d, want %d", c.name, got, c.want)
		}
	}
}

func planManager(budget int64, parallel int, pts map[string]*poolTemplate) *Manager {
	return &Manager{poolBudget: budget, poolParallel: parallel, pool: pts}
}

func pt(floor int, mem int64, claims ...time.Time) *poolTemplate {
	return &poolTemplate{tpl: &template.Template{ID: "t"}, floor: floor, spareMem: mem, claims: claims, lastClaim: planT0}
}

// The budget is shared out one spare at a time, each template's spares at
// their own measured size.
func TestPlanSharesBudget(t *testing.T) {
	burst := at(0, 0, 0, 0, 0, 0, 0, 0) // 8 at once: wants 10
	small, big := pt(1, 4<<20, burst...), pt(1, 100<<20, burst...)
	m := planManager(1+4<<20+100<<20+8*(4<<20)+2*(100<<20), 100, map[string]*poolTemplate{"small": small, "big": big})
	m.planPoolLocked(planT0, 0, 0)
	// Floors (104 MiB), then turns: small and big each +1 twice (208),
	// then big no longer fits, small +6 more.
	if small.target != 9 || big.target != 3 {
		t.Errorf("targets small %d, big %d; want 9 and 3", small.target, big.target)
	}
}

// Refills are bounded by the parallelism, less the cold creates in
// flight: as many of those as the parallelism leave none; a template
// backing off gets none.
func TestPlanRefills(t *testing.T) {
	for _, c := range []struct {
		cold, starting, want int
	}{
		{0, 0, 4}, {1, 0, 3}, {3, 0, 1}, {4, 0, 0}, {9, 0, 0}, {0, 3, 1}, {2, 2, 0},
	} {
		p := pt(10, 1)
		p.starting = c.starting
		m := planManager(0, 4, map[string]*poolTemplate{"t": p})
		if got := len(m.planPoolLocked(planT0, c.cold, 0).start); got != c.want {
			t.Errorf("cold %d, starting %d: %d refills, want %d", c.cold, c.starting, got, c.want)
		}
	}
	// While claims are in flight, refills wait for them, up to maxHold,
	// unless the template has no spare left.
	for _, c := range []struct {
		spares int
		after  time.Duration
		want   int
	}{{5, 0, 0}, {5, maxHold / 2, 0}, {5, maxHold, 4}, {0, 0, 4}} {
		p := pt(10, 1)
		p.spares = make([]pooled, c.spares)
		m := planManager(0, 4, map[string]*poolTemplate{"t": p})
		first := m.planPoolLocked(planT0, 0, 3)
		if c.spares > 0 && (len(first.start) != 0 || !first.holding) {
			t.Errorf("3 claims in flight, %d spares: %d refills started, holding %v", c.spares, len(first.start), first.holding)
		}
		if got := len(m.planPoolLocked(planT0.Add(c.after), 0, 3).start); got != c.want {
			t.Errorf("3 claims in flight, %d spares of 10, %v later: %d refills, want %d", c.spares, c.after, got, c.want)
		}
	}
	p := pt(10, 1)
	p.retryAt = planT0.Add(time.Second)
	m := planManager(0, 4, map[string]*poolTemplate{"t": p})
	if got := len(m.planPoolLocked(planT0, 0, 0).start); got != 0 {
		t.Errorf("a template backing off got %d refills", got)
	}
	if got := len(m.planPoolLocked(planT0.Add(time.Second), 0, 0).start); got != 4 {
		t.Errorf("after its back-off a template got %d refills, want 4", got)
	}
}

// Spares past the target go when the template is idle or the pool is over
// its budget, oldest first; otherwise they wait for claims.
func TestPlanShrinks(t *testing.T) {
	spares := func(n int) []pooled {
		out := make([]pooled, n)
		for i := range out {
			out[i] = pooled{id: string(rune('a' + i))}
		}
		return out
	}
	for _, c := range []struct {
		name   string
		budget int64
		idle   time.Duration
		kills  int
	}{
		{"busy", 100, time.Minute, 0},
		{"idle", 100, idleAfter, 3},
		{"over budget", 4, time.Second, 3},
	} {
		p := pt(2, 1)
		p.spares = spares(5)
		m := planManager(c.budget, 1, map[string]*poolTemplate{"t": p})
		plan := m.planPoolLocked(planT0.Add(c.idle), 0, 0)
		if len(plan.kill) != c.kills || len(p.spares) != 5-c.kills {
			t.Errorf("%s: killed %d, kept %d; want %d killed", c.name, len(plan.kill), len(p.spares), c.kills)
		}
		if c.kills > 0 && (plan.kill[0].id != "a" || p.spares[0].id != "d") {
			t.Errorf("%s: killed %v, kept %v: want the oldest killed", c.name, plan.kill, p.spares)
		}
	}
}

// A dynamic pool keeps only the build asked for last.
func TestPlanDynamicKeepsLatestBuild(t *testing.T) {
	v1, v2 := &template.Template{ID: "t", User: "a"}, &template.Template{ID: "t", User: "b"}
	p := pt(0, 1, at(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)...)
	p.dynamic, p.tpl = true, v2
	p.spares = []pooled{{id: "old", tpl: v1}, {id: "new", tpl: v2}}
	m := planManager(100, 1, map[string]*poolTemplate{"t": p})
	plan := m.planPoolLocked(planT0, 0, 0)
	if len(plan.kill) != 1 || plan.kill[0].id != "old" || len(p.spares) != 1 || p.spares[0].id != "new" {
		t.Errorf("killed %v, kept %v; want the old build killed", plan.kill, p.spares)
	}
	if p.target != 13 {
		t.Errorf("target %d, want 13 for 10 creates at once", p.target)
	}
}
