package safepath

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// PathError is an operation on a path inside a root that failed. Its message
// names the operation and the client's path (never the root's host path), so
// it is safe to show the client. It matches both its errdefs category and the
// underlying errno with errors.Is (so errors.Is(err, fs.ErrNotExist) works).
type PathError struct {
	Op   string // "open", "stat", "mkdir", ...
	Path string // the clean absolute path inside the root
	Err  error  // usually a unix.Errno
}

func (e *PathError) Error() string {
	return e.Op + " '" + e.Path + "': " + e.msg()
}

func (e *PathError) msg() string {
	var errno unix.Errno
	if errors.As(e.Err, &errno) {
		switch errno {
		case unix.ENOENT:
			return "no such file or directory"
		case unix.ELOOP:
			return "too many levels of symbolic links, or a link that is not allowed here"
		case unix.EXDEV:
			return "crosses a filesystem boundary or leaves the root"
		case unix.ENOSPC, unix.EDQUOT:
			return "no space left on device"
		}
	}
	return e.Err.Error()
}

// Unwrap returns the errdefs category (when the errno has one) and the
// cause. An errno with no category is the agent's own failure: edges
// report it as internal.
func (e *PathError) Unwrap() []error {
	if c := category(e.Err); c != nil {
		return []error{c, e.Err}
	}
	return []error{e.Err}
}

// category maps an errno to an errdefs category. The Connect and HTTP edges
// map categories to wire codes.
func category(err error) error {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return nil
	}
	switch errno {
	case unix.ENOENT:
		return errdefs.ErrNotFound
	case unix.EEXIST, unix.ENOTEMPTY:
		return errdefs.ErrAlreadyExists
	case unix.EACCES, unix.EPERM, unix.EROFS, unix.ETXTBSY:
		return errdefs.ErrPermissionDenied
	case unix.ENOSPC, unix.EDQUOT, unix.EMFILE, unix.ENFILE:
		return errdefs.ErrResourceExhausted
	case unix.ENOTDIR, unix.EISDIR, unix.EINVAL, unix.ELOOP, unix.EXDEV,
		unix.ENAMETOOLONG, unix.ENXIO, unix.EBUSY:
		return errdefs.ErrInvalidArgument
	}
	return nil
}

func pathErr(op, abs string, err error) error {
	if err == nil {
		return nil
	}
	return &PathError{Op: op, Path: abs, Err: err}
}
