package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// ErrNoNode is returned when no live node has room for a sandbox.
var ErrNoNode = errors.New("no live sandpit node has room for the sandbox")

// DefaultCandidates is K of best-of-K placement: enough to find a good
// node, few enough that replicas placing at once pick different ones.
const DefaultCandidates = 3

// Placer picks the node of each new sandbox.
type Placer struct {
	c *Client
	// K nodes are drawn at random from the live ones with room and the
	// best of them is taken.
	k   int
	now func() time.Time
	// only, when set, limits placement to the nodes named (tests sharing
	// one control plane keep apart with it).
	only []string

	// The live nodes as last read, reused for cacheTTL: two list requests
	// fewer per create. A stale read costs nothing worse than a conflict
	// on the reservation, which reads again.
	mu       sync.Mutex
	cache    []SandboxNode
	cacheAt  time.Time
	cacheTTL time.Duration
	// view, once Watch started it, replaces the reads above while its
	// watch is healthy; own holds the SandboxNodes this Placer's
	// reservations returned until the watch delivers them, so the next
	// placement starts from the version it wrote rather than conflict.
	view *nodeView
	own  map[string]ownWrite
}

type ownWrite struct {
	node SandboxNode
	at   time.Time
}

// ownWriteTTL bounds how long a Placer prefers its own write of a node
// to the watch's copy (a relist may skip its version).
const ownWriteTTL = 5 * time.Second

// Watch starts the Placer's watch of the Leases and SandboxNodes, which
// serves placement and the Router's routing from then on until ctx is
// done. Calling it again does nothing.
func (p *Placer) Watch(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.view != nil {
		return
	}
	p.view = newNodeView(p.c, p.seen)
	p.view.run(ctx)
}

// seen drops the Placer's own write of n once the watch delivers it.
func (p *Placer) seen(n *SandboxNode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w, ok := p.own[n.Name]; ok && w.node.ResourceVersion == n.ResourceVersion {
		delete(p.own, n.Name)
	}
}

// watchedLeases returns the watched Leases, false without a healthy
// watch.
func (p *Placer) watchedLeases() ([]coordinationv1.Lease, bool) {
	p.mu.Lock()
	v := p.view
	p.mu.Unlock()
	if v == nil {
		return nil, false
	}
	return v.allLeases(p.now())
}

// viewGen is the watch's generation, false without a watch.
func (p *Placer) viewGen() (uint64, bool) {
	p.mu.Lock()
	v := p.view
	p.mu.Unlock()
	if v == nil {
		return 0, false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.gen, true
}

// watchedLiveNodes returns the live nodes from the watch, with the
// Placer's own recent writes in place of the watch's older copies, and
// false when there is no healthy watch.
func (p *Placer) watchedLiveNodes() ([]SandboxNode, uint64, bool) {
	p.mu.Lock()
	v := p.view
	p.mu.Unlock()
	if v == nil {
		return nil, 0, false
	}
	nodes, gen, ok := v.live(p.now())
	if !ok {
		return nil, 0, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range nodes {
		if w, ok := p.own[nodes[i].Name]; ok {
			if p.now().Sub(w.at) < ownWriteTTL {
				nodes[i] = w.node
			} else {
				delete(p.own, nodes[i].Name)
			}
		}
	}
	return slices.DeleteFunc(nodes, func(n SandboxNode) bool {
		return n.Spec.Address == "" || (p.only != nil && !slices.Contains(p.only, n.Name))
	}), gen, true
}

// placementCacheTTL is how long a Placer reuses its read of the live
// nodes; small against a Lease's duration.
const placementCacheTTL = 500 * time.Millisecond

// NewPlacer returns a Placer that draws k candidates (DefaultCandidates
// when k <= 0).
func NewPlacer(c *Client, k int) *Placer {
	if k <= 0 {
		k = DefaultCandidates
	}
	return &Placer{c: c, k: k, now: time.Now, cacheTTL: placementCacheTTL}
}

// LiveNodes returns the SandboxNodes whose Lease is live.
func (p *Placer) LiveNodes(ctx context.Context) ([]SandboxNode, error) {
	leases, err := p.c.ListLeases(ctx)
	if err != nil {
		return nil, err
	}
	now := p.now()
	live := make(map[string]bool, len(leases))
	for i := range leases {
		if leaseLive(&leases[i], now) {
			live[leases[i].Name] = true
		}
	}
	nodes, err := p.c.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(nodes, func(n SandboxNode) bool {
		return !live[n.Name] || n.Spec.Address == "" || (p.only != nil && !slices.Contains(p.only, n.Name))
	}), nil
}

// Place picks a live node with room for a sandbox of template, other than
// the nodes in exclude, and reserves a slot on it: the reservation is
// written with the resourceVersion read, so of two replicas taking a
// node's last slot at once, one gets a conflict and places again.
func (p *Placer) Place(ctx context.Context, template string, exclude ...string) (*SandboxNode, error) {
	return p.PlaceAmong(ctx, template, func(name string) bool { return !slices.Contains(exclude, name) })
}

// conflictBudget bounds how long a write that keeps meeting conflicts
// (a reservation written with the resourceVersion read) is tried again;
// before each try it waits a random while, up to maxConflictWait and
// growing with each try, so replicas that want the same object do not keep
// meeting. Eight replicas on one node gave up after eight tries without
// waits, and one in a CI run under the race detector after sixteen with
// them: a count of tries is no bound for a slow API server, a time is.
const (
	conflictBudget  = 10 * time.Second
	maxConflictWait = 64 * time.Millisecond
)

// conflictBackoff waits before try number attempt (from 1) of a write that
// met a conflict, which started at start; it fails, naming what, when the
// budget is spent or ctx ends.
func conflictBackoff(ctx context.Context, start time.Time, attempt int, what string) error {
	if time.Since(start) > conflictBudget {
		return fmt.Errorf("%s: it kept meeting concurrent changes for %s (%d attempts)", what, conflictBudget, attempt)
	}
	wait := time.Duration(rand.Int64N(int64(min(time.Millisecond<<min(attempt, 16), maxConflictWait))))
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// PlaceAmong is Place among the nodes allowed says yes to.
func (p *Placer) PlaceAmong(ctx context.Context, template string, allowed func(node string) bool) (*SandboxNode, error) {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := conflictBackoff(ctx, start, attempt, "placing a sandbox: the nodes' capacity changed"); err != nil {
				return nil, err
			}
		}
		nodes, err := p.cachedLiveNodes(ctx, attempt > 0)
		if err != nil {
			return nil, err
		}
		nodes = slices.DeleteFunc(nodes, func(n SandboxNode) bool { return !hasRoom(&n) || !allowed(n.Name) })
		if len(nodes) == 0 {
			return nil, ErrNoNode
		}
		best := pick(nodes, p.k, template)
		best.Status.Reserved++
		out, err := p.c.UpdateNodeStatus(ctx, best)
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		p.remember(out)
		return out, nil
	}
}

// cachedLiveNodes returns a copy of the live nodes: from the watch when
// it is healthy, else read again when the cache is older than cacheTTL;
// fresh (after a conflict) reads the API server.
func (p *Placer) cachedLiveNodes(ctx context.Context, fresh bool) ([]SandboxNode, error) {
	if !fresh {
		if nodes, _, ok := p.watchedLiveNodes(); ok {
			return nodes, nil
		}
	}
	p.mu.Lock()
	if !fresh && p.cache != nil && p.now().Sub(p.cacheAt) < p.cacheTTL {
		nodes := slices.Clone(p.cache)
		p.mu.Unlock()
		return nodes, nil
	}
	p.mu.Unlock()
	nodes, err := p.LiveNodes(ctx)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.cache, p.cacheAt = slices.Clone(nodes), p.now()
	p.mu.Unlock()
	return nodes, nil
}

// remember puts the node a reservation returned in the cache, so the next
// placement starts from its new resourceVersion and count.
func (p *Placer) remember(n *SandboxNode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.view != nil {
		if p.own == nil {
			p.own = map[string]ownWrite{}
		}
		p.own[n.Name] = ownWrite{node: *n, at: p.now()}
	}
	for i := range p.cache {
		if p.cache[i].Name == n.Name {
			p.cache[i] = *n
		}
	}
}

func hasRoom(n *SandboxNode) bool {
	return n.Spec.MaxSandboxes <= 0 || n.Status.Sandboxes+n.Status.Reserved < n.Spec.MaxSandboxes
}

// pick draws k of nodes at random and returns the best by score.
func pick(nodes []SandboxNode, k int, template string) *SandboxNode {
	rand.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	cands := nodes[:min(k, len(nodes))]
	best := &cands[0]
	for i := range cands[1:] {
		if c := &cands[i+1]; score(c, template) > score(best, template) {
			best = c
		}
	}
	return best
}

// score ranks a node for a sandbox of template: free memory and CPU per
// sandbox it holds or has been promised, doubled where the template's
// layers are already there and doubled again where one is warm.
func score(n *SandboxNode, template string) float64 {
	st := &n.Status
	s := float64(st.FreeMemoryBytes>>20) * (1 + float64(st.FreeCPUMillis)/1000) / float64(1+st.Sandboxes+st.Reserved)
	if template != "" && slices.Contains(st.Templates, template) {
		s *= 2
	}
	if template != "" && slices.Contains(st.WarmTemplates, template) {
		s *= 2
	}
	return s
}
