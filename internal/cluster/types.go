// Package cluster runs sandpit across many machines with the Kubernetes API
// as its only shared state: a Sandbox object per sandbox (name = sandbox ID,
// status.nodeName = where it runs), a coordination.k8s.io Lease per node for
// liveness, and a SandboxNode per node for the capacity placement reads.
// The node role keeps its Lease and capacity fresh and reconciles the
// Sandbox objects placed on it with what it runs; the API role places
// creates on live nodes (read from a watch, watch.go) and routes every
// request that names a sandbox to the node that runs it, pages the sandbox
// list across nodes (list.go), admits creates under the teams' limits
// (limits.go) and merges the nodes' audit logs, which stay on the nodes
// because their volume does not fit etcd (audit.go). The manifests are in
// deploy/kubernetes.
package cluster

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The group, version and resources of deploy/kubernetes's CRDs.
const (
	Group   = "sandpit.dev"
	Version = "v1alpha1"
)

var (
	sandboxesGVR = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "sandboxes"}
	nodesGVR     = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "sandboxnodes"}
)

// NodeLabel on a Sandbox names its node, so a node lists its own
// Sandboxes with a label selector instead of reading everyone's.
const NodeLabel = "sandpit.dev/node"

// Sandbox phases.
const (
	PhaseRunning = "Running"
	PhasePaused  = "Paused"
	PhaseLost    = "Lost"
)

// Sandbox is the sandboxes.sandpit.dev object of one sandbox.
type Sandbox struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              SandboxSpec   `json:"spec"`
	Status            SandboxStatus `json:"status,omitempty"`
}

// SandboxSpec is what the client asked for.
type SandboxSpec struct {
	TemplateID string            `json:"templateID"`
	Alias      string            `json:"alias,omitempty"`
	TeamID     string            `json:"teamID"`
	EndAt      *metav1.Time      `json:"endAt,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
}

// SandboxStatus is what the node that runs the sandbox reports.
type SandboxStatus struct {
	Phase    string `json:"phase,omitempty"`
	NodeName string `json:"nodeName,omitempty"`
	// Address is host:port of the node's sandbox proxy.
	Address   string       `json:"address,omitempty"`
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
}

// SandboxNode is the sandboxnodes.sandpit.dev object of one node: where
// to reach it and the capacity it last reported. Liveness is its Lease's.
type SandboxNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              NodeSpec   `json:"spec"`
	Status            NodeStatus `json:"status,omitempty"`
}

// NodeSpec says where the node is.
type NodeSpec struct {
	// Address is host:port of the node's API and sandbox proxy.
	Address      string `json:"address"`
	MaxSandboxes int    `json:"maxSandboxes,omitempty"`
}

// NodeStatus is the node's capacity at ReportedAt.
type NodeStatus struct {
	FreeMemoryBytes int64 `json:"freeMemoryBytes,omitempty"`
	CPUCount        int   `json:"cpuCount,omitempty"`
	FreeCPUMillis   int   `json:"freeCPUMillis,omitempty"`
	Sandboxes       int   `json:"sandboxes,omitempty"`
	// Reserved counts creates API replicas placed here since the node's
	// last report; the node zeroes it when it reports.
	Reserved      int          `json:"reserved,omitempty"`
	Templates     []string     `json:"templates,omitempty"`
	WarmTemplates []string     `json:"warmTemplates,omitempty"`
	ReportedAt    *metav1.Time `json:"reportedAt,omitempty"`
}
