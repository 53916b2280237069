package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
)

var _ runtime.Committer = (*Runtime)(nil)

// Commit implements runtime.Committer: it kills the sandbox's init (the
// kernel then kills the rest of its pid namespace and the overlay mounts
// go with its mount namespace), moves each mount's upper dir to dir/<i>,
// releases the sandbox, and shifts the moved files' owners from the
// sandbox's host uid range back to the ids the sandbox saw.
func (r *Runtime) Commit(ctx context.Context, id, dir string) (err error) {
	if r.disks != nil {
		return errors.New("committing a sandbox needs a runtime without disk quotas: its layers go with its disk")
	}
	b, ok := r.takeBox(id)
	if !ok {
		return errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("sandbox %s not found", id))
	}
	hostUID := r.cfg.UIDBase + b.slot*idsPerSandbox
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	if b.pidfd != nil {
		b.kill()
		select {
		case <-b.done:
		case <-ctx.Done():
			_ = r.destroy(b)
			return fmt.Errorf("committing %s: %w", id, ctx.Err())
		}
	}
	// Wait for the last task of the sandbox to go (its cgroup empties),
	// so nothing writes to the upper dirs once they move.
	if b.group != nil {
		if err := waitEmpty(ctx, b.group.Pids); err != nil {
			_ = r.destroy(b)
			return fmt.Errorf("committing %s: %w", id, err)
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		_ = r.destroy(b)
		return fmt.Errorf("committing %s: %w", id, err)
	}
	ents, err := os.ReadDir(filepath.Join(b.dir, "layers"))
	if err != nil {
		_ = r.destroy(b)
		return fmt.Errorf("committing %s: listing its layers: %w", id, err)
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if err := os.Rename(filepath.Join(b.dir, "layers", e.Name(), "upper"), filepath.Join(dir, e.Name())); err != nil {
			_ = r.destroy(b)
			return fmt.Errorf("committing %s: moving its writable layer: %w", id, err)
		}
	}
	if err := r.destroy(b); err != nil {
		return fmt.Errorf("committing %s: %w", id, err)
	}
	if err := shiftOwners(ctx, dir, hostUID); err != nil {
		return fmt.Errorf("committing %s: %w", id, err)
	}
	// The sandbox's overlay was volatile: make the layer durable now.
	if err := syncfs(dir); err != nil {
		return fmt.Errorf("committing %s: %w", id, err)
	}
	return nil
}

// waitEmpty polls pids until it reports no process.
func waitEmpty(ctx context.Context, pids func() ([]int, error)) error {
	for range 2000 {
		p, err := pids()
		if err != nil || len(p) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		_ = unix.Nanosleep(&unix.Timespec{Nsec: 1_000_000}, nil)
	}
	return errors.New("processes outlived the sandbox's init")
}

// shiftOwners moves every file under dir whose owner is in the sandbox's
// host range [base, base+idsPerSandbox) to the id the sandbox saw. Ids
// outside the range (files the daemon wrote, hard links already shifted)
// are left alone. chown clears set-id bits, so they are put back.
//
// The tree is a sandbox's writable layer, so every name in it was chosen by
// the sandbox: it is walked by directory handles, never by path, and no
// call follows a symlink, so even a tree that still changed under the walk
// could not lead it out of dir.
func shiftOwners(ctx context.Context, dir string, base int) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("shifting owners of layer: %w", err)
	}
	defer unix.Close(fd)
	if err := shiftDir(ctx, fd, base); err != nil {
		return fmt.Errorf("shifting owners of layer: %w", err)
	}
	return nil
}

// shiftDir shifts the owners of the entries of the directory open at dirfd,
// and of everything below them.
func shiftDir(ctx context.Context, dirfd, base int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	names, err := dirNames(dirfd)
	if err != nil {
		return err
	}
	inRange := func(v uint32) bool { return int(v) >= base && int(v) < base+idsPerSandbox }
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("stat of %q: %w", name, err)
		}
		typ := st.Mode & unix.S_IFMT
		if inRange(st.Uid) || inRange(st.Gid) {
			uid, gid := int(st.Uid), int(st.Gid)
			if inRange(st.Uid) {
				uid -= base
			}
			if inRange(st.Gid) {
				gid -= base
			}
			if err := unix.Fchownat(dirfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("chown of %q: %w", name, err)
			}
			if (typ == unix.S_IFREG || typ == unix.S_IFDIR) && st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
				if err := restoreMode(dirfd, name, st.Mode&0o7777); err != nil {
					return err
				}
			}
		}
		if typ != unix.S_IFDIR {
			continue
		}
		sub, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening %q: %w", name, err)
		}
		err = shiftDir(ctx, sub, base)
		unix.Close(sub)
		if err != nil {
			return fmt.Errorf("%s/%w", name, err)
		}
	}
	return nil
}

// restoreMode puts back the set-id bits chown cleared, through a handle
// opened without following a link.
func restoreMode(dirfd int, name string, mode uint32) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %q to restore its set-id bits: %w", name, err)
	}
	defer unix.Close(fd)
	if err := unix.Fchmod(fd, mode); err != nil {
		return fmt.Errorf("restoring set-id bits of %q: %w", name, err)
	}
	return nil
}

// dirNames lists the directory open at dirfd through a duplicate of its
// handle (os.File closes what it owns).
func dirNames(dirfd int) ([]string, error) {
	dup, err := unix.Dup(dirfd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "layer dir")
	defer f.Close()
	return f.Readdirnames(-1)
}

func syncfs(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("syncing layer: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("syncing layer: %w", err)
	}
	return nil
}
