package safepath

import (
	"io"
	"path"
	"strings"
	"testing"
)

// FuzzResolve feeds arbitrary client paths through Resolve and the Root's
// read and write operations, checking that the result is a clean absolute
// path and that nothing outside the root is read, created or changed.
func FuzzResolve(f *testing.F) {
	fx := newFixture(f, true)
	for _, p := range hostilePaths(fx) {
		f.Add(p, "/home/user", "")
	}
	f.Add("a/b/../c", "/home/user", "/work")
	f.Add("~/x", "", "")
	f.Add("~x", "/h", "")
	before := fx.snapshot(f)
	f.Fuzz(func(t *testing.T, p, home, workdir string) {
		abs, err := Resolve(p, home, workdir)
		if err != nil {
			return
		}
		if !path.IsAbs(abs) || path.Clean(abs) != abs || strings.Contains(abs, "\x00") {
			t.Fatalf("Resolve(%q, %q, %q) = %q: not clean and absolute", p, home, workdir, abs)
		}
		if file, _, err := fx.r.OpenRegular(abs); err == nil {
			data, _ := io.ReadAll(io.LimitReader(file, 1<<16))
			if string(data) == secret || !fx.insideRoot(t, file) {
				t.Fatalf("OpenRegular(%q) escaped", abs)
			}
			file.Close()
		}
		if abs != "/" && !strings.HasPrefix(abs, "/etc") && !strings.HasPrefix(abs, "/home") {
			if file, err := fx.r.Create(abs, Owner{}); err == nil {
				if !fx.insideRoot(t, file.File) {
					t.Fatalf("Create(%q) escaped", abs)
				}
				file.Abort()
			}
			fx.r.MkdirAll(abs, Owner{})
			fx.r.RemoveAll(abs)
		}
		fx.r.Lstat(abs)
		fx.r.ReadDir(abs)
		if after := fx.snapshot(t); after != before {
			t.Fatalf("outside changed after %q:\n%s", abs, after)
		}
	})
}
