package store

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// TestDatabaseIsRootsAlone: the database holds sandboxes' env vars and
// access tokens, so it and its WAL files are 0600, also when an earlier
// version left them 0644, and a host user who can reach the directory
// still cannot read them.
func TestDatabaseIsRootsAlone(t *testing.T) {
	// Only the files' own modes stand between a host user and them here
	// (t.TempDir's parent is 0700).
	dir, err := os.MkdirTemp("", "sandpit-store-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "sandpit.db")
	s, err := OpenSQLite(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateKey(t.Context(), NewKey{Name: "k"}); err != nil {
		t.Fatal(err)
	}
	checkPrivate(t, path, path+"-wal", path+"-shm")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A data dir from before: world-readable files. Opening it secures them.
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o644); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	s, err = OpenSQLite(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := s.CreateKey(t.Context(), NewKey{Name: "k2"}); err != nil {
		t.Fatal(err)
	}
	checkPrivate(t, path, path+"-wal", path+"-shm")

	if os.Geteuid() != 0 {
		t.Log("not root: cannot try the files as another host user")
		return
	}
	control := filepath.Join(dir, "public")
	if err := os.WriteFile(control, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := asNobody("cat", control).CombinedOutput(); err != nil {
		t.Fatalf("nobody cannot read a public file beside the database, so the test proves nothing: %v %s", err, out)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if out, err := asNobody("cat", p).CombinedOutput(); err == nil {
			t.Errorf("nobody read %s (%d bytes)", filepath.Base(p), len(out))
		}
	}
}

func checkPrivate(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(p), err)
			continue
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), m)
		}
	}
}

// asNobody runs a command as the unprivileged host user nobody.
func asNobody(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd
}
