package safepath

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRenameAcrossFilesystems moves a tree from the root's filesystem onto
// a tmpfs mounted inside it, where rename(2) fails with EXDEV.
func TestRenameAcrossFilesystems(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	forModes(t, func(t *testing.T, f *fixture) {
		mnt := filepath.Join(f.root, "tmp/mnt")
		os.Mkdir(mnt, 0o755)
		if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=8m"); err != nil {
			t.Skipf("mounting tmpfs: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
		src := filepath.Join(f.root, "home/user/tree")
		os.MkdirAll(filepath.Join(src, "sub"), 0o750)
		os.WriteFile(filepath.Join(src, "sub/a.txt"), []byte("aaa"), 0o640)
		os.Symlink("/etc/passwd", filepath.Join(src, "link"))
		os.Chown(filepath.Join(src, "sub/a.txt"), 1000, 1001)
		old := time.Unix(1_600_000_000, 0)
		os.Chtimes(filepath.Join(src, "sub/a.txt"), old, old)
		w, _ := f.r.Create("/home/user/tree/m.txt", Owner{UID: 1000, GID: 1000})
		f.r.SetMetadata(w.File, map[string]string{"k": "v"})
		w.Commit()

		if err := f.r.Rename("/home/user/tree", "/tmp/mnt/moved", Owner{}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(src); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("source still there: %v", err)
		}
		dst := filepath.Join(mnt, "moved")
		data, err := os.ReadFile(filepath.Join(dst, "sub/a.txt"))
		if err != nil || string(data) != "aaa" {
			t.Fatalf("content %q %v", data, err)
		}
		st, _ := os.Stat(filepath.Join(dst, "sub/a.txt"))
		sys := st.Sys().(*syscall.Stat_t)
		if st.Mode().Perm() != 0o640 || sys.Uid != 1000 || sys.Gid != 1001 || !st.ModTime().Equal(old) {
			t.Errorf("a.txt: %v uid %d gid %d mtime %v", st.Mode(), sys.Uid, sys.Gid, st.ModTime())
		}
		if st, _ := os.Stat(filepath.Join(dst, "sub")); st.Mode().Perm() != 0o750 {
			t.Errorf("sub mode %v", st.Mode())
		}
		if target, err := os.Readlink(filepath.Join(dst, "link")); err != nil || target != "/etc/passwd" {
			t.Errorf("link %q %v", target, err)
		}
		if md, _ := f.r.Metadata("/tmp/mnt/moved/m.txt"); md["k"] != "v" {
			t.Errorf("metadata %v", md)
		}
		// A file replaces a file; a file onto a directory fails.
		os.WriteFile(filepath.Join(f.root, "home/user/one"), []byte("1"), 0o644)
		os.WriteFile(filepath.Join(mnt, "target"), []byte("old"), 0o644)
		if err := f.r.Rename("/home/user/one", "/tmp/mnt/target", Owner{}); err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(filepath.Join(mnt, "target")); string(data) != "1" {
			t.Errorf("replaced content %q", data)
		}
		os.WriteFile(filepath.Join(f.root, "home/user/two"), []byte("2"), 0o644)
		if err := f.r.Rename("/home/user/two", "/tmp/mnt/moved", Owner{}); !errors.Is(err, unix.EISDIR) {
			t.Errorf("file onto dir: %v", err)
		}
	})
}
