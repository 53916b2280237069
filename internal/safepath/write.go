package safepath

import (
	"errors"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Owner is the uid and gid that files and directories a Root creates are
// given.
type Owner struct {
	UID, GID uint32
}

// mkdirRetries bounds how often MkdirAll retries a component that another
// process creates or removes while it works.
const mkdirRetries = 8

// MkdirAll creates the directory abs and any missing parents with mode
// 0755, owned by owner, following existing symlinks inside the root (like
// mkdir -p). created reports whether abs itself was made; an existing
// directory is not an error. A component that exists and is not a
// directory fails with ENOTDIR (errdefs.ErrInvalidArgument).
func (r *Root) MkdirAll(abs string, owner Owner) (created bool, err error) {
	fd, created, err := r.mkdirAll(abs, owner)
	if err != nil {
		return false, err
	}
	unix.Close(fd)
	return created, nil
}

// mkdirAll is MkdirAll returning an O_PATH descriptor of the directory.
func (r *Root) mkdirAll(abs string, owner Owner) (fd int, created bool, err error) {
	if _, err := rel(abs); err != nil {
		return -1, false, err
	}
	fd, err = r.openFD(abs, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err == nil {
		return fd, false, nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return -1, false, pathErr("mkdir", abs, err)
	}
	// Walk down from the root: open each prefix inside the root, and
	// create it relative to the (pinned) handle of its parent when it is
	// missing.
	parent, err := unix.Dup(r.fd)
	if err != nil {
		return -1, false, pathErr("mkdir", abs, err)
	}
	prefix := ""
	for comp := range strings.SplitSeq(abs[1:], "/") {
		prefix += "/" + comp
		var next int
		for try := 0; ; try++ {
			next, err = r.openFD(prefix, unix.O_PATH|unix.O_DIRECTORY, 0)
			if err == nil || !errors.Is(err, unix.ENOENT) || try == mkdirRetries {
				break
			}
			err = unix.Mkdirat(parent, comp, 0o755)
			if errors.Is(err, unix.EEXIST) {
				continue // raced with another creator, or a dangling symlink
			}
			if err != nil {
				break
			}
			if err = unix.Fchownat(parent, comp, int(owner.UID), int(owner.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
				break
			}
			if prefix == abs {
				created = true
			}
		}
		unix.Close(parent)
		if err != nil {
			return -1, false, pathErr("mkdir", prefix, err)
		}
		parent = next
	}
	return parent, created, nil
}

// Create opens abs for writing, truncating it, after creating missing
// parent directories (0755, owned by owner). A new file gets mode 0644; the
// file, new or not, is then owned by owner. A final symlink is followed
// inside the root. abs must not be a directory (EISDIR) or anything else
// that is not a regular file (EINVAL): a FIFO never blocks the writer.
func (r *Root) Create(abs string, owner Owner) (*os.File, error) {
	dir, _, ok := split(abs)
	if !ok {
		return nil, pathErr("create", abs, unix.EISDIR)
	}
	pfd, _, err := r.mkdirAll(dir, owner)
	if err != nil {
		return nil, err
	}
	unix.Close(pfd)
	fd, err := r.openFD(abs, unix.O_WRONLY|unix.O_CREAT|unix.O_NONBLOCK|unix.O_NOCTTY, 0o644)
	if err != nil {
		return nil, pathErr("create", abs, err)
	}
	f := os.NewFile(uintptr(fd), abs)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, pathErr("create", abs, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, pathErr("create", abs, unix.EINVAL)
	}
	// Truncate only once it is known to be a regular file.
	if err := unix.Ftruncate(fd, 0); err != nil {
		f.Close()
		return nil, pathErr("create", abs, err)
	}
	if err := unix.Fchown(fd, int(owner.UID), int(owner.GID)); err != nil {
		f.Close()
		return nil, pathErr("chown", abs, err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, unix.O_WRONLY); err != nil {
		f.Close()
		return nil, pathErr("create", abs, err)
	}
	return f, nil
}

// Rename moves src to dst, creating dst's missing parents (owned by owner).
// Neither final component is followed: a symlink is moved, not its target.
// An existing dst is replaced as rename(2) does. Across filesystems it
// copies and removes (not atomically), as mv does.
func (r *Root) Rename(src, dst string, owner Owner) error {
	spfd, sname, err := r.openParent("rename", src)
	if err != nil {
		return err
	}
	defer unix.Close(spfd)
	// Check the source before creating anything for the destination.
	var st unix.Stat_t
	if err := unix.Fstatat(spfd, sname, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return pathErr("rename", src, err)
	}
	ddir, dname, ok := split(dst)
	if !ok {
		return pathErr("rename", dst, unix.EBUSY)
	}
	if _, err := rel(dst); err != nil {
		return err
	}
	dpfd, _, err := r.mkdirAll(ddir, owner)
	if err != nil {
		return err
	}
	defer unix.Close(dpfd)
	err = unix.Renameat(spfd, sname, dpfd, dname)
	if errors.Is(err, unix.EXDEV) {
		err = moveAcross(spfd, sname, dpfd, dname)
	}
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return pathErr("rename", src, err)
		}
		return pathErr("rename", dst, err)
	}
	return nil
}

// RemoveAll removes abs and, when it is a directory, everything below it,
// like rm -rf: a missing abs is not an error, and a final symlink is removed,
// not followed. Removing the root itself is refused (EBUSY).
func (r *Root) RemoveAll(abs string) error {
	pfd, name, err := r.openParent("remove", abs)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if errors.Is(err, unix.EINVAL) && abs == "/" {
			return pathErr("remove", abs, unix.EBUSY)
		}
		return err
	}
	defer unix.Close(pfd)
	if err := removeAt(pfd, name); err != nil {
		return pathErr("remove", abs, err)
	}
	return nil
}

// removeAt removes name inside the directory dirfd, recursively. It never
// follows a symlink: directories are opened with O_NOFOLLOW relative to
// their parent's handle.
func removeAt(dirfd int, name string) error {
	for {
		err := unix.Unlinkat(dirfd, name, 0)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
			return err
		}
		fd, oerr := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		switch {
		case errors.Is(oerr, unix.ENOENT):
			return nil
		case errors.Is(oerr, unix.ENOTDIR), errors.Is(oerr, unix.ELOOP):
			if errors.Is(err, unix.EPERM) {
				return err // a non-directory we may not unlink
			}
			continue // swapped for a non-directory: unlink again
		case oerr != nil:
			return oerr
		}
		if err := removeChildren(fd); err != nil {
			unix.Close(fd)
			return err
		}
		unix.Close(fd)
		err = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.ENOTEMPTY) {
			return err
		}
		// Something was created inside meanwhile: go round again.
	}
}

// removeChildren removes every entry of the directory fd.
func removeChildren(fd int) error {
	dup, err := unix.Dup(fd)
	if err != nil {
		return err
	}
	dir := os.NewFile(uintptr(dup), "")
	defer dir.Close()
	for {
		names, err := dir.Readdirnames(1024)
		for _, n := range names {
			if rerr := removeAt(fd, n); rerr != nil {
				return rerr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return errnoOf(err)
		}
	}
}
