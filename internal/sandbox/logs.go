package sandbox

import (
	"context"
	"errors"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/sandboxlog"
)

// keepEndedLogs is how many ended sandboxes' logs Logs still serves (a
// ring is 1 MiB at most, a few KiB usually).
const keepEndedLogs = 32

// Logs returns the log entries q selects of a sandbox that runs, is
// paused, or is among the last keepEndedLogs to end: its agent's lines
// and its start command's output. A sandbox taken over after a daemon
// restart has what its agent logged since; one on a runtime that keeps no
// logs has none.
func (m *Manager) Logs(ctx context.Context, id string, q sandboxlog.Query) ([]sandboxlog.Entry, error) {
	m.mu.Lock()
	var ring *sandboxlog.Ring
	e, ok := m.sandboxes[id]
	if ok {
		ring = e.log
	} else {
		var el endedLog
		el, ok = m.ended[id]
		ring = el.ring
	}
	m.mu.Unlock()
	if !ok {
		return nil, m.count(notFound(id))
	}
	if ring == nil {
		return []sandboxlog.Entry{}, nil
	}
	return ring.Entries(q), nil
}

// keepEndedLogLocked keeps the log of id, which just ended, dropping the
// oldest kept past keepEndedLogs. Preconditions: m.mu is held.
func (m *Manager) keepEndedLogLocked(id, team string, ring *sandboxlog.Ring) {
	if m.ended == nil {
		m.ended = map[string]endedLog{}
	}
	if _, ok := m.ended[id]; !ok {
		m.endedOrder = append(m.endedOrder, id)
	}
	m.ended[id] = endedLog{ring: ring, team: team}
	for len(m.endedOrder) > keepEndedLogs {
		delete(m.ended, m.endedOrder[0])
		m.endedOrder = m.endedOrder[1:]
	}
}

// endedLog is the log of a sandbox that ended, and the team it was of.
type endedLog struct {
	ring *sandboxlog.Ring
	team string
}

// Owner returns the ID of the team of sandbox id, one that runs, is
// paused, or ended lately enough that its logs are kept.
func (m *Manager) Owner(id string) (team string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.sandboxes[id]; ok {
		return e.info.TeamID, true
	}
	el, ok := m.ended[id]
	return el.team, ok
}

// sandboxLog is the runtime's log of id, nil when it keeps none.
func (m *Manager) sandboxLog(id string) *sandboxlog.Ring {
	lk, ok := m.rt.(runtime.LogKeeper)
	if !ok {
		return nil
	}
	ring, err := lk.Log(id)
	if err != nil {
		if !errors.Is(err, errdefs.ErrNotFound) {
			m.log.Warn("reading a sandbox's log", "sandbox_id", id, "err", err)
		}
		return nil
	}
	return ring
}
