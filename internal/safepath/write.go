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

// mkdirAll creates abs and its missing parents and returns an O_PATH
// descriptor of the directory. Without grant it looks up and creates with
// the current identity only (Rename's rule for its destination). With grant
// it runs with the agent's identity and switches to the Cred for each lookup
// and each creation the Cred may do itself; a directory the Cred may not
// create, the agent creates and gives to owner, as E2B's envd makes parents
// for its user.
func (r *Root) mkdirAll(abs string, owner Owner, grant bool) (fd int, created bool, err error) {
	if _, err := rel(abs); err != nil {
		return -1, false, err
	}
	asCred := func(fn func() error) error { return fn() }
	if grant {
		asCred = r.do
	}
	open := func(p string) (fd int, err error) {
		err = asCred(func() error {
			fd, err = r.openFD(p, unix.O_PATH|unix.O_DIRECTORY, 0)
			return err
		})
		return fd, err
	}
	fd, err = open(abs)
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
			next, err = open(prefix)
			if err == nil || !errors.Is(err, unix.ENOENT) || try == mkdirRetries {
				break
			}
			// ENOENT, not EACCES: the Cred may search the parent and
			// sees that comp is missing.
			err = asCred(func() error { return unix.Mkdirat(parent, comp, 0o755) })
			granted := grant && r.cred != nil && (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM))
			if granted {
				err = r.asAgent(func() error { return unix.Mkdirat(parent, comp, 0o755) })
			}
			if errors.Is(err, unix.EEXIST) {
				continue // raced with another creator, or a dangling symlink
			}
			if err != nil {
				break
			}
			if granted || r.chowns() {
				chown := func() error {
					return unix.Fchownat(parent, comp, int(owner.UID), int(owner.GID), unix.AT_SYMLINK_NOFOLLOW)
				}
				if grant {
					err = r.asAgent(chown)
				} else {
					err = chown()
				}
				if err != nil {
					break
				}
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

// asAgent runs fn with the agent's own identity. Outside do every thread
// has it. Inside a Do view the calling thread runs as the Cred, so fn runs
// on another goroutine: a thread switched to a Cred is locked to its
// goroutine and runs no other.
func (r *Root) asAgent(fn func() error) error {
	if !r.active {
		return fn()
	}
	done := make(chan error, 1)
	go func() { done <- fn() }()
	return <-done
}

// rename is Rename without a change of identity.
func (r *Root) rename(src, dst string, owner Owner) error {
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
	dpfd, _, err := r.mkdirAll(ddir, owner, false)
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

// removeAll is RemoveAll without a change of identity.
func (r *Root) removeAll(abs string) error {
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

// chowns reports whether what r creates must be given to its owner
// explicitly: acting as a non-root Cred, the kernel already makes new files
// that user's, and an existing file it may write keeps its owner, as for
// any process of that user.
func (r *Root) chowns() bool {
	return r.cred == nil || r.cred.UID == 0
}
