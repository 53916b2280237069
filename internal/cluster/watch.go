package cluster

import (
	"context"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// nodeView is a watched copy of the Leases and SandboxNodes: the api
// role's placement and routing read it instead of listing both every
// 500 ms to 1 s per replica, so an idle replica makes no requests and a
// busy one none per create beyond its reservation. Liveness is judged
// from the copy's renew times against the clock, as from a list, so a
// node's death is seen when its Lease runs out, as before.
//
// A watch that broke, or went quiet while Leases should be renewing (each
// node renews three times per Lease, so a silence of half the shortest
// live Lease means the watch, not every node, stopped), is not trusted:
// the callers fall back to reading the API server, with the stale-view
// allowance they had (Router.liveNodes), so a partition that cuts the
// watch is handled as a failed read was.
type nodeView struct {
	leaseInf, nodeInf cache.SharedIndexInformer
	// seen is called with each SandboxNode the watch delivers.
	seen func(*SandboxNode)

	mu         sync.Mutex
	leases     map[string]coordinationv1.Lease
	nodes      map[string]SandboxNode
	leaseEvent time.Time // the last Lease event
	event      time.Time // the last event of either
	errAt      time.Time // the last watch error
	gen        uint64    // counts changes, for callers' caches
}

func newNodeView(c *Client, seen func(*SandboxNode)) *nodeView {
	v := &nodeView{seen: seen, leases: map[string]coordinationv1.Lease{}, nodes: map[string]SandboxNode{}}
	la := c.leaseAPI()
	v.leaseInf = cache.NewSharedIndexInformer(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return la.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return la.Watch(ctx, o)
		},
	}, &coordinationv1.Lease{}, 0, cache.Indexers{})
	v.nodeInf = dynamicinformer.NewFilteredDynamicInformer(c.dyn, nodesGVR, c.ns, 0, cache.Indexers{}, nil).Informer()
	_, _ = v.leaseInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    v.putLease,
		UpdateFunc: func(_, o any) { v.putLease(o) },
		DeleteFunc: func(o any) { v.drop(o, true) },
	})
	_, _ = v.nodeInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    v.putNode,
		UpdateFunc: func(_, o any) { v.putNode(o) },
		DeleteFunc: func(o any) { v.drop(o, false) },
	})
	onErr := func(_ *cache.Reflector, err error) {
		v.mu.Lock()
		v.errAt = time.Now()
		v.mu.Unlock()
	}
	_ = v.leaseInf.SetWatchErrorHandler(onErr)
	_ = v.nodeInf.SetWatchErrorHandler(onErr)
	return v
}

func (v *nodeView) run(ctx context.Context) {
	go v.leaseInf.Run(ctx.Done())
	go v.nodeInf.Run(ctx.Done())
}

func (v *nodeView) putLease(o any) {
	l, ok := o.(*coordinationv1.Lease)
	if !ok {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.leases[l.Name] = *l.DeepCopy()
	v.leaseEvent, v.event = time.Now(), time.Now()
	v.gen++
}

func (v *nodeView) putNode(o any) {
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return
	}
	n, err := fromUnstructured[SandboxNode](u)
	if err != nil {
		return
	}
	v.mu.Lock()
	v.nodes[n.Name] = *n
	v.event = time.Now()
	v.gen++
	v.mu.Unlock()
	if v.seen != nil {
		v.seen(n)
	}
}

func (v *nodeView) drop(o any, lease bool) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	m, ok := o.(metav1.Object)
	if !ok {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if lease {
		delete(v.leases, m.GetName())
	} else {
		delete(v.nodes, m.GetName())
	}
	v.event = time.Now()
	v.gen++
}

// live returns the SandboxNodes whose Lease is live at now and the
// view's generation, and false when the view is not to be trusted (not
// synced yet, its watch broken or quiet, or no live Lease in it, which a
// read confirms cheaply).
func (v *nodeView) live(now time.Time) ([]SandboxNode, uint64, bool) {
	if !v.leaseInf.HasSynced() || !v.nodeInf.HasSynced() {
		return nil, 0, false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.errAt.IsZero() && !v.event.After(v.errAt) {
		return nil, 0, false
	}
	var shortest time.Duration
	out := make([]SandboxNode, 0, len(v.nodes))
	for name, n := range v.nodes {
		l, ok := v.leases[name]
		if !ok || !leaseLive(&l, now) {
			continue
		}
		if d := time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second; shortest == 0 || d < shortest {
			shortest = d
		}
		out = append(out, n)
	}
	if len(out) == 0 || now.Sub(v.leaseEvent) > shortest/2 {
		return nil, 0, false
	}
	return out, v.gen, true
}

// allLeases returns the watched Leases, false as live does.
func (v *nodeView) allLeases(now time.Time) ([]coordinationv1.Lease, bool) {
	if _, _, ok := v.live(now); !ok {
		return nil, false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]coordinationv1.Lease, 0, len(v.leases))
	for _, l := range v.leases {
		out = append(out, l)
	}
	return out, true
}
