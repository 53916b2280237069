package safepath

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"time"

	"golang.org/x/sys/unix"
)

// FileInfo describes a file inside a root. Sys returns a *unix.Stat_t.
type FileInfo struct {
	name string
	st   unix.Stat_t
}

var _ fs.FileInfo = (*FileInfo)(nil)

func newFileInfo(name string, st *unix.Stat_t) *FileInfo {
	return &FileInfo{name: name, st: *st}
}

// Name is the final path component ("/" for the root).
func (fi *FileInfo) Name() string { return fi.name }

// Size is the length in bytes for regular files and symlinks.
func (fi *FileInfo) Size() int64 { return fi.st.Size }

// Mode is the file's mode as Go's fs.FileMode.
func (fi *FileInfo) Mode() fs.FileMode { return fileMode(fi.st.Mode) }

// ModTime is the modification time.
func (fi *FileInfo) ModTime() time.Time { return time.Unix(fi.st.Mtim.Unix()) }

// IsDir reports whether the file is a directory.
func (fi *FileInfo) IsDir() bool { return fi.st.Mode&unix.S_IFMT == unix.S_IFDIR }

// Sys returns the *unix.Stat_t.
func (fi *FileInfo) Sys() any { return &fi.st }

// UID is the owner's user id.
func (fi *FileInfo) UID() uint32 { return fi.st.Uid }

// GID is the owner's group id.
func (fi *FileInfo) GID() uint32 { return fi.st.Gid }

// fileMode converts a stat(2) mode to fs.FileMode.
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	}
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

func baseName(abs string) string {
	if abs == "/" {
		return "/"
	}
	return path.Base(abs)
}

// lstat is Lstat without a change of identity.
func (r *Root) lstat(abs string) (*FileInfo, error) {
	if abs == "/" {
		return r.stat(abs)
	}
	pfd, name, err := r.openParent("stat", abs)
	if err != nil {
		return nil, err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, pathErr("stat", abs, err)
	}
	return newFileInfo(name, &st), nil
}

// stat is Stat without a change of identity.
func (r *Root) stat(abs string) (*FileInfo, error) {
	fd, err := r.openFD(abs, unix.O_PATH, 0)
	if err != nil {
		return nil, pathErr("stat", abs, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, pathErr("stat", abs, err)
	}
	return newFileInfo(baseName(abs), &st), nil
}

// readlink is Readlink without a change of identity.
func (r *Root) readlink(abs string) (string, error) {
	pfd, name, err := r.openParent("readlink", abs)
	if err != nil {
		return "", err
	}
	defer unix.Close(pfd)
	target, err := ReadlinkAt(pfd, name)
	if err != nil {
		return "", pathErr("readlink", abs, err)
	}
	return target, nil
}

// ReadlinkAt returns the target of the symlink name in the directory
// dirfd, however long (up to four times PATH_MAX).
func ReadlinkAt(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
		if size >= unix.PathMax*4 {
			return "", unix.ENAMETOOLONG
		}
	}
}

// openFile is OpenFile without a change of identity.
func (r *Root) openFile(abs string, flags int) (*os.File, error) {
	if flags&unix.O_CREAT != 0 {
		return nil, pathErr("open", abs, unix.EINVAL)
	}
	if flags&unix.O_PATH == 0 {
		flags |= unix.O_NOCTTY // openat2 refuses it with O_PATH
	}
	fd, err := r.openFD(abs, flags, 0)
	if err != nil {
		return nil, pathErr("open", abs, err)
	}
	return os.NewFile(uintptr(fd), abs), nil
}

// openRegular is OpenRegular without a change of identity.
func (r *Root) openRegular(abs string) (*os.File, *FileInfo, error) {
	fd, err := r.openFD(abs, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, pathErr("open", abs, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, nil, pathErr("open", abs, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		unix.Close(fd)
		return nil, nil, pathErr("open", abs, unix.EISDIR)
	default:
		unix.Close(fd)
		return nil, nil, pathErr("open", abs, unix.EINVAL)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, unix.O_RDONLY); err != nil {
		unix.Close(fd)
		return nil, nil, pathErr("open", abs, err)
	}
	return os.NewFile(uintptr(fd), abs), newFileInfo(baseName(abs), &st), nil
}

// readDir is ReadDir without a change of identity.
func (r *Root) readDir(abs string) ([]*FileInfo, error) {
	fd, err := r.openFD(abs, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, pathErr("readdir", abs, err)
	}
	dir := os.NewFile(uintptr(fd), abs)
	defer dir.Close()
	var out []*FileInfo
	for {
		names, err := dir.Readdirnames(1024)
		for _, name := range names {
			var st unix.Stat_t
			if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				if errors.Is(err, unix.ENOENT) {
					continue // removed while listing
				}
				return nil, pathErr("stat", path.Join(abs, name), err)
			}
			out = append(out, newFileInfo(name, &st))
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, pathErr("readdir", abs, errnoOf(err))
		}
	}
}
