package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The cluster roles are checked before anything starts: a bad role, or a
// kubeconfig that cannot be read, stops serve with the reason.
func TestServeClusterRoleFlags(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-kubeconfig")
	bad := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(bad, []byte("not: [a kubeconfig"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--role", "scheduler"}, `--role "scheduler": want all, node or api`},
		{[]string{"--role", "api", "--kubeconfig", missing, "--listen", "127.0.0.1:0"}, "reading kubeconfig " + missing},
		{[]string{"--role", "api", "--kubeconfig", bad, "--listen", "127.0.0.1:0"}, "reading kubeconfig " + bad},
		// The fake runtime is for node processes of scale tests only.
		{[]string{"--runtime", "fake"}, "--runtime fake is for control-plane tests of cluster nodes only: it needs --role node, not all"},
		{[]string{"--role", "api", "--runtime", "fake"}, "it needs --role node, not api"},
		{[]string{"--role", "node", "--runtime", "docker"}, `--runtime "docker": want linux`},
	} {
		var stderr strings.Builder
		err := serve(append(tc.args, "--data-dir", t.TempDir()), io.Discard, &stderr)
		if err == nil || !strings.Contains(err.Error()+stderr.String(), tc.want) {
			t.Errorf("serve %v = %v (stderr %q), want %q", tc.args, err, stderr.String(), tc.want)
		}
	}
}
