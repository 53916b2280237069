package agent

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the agent small: it runs inside every sandbox, so
// it may import only its own packages, errdefs, safepath (resolving paths
// inside the sandbox) and the generated wire code from this module.
func TestDependencies(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not on PATH")
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const mod = "github.com/sandpit-dev/sandpit/"
	allowed := []string{mod + "internal/agent", mod + "internal/errdefs", mod + "internal/safepath", mod + "gen/proto/"}
	for _, pkg := range strings.Fields(string(out)) {
		if !strings.HasPrefix(pkg, mod) {
			continue
		}
		ok := false
		for _, a := range allowed {
			if pkg == a || strings.HasPrefix(pkg, a) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("the agent imports %s", pkg)
		}
	}
}
