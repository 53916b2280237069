// Package safepath resolves paths sent by clients inside a sandbox's root
// directory and operates on them without ever leaving it.
//
// A Root is an open directory handle. Every path a Root method takes is a
// clean absolute path in the sandbox's namespace (what Resolve returns), and
// every lookup of it goes through openat2(2) relative to the root's handle
// with RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS: ".." stops at the root,
// absolute symlinks are resolved as if the root were "/", and /proc magic
// links (/proc/self/root, /proc/N/fd/M) are refused. Operations on a final
// path component (create, mkdir, rename, remove, lstat) act on a handle of
// the already-resolved parent directory, so swapping a symlink in during a
// request cannot redirect them outside the root either.
//
// Inside a sandbox the agent has pivoted into the sandbox's root, so the
// Root is "/"; tests open a temporary directory. The agent runs as root;
// Root.As gives a view whose operations are checked against a user's
// permissions instead, save that MkdirAll and Create make missing parent
// directories for the user as E2B's envd does. Create writes a new version
// beside the file and renames it into place (PendingFile).
//
// Like os's, the operations are single system calls or short sequences of
// them and take no context; callers check theirs between operations. On kernels without openat2
// (before 5.6) lookups fall back to the userspace resolver of
// github.com/cyphar/filepath-securejoin, which gives the same guarantees.
package safepath

import (
	"errors"
	"fmt"
	"os"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// resolveFlags scope every lookup to the root.
const resolveFlags = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// eagainRetries bounds retries of openat2, which returns EAGAIN with
// RESOLVE_IN_ROOT when a concurrent rename anywhere on the filesystem might
// have let ".." escape.
const eagainRetries = 64

// Root is a directory that client paths are resolved inside. It is safe for
// concurrent use. Close it when done; using it after Close fails with EBADF.
//
// A Root acts with the agent's own identity; As returns a view of it whose
// operations are checked against a user's (see Cred).
type Root struct {
	*state
	cred *Cred // nil: the agent's own identity
	// active marks the view Do hands its function: the thread already
	// runs as cred, so operations do not switch again.
	active bool
}

// state is what a Root and its views share.
type state struct {
	file    *os.File // O_PATH|O_DIRECTORY handle on the root
	fd      int      // file's descriptor
	openat2 bool     // false: fall back to securejoin's resolver

	// The agent's own filesystem identity, restored after an operation
	// done as a Cred.
	uid, gid int
	groups   []int

	accounts accountCache
	meta     sidecar
}

// Open opens the directory dir as a Root.
func Open(dir string) (*Root, error) {
	return open(dir, true)
}

// open opens dir; useOpenat2 false forces the fallback resolver (tests).
func open(dir string, useOpenat2 bool) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening root %s: %w", dir, err)
	}
	groups, err := unix.Getgroups()
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("reading the agent's groups: %w", err)
	}
	r := &Root{state: &state{
		file: os.NewFile(uintptr(fd), dir), fd: fd,
		uid: unix.Geteuid(), gid: unix.Getegid(), groups: groups,
	}}
	if useOpenat2 {
		probe, err := unix.Openat2(fd, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: resolveFlags})
		if err == nil {
			unix.Close(probe)
			r.openat2 = true
		} else if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
			r.file.Close()
			return nil, fmt.Errorf("probing openat2 on root %s: %w", dir, err)
		}
	}
	return r, nil
}

// Close releases the root's handle, which views made by As share. Closing
// twice is fine.
func (r *Root) Close() error {
	err := r.file.Close()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

// HostPath returns the root's path as opened; for logs only.
func (r *Root) HostPath() string { return r.file.Name() }

// UsesOpenat2 reports whether lookups use openat2 rather than the fallback.
func (r *Root) UsesOpenat2() bool { return r.openat2 }

// openFD opens the clean absolute path abs inside the root with flags
// (O_CLOEXEC is added) and returns the raw descriptor. The final component
// is followed when it is a symlink unless flags has O_NOFOLLOW.
func (r *Root) openFD(abs string, flags int, mode uint32) (int, error) {
	rp, err := rel(abs)
	if err != nil {
		return -1, err
	}
	return r.openRel(abs, rp, flags, mode)
}

// openRel is openFD on the root-relative path rp, which need not be clean:
// ".." components are resolved by the kernel (or the fallback resolver),
// which never leaves the root. abs names rp for the fallback's
// O_CREAT|O_NOFOLLOW case, where it must be clean.
func (r *Root) openRel(abs, rp string, flags int, mode uint32) (int, error) {
	if !r.openat2 {
		return r.openFallback(abs, rp, flags, mode)
	}
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Mode: uint64(mode), Resolve: resolveFlags}
	for i := 0; ; i++ {
		fd, err := unix.Openat2(r.fd, rp, how)
		if (errors.Is(err, unix.EAGAIN) && i < eagainRetries) || errors.Is(err, unix.EINTR) {
			continue
		}
		return fd, err
	}
}

// openFallback emulates openFD without openat2: securejoin's resolver walks
// the path in userspace one component at a time, scoped to the root, and
// returns an O_PATH handle that is then reopened with the wanted flags.
func (r *Root) openFallback(abs, rp string, flags int, mode uint32) (int, error) {
	if flags&(unix.O_CREAT|unix.O_NOFOLLOW) != 0 && abs != "/" {
		// Open the final component relative to its resolved parent,
		// never following it.
		dir, name, _ := split(abs)
		pfd, err := r.openFD(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return -1, err
		}
		defer unix.Close(pfd)
		fd, err := unix.Openat(pfd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
		if !errors.Is(err, unix.ELOOP) || flags&unix.O_NOFOLLOW != 0 {
			return fd, err
		}
		// The final component is a symlink and the caller follows
		// symlinks: resolve it inside the root; its target must exist.
		flags &^= unix.O_CREAT | unix.O_EXCL
	}
	h, err := pathrs.OpenatInRoot(r.file, rp)
	if err != nil {
		return -1, errnoOf(err)
	}
	defer h.Close()
	if flags&unix.O_DIRECTORY != 0 {
		var st unix.Stat_t
		if err := unix.Fstat(int(h.Fd()), &st); err != nil {
			return -1, err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return -1, unix.ENOTDIR
		}
	}
	if flags&unix.O_PATH != 0 {
		return unix.FcntlInt(h.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	}
	f, err := pathrs.Reopen(h, flags&^(unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW))
	if err != nil {
		return -1, errnoOf(err)
	}
	defer f.Close()
	return unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
}

// errnoOf returns the errno inside err, or err.
func errnoOf(err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// openParent opens the parent directory of abs (following symlinks inside
// the root) and returns its descriptor and abs's final name.
func (r *Root) openParent(op, abs string) (int, string, error) {
	if _, err := rel(abs); err != nil {
		return -1, "", err
	}
	dir, name, ok := split(abs)
	if !ok {
		return -1, "", pathErr(op, abs, unix.EINVAL)
	}
	pfd, err := r.openFD(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, "", pathErr(op, abs, err)
	}
	return pfd, name, nil
}
