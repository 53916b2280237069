package cluster

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// A template built through the API is built on one node: the API replicas
// record that node in a SandboxTemplate and send the template's requests
// (builds, uploads, status) there. With a registry (serve --registry) the
// node pushes each build as an OCI artifact and records its digest in
// status.image; from then on the template's sandboxes may start on any
// node, which pulls it on first use (share.go). Without one, they start
// on the node that built it.

var templatesGVR = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "sandboxtemplates"}

// Template phases.
const (
	TemplateBuilding = "Building"
	TemplateReady    = "Ready"
)

// SandboxTemplate is the sandboxtemplates.sandpit.dev object of a template
// built through the API; its name is the template's ID.
type SandboxTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              TemplateSpec   `json:"spec"`
	Status            TemplateStatus `json:"status,omitempty"`
}

// TemplateSpec names the template.
type TemplateSpec struct {
	TeamID  string   `json:"teamID,omitempty"`
	Aliases []string `json:"aliases,omitempty"`
	// Public is set when an admin made the template public: every team
	// may start it.
	Public bool `json:"public,omitempty"`
}

// TemplateStatus says where the template is.
type TemplateStatus struct {
	Phase   string `json:"phase,omitempty"`
	BuildID string `json:"buildID,omitempty"`
	// BuiltOn is the node that built the template.
	BuiltOn string `json:"builtOn,omitempty"`
	// Image is the registry's reference of the last build's artifact,
	// REPOSITORY@sha256:..., when the node that built it pushed it: any
	// node may then start the template.
	Image string `json:"image,omitempty"`
}

// RecordTemplate creates or updates the SandboxTemplate of template id,
// built on node, for the team ctx's request was authenticated as.
func (c *Client) RecordTemplate(ctx context.Context, id, node, buildID string, aliases []string) error {
	res := c.dyn.Resource(templatesGVR).Namespace(c.ns)
	team, _ := teamOf(ctx)
	t := &SandboxTemplate{
		TypeMeta:   metav1.TypeMeta{APIVersion: Group + "/" + Version, Kind: "SandboxTemplate"},
		ObjectMeta: metav1.ObjectMeta{Name: id},
		Spec:       TemplateSpec{Aliases: aliases, TeamID: team},
	}
	u, err := toUnstructured(t)
	if err != nil {
		return err
	}
	out, err := res.Get(ctx, id, metav1.GetOptions{})
	if err == nil {
		u.SetResourceVersion(out.GetResourceVersion())
		// A rebuild keeps what an admin made of the template.
		if spec, ok := out.Object["spec"].(map[string]any); ok && spec["public"] == true {
			u.Object["spec"].(map[string]any)["public"] = true
		}
		out, err = res.Update(ctx, u, metav1.UpdateOptions{})
	} else {
		out, err = res.Create(ctx, u, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("recording SandboxTemplate %s: %w", id, err)
	}
	st := map[string]any{"phase": TemplateBuilding, "builtOn": node, "buildID": buildID}
	// A rebuild leaves the last build's artifact in place: its sandboxes
	// still start anywhere meanwhile.
	if old, ok := out.Object["status"].(map[string]any); ok && old["image"] != nil {
		st["image"] = old["image"]
	}
	out.Object["status"] = st
	if _, err := res.UpdateStatus(ctx, out, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("recording where SandboxTemplate %s is: %w", id, err)
	}
	return nil
}

// RecordTemplateImage records that build buildID of template id, built on
// node, is in the registry as image (REPOSITORY@DIGEST): the template is
// Ready, and any node may start it. The SandboxTemplate is the API
// replica's to create; one that is missing (a build asked of the node
// directly) is an error apierrors.IsNotFound reports.
func (c *Client) RecordTemplateImage(ctx context.Context, id, node, buildID, image string) error {
	res := c.dyn.Resource(templatesGVR).Namespace(c.ns)
	for attempt := 0; ; attempt++ {
		out, err := res.Get(ctx, id, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("getting SandboxTemplate %s: %w", id, err)
		}
		out.Object["status"] = map[string]any{"phase": TemplateReady, "builtOn": node, "buildID": buildID, "image": image}
		_, err = res.UpdateStatus(ctx, out, metav1.UpdateOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) || attempt == 4 {
			return fmt.Errorf("recording the image of SandboxTemplate %s: %w", id, err)
		}
	}
}

// ListTemplates lists the SandboxTemplates.
func (c *Client) ListTemplates(ctx context.Context) ([]SandboxTemplate, error) {
	l, err := c.dyn.Resource(templatesGVR).Namespace(c.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing SandboxTemplates: %w", err)
	}
	out := make([]SandboxTemplate, 0, len(l.Items))
	for i := range l.Items {
		t, err := fromUnstructured[SandboxTemplate](&l.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, *t)
	}
	return out, nil
}

// WatchTemplates keeps a local copy of the SandboxTemplates, by one list
// and then a watch, until ctx is done. The returned function lists the
// copy; ok is false until the first list is in.
func (c *Client) WatchTemplates(ctx context.Context) (list func() ([]SandboxTemplate, bool)) {
	inf := dynamicinformer.NewFilteredDynamicInformer(c.dyn, templatesGVR, c.ns, 0, cache.Indexers{}, nil)
	go inf.Informer().Run(ctx.Done())
	return func() ([]SandboxTemplate, bool) {
		if !inf.Informer().HasSynced() {
			return nil, false
		}
		objs := inf.Informer().GetStore().List()
		out := make([]SandboxTemplate, 0, len(objs))
		for _, o := range objs {
			u, ok := o.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			if t, err := fromUnstructured[SandboxTemplate](u); err == nil {
				out = append(out, *t)
			}
		}
		return out, true
	}
}

// templateNode returns the node that built the template a client names by
// ID, name or name:tag, or "" for a template no SandboxTemplate records
// (the built-in ones, on every node).
func templateNode(ts []SandboxTemplate, ref string) string {
	if t := findTemplate(ts, ref); t != nil {
		return t.Status.BuiltOn
	}
	return ""
}

// sandboxTemplateNode returns the node a sandbox of the template ref names must
// start on: the one that built it, unless its build is in the registry
// (then "", any node, as for the built-in templates).
func sandboxTemplateNode(ts []SandboxTemplate, ref string) string {
	if t := findTemplate(ts, ref); t != nil && t.Status.Image == "" {
		return t.Status.BuiltOn
	}
	return ""
}

// findTemplate returns the SandboxTemplate ref (ID, name or name:tag)
// names, or nil.
func findTemplate(ts []SandboxTemplate, ref string) *SandboxTemplate {
	name, _, _ := strings.Cut(ref, ":")
	for i, t := range ts {
		if t.Name == ref || t.Name == name || slices.Contains(t.Spec.Aliases, name) {
			return &ts[i]
		}
	}
	return nil
}

// pathTemplateRef is the template a template path names:
// /templates/{id}[/...], /v2/templates/{id}[/...], /templates/aliases/{alias}.
// p is the escaped path: a snapshot's ID (team/name:tag) comes with its
// slash escaped.
func pathTemplateRef(p string) string {
	p = strings.TrimPrefix(strings.TrimPrefix(p, "/v2"), "/v3")
	rest, ok := strings.CutPrefix(p, "/templates/")
	if !ok {
		return ""
	}
	if alias, ok := strings.CutPrefix(rest, "aliases/"); ok {
		rest = alias
	}
	ref, _, _ := strings.Cut(rest, "/")
	if ref == "tags" {
		return ""
	}
	if u, err := url.PathUnescape(ref); err == nil {
		ref = u
	}
	return ref
}
