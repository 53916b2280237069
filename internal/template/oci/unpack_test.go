package oci_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/template/oci"
)

// site is where an attack is unpacked: dir/layers/unpack is the layer
// being unpacked, dir/layers/other a layer unpacked before it (the
// importer's layer dir holds both), dir/canary a host directory outside
// both. Every attack names the canary by absolute path or by ".." from
// the layer.
type site struct {
	dir, layers, unpack, other, canary string
}

func newSite(t testing.TB) *site {
	t.Helper()
	d := t.TempDir()
	s := &site{dir: d, layers: filepath.Join(d, "layers"), canary: filepath.Join(d, "canary")}
	s.unpack, s.other = filepath.Join(s.layers, "unpack"), filepath.Join(s.layers, "other")
	for _, p := range []string{s.unpack, filepath.Join(s.other, "etc"), filepath.Join(s.canary, "sub")} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, body := range map[string]string{
		filepath.Join(s.other, "etc", "os-release"): "other layer\n",
		filepath.Join(s.canary, "passwd"):           "canary\n",
		filepath.Join(s.canary, "sub", "file"):      "canary sub\n",
	} {
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// snapshot describes every file under the site outside the layer being
// unpacked: names, types, modes, owners, content, link targets.
func (s *site) snapshot(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == s.unpack {
			return fs.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s mode=%o uid=%d rdev=%d", strings.TrimPrefix(p, s.dir), st.Mode, st.Uid, st.Rdev)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			body, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %q", body)
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			fmt.Fprintf(&b, " -> %s", l)
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// attacks are layers that try to reach past the layer being unpacked.
// Each must fail with an error naming the bad entry, or (where noted)
// succeed harmlessly; either way the site outside the layer is unchanged.
func attacks(s *site) []struct {
	name    string
	entries []entry
	bad     string // the entry the error names; "" when unpacking may succeed
} {
	return []struct {
		name    string
		entries []entry
		bad     string
	}{
		{"whiteout of dot", []entry{{name: ".wh.."}}, ".wh.."},
		{"whiteout of dot-dot", []entry{{name: ".wh..."}}, ".wh..."},
		{"nested whiteout of dot-dot", []entry{{name: "etc/", typ: tar.TypeDir}, {name: "etc/.wh..."}}, "etc/.wh..."},
		{"empty whiteout", []entry{{name: "etc/.wh."}}, "etc/.wh."},
		{"absolute name", []entry{{name: s.canary + "/passwd", body: "x"}}, s.canary + "/passwd"},
		{"dot-dot name", []entry{{name: "a/../../canary/passwd", body: "x"}}, "a/../../canary/passwd"},
		{"dot-dot whiteout", []entry{{name: "../other/etc/.wh.os-release"}}, "../other/etc/.wh.os-release"},
		{"hard link out by dot-dot", []entry{{name: "h", typ: tar.TypeLink, link: "../../canary/passwd"}}, "h"},
		{"hard link out by absolute name", []entry{{name: "h", typ: tar.TypeLink, link: s.canary + "/passwd"}}, "h"},
		{"symlink climbing out", []entry{{name: "up", typ: tar.TypeSymlink, link: "../../canary"}}, "up"},
		{"nested symlink climbing out", []entry{{name: "a/b/up", typ: tar.TypeSymlink, link: "../x/../../.."}}, "a/b/up"},
		{"write through an absolute symlink", []entry{
			{name: "evil", typ: tar.TypeSymlink, link: s.canary},
			{name: "evil/passwd", body: "x"},
		}, "evil/passwd"},
		{"mkdir through a symlink", []entry{
			{name: "evil", typ: tar.TypeSymlink, link: s.canary},
			{name: "evil/new/", typ: tar.TypeDir},
		}, "evil/new/"},
		{"whiteout through a symlink", []entry{
			{name: "evil", typ: tar.TypeSymlink, link: s.canary},
			{name: "evil/.wh.passwd"},
		}, "evil/.wh.passwd"},
		{"opaque through a symlink", []entry{
			{name: "evil", typ: tar.TypeSymlink, link: s.canary},
			{name: "evil/sub/.wh..wh..opq"},
		}, "evil/sub/.wh..wh..opq"},
		{"opaque marker on a symlinked dir", []entry{
			{name: "evil", typ: tar.TypeSymlink, link: s.canary},
			{name: "evil/.wh..wh..opq"},
		}, "evil/.wh..wh..opq"},
		{"hard link through a symlink", []entry{
			{name: "evil", typ: tar.TypeSymlink, link: s.canary},
			{name: "h", typ: tar.TypeLink, link: "evil/passwd"},
		}, "h"},
		{"write through a symlink in the layer dir", []entry{
			{name: "d/", typ: tar.TypeDir},
			{name: "d/evil", typ: tar.TypeSymlink, link: s.canary + "/sub"},
			{name: "d/evil/file", body: "x"},
		}, "d/evil/file"},
		{"replace a symlink (not its target)", []entry{
			{name: "l", typ: tar.TypeSymlink, link: s.canary + "/passwd"},
			{name: "l", body: "replaced"},
			{name: "m", typ: tar.TypeSymlink, link: s.canary + "/sub"},
			{name: "m/", typ: tar.TypeDir, mode: 0o700},
		}, ""},
		{"chmod and chown of a symlink entry", []entry{
			{name: "l", typ: tar.TypeSymlink, link: s.canary + "/passwd", mode: 0o777, uid: 4242},
		}, ""},
	}
}

func TestUnpackRefusesEscapes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unpacking keeps owners and makes whiteout devices: needs root")
	}
	for _, tc := range attacks(newSite(t)) {
		t.Run(tc.name, func(t *testing.T) {
			s := newSite(t)
			tc := tc
			for _, a := range attacks(s) { // the entries naming this site's canary
				if a.name == tc.name {
					tc = a
				}
			}
			before := s.snapshot(t)
			err := oci.Unpack(bytes.NewReader(tarOf(t, tc.entries...)), s.unpack)
			if after := s.snapshot(t); after != before {
				t.Fatalf("unpack changed files outside the layer (err %v):\nbefore:\n%s\nafter:\n%s", err, before, after)
			}
			if fi, serr := os.Lstat(s.unpack); serr != nil || !fi.IsDir() {
				t.Fatalf("the layer dir itself is gone or replaced: %v %v", fi, serr)
			}
			if tc.bad == "" {
				if err != nil {
					t.Fatalf("unpack: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.bad)) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("unpack: %v, want an invalid-argument error naming %q", err, tc.bad)
			}
			if strings.Contains(err.Error(), s.layers) {
				t.Fatalf("the error shows a host path: %v", err)
			}
		})
	}
}

// Device nodes would be doors into the host's devices from the data dir
// (a sandbox gets its own /dev); whiteout devices (0/0) stay.
func TestUnpackDropsDevices(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making device nodes needs root")
	}
	s := newSite(t)
	err := oci.Unpack(bytes.NewReader(tarOf(t,
		entry{name: "dev/sda", typ: tar.TypeBlock, major: 8, minor: 0, mode: 0o666},
		entry{name: "dev/mem", typ: tar.TypeChar, major: 1, minor: 1, mode: 0o666},
		entry{name: "dev/kept-whiteout", typ: tar.TypeChar},
		entry{name: "dev/fifo", typ: tar.TypeFifo},
	)), s.unpack)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := os.ReadDir(filepath.Join(s.unpack, "dev"))
	var got []string
	for _, n := range names {
		got = append(got, n.Name())
	}
	if !slices.Equal(got, []string{"fifo", "kept-whiteout"}) {
		t.Fatalf("dev holds %v, want only the fifo and the whiteout", got)
	}
}

// A layer may not set overlayfs's own xattrs (redirects, metacopy,
// opaque): only the unpacker's whiteout handling does.
func TestUnpackDropsOverlayXattrs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("trusted xattrs need root")
	}
	s := newSite(t)
	err := oci.Unpack(bytes.NewReader(tarOf(t,
		entry{name: "d/", typ: tar.TypeDir, mode: 0o755, xattrs: map[string]string{
			"trusted.overlay.redirect": "/etc", "trusted.overlay.opaque": "y", "user.keep": "1",
		}},
		entry{name: "f", body: "x", xattrs: map[string]string{"trusted.overlay.metacopy": "", "user.keep": "1"}},
	)), s.unpack)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for _, p := range []string{"d", "f"} {
		for _, x := range []string{"trusted.overlay.redirect", "trusted.overlay.opaque", "trusted.overlay.metacopy"} {
			if _, err := unix.Lgetxattr(filepath.Join(s.unpack, p), x, buf); err == nil {
				t.Errorf("%s carries %s from the layer", p, x)
			}
		}
		if n, err := unix.Lgetxattr(filepath.Join(s.unpack, p), "user.keep", buf); err != nil && !errors.Is(err, unix.ENOTSUP) || err == nil && string(buf[:n]) != "1" {
			t.Errorf("%s lost its user xattr: %v", p, err)
		}
	}
}

// A whiteout and an entry of the same name in one layer: whiteouts apply to
// lower layers only, so the entry stays, and a directory becomes opaque.
func TestUnpackWhiteoutAndEntryInOneLayer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("whiteout devices need root")
	}
	s := newSite(t)
	err := oci.Unpack(bytes.NewReader(tarOf(t,
		entry{name: ".wh.a"}, entry{name: "a/", typ: tar.TypeDir, mode: 0o755}, entry{name: "a/f", body: "f"},
		entry{name: "b/", typ: tar.TypeDir, mode: 0o755}, entry{name: ".wh.b"},
		entry{name: "c", body: "c"}, entry{name: ".wh.c"},
	)), s.unpack)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	for _, d := range []string{"a", "b"} {
		if n, err := unix.Getxattr(filepath.Join(s.unpack, d), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
			t.Errorf("%s: opaque %q %v", d, buf[:n], err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(s.unpack, "c")); err != nil || string(b) != "c" {
		t.Errorf("c: %q %v", b, err)
	}
}

// sparseTar is a tar holding one GNU sparse (PAX 0.1) file of size bytes,
// all hole: the archive is a few blocks, the file it describes is not.
// archive/tar writes no sparse files, so the headers are made by hand.
func sparseTar(t testing.TB, name string, size int64) []byte {
	t.Helper()
	var recs strings.Builder
	for _, kv := range [][2]string{
		{"GNU.sparse.map", fmt.Sprintf("%d,0", size)},
		{"GNU.sparse.numblocks", "1"},
		{"GNU.sparse.size", fmt.Sprint(size)},
		{"path", name},
	} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n = len(fmt.Sprint(n)) + len(rec)
		}
		fmt.Fprintf(&recs, "%d%s", n, rec)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "pax", Typeflag: tar.TypeReg, Size: int64(recs.Len()), Mode: 0o644, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	io.WriteString(tw, recs.String())
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	b := buf.Bytes()
	// Make the first entry a PAX extended header: type 'x', checksum
	// recomputed over the header with its checksum field as spaces.
	b[156] = tar.TypeXHeader
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b[:512] {
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func TestUnpackRefusesSparseFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unpacking keeps owners: needs root")
	}
	s := newSite(t)
	const size = 64 << 20 // what the old unpacker wrote out; the format allows 8 EiB
	err := oci.Unpack(bytes.NewReader(sparseTar(t, "big", size)), s.unpack)
	if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "sparse") {
		fi, _ := os.Stat(filepath.Join(s.unpack, "big"))
		t.Fatalf("unpack of a sparse file: %v (made %v), want a refusal", err, fi)
	}
}
