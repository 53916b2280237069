package oci_test

import (
	"archive/tar"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/template/oci"
)

// FuzzUnpack feeds Unpack arbitrary tars, seeded with the attacks of
// TestUnpackRefusesEscapes and a few honest layers, and checks after each
// that nothing outside the layer changed, the layer dir is still a
// directory, and the layer holds no device but whiteouts, no overlay xattr
// but opaque markers, and no relative symlink that climbs out.
//
// Bounded run (CI): go test -run='^$' -fuzz='^FuzzUnpack$' -fuzztime=20s ./internal/template/oci
func FuzzUnpack(f *testing.F) {
	// Absolute names in the seeds point at a canary whose path is the
	// same in every fuzz worker process.
	fixed := filepath.Join(os.TempDir(), "sandpit-fuzz-unpack-canary")
	if err := os.MkdirAll(filepath.Join(fixed, "sub"), 0o755); err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{"passwd", "sub/file"} {
		if b, err := os.ReadFile(filepath.Join(fixed, name)); err == nil && string(b) == "canary\n" {
			continue
		}
		// Workers run this too: write beside the canary, rename in, so
		// none sees a half-made one.
		tmp, err := os.CreateTemp(os.TempDir(), "sandpit-fuzz-canary-")
		if err != nil {
			f.Fatal(err)
		}
		tmp.WriteString("canary\n")
		tmp.Chmod(0o644)
		tmp.Close()
		if err := os.Rename(tmp.Name(), filepath.Join(fixed, name)); err != nil {
			f.Fatal(err)
		}
	}
	fixedSite := &site{dir: filepath.Dir(fixed), unpack: "/nonexistent", canary: fixed}
	want := fixedSite.snapshotOf(f, fixed)

	for _, a := range attacks(fixedSite) {
		f.Add(tarOf(f, a.entries...))
	}
	f.Add(sparseTar(f, "big", 1<<40))
	f.Add(tarOf(f,
		entry{name: "./app/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "./app/a.txt", body: "a\n", uid: 1000},
		entry{name: "app/.wh.gone"},
		entry{name: "opt/keep/.wh..wh..opq"},
		entry{name: "app/tool", body: "#!/bin/sh\n", mode: 0o4755},
		entry{name: "app/hard", typ: tar.TypeLink, link: "app/tool"},
		entry{name: "app/link", typ: tar.TypeSymlink, link: "../etc/hostname"},
		entry{name: "lib", typ: tar.TypeSymlink, link: "usr/lib"},
		entry{name: "dev/null", typ: tar.TypeChar, major: 1, minor: 3},
		entry{name: "run/fifo", typ: tar.TypeFifo},
	))

	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSite(t)
		before := s.snapshot(t)
		_ = oci.Unpack(bytes.NewReader(data), s.unpack)
		if after := s.snapshot(t); after != before {
			t.Fatalf("unpack changed files outside the layer:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		if got := fixedSite.snapshotOf(t, fixed); got != want {
			t.Fatalf("unpack changed the canary at %s:\n%s", fixed, got)
		}
		if fi, err := os.Lstat(s.unpack); err != nil || !fi.IsDir() {
			t.Fatalf("the layer dir is gone or replaced: %v", err)
		}
		checkLayer(t, s.unpack)
	})
}

// snapshotOf is snapshot over another directory.
func (s *site) snapshotOf(t testing.TB, dir string) string {
	t.Helper()
	c := *s
	c.dir = dir
	return c.snapshot(t)
}

// checkLayer walks a layer without following symlinks and fails on what
// Unpack must never leave in one.
func checkLayer(t *testing.T, layer string) {
	t.Helper()
	buf := make([]byte, 4096)
	err := filepath.WalkDir(layer, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(layer, p)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR, unix.S_IFBLK:
			if st.Mode&unix.S_IFMT == unix.S_IFBLK || st.Rdev != 0 {
				t.Errorf("%s: a device node (rdev %d)", rel, st.Rdev)
			}
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			depth := strings.Count(rel, "/")
			if !strings.HasPrefix(target, "/") {
				for _, c := range strings.Split(target, "/") {
					switch c {
					case "", ".":
					case "..":
						if depth--; depth < 0 {
							t.Errorf("%s -> %s climbs out of the layer", rel, target)
						}
					default:
						depth++
					}
				}
			}
			return nil
		}
		n, err := unix.Llistxattr(p, buf)
		if err != nil {
			return nil // no xattrs here
		}
		for _, x := range strings.Split(string(buf[:n]), "\x00") {
			if x == "trusted.overlay.opaque" && st.Mode&unix.S_IFMT == unix.S_IFDIR {
				continue
			}
			if strings.HasPrefix(x, "trusted.overlay.") || strings.HasPrefix(x, "user.overlay.") {
				t.Errorf("%s carries %s", rel, x)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
