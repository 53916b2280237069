package safepath

import (
	"crypto/rand"
	"errors"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// maxSymlinks bounds the final symlinks Create follows, as the kernel
// bounds those of a path.
const maxSymlinks = 40

// Prefixes of the names of the temporary files of writes in progress: of
// a new file, and of a new version of an existing one.
const (
	tempPrefix        = ".sandpit-"
	tempPrefixNew     = tempPrefix + "new-"
	tempPrefixReplace = tempPrefix + "replace-"
)

// IsPendingName reports whether name is that of the temporary file of a
// write in progress (see Create), and whether that write replaces an
// existing file; watchers hide such files and report their rename into
// place as the write it is.
func IsPendingName(name string) (pending, replaces bool) {
	switch {
	case strings.HasPrefix(name, tempPrefixNew):
		return true, false
	case strings.HasPrefix(name, tempPrefixReplace):
		return true, true
	}
	return false, false
}

// PendingFile is a new version of a regular file, started by Create. Its
// bytes go to a temporary file in the target's directory, which Commit
// renames over the target: readers and concurrent writers see the old
// version or a new one whole, never a mix, and a write that fails or is
// abandoned (Abort) leaves the old version as it was and nothing else.
//
// The embedded *os.File is the temporary file; its Name is the target's
// path. Write to it and set its metadata (SetMetadata), but leave closing
// it to Commit or Abort. A PendingFile is not safe for concurrent use.
type PendingFile struct {
	*os.File
	root     *Root
	dirfd    int          // O_PATH handle on the target's directory
	tmp      string       // the temporary file's name in dirfd
	name     string       // the target's name in dirfd
	replaced *unix.Stat_t // the version being replaced; nil for a new file
	done     bool
}

// Commit makes the new version durable (fsync) and puts it in place
// (rename), then syncs the directory so the rename survives a crash. On
// failure the temporary file is removed and the target is left as it was.
// Calling Commit after Commit or Abort fails with EBADF.
func (p *PendingFile) Commit() error {
	if p.done {
		return pathErr("commit", p.Name(), unix.EBADF)
	}
	abs := p.Name()
	err := p.Sync()
	if cerr := p.File.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		p.abort()
		return pathErr("write", abs, errnoOf(err))
	}
	// The Cred was checked when the file was started; the rename is the
	// agent's, as for a write in place, which needs no right on the
	// directory.
	err = p.root.asAgent(func() error { return unix.Renameat(p.dirfd, p.tmp, p.dirfd, p.name) })
	if err != nil {
		p.abort()
		return pathErr("create", abs, err)
	}
	p.done = true
	defer unix.Close(p.dirfd)
	if p.replaced != nil && p.replaced.Nlink == 1 {
		// The old inode is gone with its last name: so is the metadata
		// the sidecar kept for it.
		p.root.meta.set(fileKey{dev: p.replaced.Dev, ino: p.replaced.Ino}, nil)
	}
	err = p.root.asAgent(func() error {
		dfd, err := unix.Openat(p.dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(dfd)
		return unix.Fsync(dfd)
	})
	if err != nil {
		return pathErr("sync", path.Dir(abs), err)
	}
	return nil
}

// Abort abandons the new version: the temporary file is removed and the
// target stays as it was. After Commit, or a second time, it does nothing,
// so it can be deferred.
func (p *PendingFile) Abort() {
	if p.done {
		return
	}
	p.File.Close()
	p.abort()
}

// Close abandons the new version, as Abort does, and says so with an error:
// a caller that closes a PendingFile as it would an *os.File would
// otherwise lose its write without a word.
func (p *PendingFile) Close() error {
	if p.done {
		return nil
	}
	name := p.Name()
	p.Abort()
	return pathErr("close", name, unix.ECANCELED)
}

// abort removes the temporary file, whose descriptor is closed.
func (p *PendingFile) abort() {
	p.done = true
	_ = p.root.asAgent(func() error { return unix.Unlinkat(p.dirfd, p.tmp, 0) })
	unix.Close(p.dirfd)
}

// create is Create. It runs with the agent's identity and switches to the
// Cred for what the Cred must be allowed: reaching and stat'ing the target,
// opening an existing target for writing, creating a new one.
func (r *Root) create(abs string, owner Owner) (*PendingFile, error) {
	dir, name, ok := split(abs)
	if !ok {
		return nil, pathErr("create", abs, unix.EISDIR)
	}
	pfd, _, err := r.mkdirAll(dir, owner, true)
	if err != nil {
		return nil, err
	}
	p := &PendingFile{root: r}
	took := false
	err = r.do(func() error {
		var err error
		took = true
		p.dirfd, p.name, p.replaced, err = r.writeTarget(abs, dir, pfd, name)
		return err
	})
	if err != nil {
		switch {
		case !took:
			unix.Close(pfd)
		case p.name != "": // found, but restoring the identity failed
			unix.Close(p.dirfd)
		}
		return nil, err
	}
	fd, err := p.openTemp(owner)
	if err != nil {
		unix.Close(p.dirfd)
		return nil, pathErr("create", abs, err)
	}
	p.File = os.NewFile(uintptr(fd), abs)
	return p, nil
}

// writeTarget finds where a write to abs lands, following a final symlink
// inside the root as open(2) would: the directory (a descriptor; it takes
// over pfd, abs's parent dir) and the name in it. st describes the regular
// file there, nil when there is none; the current identity must be allowed
// to open it for writing.
func (r *Root) writeTarget(abs, dir string, pfd int, name string) (dirfd int, base string, st *unix.Stat_t, err error) {
	fail := func(err error) (int, string, *unix.Stat_t, error) {
		unix.Close(pfd)
		return -1, "", nil, pathErr("create", abs, err)
	}
	for hops := 0; ; hops++ {
		if name == "" || name == "." || name == ".." {
			return fail(unix.EISDIR)
		}
		var cur unix.Stat_t
		err := unix.Fstatat(pfd, name, &cur, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) {
			return pfd, name, nil, nil
		}
		if err != nil {
			return fail(err)
		}
		switch cur.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			fd, err := unix.Openat(pfd, name, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			switch {
			case err == nil:
				unix.Close(fd)
			case errors.Is(err, unix.ETXTBSY):
				// A running program: writing it in place is refused
				// after the permission check passed, and replacing it is
				// fine.
			case errors.Is(err, unix.ELOOP) && hops < maxSymlinks:
				continue // swapped for a symlink meanwhile
			default:
				return fail(err)
			}
			return pfd, name, &cur, nil
		case unix.S_IFDIR:
			return fail(unix.EISDIR)
		case unix.S_IFLNK:
			if hops == maxSymlinks {
				return fail(unix.ELOOP)
			}
			target, err := ReadlinkAt(pfd, name)
			if err != nil {
				return fail(err)
			}
			// Keep ".." components: the kernel resolves them against
			// the directories actually reached, inside the root.
			next := target
			if !path.IsAbs(target) {
				next = dir + "/" + target
			}
			i := strings.LastIndexByte(next, '/')
			ndir, nname := next[:i], next[i+1:]
			rp := strings.TrimLeft(ndir, "/")
			if rp == "" {
				rp = "."
			}
			npfd, err := r.openRel("/", rp, unix.O_PATH|unix.O_DIRECTORY, 0)
			if err != nil {
				return fail(err)
			}
			unix.Close(pfd)
			pfd, dir, name = npfd, ndir, nname
		default:
			return fail(unix.EINVAL)
		}
	}
}

// openTemp creates the temporary file next to the target. A new file is
// created by the Cred, so only where it may create one, and is the Cred's;
// a new version of an existing file, which the Cred may write but perhaps
// not replace (its directory need not be the Cred's), is created by the
// agent with the old version's owner and mode.
func (p *PendingFile) openTemp(owner Owner) (int, error) {
	r := p.root
	fd := -1
	var err error
	if p.replaced == nil {
		err = r.do(func() error {
			fd, err = p.openTempAs(0o644)
			return err
		})
		if err == nil && r.chowns() {
			err = r.asAgent(func() error { return unix.Fchown(fd, int(owner.UID), int(owner.GID)) })
		}
	} else {
		err = r.asAgent(func() error {
			var err error
			if fd, err = p.openTempAs(0o600); err != nil {
				return err
			}
			uid, gid, mode := p.replaced.Uid, p.replaced.Gid, p.replaced.Mode&0o7777
			if r.chowns() {
				uid, gid = owner.UID, owner.GID
			} else {
				// As a write by an unprivileged process does.
				mode &^= unix.S_ISUID | unix.S_ISGID
			}
			// chown clears set-id bits: chmod after it.
			if err := unix.Fchown(fd, int(uid), int(gid)); err != nil {
				return err
			}
			return unix.Fchmod(fd, mode)
		})
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
			_ = r.asAgent(func() error { return unix.Unlinkat(p.dirfd, p.tmp, 0) })
		}
		return -1, err
	}
	return fd, nil
}

// openTempAs creates a fresh temporary file in the target's directory with
// the current identity.
func (p *PendingFile) openTempAs(perm uint32) (int, error) {
	for range 8 {
		prefix := tempPrefixNew
		if p.replaced != nil {
			prefix = tempPrefixReplace
		}
		name := prefix + rand.Text()
		fd, err := unix.Openat(p.dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return -1, err
		}
		p.tmp = name
		return fd, nil
	}
	return -1, unix.EEXIST
}
