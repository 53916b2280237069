package cluster

import (
	"path/filepath"
	"strings"
	"testing"
)

// Every manifest of deploy/kubernetes is accepted by a real API server:
// schema, RBAC rules, workloads, PDB and NetworkPolicy.
func TestManifestsApplyDryRunServer(t *testing.T) {
	cp := controlPlane(t)
	dir := filepath.Join(cp.Repo, "deploy", "kubernetes")
	out, err := cp.Kubectl("apply", "--dry-run=server", "-f", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"customresourcedefinition.apiextensions.k8s.io/sandboxes.sandpit.dev",
		"role.rbac.authorization.k8s.io/sandpit-node",
		"role.rbac.authorization.k8s.io/sandpit-api",
		"daemonset.apps/sandpit-node",
		"deployment.apps/sandpit-api",
		"service/sandpit-api",
		"poddisruptionbudget.policy/sandpit-api",
		"networkpolicy.networking.k8s.io/sandpit-node-from-api-only",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kubectl apply --dry-run=server output lacks %q:\n%s", want, out)
		}
	}
}

// Each role's service account may do what its role needs and no more.
func TestRBACLeastPrivilege(t *testing.T) {
	cp := controlPlane(t)
	if _, err := cp.Kubectl("apply", "-f", filepath.Join(cp.Repo, "deploy", "kubernetes", "20-rbac.yaml")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sa, verb, resource string
		want               string
	}{
		{"sandpit-node", "update", "leases.coordination.k8s.io", "yes"},
		{"sandpit-node", "update", "sandboxes.sandpit.dev --subresource=status", "yes"},
		{"sandpit-node", "delete", "sandboxes.sandpit.dev", "yes"},
		{"sandpit-node", "create", "sandboxes.sandpit.dev", "no"},
		{"sandpit-node", "get", "secrets", "no"},
		{"sandpit-api", "create", "sandboxes.sandpit.dev", "yes"},
		{"sandpit-api", "update", "sandboxnodes.sandpit.dev --subresource=status", "yes"},
		{"sandpit-api", "update", "leases.coordination.k8s.io", "no"},
		{"sandpit-api", "update", "sandboxtemplates.sandpit.dev --subresource=status", "yes"},
		{"sandpit-api", "create", "pods", "no"},
		{"sandpit-api", "list", "sandboxes.sandpit.dev -n default", "no"},
		{"sandpit-api", "watch", "apikeys.sandpit.dev", "yes"},
		{"sandpit-api", "list", "teams.sandpit.dev", "yes"},
		{"sandpit-api", "update", "teams.sandpit.dev --subresource=status", "yes"},
		{"sandpit-api", "update", "teams.sandpit.dev", "no"},
		{"sandpit-api", "create", "apikeys.sandpit.dev", "no"},
		{"sandpit-api", "update", "apikeys.sandpit.dev --subresource=status", "no"},
		{"sandpit-api", "get", "secrets", "no"},
		{"sandpit-node", "list", "apikeys.sandpit.dev", "no"},
	} {
		args := append([]string{"auth", "can-i", tc.verb}, strings.Fields(tc.resource)...)
		args = append(args, "--as", "system:serviceaccount:sandpit:"+tc.sa)
		if !strings.Contains(tc.resource, " -n ") {
			args = append(args, "-n", "sandpit")
		}
		out, _ := cp.Kubectl(args...) // can-i exits 1 for "no"
		if got := strings.TrimSpace(string(out)); got != tc.want {
			t.Errorf("%s can %s %s: %q, want %q", tc.sa, tc.verb, tc.resource, got, tc.want)
		}
	}
}
