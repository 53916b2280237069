package interp

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestOfficialSDK runs test/compat/interp.test.mjs (the official
// @e2b/code-interpreter SDK) against testdata/fakeserve: this package's
// Server behind a stand-in control plane. The same file runs against the
// real `sandpit serve` in test/compat.
func TestOfficialSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: drives the SDK with node")
	}
	compat, err := filepath.Abs("../../test/compat")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(compat, "node_modules/@e2b/code-interpreter")); err != nil {
		t.Skip("needs test/compat/node_modules (test/compat/run.sh installs them)")
	}
	if _, err := os.Stat(filepath.Join(compat, "interp.test.mjs")); err != nil {
		t.Skip("no test/compat/interp.test.mjs")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("needs node")
	}
	bin := filepath.Join(t.TempDir(), "fakeserve")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./testdata/fakeserve")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building fakeserve: %v\n%s", err, out)
	}
	cmd := exec.CommandContext(t.Context(), node, "--test", "--test-concurrency=1", "interp.test.mjs")
	cmd.Dir = compat
	cmd.Env = append(os.Environ(), "SANDPIT_BIN="+bin, "SANDPIT_COMPAT_SANDBOXLESS=1")
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("node --test interp.test.mjs: %v", err)
	}
}
