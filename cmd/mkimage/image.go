package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"
)

// Spec is the image to write.
type Spec struct {
	// Base is the root filesystem of the bottom layer.
	Base string
	// BaseCache, when set, keeps the gzipped bottom layer: an existing
	// file is used as it is (its name should say which root and epoch it
	// was made from), a missing one is written.
	BaseCache string
	// Files are added in a layer on top.
	Files []File
	// Tags name the image (NAME:TAG); at least one.
	Tags []string
	// Epoch is the modification time of the files added and the image's
	// creation time, in Unix seconds. The base layer keeps its files'
	// times (whole seconds): Python checks its .pyc caches against them,
	// and the root is built once and kept, so they do not change.
	Epoch      int64
	Entrypoint []string
	Cmd        []string
}

// File is one file of the top layer.
type File struct {
	Src  string // on this machine
	Dest string // absolute path in the image
}

// Write writes the image as a docker-archive tarball at out (through a
// temporary file beside it) and returns its digest.
func Write(s Spec, out string) (v1.Hash, error) {
	epoch := time.Unix(s.Epoch, 0).UTC()
	base, err := baseLayer(s)
	if err != nil {
		return v1.Hash{}, err
	}
	top, err := filesLayer(s.Files, epoch)
	if err != nil {
		return v1.Hash{}, err
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Config: v1.Config{
			Entrypoint: s.Entrypoint,
			Cmd:        s.Cmd,
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			WorkingDir: "/",
			Labels:     map[string]string{"org.opencontainers.image.title": "sandpit"},
		},
	})
	if err != nil {
		return v1.Hash{}, err
	}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "mkimage: root filesystem from " + filepath.Base(s.Base)}},
		mutate.Addendum{Layer: top, History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "mkimage: " + destList(s.Files)}},
	)
	if err != nil {
		return v1.Hash{}, err
	}
	if img, err = mutate.CreatedAt(img, v1.Time{Time: epoch}); err != nil {
		return v1.Hash{}, err
	}
	refs := map[name.Reference]v1.Image{}
	for _, t := range s.Tags {
		tag, err := name.NewTag(t)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("tag %q: %w", t, err)
		}
		refs[tag] = img
	}
	tmp := out + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, refs); err != nil {
		os.Remove(tmp)
		return v1.Hash{}, fmt.Errorf("writing %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return v1.Hash{}, err
	}
	return img.Digest()
}

func destList(files []File) string {
	var d []string
	for _, f := range files {
		d = append(d, f.Dest)
	}
	return strings.Join(d, " ")
}

// baseLayer is the root filesystem as a layer, from BaseCache when that
// exists.
func baseLayer(s Spec) (v1.Layer, error) {
	if s.BaseCache != "" {
		if _, err := os.Stat(s.BaseCache); err == nil {
			return tarball.LayerFromFile(s.BaseCache)
		}
	}
	if s.BaseCache == "" {
		var buf bytes.Buffer
		if err := writeGzip(&buf, func(tw *tar.Writer) error { return tarTree(tw, s.Base) }); err != nil {
			return nil, err
		}
		return layerFromBytes(buf.Bytes())
	}
	tmp := s.BaseCache + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return nil, err
	}
	err = writeGzip(f, func(tw *tar.Writer) error { return tarTree(tw, s.Base) })
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.BaseCache)
	}
	if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("writing the base layer of %s: %w", s.Base, err)
	}
	return tarball.LayerFromFile(s.BaseCache)
}

func layerFromBytes(b []byte) (v1.Layer, error) {
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	})
}

// writeGzip writes a gzipped tar stream that fill fills. The gzip header
// names no file and no time, so equal trees give equal bytes.
func writeGzip(w io.Writer, fill func(*tar.Writer) error) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	if err := fill(tw); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// tarTree writes the tree at root, in lexical order, times in whole
// seconds and owners numeric. Device nodes, fifos and sockets are left out:
// container runtimes give a container its own /dev. Hard links stay
// links; the security.capability attribute (file capabilities) is kept.
func tarTree(tw *tar.Writer, root string) error {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]string{}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.Mode()&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0:
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat", p)
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = int(st.Uid), int(st.Gid), "", ""
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = fi.ModTime().Truncate(time.Second), time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if fi.Mode().IsRegular() && st.Nlink > 1 {
			key := inode{uint64(st.Dev), st.Ino}
			if first, ok := seen[key]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
				return tw.WriteHeader(hdr)
			}
			seen[key] = hdr.Name
		}
		if fi.Mode().IsRegular() {
			if c, err := getCapability(p); err != nil {
				return err
			} else if c != "" {
				hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": c}
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return nil
	})
}

// getCapability reads a file's security.capability attribute; "" when it
// has none.
func getCapability(p string) (string, error) {
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(p, "security.capability", buf)
	switch {
	case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("reading the capabilities of %s: %w", p, err)
	}
	return string(buf[:n]), nil
}

// filesLayer holds files at their Dest, with their parent directories,
// owned by root, times at epoch, modes as on this machine.
func filesLayer(files []File, epoch time.Time) (v1.Layer, error) {
	dirs := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(f.Dest); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var buf bytes.Buffer
	err := writeGzip(&buf, func(tw *tar.Writer) error {
		for _, d := range slices.Sorted(maps.Keys(dirs)) {
			hdr := &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
		}
		sorted := slices.SortedFunc(slices.Values(files), func(a, b File) int { return strings.Compare(a.Dest, b.Dest) })
		for _, f := range sorted {
			b, err := os.ReadFile(f.Src)
			if err != nil {
				return err
			}
			fi, err := os.Stat(f.Src)
			if err != nil {
				return err
			}
			hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.Dest, "/"), Mode: int64(fi.Mode().Perm()),
				Size: int64(len(b)), ModTime: epoch, Format: tar.FormatPAX}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := tw.Write(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("the files layer: %w", err)
	}
	return layerFromBytes(buf.Bytes())
}
