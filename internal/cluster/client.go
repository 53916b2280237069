package cluster

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	coordclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// Client reads and writes sandpit's objects in one namespace. Sandbox and
// SandboxNode go through the dynamic client and convert to the typed
// structs of types.go: that needs no generated clients or deep copies.
type Client struct {
	ns     string
	dyn    dynamic.Interface
	leases coordclient.LeasesGetter
}

// Config builds a REST config from a kubeconfig file, or from the pod's
// service account when kubeconfig is empty (in-cluster).
func Config(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster Kubernetes config (pass --kubeconfig outside a pod): %w", err)
		}
		return c, nil
	}
	c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading kubeconfig %s: %w", kubeconfig, err)
	}
	return c, nil
}

// NewClient returns a client of namespace ns.
func NewClient(cfg *rest.Config, ns string) (*Client, error) {
	cfg = rest.CopyConfig(cfg)
	// Placement and heartbeats are a handful of requests a second per
	// process; client-go's default of 5 QPS would queue creates in bursts.
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 100, 200
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client for %s: %w", cfg.Host, err)
	}
	co, err := coordclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("coordination client for %s: %w", cfg.Host, err)
	}
	return &Client{ns: ns, dyn: dyn, leases: co}, nil
}

// Namespace is the client's namespace.
func (c *Client) Namespace() string { return c.ns }

func (c *Client) sandboxes() dynamic.ResourceInterface {
	return c.dyn.Resource(sandboxesGVR).Namespace(c.ns)
}
func (c *Client) nodes() dynamic.ResourceInterface     { return c.dyn.Resource(nodesGVR).Namespace(c.ns) }
func (c *Client) leaseAPI() coordclient.LeaseInterface { return c.leases.Leases(c.ns) }

// CreateSandbox creates sb's object, status included (the API replica
// writes it once the node has the sandbox running).
func (c *Client) CreateSandbox(ctx context.Context, sb *Sandbox) (*Sandbox, error) {
	sb.APIVersion, sb.Kind = Group+"/"+Version, "Sandbox"
	u, err := toUnstructured(sb)
	if err != nil {
		return nil, err
	}
	out, err := c.sandboxes().Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating Sandbox %s: %w", sb.Name, err)
	}
	// The status subresource ignores status on create.
	if sb.Status != (SandboxStatus{}) {
		if err := unstructured.SetNestedField(out.Object, u.Object["status"], "status"); err != nil {
			return nil, fmt.Errorf("setting status of Sandbox %s: %w", sb.Name, err)
		}
		out, err = c.sandboxes().UpdateStatus(ctx, out, metav1.UpdateOptions{})
		if err != nil {
			return nil, fmt.Errorf("writing status of Sandbox %s: %w", sb.Name, err)
		}
	}
	return fromUnstructured[Sandbox](out)
}

// GetSandbox returns sandbox id's object.
func (c *Client) GetSandbox(ctx context.Context, id string) (*Sandbox, error) {
	u, err := c.sandboxes().Get(ctx, id, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("getting Sandbox %s: %w", id, err)
	}
	return fromUnstructured[Sandbox](u)
}

// ListSandboxes lists the Sandboxes that match the label selector ("" for
// all).
func (c *Client) ListSandboxes(ctx context.Context, selector string) ([]Sandbox, error) {
	l, err := c.sandboxes().List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("listing Sandboxes (%q): %w", selector, err)
	}
	out := make([]Sandbox, 0, len(l.Items))
	for i := range l.Items {
		sb, err := fromUnstructured[Sandbox](&l.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, *sb)
	}
	return out, nil
}

// UpdateSandbox writes sb's spec and metadata; a stale
// sb.ResourceVersion fails with a conflict.
func (c *Client) UpdateSandbox(ctx context.Context, sb *Sandbox) (*Sandbox, error) {
	sb.APIVersion, sb.Kind = Group+"/"+Version, "Sandbox"
	u, err := toUnstructured(sb)
	if err != nil {
		return nil, err
	}
	out, err := c.sandboxes().Update(ctx, u, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("updating Sandbox %s: %w", sb.Name, err)
	}
	return fromUnstructured[Sandbox](out)
}

// UpdateSandboxStatus writes sb's status; a stale sb.ResourceVersion
// fails with a conflict.
func (c *Client) UpdateSandboxStatus(ctx context.Context, sb *Sandbox) (*Sandbox, error) {
	sb.APIVersion, sb.Kind = Group+"/"+Version, "Sandbox"
	u, err := toUnstructured(sb)
	if err != nil {
		return nil, err
	}
	out, err := c.sandboxes().UpdateStatus(ctx, u, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("updating status of Sandbox %s: %w", sb.Name, err)
	}
	return fromUnstructured[Sandbox](out)
}

// WatchSandboxes keeps a local copy of the Sandboxes that match the label
// selector, by one list and then a watch, until ctx is done. The returned
// function lists the copy; ok is false until the first list is in.
func (c *Client) WatchSandboxes(ctx context.Context, selector string) (list func() ([]Sandbox, bool, error)) {
	inf := dynamicinformer.NewFilteredDynamicInformer(c.dyn, sandboxesGVR, c.ns, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = selector })
	go inf.Informer().Run(ctx.Done())
	return func() ([]Sandbox, bool, error) {
		if !inf.Informer().HasSynced() {
			return nil, false, nil
		}
		objs := inf.Informer().GetStore().List()
		out := make([]Sandbox, 0, len(objs))
		for _, o := range objs {
			u, ok := o.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			sb, err := fromUnstructured[Sandbox](u)
			if err != nil {
				return nil, true, err
			}
			out = append(out, *sb)
		}
		return out, true, nil
	}
}

// DeleteSandbox deletes sandbox id's object.
func (c *Client) DeleteSandbox(ctx context.Context, id string) error {
	if err := c.sandboxes().Delete(ctx, id, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("deleting Sandbox %s: %w", id, err)
	}
	return nil
}

// GetNode returns node name's SandboxNode.
func (c *Client) GetNode(ctx context.Context, name string) (*SandboxNode, error) {
	u, err := c.nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("getting SandboxNode %s: %w", name, err)
	}
	return fromUnstructured[SandboxNode](u)
}

// ListNodes lists every SandboxNode.
func (c *Client) ListNodes(ctx context.Context) ([]SandboxNode, error) {
	l, err := c.nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing SandboxNodes: %w", err)
	}
	out := make([]SandboxNode, 0, len(l.Items))
	for i := range l.Items {
		n, err := fromUnstructured[SandboxNode](&l.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, *n)
	}
	return out, nil
}

// CreateNode creates n's SandboxNode (spec only).
func (c *Client) CreateNode(ctx context.Context, n *SandboxNode) (*SandboxNode, error) {
	n.APIVersion, n.Kind = Group+"/"+Version, "SandboxNode"
	u, err := toUnstructured(n)
	if err != nil {
		return nil, err
	}
	out, err := c.nodes().Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating SandboxNode %s: %w", n.Name, err)
	}
	return fromUnstructured[SandboxNode](out)
}

// UpdateNode writes n's spec. n.ResourceVersion must be the one read: a
// stale one fails with a conflict (apierrors.IsConflict).
func (c *Client) UpdateNode(ctx context.Context, n *SandboxNode) (*SandboxNode, error) {
	u, err := toUnstructured(n)
	if err != nil {
		return nil, err
	}
	out, err := c.nodes().Update(ctx, u, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("updating SandboxNode %s: %w", n.Name, err)
	}
	return fromUnstructured[SandboxNode](out)
}

// UpdateNodeStatus writes n's status, with the same optimistic
// concurrency as UpdateNode.
func (c *Client) UpdateNodeStatus(ctx context.Context, n *SandboxNode) (*SandboxNode, error) {
	u, err := toUnstructured(n)
	if err != nil {
		return nil, err
	}
	out, err := c.nodes().UpdateStatus(ctx, u, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("updating status of SandboxNode %s: %w", n.Name, err)
	}
	return fromUnstructured[SandboxNode](out)
}

// ListLeases lists the namespace's Leases.
func (c *Client) ListLeases(ctx context.Context) ([]coordinationv1.Lease, error) {
	l, err := c.leaseAPI().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing Leases: %w", err)
	}
	return l.Items, nil
}

func toUnstructured(obj any) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("converting %T: %w", obj, err)
	}
	return &unstructured.Unstructured{Object: m}, nil
}

func fromUnstructured[T any](u *unstructured.Unstructured) (*T, error) {
	var out T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &out); err != nil {
		return nil, fmt.Errorf("reading %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return &out, nil
}
