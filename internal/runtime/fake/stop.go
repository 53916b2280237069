package fake

import (
	"context"
	"fmt"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
)

var _ runtime.Stopper = (*Fake)(nil)

// Stop implements runtime.Stopper: the sandbox's socket server stops, as
// its agent would. The hook SetHook set runs first, without the fake's
// lock.
func (f *Fake) Stop(ctx context.Context, id string) error {
	f.mu.Lock()
	hook := f.hook
	f.mu.Unlock()
	if hook != nil {
		hook(id)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.sandboxes[id]
	switch {
	case !ok:
		return errdefs.New(errdefs.ErrNotFound, "sandbox "+id+" not found")
	case sb.stopped:
		return errdefs.New(errdefs.ErrConflict, "sandbox "+id+" is stopped already")
	}
	sb.stopped, sb.paused = true, false
	sb.stop()
	return nil
}

// Start implements runtime.Stopper: the sandbox serves again on the same
// socket, with spec's egress policy. The hook SetHook set runs first,
// without the fake's lock.
func (f *Fake) Start(ctx context.Context, spec runtime.Spec) (*runtime.Sandbox, error) {
	f.mu.Lock()
	hook := f.hook
	f.mu.Unlock()
	if hook != nil {
		hook(spec.ID)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.sandboxes[spec.ID]
	switch {
	case !ok:
		return nil, errdefs.New(errdefs.ErrNotFound, "sandbox "+spec.ID+" not found")
	case !sb.stopped:
		return nil, errdefs.New(errdefs.ErrConflict, "sandbox "+spec.ID+" is not stopped")
	}
	if f.opts.Handler != nil {
		if err := f.serveLocked(sb); err != nil {
			return nil, fmt.Errorf("starting %s again: %w", spec.ID, err)
		}
	}
	sb.stopped = false
	sb.starts++
	sb.spec.Egress = spec.Egress
	info := sb.info
	return &info, nil
}

// Stopped reports whether id is stopped (filesystem-only paused).
func (f *Fake) Stopped(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.sandboxes[id]
	return ok && sb.stopped
}

// Starts counts the Starts of id that succeeded.
func (f *Fake) Starts(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if sb, ok := f.sandboxes[id]; ok {
		return sb.starts
	}
	return 0
}

// Resumes counts the Resumes of id that succeeded.
func (f *Fake) Resumes(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if sb, ok := f.sandboxes[id]; ok {
		return sb.resumes
	}
	return 0
}

// SetHook makes every later Stop, Start and Resume call hook first (a test holds a
// Start there to race others against it); nil removes it.
func (f *Fake) SetHook(hook func(id string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = hook
}
