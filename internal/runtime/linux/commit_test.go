package linux

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// A committed layer is the sandbox's own tree: shifting its owners back must
// change only what is in it, whatever links it holds, and keep set-id bits.
func TestShiftOwnersStaysInTheLayer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	const base = 3 << 20
	layer, canary := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	owned := func(p string, uid, gid int) {
		t.Helper()
		must(unix.Lchown(p, uid, gid))
	}
	canaryFile := filepath.Join(canary, "secret")
	must(os.WriteFile(canaryFile, []byte("host"), 0o644))
	owned(canaryFile, base+7, base+7)
	owned(canary, base+7, base+7)

	must(os.Mkdir(filepath.Join(layer, "d"), 0o755))
	owned(filepath.Join(layer, "d"), base, base)
	must(os.WriteFile(filepath.Join(layer, "d", "suid"), []byte("x"), 0o755))
	owned(filepath.Join(layer, "d", "suid"), base, base+5)
	must(unix.Chmod(filepath.Join(layer, "d", "suid"), 0o4755)) // os.Chmod would drop the raw set-uid bit
	must(os.Symlink(canary, filepath.Join(layer, "d", "out")))
	owned(filepath.Join(layer, "d", "out"), base+1, base+1)
	must(os.Symlink(canaryFile, filepath.Join(layer, "file-out")))
	owned(filepath.Join(layer, "file-out"), base+2, base+2)
	must(os.WriteFile(filepath.Join(layer, "daemons"), nil, 0o644)) // owned by host root: left alone

	must(shiftOwners(t.Context(), layer, base))

	for _, c := range []struct {
		path     string
		uid, gid uint32
		mode     uint32 // 0: not checked
	}{
		{filepath.Join(layer, "d"), 0, 0, 0},
		{filepath.Join(layer, "d", "suid"), 0, 5, unix.S_ISUID | 0o755},
		{filepath.Join(layer, "d", "out"), 1, 1, 0},
		{filepath.Join(layer, "file-out"), 2, 2, 0},
		{filepath.Join(layer, "daemons"), 0, 0, 0},
		{canary, base + 7, base + 7, 0},
		{canaryFile, base + 7, base + 7, 0o644},
	} {
		var st unix.Stat_t
		must(unix.Lstat(c.path, &st))
		if st.Uid != c.uid || st.Gid != c.gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", c.path, st.Uid, st.Gid, c.uid, c.gid)
		}
		if c.mode != 0 && st.Mode&0o7777 != c.mode {
			t.Errorf("%s: mode %o, want %o", c.path, st.Mode&0o7777, c.mode)
		}
	}
}
