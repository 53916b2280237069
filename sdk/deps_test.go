package sandpit_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoInternalImports: the SDK is the public API; it must build for users
// outside this module, so nothing it (or sandpittest) imports may be under
// internal/.
func TestNoInternalImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".", "./sandpittest").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/sandpit-dev/sandpit/internal/") {
			t.Errorf("the SDK depends on %s", pkg)
		}
	}
}
