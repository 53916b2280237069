package safepath

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMetadataOnSandboxFilesystems checks that metadata lands in user
// xattrs (not the in-memory sidecar) on the filesystems a sandbox's files
// live on: tmpfs (/tmp) and overlayfs (the writable root).
func TestMetadataOnSandboxFilesystems(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounting tmpfs and overlayfs needs root")
	}
	dir := t.TempDir()
	tmpfs := filepath.Join(dir, "tmpfs")
	os.Mkdir(tmpfs, 0o755)
	if err := unix.Mount("tmpfs", tmpfs, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("mounting tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(tmpfs, unix.MNT_DETACH) })
	var overlayUpper string
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
	}
	opts := "lowerdir=" + filepath.Join(dir, "lower") + ",upperdir=" + filepath.Join(dir, "upper") + ",workdir=" + filepath.Join(dir, "work")
	if err := unix.Mount("overlay", filepath.Join(dir, "merged"), "overlay", 0, opts); err != nil {
		t.Logf("overlayfs not testable here: %v", err)
	} else {
		overlayUpper = filepath.Join(dir, "merged")
		t.Cleanup(func() { unix.Unmount(overlayUpper, unix.MNT_DETACH) })
	}
	for name, mnt := range map[string]string{"tmpfs": tmpfs, "overlayfs": overlayUpper} {
		if mnt == "" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			r, err := Open(mnt)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			f, err := r.Create("/f", Owner{})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.SetMetadata(f.File, map[string]string{"k": "v"}); err != nil {
				t.Fatal(err)
			}
			f.Commit()
			buf := make([]byte, 16)
			n, err := unix.Getxattr(filepath.Join(mnt, "f"), "user.e2b.k", buf)
			if err != nil || string(buf[:n]) != "v" {
				t.Fatalf("xattr = %q, %v (metadata went to the sidecar)", buf[:n], err)
			}
			if md, _ := r.Metadata("/f"); md["k"] != "v" {
				t.Fatalf("Metadata = %v", md)
			}
		})
	}
}
