package sandbox

import (
	"maps"
	"slices"
	"time"
)

// How the warm pool sizes itself. Each template's pool has a floor (the
// size it was configured with) and a target the controller fills to:
//
//   - Demand is counted from the eligible creates of the template (those
//     that could take a spare, whether one was there or not) in the last
//     demandWindow: the most of them that fell within any one burst
//     window, a stretch of time as long as two refills take (at least
//     minBurstWindow). That many creates are what the pool must absorb
//     before refills can catch up, whether they came as one burst from a
//     fan-out or as a fast sequential stream (rate × refill time). The
//     target is that plus a quarter for the next burst being a little
//     larger, never below the floor nor above maxSpares.
//
//   - Targets above the floors share the memory budget
//     (Config.WarmPoolMemory): one spare at a time to each template that
//     wants more, in turn, while the spares' memory (held and starting)
//     fits. Floors are granted even past the budget: the operator asked
//     for them.
//
//   - A template without a claim for idleAfter has its spares above the
//     target killed; so do all templates while the pool holds more than
//     the budget (a spare measured bigger than estimated). Otherwise a
//     target that fell is reached by claims, not kills, so a pause
//     between bursts costs nothing.
//
//   - Refills run in parallel, at most WarmPoolParallel (the CPU count)
//     at once, less one for each create in flight that found no spare: a
//     cold create is a user waiting now, a refill is for one later, and
//     both want the same CPUs. With as many cold creates in flight as
//     that, none runs: the host is saturated with boots users wait on,
//     and a refill's boot would only stretch theirs (bench/loadgo, C = 8
//     closed loop: create p99 160-164 ms against 175-216 with one refill
//     always allowed; BENCHMARKS.md, session 11). Refills resume as soon
//     as fewer creates miss.
//
//   - While creates that took a spare are still in flight (a few ms
//     each: recording the sandbox, answering), refills wait for them, so
//     a burst's claims are not slowed by the refills they set off; but
//     no longer than maxHold, so a steady stream of claims cannot starve
//     the pool, and not at all once the template has no spare left.
//
//   - A template the pool was not given gets a pool of its own (a dynamic
//     one, floor 0) once it saw dynamicMinClaims eligible creates in the
//     last minute, sized as above within the same budget. Its spares are
//     nobody's until claimed, and a claim comes after the create's team
//     limits admitted it; still, the pool keeps no more spares than the
//     creating team could claim (its max-sandboxes less what it runs), so
//     a team at its limit makes the host hold nothing for it. The latest
//     build asked for is the one kept warm. Idle, it is killed down to
//     nothing and forgotten. At most maxDynamicPools at once.
//
// Without a budget (WarmPoolMemory 0) the targets are the floors: the
// fixed pool of old, refilled in parallel, and no dynamic pools.
const (
	demandWindow   = time.Minute
	idleAfter      = 2 * time.Minute
	minBurstWindow = 100 * time.Millisecond
	maxBurstWindow = 10 * time.Second
	// poolTick is how often the controller looks when nothing wakes it;
	// maxHold is the longest claims in flight hold a refill back.
	poolTick = time.Second
	maxHold  = 50 * time.Millisecond
	// maxSpares caps a template's pool: spares hold uids, network links
	// and disks besides memory. A bigger burst is partly served cold.
	maxSpares = 64
	// dynamicMinClaims is the demand that gives a template a pool of its
	// own; maxDynamicPools bounds how many (counting or filled) there are.
	dynamicMinClaims = 10
	maxDynamicPools  = 16
	// maxClaims bounds the claims kept per template (the last minute's
	// at up to ~17 creates/s; past that, the latest maxClaims).
	maxClaims = 1024
	// defaultSpareMemory is the memory a spare is assumed to hold until
	// one is measured (runtime.StatsReader): conservative, as a template
	// with a warm interpreter kernel holds tens of MiB, while a plain
	// one holds a few. minSpareMemory keeps a measurement that misses
	// kernel memory from making spares look free.
	defaultSpareMemory = 64 << 20
	minSpareMemory     = 1 << 20
)

// poolPlan is what one round of the controller does.
type poolPlan struct {
	start []*poolTemplate // one refill each (a template may repeat)
	kill  []pooled        // spares past their target, taken out of the pool
	gone  []string        // dynamic pools forgotten, by template id
	// holding is set when refills wait for claims in flight: the
	// controller looks again within maxHold.
	holding bool
}

// planPoolLocked sets every template's target for now and says which
// refills to start and which spares to kill; cold is the number of creates
// in flight that found no spare, claiming the number that took one. The
// spares to kill are taken out of the pool. Preconditions: m.mu is held.
func (m *Manager) planPoolLocked(now time.Time, cold, claiming int) poolPlan {
	ids := slices.Sorted(maps.Keys(m.pool))
	pts := make([]*poolTemplate, len(ids))
	for i, id := range ids {
		pts[i] = m.pool[id]
	}
	held := m.setTargetsLocked(now, pts)
	var plan poolPlan
	for i, pt := range pts {
		if m.shrinkLocked(now, ids[i], pt, held, &plan) {
			pts[i] = nil
		}
	}
	pts = slices.DeleteFunc(pts, func(pt *poolTemplate) bool { return pt == nil })
	plan.start, plan.holding = refills(now, pts, max(0, m.poolParallel-cold), claiming)
	return plan
}

// setTargetsLocked sets each template's target: its floor, then the budget
// shared out one spare at a time to those that want more. It returns the
// memory the pool holds (spares and refills in flight). Preconditions:
// m.mu is held.
func (m *Manager) setTargetsLocked(now time.Time, pts []*poolTemplate) (held int64) {
	want := make([]int, len(pts))
	var used int64
	for i, pt := range pts {
		pt.claims = pruneClaims(pt.claims, now.Add(-demandWindow))
		pt.target = pt.floor
		want[i] = pt.floor
		if m.poolBudget > 0 {
			want[i] = pt.wanted()
		}
		if pt.dynamic {
			want[i] = m.dynamicWantLocked(pt, want[i])
		}
		used += int64(pt.floor) * pt.spareMem
		held += int64(len(pt.spares)+pt.starting) * pt.spareMem
	}
	for grew := true; grew; {
		grew = false
		for i, pt := range pts {
			if pt.target < want[i] && used+pt.spareMem <= m.poolBudget {
				pt.target++
				used += pt.spareMem
				grew = true
			}
		}
	}
	return held
}

// shrinkLocked adds to plan the spares of pt (template id) to kill, taking
// them out of the pool: past its target when it is idle, the pool holds
// more than the budget, or (dynamic) its team could not claim them; of a
// dynamic pool, also those of an old build, and all of them when it is
// idle, which forgets the pool. It reports whether it did that.
// Preconditions: m.mu is held.
func (m *Manager) shrinkLocked(now time.Time, id string, pt *poolTemplate, held int64, plan *poolPlan) (gone bool) {
	idle := now.Sub(pt.lastClaim) >= idleAfter
	if pt.dynamic {
		old := func(p pooled) bool { return !sameBuild(p.tpl, pt.tpl) }
		for _, p := range pt.spares {
			if old(p) {
				plan.kill = append(plan.kill, p)
			}
		}
		pt.spares = slices.DeleteFunc(pt.spares, old)
		if idle && len(pt.claims) == 0 && pt.starting == 0 {
			plan.kill = append(plan.kill, pt.spares...)
			plan.gone = append(plan.gone, id)
			delete(m.pool, id)
			return true
		}
	}
	over := m.poolBudget > 0 && held > m.poolBudget
	unclaimable := pt.dynamic && pt.teamMax > 0 && len(pt.spares) > pt.teamRoom
	if n := len(pt.spares) - pt.target; n > 0 && (idle || over || unclaimable) {
		plan.kill = append(plan.kill, pt.spares[:n]...) // the oldest
		pt.spares = slices.Delete(pt.spares, 0, n)
	}
	return false
}

// refills picks the refills to start, one per template in turn, while
// room (the parallelism left) allows, less those in flight; holding
// reports refills held back for the claims in flight.
func refills(now time.Time, pts []*poolTemplate, room, claiming int) (start []*poolTemplate, holding bool) {
	for _, pt := range pts {
		room -= pt.starting
	}
	ready := make([]bool, len(pts))
	for i, pt := range pts {
		switch {
		case pt.target-len(pt.spares)-pt.starting <= 0 || now.Before(pt.retryAt):
			pt.holdSince = time.Time{}
		case claiming > 0 && len(pt.spares) > 0 && (pt.holdSince.IsZero() || now.Sub(pt.holdSince) < maxHold):
			if pt.holdSince.IsZero() {
				pt.holdSince = now
			}
			holding = true
		default:
			pt.holdSince = time.Time{}
			ready[i] = true
		}
	}
	planned := make([]int, len(pts))
	for started := true; started && room > 0; {
		started = false
		for i, pt := range pts {
			if room > 0 && ready[i] && pt.target-len(pt.spares)-pt.starting-planned[i] > 0 {
				start = append(start, pt)
				planned[i]++
				room--
				started = true
			}
		}
	}
	return start, holding
}

// wanted is the size demand asks of pt (see the top of this file).
func (pt *poolTemplate) wanted() int {
	w := min(max(2*pt.refill, minBurstWindow), maxBurstWindow)
	d := burstDemand(pt.claims, w)
	return max(pt.floor, min(maxSpares, d+(d+3)/4))
}

// dynamicWantLocked bounds want, what demand asks of dynamic pool pt:
// nothing below dynamicMinClaims, and no more than its team could claim.
// Preconditions: m.mu is held.
func (m *Manager) dynamicWantLocked(pt *poolTemplate, want int) int {
	if len(pt.claims) < dynamicMinClaims {
		return 0
	}
	if pt.teamMax > 0 {
		pt.teamRoom = max(0, pt.teamMax-m.teamLocked(pt.team).live)
		want = min(want, pt.teamRoom)
	}
	return want
}

// burstDemand is the most of claims (in time order) that fall within any
// window of length w.
func burstDemand(claims []time.Time, w time.Duration) int {
	best, lo := 0, 0
	for hi := range claims {
		for claims[hi].Sub(claims[lo]) >= w {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// pruneClaims drops the claims before since.
func pruneClaims(claims []time.Time, since time.Time) []time.Time {
	i := 0
	for i < len(claims) && claims[i].Before(since) {
		i++
	}
	return slices.Delete(claims, 0, i)
}
