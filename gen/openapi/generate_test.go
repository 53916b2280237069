package openapi

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedCodeIsFresh regenerates openapi.gen.go from the spec into a
// temporary file and fails if the committed file differs: edit the spec,
// then run go generate ./gen/openapi.
func TestGeneratedCodeIsFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("builds oapi-codegen; skipped in -short mode")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	cfg, err := os.ReadFile("cfg.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "openapi.gen.go")
	tmpCfg := filepath.Join(t.TempDir(), "cfg.yaml")
	newCfg := strings.Replace(string(cfg), "output: openapi.gen.go", "output: "+out, 1)
	if newCfg == string(cfg) {
		t.Fatal("cfg.yaml has no 'output: openapi.gen.go' line to redirect")
	}
	if err := os.WriteFile(tmpCfg, []byte(newCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), goBin, "tool", "-modfile=../../tools/go.mod", "oapi-codegen",
		"-config", tmpCfg, "../../api/openapi/sandpit.yaml")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("oapi-codegen: %v\n%s", err, msg)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("openapi.gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("gen/openapi/openapi.gen.go is stale: run go generate ./gen/openapi and commit the result")
	}
}
