package artifact

import (
	"archive/tar"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// How a layer directory becomes a blob.
//
// A layer directory is an overlayfs upper dir (what a build step wrote): a
// deleted file is a 0/0 character device and a directory that hides the
// ones below it has trusted.overlay.opaque. The blob is a plain OCI layer
// tar, so any OCI tool can read it: whiteouts stay 0/0 character devices
// (the OCI spec's overlay form, which oci.Unpack takes as is) and an
// opaque directory gets a ".wh..wh..opq" entry. The walk is in name order
// with nothing of the host in the headers (no user names), so the same
// directory always makes the same blob, and a layer already in the
// registry is not sent again.

const opaqueXattr = "trusted.overlay.opaque"

// writeLayer writes the tar of layer directory dir to w.
func writeLayer(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	lw := &layerWriter{tw: tw, root: dir, links: map[[2]uint64]string{}}
	if err := lw.walk(""); err != nil {
		return err
	}
	return tw.Close()
}

type layerWriter struct {
	tw    *tar.Writer
	root  string
	links map[[2]uint64]string // (dev, inode) -> first name, for hard links
}

// walk writes the entries under rel ("" for the root), in name order.
func (lw *layerWriter) walk(rel string) error {
	ents, err := os.ReadDir(filepath.Join(lw.root, rel))
	if err != nil {
		return fmt.Errorf("reading layer directory %s: %w", rel, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	for _, n := range names {
		if err := lw.entry(path.Join(rel, n)); err != nil {
			return err
		}
	}
	return nil
}

func (lw *layerWriter) entry(rel string) error {
	p := filepath.Join(lw.root, rel)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return fmt.Errorf("reading layer entry %s: %w", rel, err)
	}
	h := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Unix()),
		Format:  tar.FormatPAX,
	}
	var xattrs map[string]string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		h.Typeflag, h.Name = tar.TypeDir, rel+"/"
		var err error
		if xattrs, err = readXattrs(p); err != nil {
			return err
		}
	case unix.S_IFREG:
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := lw.links[key]; ok && st.Nlink > 1 {
			h.Typeflag, h.Linkname = tar.TypeLink, first
			return lw.tw.WriteHeader(h)
		}
		if st.Nlink > 1 {
			lw.links[key] = rel
		}
		h.Typeflag, h.Size = tar.TypeReg, st.Size
		var err error
		if xattrs, err = readXattrs(p); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return fmt.Errorf("reading layer symlink %s: %w", rel, err)
		}
		h.Typeflag, h.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR:
		if st.Rdev != 0 {
			return nil // only whiteouts; sandboxes get their own /dev
		}
		h.Typeflag = tar.TypeChar
	case unix.S_IFIFO:
		h.Typeflag = tar.TypeFifo
	default:
		return nil // sockets, block devices: nothing a sandbox starts from
	}
	opaque := false
	for k, v := range xattrs {
		switch {
		case k == opaqueXattr:
			opaque = v == "y"
		case strings.HasPrefix(k, "trusted.overlay.") || strings.HasPrefix(k, "user.overlay."):
			// overlay's bookkeeping; the importer sets what it needs
		default:
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
	}
	if err := lw.tw.WriteHeader(h); err != nil {
		return err
	}
	switch h.Typeflag {
	case tar.TypeReg:
		f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return fmt.Errorf("reading layer file %s: %w", rel, err)
		}
		_, err = io.CopyN(lw.tw, f, h.Size)
		f.Close()
		if err != nil {
			return fmt.Errorf("reading layer file %s: %w", rel, err)
		}
	case tar.TypeDir:
		if opaque {
			if err := lw.tw.WriteHeader(&tar.Header{
				Name: path.Join(rel, ".wh..wh..opq"), Typeflag: tar.TypeReg, Mode: 0o644,
				ModTime: h.ModTime, Format: tar.FormatPAX,
			}); err != nil {
				return err
			}
		}
		return lw.walk(rel)
	}
	return nil
}

// readXattrs returns the extended attributes of p (not following a
// symlink); none where the filesystem keeps none.
func readXattrs(p string) (map[string]string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ERANGE) {
		if n, err = unix.Llistxattr(p, nil); err == nil {
			buf = make([]byte, n)
			n, err = unix.Llistxattr(p, buf)
		}
	}
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the xattrs of %s: %w", p, err)
	}
	var out map[string]string
	for _, k := range strings.Split(string(buf[:n]), "\x00") {
		if k == "" {
			continue
		}
		v := make([]byte, 256)
		m, err := unix.Lgetxattr(p, k, v)
		if errors.Is(err, unix.ERANGE) {
			if m, err = unix.Lgetxattr(p, k, nil); err == nil {
				v = make([]byte, m)
				m, err = unix.Lgetxattr(p, k, v)
			}
		}
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading xattr %s of %s: %w", k, p, err)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = string(v[:m])
	}
	return out, nil
}

// hashingWriter counts and hashes what goes through it.
type hashingWriter struct {
	w    io.Writer
	h    hash.Hash
	size int64
}

func newHashingWriter(w io.Writer) *hashingWriter {
	return &hashingWriter{w: w, h: sha256.New()}
}

func (hw *hashingWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	hw.size += int64(n)
	return n, err
}
