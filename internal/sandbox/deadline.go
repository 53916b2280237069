package sandbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// SetTimeout sets sandbox id's deadline to now plus timeout; it may shorten
// the sandbox's life.
func (m *Manager) SetTimeout(ctx context.Context, id string, timeout time.Duration) error {
	if err := m.CheckTimeout(timeout); err != nil {
		return m.count(err)
	}
	m.mu.Lock()
	if e, ok := m.sandboxes[id]; ok && !e.maxEnd.IsZero() && m.clock.Now().Add(timeout).After(e.maxEnd) {
		left := e.maxEnd.Sub(m.clock.Now()).Truncate(time.Second)
		m.mu.Unlock()
		return m.count(errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf(
			"timeout %s would take sandbox %s past its team's maximum lifetime (max-lifetime %s); it may live %s more",
			timeout, id, e.maxEnd.Sub(e.info.StartedAt), left)))
	}
	m.mu.Unlock()
	_, err := m.extend(ctx, id, timeout, true)
	return m.count(err)
}

// Refresh keeps sandbox id alive for at least d more (the default timeout
// when d is zero); it never shortens the sandbox's life.
func (m *Manager) Refresh(ctx context.Context, id string, d time.Duration) error {
	if d == 0 {
		d = m.defTO
	}
	if err := m.CheckTimeout(d); err != nil {
		return m.count(err)
	}
	_, err := m.extend(ctx, id, d, false)
	return m.count(err)
}

// Connect returns sandbox id, with the same access token as Create, after
// moving its deadline to now plus timeout if that is later (the default
// timeout when zero). A paused sandbox is resumed first, its deadline set
// to now plus timeout, and resumed reports it. An unknown id is
// errdefs.ErrNotFound.
func (m *Manager) Connect(ctx context.Context, id string, timeout time.Duration) (info Info, resumed bool, err error) {
	if timeout == 0 {
		timeout = m.defTO
	}
	if err := m.CheckTimeout(timeout); err != nil {
		return Info{}, false, m.count(err)
	}
	resumed, err = m.resume(ctx, id, resumeHow{})
	if err != nil {
		return Info{}, false, m.count(err)
	}
	if resumed {
		info, err := m.armResumed(ctx, id, timeout)
		return info, err == nil, m.count(err)
	}
	info, err = m.extend(ctx, id, timeout, false)
	return info, false, m.count(err)
}

// extend moves id's deadline to now+d; only later unless shorten.
func (m *Manager) extend(ctx context.Context, id string, d time.Duration, shorten bool) (Info, error) {
	m.mu.Lock()
	e, ok := m.sandboxes[id]
	if !ok {
		m.mu.Unlock()
		return Info{}, notFound(id)
	}
	end := m.clock.Now().Add(d)
	changed := false
	if shorten || end.After(e.info.EndAt) {
		m.armLocked(e, end)
		changed = true
	}
	info := e.info.clone()
	m.mu.Unlock()

	if changed {
		// A failed write is logged, not returned: the sandbox runs on
		// with the new deadline, and only a daemon restart would read the
		// old one.
		if err := m.store.SetSandboxEnd(ctx, id, info.EndAt); err != nil {
			m.log.WarnContext(ctx, "recording sandbox deadline", "sandbox_id", id, "err", err)
		}
	}
	return info, nil
}

// armLocked sets e's deadline to end, or to the last its team's
// max-lifetime allows if that is earlier, and (re)starts its timer.
// Preconditions: m.mu is held and e is in m.sandboxes.
func (m *Manager) armLocked(e *entry, end time.Time) {
	if !e.maxEnd.IsZero() && end.After(e.maxEnd) {
		end = e.maxEnd
	}
	e.info.EndAt = end
	e.route.end.Store(end.UnixNano())
	if e.timer != nil {
		e.timer.Stop()
	}
	e.gen++
	gen, id := e.gen, e.info.ID
	e.timer = m.clock.AfterFunc(end.Sub(m.clock.Now()), func() { m.expire(id, gen) })
}

// expire kills sandbox id when the timer armed for gen fires, unless the
// deadline moved since or the sandbox is gone. A running sandbox created
// with AutoPause is paused instead, with its memory or its filesystem
// only as it asked (which re-arms its deadline at the longest timeout);
// if pausing fails it is killed, as without AutoPause.
func (m *Manager) expire(id string, gen uint64) {
	m.background(func(ctx context.Context) {
		m.mu.Lock()
		e, ok := m.sandboxes[id]
		if !ok || e.gen != gen {
			m.mu.Unlock()
			return
		}
		if e.info.AutoPause && e.info.State == StateRunning && !e.pausing {
			memory := !e.info.AutoPauseFilesystemOnly
			m.mu.Unlock()
			m.log.InfoContext(ctx, "pausing sandbox", "sandbox_id", id, "reason", "timeout")
			err := m.count(m.pause(ctx, id, memory))
			if err == nil || errors.Is(err, errdefs.ErrNotFound) {
				return
			}
			m.log.ErrorContext(ctx, "pausing expired sandbox; killing it instead", "sandbox_id", id, "err", err)
			m.mu.Lock()
			if e, ok = m.sandboxes[id]; !ok {
				m.mu.Unlock()
				return
			}
		}
		m.removeLocked(e)
		m.mu.Unlock()
		m.log.InfoContext(ctx, "killing sandbox", "sandbox_id", id, "reason", "timeout")
		if err := m.release(ctx, id); err != nil {
			m.count(err)
			m.log.ErrorContext(ctx, "killing expired sandbox", "sandbox_id", id, "err", err)
		}
	})
}
