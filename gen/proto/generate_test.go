package proto

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedCodeIsFresh regenerates the code from api/proto into a
// temporary directory with the pinned tools and fails if it differs from
// what is committed here.
func TestGeneratedCodeIsFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("regenerating needs the pinned buf and plugins built (slow the first time)")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not on PATH")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	modfile := "-modfile=" + filepath.Join(root, "tools", "go.mod")
	out := t.TempDir()
	template := `{"version":"v2","plugins":[` +
		`{"local":["go","tool","` + modfile + `","protoc-gen-go"],"out":"` + out + `","opt":"paths=source_relative"},` +
		`{"local":["go","tool","` + modfile + `","protoc-gen-connect-go"],"out":"` + out + `","opt":"paths=source_relative"}]}`
	cmd := exec.Command("go", "tool", modfile, "buf", "generate", "--template", template)
	cmd.Dir = filepath.Join(root, "api", "proto")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("buf generate: %v\n%s", err, b)
	}
	n := 0
	err = filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, path)
		fresh, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		committed, err := os.ReadFile(rel)
		if err != nil || !bytes.Equal(fresh, committed) {
			t.Errorf("gen/proto/%s is stale: run go generate ./gen/proto", rel)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("buf generated nothing")
	}
}
