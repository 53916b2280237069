package sandbox

import (
	"context"
	"fmt"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
)

// Pause stops a running sandbox where it is, memory kept (E2B's pause):
// its processes are frozen, its traffic is refused until Connect resumes
// it, and its deadline moves to the longest timeout allowed, so a paused
// sandbox nobody resumes does not live for ever. A paused sandbox is
// errdefs.ErrConflict.
func (m *Manager) Pause(ctx context.Context, id string) error {
	p, ok := m.rt.(runtime.Pauser)
	if !ok {
		return m.count(errdefs.New(errdefs.ErrUnavailable, "this runtime cannot pause sandboxes"))
	}
	m.mu.Lock()
	e, ok := m.sandboxes[id]
	if !ok {
		m.mu.Unlock()
		return m.count(notFound(id))
	}
	if e.info.State == StatePaused || e.pausing {
		m.mu.Unlock()
		return m.count(errdefs.New(errdefs.ErrConflict, fmt.Sprintf("sandbox %s is already paused", id)))
	}
	e.pausing = true
	e.route.paused.Store(true) // no new traffic reaches a sandbox being frozen
	m.mu.Unlock()

	err := p.Pause(ctx, id)

	m.mu.Lock()
	e.pausing = false
	if err != nil {
		e.route.paused.Store(false)
		m.mu.Unlock()
		return m.count(fmt.Errorf("pausing sandbox %s: %w", id, err))
	}
	if cur, ok := m.sandboxes[id]; !ok || cur != e {
		m.mu.Unlock()
		return nil // killed meanwhile
	}
	e.info.State = StatePaused
	m.armLocked(e, m.clock.Now().Add(m.maxTO))
	m.countState(StateRunning, StatePaused)
	end := e.info.EndAt
	m.mu.Unlock()
	m.log.InfoContext(ctx, "sandbox paused", "sandbox_id", id)
	// A restarted daemon takes the sandbox over as its record says; a
	// failed write is logged (it would then resume it, as before the
	// pause).
	if err := m.store.SetSandboxState(ctx, id, string(StatePaused), end); err != nil {
		m.log.WarnContext(ctx, "recording sandbox state", "sandbox_id", id, "err", err)
	}
	return nil
}

// resumeLocked thaws a paused sandbox. Preconditions: m.mu is held, e is
// paused.
func (m *Manager) resumeLocked(ctx context.Context, e *entry) error {
	p, ok := m.rt.(runtime.Pauser)
	if !ok {
		return errdefs.New(errdefs.ErrUnavailable, "this runtime cannot resume sandboxes")
	}
	if err := p.Resume(ctx, e.info.ID); err != nil {
		return fmt.Errorf("resuming sandbox %s: %w", e.info.ID, err)
	}
	e.info.State = StateRunning
	e.route.paused.Store(false)
	m.countState(StatePaused, StateRunning)
	m.log.InfoContext(ctx, "sandbox resumed", "sandbox_id", e.info.ID)
	return nil
}

// countState moves one sandbox between states in the sandboxes-by-state
// gauge; an empty state is "not a sandbox" (created, or gone).
func (m *Manager) countState(from, to State) {
	if from != "" {
		m.metrics.sandboxes.WithLabelValues(string(from)).Dec()
	}
	if to != "" {
		m.metrics.sandboxes.WithLabelValues(string(to)).Inc()
	}
}
