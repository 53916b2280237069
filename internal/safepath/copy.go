package safepath

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// moveAcross moves sname in the directory sdir to dname in ddir when they
// are on different filesystems (rename(2) fails with EXDEV: inside a
// sandbox /tmp is a tmpfs, the rest an overlay): it copies the tree,
// keeping modes, owners, times, symlinks and metadata, then removes the
// source. Like rename(2) it replaces a file or an empty directory at the
// destination. It is not atomic; a failed copy is removed again.
func moveAcross(sdir int, sname string, ddir int, dname string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(sdir, sname, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	var dst unix.Stat_t
	if err := unix.Fstatat(ddir, dname, &dst, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		srcDir, dstDir := st.Mode&unix.S_IFMT == unix.S_IFDIR, dst.Mode&unix.S_IFMT == unix.S_IFDIR
		switch {
		case srcDir && !dstDir:
			return unix.ENOTDIR
		case !srcDir && dstDir:
			return unix.EISDIR
		case dstDir:
			if err := unix.Unlinkat(ddir, dname, unix.AT_REMOVEDIR); err != nil {
				return err // ENOTEMPTY, as rename(2)
			}
		default:
			if err := unix.Unlinkat(ddir, dname, 0); err != nil {
				return err
			}
		}
	} else if !errors.Is(err, unix.ENOENT) {
		return err
	}
	if err := copyAt(sdir, sname, ddir, dname); err != nil {
		_ = removeAt(ddir, dname)
		return err
	}
	return removeAt(sdir, sname)
}

// copyAt copies sname (not following it) into ddir as dname, which must
// not exist.
func copyAt(sdir int, sname string, ddir int, dname string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(sdir, sname, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	perm := st.Mode & 0o7777
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		sfd, err := unix.Openat(sdir, sname, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		src := os.NewFile(uintptr(sfd), sname)
		defer src.Close()
		dfd, err := unix.Openat(ddir, dname, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		dst := os.NewFile(uintptr(dfd), dname)
		defer dst.Close()
		// os.File.ReadFrom uses copy_file_range or splice when it can.
		if _, err := io.Copy(dst, src); err != nil {
			return errnoOf(err)
		}
		copyMetadata(sfd, dfd)
		return finish(dfd, &st, perm)
	case unix.S_IFDIR:
		if err := unix.Mkdirat(ddir, dname, 0o700); err != nil {
			return err
		}
		sfd, err := unix.Openat(sdir, sname, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		src := os.NewFile(uintptr(sfd), sname)
		defer src.Close()
		dfd, err := unix.Openat(ddir, dname, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(dfd)
		for {
			names, err := src.Readdirnames(1024)
			for _, n := range names {
				if err := copyAt(sfd, n, dfd, n); err != nil {
					return err
				}
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return errnoOf(err)
			}
		}
		copyMetadata(sfd, dfd)
		return finish(dfd, &st, perm)
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(sdir, sname, buf)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(string(buf[:n]), ddir, dname); err != nil {
			return err
		}
		if err := unix.Fchownat(ddir, dname, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.EPERM) {
			return err
		}
		ts := []unix.Timespec{st.Atim, st.Mtim}
		return unix.UtimesNanoAt(ddir, dname, ts, unix.AT_SYMLINK_NOFOLLOW)
	default:
		// FIFOs, sockets, devices.
		if err := unix.Mknodat(ddir, dname, st.Mode, int(st.Rdev)); err != nil {
			return err
		}
		return unix.Fchownat(ddir, dname, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
	}
}

// finish gives the copy at fd the source's owner, mode and times.
func finish(fd int, st *unix.Stat_t, perm uint32) error {
	// Acting as a user, a copy of someone else's file stays the user's,
	// as with mv.
	if err := unix.Fchown(fd, int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, unix.EPERM) {
		return err
	}
	if err := unix.Fchmod(fd, perm); err != nil {
		return err
	}
	return unix.UtimesNanoAt(fd, "", []unix.Timespec{st.Atim, st.Mtim}, unix.AT_EMPTY_PATH)
}

// copyMetadata copies the user.e2b.* attributes; best effort.
func copyMetadata(sfd, dfd int) {
	keys, err := listMetadataKeys(sfd)
	if err != nil {
		return
	}
	for _, k := range keys {
		if v, err := getxattr(sfd, xattrPrefix+k); err == nil {
			_ = unix.Fsetxattr(dfd, xattrPrefix+k, []byte(v), 0)
		}
	}
}
