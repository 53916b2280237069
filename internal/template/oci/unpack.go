package oci

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// How a layer is unpacked, and why it is written by hand.
//
// A layer is hostile input unpacked by host root. Every entry is placed
// relative to a directory handle on the layer's root: its parent is opened
// with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS) (or, for parents still
// to be made and on kernels without openat2, one component at a time with
// O_NOFOLLOW), and the entry itself is created, replaced and given its
// owner, mode and times with *at calls on that parent that never follow a
// symlink. So no name, symlink or hard link in the layer can lead a write
// out of it, whatever came before it in the same layer; lower layers are
// separate directories the unpacker never looks into.
//
// containerd's archive.Apply with its overlay whiteout converter was the
// alternative. It follows symlinks inside the root (Docker's semantics)
// with a userspace resolver and clamps ".." instead of refusing it, and it
// would bring containerd's module graph for one function; here the kernel
// enforces the rule and a hostile name is an error the user sees.

const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
)

// errLayer marks an entry the layer may not contain; it is the image's
// fault, so it reaches the user as an invalid argument.
func errLayer(format string, a ...any) error {
	return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf(format, a...))
}

// Unpack extracts a layer tar into dir, an empty directory, as an
// overlayfs layer: ".wh.NAME" becomes a whiteout (a 0/0 character
// device), ".wh..wh..opq" marks its directory opaque. Owners, modes,
// times and xattrs are kept; device nodes other than whiteouts are
// dropped (sandboxes get their own /dev, and a device node in the data
// dir would be a door into the host's devices).
//
// Unpack refuses, with an error naming the entry: absolute names and ".."
// components; whiteouts of "", ".", ".." or another ".wh." name; writes
// through a symlink; symlinks whose relative target climbs above the
// layer's root; hard links to names it refuses or to nothing in the layer.
func Unpack(r io.Reader, dir string) error {
	root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening the layer directory: %w", err)
	}
	defer unix.Close(root)
	u := &unpacker{root: root}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading layer: %w", err)
		}
		if err := u.entry(h, tr); err != nil {
			return fmt.Errorf("layer entry %q: %w", h.Name, err)
		}
	}
	return u.finish()
}

type unpacker struct {
	root int // O_DIRECTORY handle on the layer's root
	// dirTimes are set last: writing into a directory changes its mtime.
	dirTimes []dirTime
}

type dirTime struct {
	parent, name string
	t            time.Time
}

// splitName turns an entry name into its components, refusing absolute
// names and "..". "." and empty components ("./a//b/") are dropped.
func splitName(name string) ([]string, error) {
	if strings.HasPrefix(name, "/") {
		return nil, errLayer("absolute name")
	}
	if strings.IndexByte(name, 0) >= 0 {
		return nil, errLayer("name holds a NUL byte")
	}
	var parts []string
	for _, p := range strings.Split(name, "/") {
		switch p {
		case "", ".":
			continue
		case "..":
			return nil, errLayer(`".." in a name`)
		}
		parts = append(parts, p)
	}
	return parts, nil
}

func (u *unpacker) entry(h *tar.Header, body io.Reader) error {
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo, tar.TypeChar, tar.TypeBlock:
	default:
		return nil // other types carry nothing a sandbox needs
	}
	parts, err := splitName(h.Name)
	if err != nil {
		return err
	}
	if len(parts) == 0 {
		return nil // the layer's root: its directory is made by the importer
	}
	parent, base := strings.Join(parts[:len(parts)-1], "/"), parts[len(parts)-1]
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(parent, base)
	}
	for k := range h.PAXRecords {
		// A sparse entry's holes cost nothing in the tar and are written
		// out as zeros: a few bytes of layer could fill the disk. Image
		// builders do not make them.
		if strings.HasPrefix(k, "GNU.sparse.") {
			return errLayer("sparse files are not supported")
		}
	}
	if (h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock) && !(h.Typeflag == tar.TypeChar && h.Devmajor == 0 && h.Devminor == 0) {
		return nil // see Unpack
	}
	var linkParent, linkBase string
	switch h.Typeflag {
	case tar.TypeSymlink:
		if h.Linkname == "" || strings.IndexByte(h.Linkname, 0) >= 0 {
			return errLayer("symlink with an empty or NUL-holding target")
		}
		if climbsOut(len(parts)-1, h.Linkname) {
			return errLayer("symlink to %q leaves the layer", h.Linkname)
		}
	case tar.TypeLink:
		lp, err := splitName(h.Linkname)
		if err != nil {
			return fmt.Errorf("hard link to %q: %w", h.Linkname, err)
		}
		if len(lp) == 0 {
			return errLayer("hard link to the layer's root")
		}
		linkParent, linkBase = strings.Join(lp[:len(lp)-1], "/"), lp[len(lp)-1]
	}

	pfd, err := u.openDir(parent, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	exists := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	wasWhiteout := exists && isWhiteout(&st)
	if exists && !(st.Mode&unix.S_IFMT == unix.S_IFDIR && h.Typeflag == tar.TypeDir) {
		if err := removeAt(pfd, base); err != nil {
			return fmt.Errorf("replacing an earlier entry: %w", err)
		}
	}

	mode := uint32(h.Mode) & 0o7777
	switch h.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil && err != unix.EEXIST {
			return fmt.Errorf("making the directory: %w", err)
		}
		// A whiteout of this name earlier in the layer meant "hide the
		// lower directory"; as a directory the entry does that by being
		// opaque.
		if wasWhiteout {
			if err := u.setDirXattr(pfd, base, opaqueXattr, "y"); err != nil {
				return err
			}
		}
		u.dirTimes = append(u.dirTimes, dirTime{parent, base, h.ModTime})
	case tar.TypeReg:
		if err := writeFile(pfd, base, body); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := unix.Symlinkat(h.Linkname, pfd, base); err != nil {
			return fmt.Errorf("making the symlink: %w", err)
		}
	case tar.TypeLink:
		lfd, err := u.openDir(linkParent, false)
		if err != nil {
			return fmt.Errorf("hard link to %q: %w", h.Linkname, err)
		}
		defer unix.Close(lfd)
		// No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink.
		if err := unix.Linkat(lfd, linkBase, pfd, base, 0); err == unix.ENOENT {
			return errLayer("hard link to %q: no such entry in the layer", h.Linkname)
		} else if err != nil {
			return fmt.Errorf("hard link to %q: %w", h.Linkname, err)
		}
		return nil // the link shares its target's owner and mode
	case tar.TypeFifo, tar.TypeChar:
		kind := uint32(unix.S_IFIFO)
		if h.Typeflag == tar.TypeChar {
			kind = unix.S_IFCHR // a 0/0 whiteout, as filtered above
		}
		if err := unix.Mknodat(pfd, base, kind|mode, 0); err != nil {
			return fmt.Errorf("making the node: %w", err)
		}
	}
	return u.metadata(pfd, base, h)
}

// climbsOut reports whether a relative symlink target, read from a
// directory depth levels below the root, names a place above the root.
// Absolute targets are resolved from the layer's root by the sandbox (and
// by nothing on the host), so they stay inside. The check is lexical: it
// keeps plainly hostile links out of the store; what stops a chain of
// links from leading host code out is that host code resolves layer paths
// with RESOLVE_NO_SYMLINKS or inside the root, never by following them.
func climbsOut(depth int, target string) bool {
	if strings.HasPrefix(target, "/") {
		return false
	}
	for _, p := range strings.Split(target, "/") {
		switch p {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

// whiteout handles ".wh.NAME" and ".wh..wh..opq" in parent.
func (u *unpacker) whiteout(parent, base string) error {
	if base == whiteoutOpaque {
		fd, err := u.openDir(parent, true)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Fsetxattr(fd, opaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("marking the directory opaque: %w", err)
		}
		return nil
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." || strings.HasPrefix(name, whiteoutPrefix) {
		return errLayer("whiteout of %q", name)
	}
	pfd, err := u.openDir(parent, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	switch err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case err == unix.ENOENT:
		if err := unix.Mknodat(pfd, name, unix.S_IFCHR, 0); err != nil {
			return fmt.Errorf("making the whiteout: %w", err)
		}
		return nil
	case err != nil:
		return err
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		// The same layer has the name: whiteouts apply to lower layers
		// only, so the directory stays and hides theirs.
		return u.setDirXattr(pfd, name, opaqueXattr, "y")
	default:
		return nil // a non-directory in this layer already hides lower ones
	}
}

func isWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// openDir opens the directory rel (components joined by "/", "" for the
// root) inside the layer, refusing any symlink on the way. With create,
// missing directories are made (root-owned, 0755, as tar does).
func (u *unpacker) openDir(rel string, create bool) (int, error) {
	if rel == "" {
		return unix.Openat(u.root, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	how := &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for range 16 {
		fd, err := unix.Openat2(u.root, rel, how)
		switch err {
		case nil:
			return fd, nil
		case unix.EAGAIN:
			continue // a rename elsewhere on the filesystem; try again
		case unix.ENOENT, unix.ENOSYS, unix.EPERM: // EPERM: openat2 blocked by a seccomp filter
			return u.walk(rel, create)
		default:
			return u.walk(rel, false) // for an error naming the component at fault
		}
	}
	return u.walk(rel, create)
}

// walk opens rel one component at a time, never following a symlink.
// Components are single names (splitName refused "..").
func (u *unpacker) walk(rel string, create bool) (int, error) {
	cur, err := unix.Openat(u.root, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	parts := strings.Split(rel, "/")
	for i, p := range parts {
		const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		next, err := unix.Openat(cur, p, flags, 0)
		if err == unix.ENOENT && create {
			if err := unix.Mkdirat(cur, p, 0o755); err != nil && err != unix.EEXIST {
				unix.Close(cur)
				return -1, fmt.Errorf("making %q: %w", strings.Join(parts[:i+1], "/"), err)
			}
			next, err = unix.Openat(cur, p, flags, 0)
		}
		if err != nil {
			var st unix.Stat_t
			serr := unix.Fstatat(cur, p, &st, unix.AT_SYMLINK_NOFOLLOW)
			unix.Close(cur)
			where := strings.Join(parts[:i+1], "/")
			switch {
			case serr == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK:
				return -1, errLayer("%q is a symlink: a layer may not write through one", where)
			case serr == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR:
				return -1, errLayer("%q is not a directory", where)
			case err == unix.ENOENT:
				return -1, errLayer("%q does not exist in the layer", where)
			}
			return -1, fmt.Errorf("opening %q: %w", where, err)
		}
		unix.Close(cur)
		cur = next
	}
	return cur, nil
}

// writeFile creates name in dirfd (which must not hold it) with the
// entry's content.
func writeFile(dirfd int, name string, body io.Reader) error {
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("creating the file: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	_, err = io.Copy(f, body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing the file: %w", err)
	}
	return nil
}

// metadata gives name in dirfd the entry's owner, xattrs, mode and times,
// in that order (chown clears set-id bits and file capabilities).
func (u *unpacker) metadata(dirfd int, name string, h *tar.Header) error {
	if err := unix.Fchownat(dirfd, name, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting the owner: %w", err)
	}
	if h.Typeflag == tar.TypeSymlink {
		// A symlink has no mode; fchmodat would follow it.
		ts := []unix.Timespec{unix.NsecToTimespec(h.ModTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
		_ = unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
		return nil
	}
	if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeDir {
		for k, v := range h.PAXRecords {
			x, ok := strings.CutPrefix(k, "SCHILY.xattr.")
			// Overlay's own xattrs (opaque, redirect, metacopy) are the
			// unpacker's to set: a layer that set them could stitch lower
			// layers together in ways its tar does not show.
			if !ok || strings.HasPrefix(x, "trusted.overlay.") || strings.HasPrefix(x, "user.overlay.") {
				continue
			}
			_ = u.setXattr(dirfd, name, h.Typeflag == tar.TypeDir, x, v) // filesystems without xattrs lose them, as before
		}
	}
	// name is what this entry just made, not a symlink: fchmodat (which
	// follows) acts on it.
	if err := unix.Fchmodat(dirfd, name, uint32(h.Mode)&0o7777, 0); err != nil {
		return fmt.Errorf("setting the mode: %w", err)
	}
	if h.Typeflag != tar.TypeDir {
		ts := []unix.Timespec{unix.NsecToTimespec(h.ModTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
		_ = unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

func (u *unpacker) setDirXattr(dirfd int, name, key, value string) error {
	if err := u.setXattr(dirfd, name, true, key, value); err != nil {
		return fmt.Errorf("setting %s on %q: %w", key, name, err)
	}
	return nil
}

// setXattr sets an xattr on the directory or regular file name in dirfd,
// through a descriptor opened without following symlinks.
func (u *unpacker) setXattr(dirfd int, name string, dir bool, key, value string) error {
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	if dir {
		flags |= unix.O_DIRECTORY
	}
	fd, err := unix.Openat(dirfd, name, flags, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFDIR && t != unix.S_IFREG {
		return fmt.Errorf("%q is not a file or directory", name)
	}
	return unix.Fsetxattr(fd, key, []byte(value), 0)
}

// finish sets the directories' times, deepest last-listed first.
func (u *unpacker) finish() error {
	for i := len(u.dirTimes) - 1; i >= 0; i-- {
		d := u.dirTimes[i]
		pfd, err := u.openDir(d.parent, false)
		if err != nil {
			continue // replaced by a later entry
		}
		ts := []unix.Timespec{unix.NsecToTimespec(d.t.UnixNano()), unix.NsecToTimespec(d.t.UnixNano())}
		_ = unix.UtimesNanoAt(pfd, d.name, ts, unix.AT_SYMLINK_NOFOLLOW)
		unix.Close(pfd)
	}
	return nil
}

// removeAt removes name from dirfd, and everything under it when it is a
// directory, without following symlinks.
func removeAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR {
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), name)
	names, err := d.Readdirnames(-1)
	if err == nil {
		for _, n := range names {
			if err = removeAt(fd, n); err != nil {
				break
			}
		}
	}
	d.Close()
	if err != nil {
		return err
	}
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}
