package sandpittest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPruneRemovesOnlyOldBuilds(t *testing.T) {
	root := t.TempDir()
	old := time.Now().Add(-2 * binMaxAge)
	mk := func(name string, mtime time.Time) string {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "sandpit"), []byte("x"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := mk("bin-aaaa", old)
	failed := mk("build-123", old)
	kept := mk("bin-bbbb", old) // the one in use, however old
	fresh := mk("bin-cccc", time.Now())
	other := mk("notes", old) // not a build: not ours to remove
	prune(root, kept)
	for p, want := range map[string]bool{stale: false, failed: false, kept: true, fresh: true, other: true} {
		_, err := os.Stat(p)
		if got := err == nil; got != want {
			t.Errorf("%s: exists %v after prune, want %v", filepath.Base(p), got, want)
		}
	}
}

func TestBuildIsNamedByItsContents(t *testing.T) {
	if testing.Short() {
		t.Skip("builds sandpit")
	}
	repo, err := findRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	bin, err := build(context.Background(), repo, root)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(bin)
	sum, err := digest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(root, "bin-"+sum) {
		t.Fatalf("build dir %s, want %s/bin-%s", dir, root, sum)
	}
	for _, n := range binNames {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s missing beside the daemon: %v", n, err)
		}
	}
	// A second build of the same source (another test process) lands on
	// the same directory and leaves no copy of its own.
	again, err := build(context.Background(), repo, root)
	if err != nil {
		t.Fatal(err)
	}
	if again != bin {
		t.Errorf("second build at %s, want %s", again, bin)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		names := make([]string, len(entries))
		for i, e := range entries {
			names[i] = e.Name()
		}
		t.Errorf("after two builds %s holds %v, want the one build", root, names)
	}
}
