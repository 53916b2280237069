package linux

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

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
	if b.cmd != nil && b.cmd.Process != nil {
		_ = b.cmd.Process.Signal(syscall.SIGKILL)
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
func shiftOwners(ctx context.Context, dir string, base int) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("shifting owner of layer file: %w", err)
		}
		uid, gid := int(st.Uid), int(st.Gid)
		inRange := func(v int) bool { return v >= base && v < base+idsPerSandbox }
		if !inRange(uid) && !inRange(gid) {
			return nil
		}
		if inRange(uid) {
			uid -= base
		}
		if inRange(gid) {
			gid -= base
		}
		if err := unix.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("shifting owner of layer file: %w", err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK && st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
			if err := unix.Chmod(p, st.Mode&0o7777); err != nil {
				return fmt.Errorf("restoring set-id bits of layer file: %w", err)
			}
		}
		return nil
	})
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
