package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultLeaseDuration is how long a node counts as alive after its last
// renewal: the grace period before its sandboxes are reported gone.
const DefaultLeaseDuration = 15 * time.Second

// NodeConfig configures a Node.
type NodeConfig struct {
	Client *Client
	// Name is the node's name: its Lease's, its SandboxNode's and the
	// value of NodeLabel on its Sandboxes.
	Name string
	// Address is host:port the API replicas reach the node's daemon on.
	Address      string
	MaxSandboxes int
	// LeaseDuration defaults to DefaultLeaseDuration; the node renews
	// three times per duration, and reports its capacity as often.
	LeaseDuration time.Duration
	// WarmTemplates are the templates the node's warm pool keeps started:
	// placement prefers a node where a sandbox of the template is ready.
	WarmTemplates []string
	// Templates, when set, lists the templates (IDs and names) whose
	// layers the node holds besides its warm pool's: placement prefers
	// it for their sandboxes.
	Templates func(ctx context.Context) ([]string, error)
	// Sandboxes counts the sandboxes the node holds.
	Sandboxes func(ctx context.Context) (int, error)
	// Exists reports whether the node holds sandbox id: Sandboxes whose
	// sandbox is gone (it timed out, or the node restarted after a reboot)
	// are deleted.
	Exists func(ctx context.Context, id string) (bool, error)
	Logger *slog.Logger
}

// Node keeps one node's Lease and capacity fresh and its Sandboxes true.
type Node struct {
	cfg NodeConfig
	log *slog.Logger

	// The Lease and SandboxNode as last written: the next write starts
	// from them, and reads only when another writer (a replica's
	// reservation) came in between. Half the requests of an idle node.
	mu    sync.Mutex
	lease *coordinationv1.Lease
	self  *SandboxNode
}

// NewNode returns the agent of node cfg.Name.
func NewNode(cfg NodeConfig) (*Node, error) {
	if cfg.Client == nil || cfg.Name == "" || cfg.Address == "" || cfg.Sandboxes == nil || cfg.Exists == nil {
		return nil, errors.New("cluster node: Client, Name, Address, Sandboxes and Exists are required")
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Node{cfg: cfg, log: log.With("node", cfg.Name)}, nil
}

// Register announces the node: its SandboxNode (created, or its address
// updated), a first capacity report and a renewed Lease. After it, the
// node takes placements.
func (n *Node) Register(ctx context.Context) error {
	c := n.cfg.Client
	sn, err := c.GetNode(ctx, n.cfg.Name)
	switch {
	case apierrors.IsNotFound(err):
		if _, err := c.CreateNode(ctx, &SandboxNode{
			ObjectMeta: metav1.ObjectMeta{Name: n.cfg.Name},
			Spec:       NodeSpec{Address: n.cfg.Address, MaxSandboxes: n.cfg.MaxSandboxes},
		}); err != nil {
			return err
		}
	case err != nil:
		return err
	case sn.Spec.Address != n.cfg.Address || sn.Spec.MaxSandboxes != n.cfg.MaxSandboxes:
		sn.Spec = NodeSpec{Address: n.cfg.Address, MaxSandboxes: n.cfg.MaxSandboxes}
		if _, err = c.UpdateNode(ctx, sn); err != nil {
			return err
		}
	}
	if err := n.report(ctx); err != nil {
		return err
	}
	return n.renew(ctx)
}

// Run renews the Lease, reports capacity and reconciles the node's
// Sandboxes until ctx is done. Failures are logged and retried: a node
// that cannot reach the API server keeps serving its sandboxes, and is
// declared dead by the others when its Lease runs out.
func (n *Node) Run(ctx context.Context) {
	every := n.cfg.LeaseDuration / 3
	t := time.NewTicker(every)
	defer t.Stop()
	// The node's Sandboxes come by watch: a list of them all every few
	// seconds per node would be most of the API server's work at scale.
	mine := n.cfg.Client.WatchSandboxes(ctx, NodeLabel+"="+n.cfg.Name)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := n.renew(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("renewing the node's Lease", "err", err)
		}
		if err := n.report(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("reporting the node's capacity", "err", err)
		}
		sbs, synced, err := mine()
		if err == nil && synced {
			err = n.reconcile(ctx, sbs)
		}
		if err != nil && ctx.Err() == nil {
			n.log.Warn("reconciling the node's Sandboxes", "err", err)
		}
	}
}

// renew creates or renews the node's Lease.
func (n *Node) renew(ctx context.Context) error {
	leases := n.cfg.Client.leaseAPI()
	now := metav1.NewMicroTime(time.Now())
	secs := int32(n.cfg.LeaseDuration / time.Second)
	n.mu.Lock()
	l := n.lease.DeepCopy()
	n.mu.Unlock()
	if l != nil {
		n.renewed(l, now, secs)
		out, err := leases.Update(ctx, l, metav1.UpdateOptions{})
		if err == nil {
			n.keepLease(out)
			return nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("renewing Lease %s: %w", n.cfg.Name, err)
		}
	}
	l, err := leases.Get(ctx, n.cfg.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		out, err := leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: n.cfg.Name, Labels: map[string]string{"app.kubernetes.io/part-of": "sandpit"}},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity: &n.cfg.Name, LeaseDurationSeconds: &secs,
				AcquireTime: &now, RenewTime: &now,
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating Lease %s: %w", n.cfg.Name, err)
		}
		n.keepLease(out)
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting Lease %s: %w", n.cfg.Name, err)
	}
	n.renewed(l, now, secs)
	out, err := leases.Update(ctx, l, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("renewing Lease %s: %w", n.cfg.Name, err)
	}
	n.keepLease(out)
	return nil
}

// renewed sets l's renewal to now. A node back from the dead starts a new
// term: the others saw its Lease run out and reported its sandboxes gone.
func (n *Node) renewed(l *coordinationv1.Lease, now metav1.MicroTime, secs int32) {
	if !leaseLive(l, now.Time) {
		l.Spec.AcquireTime = &now
		transitions := int32(0)
		if l.Spec.LeaseTransitions != nil {
			transitions = *l.Spec.LeaseTransitions
		}
		transitions++
		l.Spec.LeaseTransitions = &transitions
	}
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &n.cfg.Name, &secs, &now
}

func (n *Node) keepLease(l *coordinationv1.Lease) {
	n.mu.Lock()
	n.lease = l
	n.mu.Unlock()
}

// report writes the node's capacity and clears the reservations API
// replicas made since the last report, as the count now includes them.
// A conflict (a replica reserved meanwhile) is retried on a fresh read.
func (n *Node) report(ctx context.Context) error {
	count, err := n.cfg.Sandboxes(ctx)
	if err != nil {
		return fmt.Errorf("counting sandboxes: %w", err)
	}
	st := NodeStatus{
		FreeMemoryBytes: memAvailable(),
		CPUCount:        goruntime.NumCPU(),
		FreeCPUMillis:   freeCPUMillis(),
		Sandboxes:       count,
		// A warm template's layers are on the node too.
		Templates:     n.cfg.WarmTemplates,
		WarmTemplates: n.cfg.WarmTemplates,
	}
	if n.cfg.Templates != nil {
		held, err := n.cfg.Templates(ctx)
		if err != nil {
			return fmt.Errorf("listing the templates held: %w", err)
		}
		st.Templates = slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(n.cfg.WarmTemplates), held...))))
	}
	now := metav1.Now()
	st.ReportedAt = &now
	n.mu.Lock()
	sn := n.self
	n.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if sn == nil {
			if sn, err = n.cfg.Client.GetNode(ctx, n.cfg.Name); err != nil {
				return err
			}
		}
		cp := *sn
		cp.Status = st
		out, err := n.cfg.Client.UpdateNodeStatus(ctx, &cp)
		if err == nil {
			n.mu.Lock()
			n.self = out
			n.mu.Unlock()
			return nil
		}
		if (!apierrors.IsConflict(err) && !apierrors.IsNotFound(err)) || attempt == 4 {
			return err
		}
		sn = nil
	}
}

// Reconcile makes the Sandboxes placed on this node true: those whose
// sandbox the node no longer holds (it timed out, was killed here, or
// ended with a reboot) are deleted, and those the API replicas marked
// Lost while the node was away, and which it still holds, are Running
// again: the node re-adopted them.
func (n *Node) Reconcile(ctx context.Context) error {
	sbs, err := n.cfg.Client.ListSandboxes(ctx, NodeLabel+"="+n.cfg.Name)
	if err != nil {
		return err
	}
	return n.reconcile(ctx, sbs)
}

func (n *Node) reconcile(ctx context.Context, sbs []Sandbox) error {
	var errs []error
	for _, sb := range sbs {
		ok, err := n.cfg.Exists(ctx, sb.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("checking sandbox %s: %w", sb.Name, err))
			continue
		}
		if ok {
			if sb.Status.Phase == PhaseLost {
				sb.Status.Phase = PhaseRunning
				if _, err := n.cfg.Client.UpdateSandboxStatus(ctx, &sb); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
					errs = append(errs, err)
					continue
				}
				n.log.Info("sandbox re-adopted after the node was away", "sandbox_id", sb.Name)
			}
			continue
		}
		if err := n.cfg.Client.DeleteSandbox(ctx, sb.Name); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
			continue
		}
		n.log.Info("sandbox gone from the node: its Sandbox deleted", "sandbox_id", sb.Name)
	}
	return errors.Join(errs...)
}

// leaseLive reports whether l was renewed within its duration of now.
func leaseLive(l *coordinationv1.Lease, now time.Time) bool {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return false
	}
	return now.Before(l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second))
}

// memAvailable is the kernel's estimate of memory available for new work
// (MemAvailable), in bytes; 0 when unknown.
func memAvailable() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// freeCPUMillis is the CPU the last minute's load average leaves free, in
// millicores.
func freeCPUMillis() int {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	load, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return max(0, goruntime.NumCPU()*1000-int(load*1000))
}
