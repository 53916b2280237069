package sandbox

import (
	"context"
	"errors"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/sandboxlog"
)

// Logs returns a running or paused sandbox's recent log entries (its
// agent's lines and its start command's output) that q selects. A sandbox
// adopted after a daemon restart, or on a runtime that keeps no logs, has
// none yet.
func (m *Manager) Logs(ctx context.Context, id string, q sandboxlog.Query) ([]sandboxlog.Entry, error) {
	m.mu.Lock()
	_, ok := m.sandboxes[id]
	m.mu.Unlock()
	if !ok {
		return nil, m.count(notFound(id))
	}
	ring := m.sandboxLog(id)
	if ring == nil {
		return []sandboxlog.Entry{}, nil
	}
	return ring.Entries(q), nil
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
