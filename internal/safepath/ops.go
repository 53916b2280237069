package safepath

import (
	"os"

	"golang.org/x/sys/unix"
)

// The exported operations: each runs its unexported twin as the Root's
// Cred (see do), except MkdirAll and Create, which switch to the Cred for
// the steps the Cred must be allowed and do the rest as the agent.

// Lstat describes abs without following it when it is a symlink (symlinks
// in its parent directories are followed, inside the root).
func (r *Root) Lstat(abs string) (*FileInfo, error) {
	var res *FileInfo
	err := r.do(func() error {
		fi, err := r.lstat(abs)
		res = fi
		return err
	})
	return res, err
}

// Stat describes abs, following symlinks inside the root.
func (r *Root) Stat(abs string) (*FileInfo, error) {
	var res *FileInfo
	err := r.do(func() error {
		fi, err := r.stat(abs)
		res = fi
		return err
	})
	return res, err
}

// Readlink returns the target of the symlink abs, as stored.
func (r *Root) Readlink(abs string) (string, error) {
	var res string
	err := r.do(func() error {
		s, err := r.readlink(abs)
		res = s
		return err
	})
	return res, err
}

// OpenFile opens abs with flags (O_RDONLY, O_WRONLY, O_RDWR, O_APPEND,
// O_TRUNC, O_NONBLOCK, O_NOFOLLOW, O_DIRECTORY...), following symlinks
// inside the root. Use Create to create files. The returned file's Name is
// abs.
func (r *Root) OpenFile(abs string, flags int) (*os.File, error) {
	var res *os.File
	err := r.do(func() error {
		f, err := r.openFile(abs, flags)
		res = f
		return err
	})
	return res, err
}

// ReadDir returns lstat information on every entry of the directory abs
// (following symlinks to reach it), in directory order, without "." and "..".
func (r *Root) ReadDir(abs string) ([]*FileInfo, error) {
	var res []*FileInfo
	err := r.do(func() error {
		fis, err := r.readDir(abs)
		res = fis
		return err
	})
	return res, err
}

// MkdirAll creates the directory abs and any missing parents with mode
// 0755, following existing symlinks inside the root (like mkdir -p), as
// E2B's envd does for its users: a directory the Cred may create is made
// by the Cred; one it may not create, in a parent it may search (so it
// sees that the name is missing), is made by the agent and given to owner.
// Acting as itself the Root gives what it makes to owner. created reports
// whether abs itself was made; an existing directory is not an error. A
// component that exists and is not a directory fails with ENOTDIR
// (errdefs.ErrInvalidArgument).
func (r *Root) MkdirAll(abs string, owner Owner) (bool, error) {
	fd, created, err := r.mkdirAll(abs, owner, true)
	if err != nil {
		return false, err
	}
	unix.Close(fd)
	return created, nil
}

// Create starts a new version of the regular file abs, making missing
// parent directories as MkdirAll does; PendingFile.Commit puts it in place
// atomically. A final symlink is followed inside the root, and abs must
// not be a directory (EISDIR) or anything else that is not a regular file
// (EINVAL). The Cred must be allowed to write an existing file, or to
// create one in its directory.
//
// A new file gets mode 0644 (less the umask) and is the Cred's, or owner's
// when the Root acts as itself or as root. A new version of an existing
// file keeps its mode and owner, as a write in place would (owner's when
// the Root acts as itself or as root, and without set-id bits when not).
func (r *Root) Create(abs string, owner Owner) (*PendingFile, error) {
	return r.create(abs, owner)
}

// OpenRegular opens abs for reading, following symlinks inside the root,
// and fails with EISDIR for a directory and EINVAL for anything else that
// is not a regular file. It opens with O_NONBLOCK|O_NOCTTY so that a FIFO
// never blocks and a terminal is never adopted.
func (r *Root) OpenRegular(abs string) (*os.File, *FileInfo, error) {
	var f *os.File
	var fi *FileInfo
	err := r.do(func() error {
		var err error
		f, fi, err = r.openRegular(abs)
		return err
	})
	return f, fi, err
}

// Rename moves src to dst, creating dst's missing parents (owned by owner).
// Neither final component is followed: a symlink is moved, not its target.
// An existing dst is replaced as rename(2) does. Across filesystems it
// copies and removes (not atomically), as mv does.
func (r *Root) Rename(src, dst string, owner Owner) error {
	return r.do(func() error { return r.rename(src, dst, owner) })
}

// RemoveAll removes abs and, when it is a directory, everything below it,
// like rm -rf: a missing abs is not an error, and a final symlink is removed,
// not followed. Removing the root itself is refused (EBUSY).
func (r *Root) RemoveAll(abs string) error {
	return r.do(func() error { return r.removeAll(abs) })
}

// Metadata returns the metadata of the regular file or directory abs (nil
// when it has none). A final symlink is not followed; symlinks and special
// files have no metadata. Reading it needs
// read permission on the file.
func (r *Root) Metadata(abs string) (map[string]string, error) {
	var md map[string]string
	err := r.do(func() error {
		var err error
		md, err = r.metadata(abs)
		return err
	})
	return md, err
}
