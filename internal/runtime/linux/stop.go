package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
)

var _ runtime.Stopper = (*Runtime)(nil)

// Stop implements runtime.Stopper: the sandbox's init is killed (the
// kernel kills the rest of its pid namespace and unmounts its overlays),
// its cgroup and network link are removed, and its directory, disk and
// uid range stay, so Start can boot it again on the same files.
func (r *Runtime) Stop(ctx context.Context, id string) error {
	b, err := r.box(id)
	if err != nil {
		return err
	}
	b.op.Lock()
	defer b.op.Unlock()
	r.mu.Lock()
	switch {
	case r.boxes[id] != b:
		r.mu.Unlock()
		return errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("sandbox %s not found", id))
	case b.stopped:
		r.mu.Unlock()
		return errdefs.New(errdefs.ErrConflict, fmt.Sprintf("sandbox %s is stopped already", id))
	}
	b.stopped = true
	r.mu.Unlock()
	err = r.halt(b)
	// The mark tells a later run of the daemon that finds this dir with
	// no init that the sandbox was stopped on purpose, its files to keep.
	if merr := os.WriteFile(filepath.Join(b.dir, stoppedMark), nil, 0o600); merr != nil {
		err = errors.Join(err, merr)
	}
	if err != nil {
		return fmt.Errorf("stopping %s: %w", id, err)
	}
	return nil
}

// stoppedMark is the file in a sandbox's dir while it is stopped.
const stoppedMark = "stopped"

// Start implements runtime.Stopper. If the boot fails the sandbox stays
// stopped, its files untouched, and Start may be tried again.
func (r *Runtime) Start(ctx context.Context, spec runtime.Spec) (*runtime.Sandbox, error) {
	id := spec.ID
	b, err := r.box(id)
	if err != nil {
		return nil, err
	}
	b.op.Lock()
	defer b.op.Unlock()
	r.mu.Lock()
	switch {
	case r.boxes[id] != b:
		r.mu.Unlock()
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("sandbox %s not found", id))
	case !b.stopped:
		r.mu.Unlock()
		return nil, errdefs.New(errdefs.ErrConflict, fmt.Sprintf("sandbox %s is not stopped", id))
	}
	b.pid, b.done = 0, make(chan struct{})
	r.mu.Unlock()

	st := stages{last: time.Now()}
	if b.layers == "" { // adopted running, and stopped since
		if err := r.reattachDisk(b, true); err != nil {
			return nil, fmt.Errorf("starting %s again: %w", id, err)
		}
	}
	if err := r.freshWork(b, len(spec.Mounts)); err != nil {
		return nil, err
	}
	sb, err := r.boot(ctx, b, spec, &st, func() error { return nil })
	if err != nil {
		if herr := r.halt(b); herr != nil {
			r.log.WarnContext(ctx, "cleaning up a failed start", "sandbox_id", id, "err", herr)
		}
		return nil, fmt.Errorf("starting %s again: %w", id, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.boxes[id] != b {
		// Killed while booting: Kill destroys it once op is free.
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("sandbox %s not found", id))
	}
	b.stopped, b.killing = false, false
	go r.watch(b, b.done)
	if err := os.Remove(filepath.Join(b.dir, stoppedMark)); err != nil && !errors.Is(err, os.ErrNotExist) {
		r.log.WarnContext(ctx, "removing the stopped mark", "sandbox_id", id, "err", err)
	}
	return sb, nil
}

// halt kills b's processes and releases what a boot set up for them (the
// cgroup, the network link, the agent's socket), keeping b's directory,
// disk and uid range. Its watcher, if any, reports no exit.
func (r *Runtime) halt(b *box) error {
	r.mu.Lock()
	b.killing = true
	paused := b.paused
	b.paused = false
	r.mu.Unlock()
	if b.pidfd != nil {
		// Once it returns, a new boot never shares the writable layers
		// with an old one.
		r.killInit(b, paused)
		if b.pidfd != nil {
			b.pidfd.Close()
			b.pidfd = nil
		}
	}
	r.mu.Lock()
	group, link := b.group, b.link
	b.group, b.link = nil, nil
	r.mu.Unlock()
	var errs []error
	if group != nil {
		errs = append(errs, deleteGroup(group))
	}
	if link != nil {
		errs = append(errs, r.cfg.Egress.Detach(*link))
	}
	if err := appendState(b.dir, noInitLine, noLinkLine); err != nil {
		errs = append(errs, fmt.Errorf("recording that %s has no init: %w", b.id, err))
	}
	for _, f := range []string{legacyLinkFile, legacyPidFile, legacyIdentFile, "envd.sock"} {
		if err := os.Remove(filepath.Join(b.dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// freshWork empties the overlays' work dirs of b's n mounts: a volatile
// overlay leaves a mark there that refuses a second mount of the same
// upper dir until removed (overlayfs.rst, "Volatile mount"). The upper
// dirs were synced by nothing but stay whole: their filesystem, the
// host's or the sandbox's disk, stayed mounted.
func (r *Runtime) freshWork(b *box, n int) error {
	hostUID := r.cfg.UIDBase + b.slot*idsPerSandbox
	for i := range n {
		work := filepath.Join(b.layers, strconv.Itoa(i), "work")
		if err := os.RemoveAll(work); err != nil {
			return fmt.Errorf("clearing the overlay work dir of %s: %w", b.id, err)
		}
		if err := os.Mkdir(work, 0o755); err != nil {
			return fmt.Errorf("creating the overlay work dir of %s: %w", b.id, err)
		}
		if err := os.Chown(work, hostUID, hostUID); err != nil {
			return fmt.Errorf("chowning the overlay work dir of %s: %w", b.id, err)
		}
	}
	return nil
}
