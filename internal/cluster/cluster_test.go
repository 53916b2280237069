package cluster

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSandboxObjectRoundTrip(t *testing.T) {
	c := client(t)
	ctx := t.Context()
	end := metav1.NewTime(time.Now().Add(time.Minute).Truncate(time.Second))
	sb := &Sandbox{
		ObjectMeta: metav1.ObjectMeta{Name: "roundtrip1", Labels: map[string]string{NodeLabel: "rt-node"}},
		Spec:       SandboxSpec{TemplateID: "base", TeamID: "team1", EndAt: &end, Metadata: map[string]string{"k": "v"}},
		Status:     SandboxStatus{Phase: PhaseRunning, NodeName: "rt-node", Address: "127.0.0.1:1"},
	}
	if _, err := c.CreateSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetSandbox(ctx, "roundtrip1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.TemplateID != "base" || got.Spec.Metadata["k"] != "v" || !got.Spec.EndAt.Equal(&end) {
		t.Errorf("spec = %+v, want what was created", got.Spec)
	}
	if got.Status.NodeName != "rt-node" || got.Status.Address != "127.0.0.1:1" || got.Status.Phase != PhaseRunning {
		t.Errorf("status = %+v, want the node's", got.Status)
	}
	l, err := c.ListSandboxes(ctx, NodeLabel+"=rt-node")
	if err != nil || len(l) != 1 || l[0].Name != "roundtrip1" {
		t.Errorf("list by node = %v, %v; want roundtrip1", l, err)
	}
	if err := c.DeleteSandbox(ctx, "roundtrip1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSandbox(ctx, "roundtrip1"); !apierrors.IsNotFound(err) {
		t.Errorf("get after delete: %v, want not found", err)
	}
}

// The CRD's schema refuses what it does not describe.
func TestSandboxSchemaRefusesBadPhase(t *testing.T) {
	c := client(t)
	ctx := t.Context()
	if _, err := c.CreateSandbox(ctx, &Sandbox{
		ObjectMeta: metav1.ObjectMeta{Name: "badphase"},
		Spec:       SandboxSpec{TemplateID: "base", TeamID: "t"},
		Status:     SandboxStatus{Phase: "Dancing"},
	}); err == nil {
		t.Error("status.phase Dancing accepted")
	}
	t.Cleanup(func() { _ = c.DeleteSandbox(context.Background(), "badphase") })
}

// testNode registers a node agent with a fixed sandbox count.
func testNode(t *testing.T, c *Client, name string, maxSandboxes int, lease time.Duration, exists func(string) bool) *Node {
	t.Helper()
	return newTestNode(t, NodeConfig{
		Client: c, Name: name, Address: "127.0.0.1:" + name, MaxSandboxes: maxSandboxes, LeaseDuration: lease,
		Exists: func(_ context.Context, id string) (bool, error) { return exists(id), nil },
	})
}

// registerNode registers a node agent (Lease, SandboxNode) for the node
// serving at addr, which holds every sandbox asked about.
func registerNode(t *testing.T, c *Client, name, addr string, lease time.Duration) *Node {
	t.Helper()
	return newTestNode(t, NodeConfig{
		Client: c, Name: name, Address: addr, LeaseDuration: lease,
		Exists: func(context.Context, string) (bool, error) { return true, nil },
	})
}

// newTestNode registers the node agent of cfg, which reports no sandboxes
// of its own, and returns it for the test to Run or not.
func newTestNode(t *testing.T, cfg NodeConfig) *Node {
	t.Helper()
	cfg.Sandboxes = func(context.Context) (int, error) { return 0, nil }
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Register(t.Context()); err != nil {
		t.Fatal(err)
	}
	return n
}

// placerOn returns a Placer that only sees the nodes named prefix*, so
// tests sharing the control plane keep apart.
func placerOn(c *Client, k int, names ...string) *Placer {
	p := NewPlacer(c, k)
	p.only = names
	return p
}

func TestPlacementFillsNodesAndRefusesPastCapacity(t *testing.T) {
	c := client(t)
	ctx := t.Context()
	testNode(t, c, "fill-a", 2, time.Minute, func(string) bool { return true })
	testNode(t, c, "fill-b", 2, time.Minute, func(string) bool { return true })
	p := placerOn(c, 2, "fill-a", "fill-b")
	per := map[string]int{}
	for range 4 {
		n, err := p.Place(ctx, "base")
		if err != nil {
			t.Fatal(err)
		}
		per[n.Name]++
	}
	if per["fill-a"] != 2 || per["fill-b"] != 2 {
		t.Errorf("placements per node = %v, want 2 each", per)
	}
	if _, err := p.Place(ctx, "base"); !errors.Is(err, ErrNoNode) {
		t.Errorf("fifth placement on two nodes of 2: %v, want ErrNoNode", err)
	}
}

// A sandbox of a template goes to the node whose warm pool keeps it.
func TestPlacementPrefersWarmTemplate(t *testing.T) {
	c := client(t)
	ctx := t.Context()
	testNode(t, c, "warm-a", 0, time.Minute, func(string) bool { return true })
	n, err := NewNode(NodeConfig{
		Client: c, Name: "warm-b", Address: "127.0.0.1:warm-b", LeaseDuration: time.Minute, WarmTemplates: []string{"ci"},
		Sandboxes: func(context.Context) (int, error) { return 0, nil },
		Exists:    func(context.Context, string) (bool, error) { return true, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Register(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := placerOn(c, 2, "warm-a", "warm-b").Place(ctx, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "warm-b" {
		t.Errorf("template ci placed on %s, want warm-b whose pool keeps it", got.Name)
	}
}

// Two API replicas placing at once never promise a node more than it
// holds: reservations go through resourceVersion.
// TestContendedPlacementSucceeds: replicas that all want the one node
// with room keep getting each other's conflicts; every placement must
// still land (the scale simulation saw one give up after 8 conflicts).
func TestContendedPlacementSucceeds(t *testing.T) {
	c := client(t)
	const replicas, tries = 8, 15
	testNode(t, c, "contended", replicas*tries, time.Minute, func(string) bool { return true })
	var placed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, replicas*tries)
	for range replicas {
		p := placerOn(c, 2, "contended")
		wg.Go(func() {
			for range tries {
				if _, err := p.Place(t.Context(), ""); err != nil {
					errs <- err
					continue
				}
				placed.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	sn, err := c.GetNode(t.Context(), "contended")
	if err != nil {
		t.Fatal(err)
	}
	if got := placed.Load(); got != replicas*tries || sn.Status.Reserved != int(got) {
		t.Errorf("%d placements, %d reserved, want %d of each", got, sn.Status.Reserved, replicas*tries)
	}
}

func TestConcurrentPlacementDoesNotOverfill(t *testing.T) {
	c := client(t)
	const perNode, replicas, tries = 5, 4, 10
	names := []string{"conc-a", "conc-b", "conc-c"}
	for _, n := range names {
		testNode(t, c, n, perNode, time.Minute, func(string) bool { return true })
	}
	var placed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, replicas*tries)
	for range replicas {
		p := placerOn(c, 2, names...) // a replica of its own
		wg.Go(func() {
			for range tries {
				_, err := p.Place(t.Context(), "")
				switch {
				case err == nil:
					placed.Add(1)
				case !errors.Is(err, ErrNoNode):
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, want := placed.Load(), int64(perNode*len(names)); got != want {
		t.Errorf("%d placements succeeded, want exactly the capacity %d", got, want)
	}
	total := 0
	for _, n := range names {
		sn, err := c.GetNode(t.Context(), n)
		if err != nil {
			t.Fatal(err)
		}
		if sn.Status.Reserved > perNode {
			t.Errorf("node %s promised %d sandboxes, holds %d", n, sn.Status.Reserved, perNode)
		}
		total += sn.Status.Reserved
	}
	if total != int(placed.Load()) {
		t.Errorf("reservations %d, placements %d", total, placed.Load())
	}
}

// A node that stops renewing its Lease drops out of placement once the
// Lease runs out, and comes back when it renews.
func TestDeadNodeLeavesPlacement(t *testing.T) {
	c := client(t)
	ctx := t.Context()
	testNode(t, c, "live-a", 0, time.Minute, func(string) bool { return true })
	dead := testNode(t, c, "dying-b", 0, time.Second, func(string) bool { return true })
	p := placerOn(c, 2, "live-a", "dying-b")
	waitFor(t, 30*time.Second, "dying-b's Lease to run out", func() bool {
		nodes, err := p.LiveNodes(ctx)
		return err == nil && len(nodes) == 1 && nodes[0].Name == "live-a"
	})
	for range 5 {
		n, err := p.Place(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if n.Name != "live-a" {
			t.Fatalf("placed on %s, whose Lease ran out", n.Name)
		}
	}
	if err := dead.Register(ctx); err != nil {
		t.Fatal(err)
	}
	nodes, err := p.LiveNodes(ctx)
	if err != nil || len(nodes) != 2 {
		t.Errorf("live nodes after dying-b renewed: %v, %v; want both", names(nodes), err)
	}
}

// The node deletes the Sandboxes of sandboxes it no longer holds, and
// only its own.
func TestReconcileDeletesSandboxesGoneFromTheNode(t *testing.T) {
	c := client(t)
	ctx := t.Context()
	n := testNode(t, c, "recon-a", 0, time.Minute, func(id string) bool { return id == "reconkeep" })
	for _, sb := range []struct{ id, node string }{{"reconkeep", "recon-a"}, {"recongone", "recon-a"}, {"reconother", "recon-b"}} {
		if _, err := c.CreateSandbox(ctx, &Sandbox{
			ObjectMeta: metav1.ObjectMeta{Name: sb.id, Labels: map[string]string{NodeLabel: sb.node}},
			Spec:       SandboxSpec{TemplateID: "base", TeamID: "t"},
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.DeleteSandbox(context.Background(), sb.id) })
	}
	if err := n.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{"reconkeep": true, "recongone": false, "reconother": true} {
		_, err := c.GetSandbox(ctx, id)
		if got := err == nil; got != want {
			t.Errorf("Sandbox %s present = %v (%v), want %v", id, got, err, want)
		}
	}
}

func names(nodes []SandboxNode) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.Name)
	}
	return out
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A node whose Lease runs out has its Sandboxes marked Lost; back, it
// re-adopts those it still holds and deletes the rest.
func TestLostAndReadopted(t *testing.T) {
	c := client(t)
	ctx := t.Context()
	holds := map[string]bool{"lostkeep": true}
	n := testNode(t, c, "lost-a", 0, time.Second, func(id string) bool { return holds[id] })
	for _, id := range []string{"lostkeep", "lostgone"} {
		if _, err := c.CreateSandbox(ctx, &Sandbox{
			ObjectMeta: metav1.ObjectMeta{Name: id, Labels: map[string]string{NodeLabel: "lost-a"}},
			Spec:       SandboxSpec{TemplateID: "base", TeamID: "t"},
			Status:     SandboxStatus{Phase: PhaseRunning, NodeName: "lost-a", Address: "127.0.0.1:1"},
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.DeleteSandbox(context.Background(), id) })
	}
	s := NewLostSweeper(c, nil)
	waitFor(t, 30*time.Second, "lost-a's sandboxes to be marked Lost", func() bool {
		if _, err := s.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"lostkeep", "lostgone"} {
			if sb, err := c.GetSandbox(ctx, id); err != nil || sb.Status.Phase != PhaseLost {
				return false
			}
		}
		return true
	})
	if err := n.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if sb, err := c.GetSandbox(ctx, "lostkeep"); err != nil || sb.Status.Phase != PhaseRunning {
		t.Errorf("lostkeep after the node came back: %+v, %v; want Running", sb, err)
	}
	if _, err := c.GetSandbox(ctx, "lostgone"); !apierrors.IsNotFound(err) {
		t.Errorf("lostgone after the node came back without it: %v, want deleted", err)
	}
}

// A running node reconciles from its watch of its own Sandboxes.
func TestRunReconcilesFromItsWatch(t *testing.T) {
	c := client(t)
	ctx := t.Context()
	n := testNode(t, c, "watch-a", 0, 3*time.Second, func(id string) bool { return id == "watchkeep" })
	go n.Run(ctx)
	for _, id := range []string{"watchkeep", "watchgone"} {
		if _, err := c.CreateSandbox(ctx, &Sandbox{
			ObjectMeta: metav1.ObjectMeta{Name: id, Labels: map[string]string{NodeLabel: "watch-a"}},
			Spec:       SandboxSpec{TemplateID: "base", TeamID: "t"},
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.DeleteSandbox(context.Background(), id) })
	}
	waitFor(t, 30*time.Second, "watchgone's Sandbox to be deleted by the running node", func() bool {
		_, err := c.GetSandbox(ctx, "watchgone")
		return apierrors.IsNotFound(err)
	})
	if _, err := c.GetSandbox(ctx, "watchkeep"); err != nil {
		t.Errorf("watchkeep: %v, want it kept", err)
	}
}
