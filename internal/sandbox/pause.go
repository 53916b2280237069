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
	return m.count(m.pause(ctx, id, true))
}

// PauseFilesystemOnly pauses a running sandbox keeping its filesystem
// only (E2B's pause with memory false): its processes end and its memory
// is freed; its ID, token, metadata, files and network rules stay.
// Connect boots it again on the same files and runs its template's start
// command, as after a reboot. Otherwise as Pause.
func (m *Manager) PauseFilesystemOnly(ctx context.Context, id string) error {
	return m.count(m.pause(ctx, id, false))
}

func (m *Manager) pause(ctx context.Context, id string, memory bool) error {
	var do func(ctx context.Context, id string) error
	if memory {
		p, ok := m.rt.(runtime.Pauser)
		if !ok {
			return errdefs.New(errdefs.ErrUnavailable, "this runtime cannot pause sandboxes")
		}
		do = p.Pause
	} else {
		s, ok := m.rt.(runtime.Stopper)
		if !ok {
			return errdefs.New(errdefs.ErrUnavailable, "this runtime cannot pause sandboxes keeping their filesystem only")
		}
		do = s.Stop
	}
	e, done, err := m.begin(ctx, id)
	if err != nil {
		return err
	}
	if e.info.State == StatePaused {
		done()
		m.mu.Unlock()
		return errdefs.New(errdefs.ErrConflict, fmt.Sprintf("sandbox %s is already paused", id))
	}
	e.pausing = true
	e.route.paused.Store(true) // no new traffic reaches a sandbox being paused
	m.mu.Unlock()

	err = do(ctx, id)

	m.mu.Lock()
	e.pausing = false
	if err != nil {
		e.route.paused.Store(false)
		done()
		m.mu.Unlock()
		return fmt.Errorf("pausing sandbox %s: %w", id, err)
	}
	if cur, ok := m.sandboxes[id]; !ok || cur != e {
		done()
		m.mu.Unlock()
		return nil // killed meanwhile
	}
	e.info.State = StatePaused
	e.info.PausedFilesystemOnly = !memory
	m.armLocked(e, m.clock.Now().Add(m.maxTO))
	m.countState(e.team, StateRunning, StatePaused)
	end := e.info.EndAt
	done()
	m.mu.Unlock()
	m.log.InfoContext(ctx, "sandbox paused", "sandbox_id", id, "memory", memory)
	// A restarted daemon takes the sandbox over as its record says; a
	// failed write is logged (it would then resume it, as before the
	// pause).
	if err := m.store.SetSandboxState(ctx, id, string(StatePaused), !memory, end); err != nil {
		m.log.WarnContext(ctx, "recording sandbox state", "sandbox_id", id, "err", err)
	}
	return nil
}

// begin waits for any pause or resume of sandbox id to end, then marks
// one begun. It returns with m.mu held; done, called once with m.mu held,
// ends the mark and wakes whoever waits.
func (m *Manager) begin(ctx context.Context, id string) (_ *entry, done func(), _ error) {
	for {
		m.mu.Lock()
		e, ok := m.sandboxes[id]
		if !ok {
			m.mu.Unlock()
			return nil, nil, notFound(id)
		}
		ch := e.busy
		if ch == nil {
			ch = make(chan struct{})
			e.busy = ch
			return e, func() {
				e.busy = nil
				close(ch)
			}, nil
		}
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("waiting for sandbox %s to finish pausing or resuming: %w", id, ctx.Err())
		}
	}
}

// countState moves one sandbox of the team labelled team between states
// in the sandboxes-by-state gauges; an empty state is "not a sandbox"
// (created, or gone).
func (m *Manager) countState(team string, from, to State) {
	if from != "" {
		m.metrics.sandboxes.WithLabelValues(string(from)).Dec()
		m.metrics.teamSandboxes.WithLabelValues(team, string(from)).Dec()
	}
	if to != "" {
		m.metrics.sandboxes.WithLabelValues(string(to)).Inc()
		m.metrics.teamSandboxes.WithLabelValues(team, string(to)).Inc()
	}
}
