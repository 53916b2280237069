package audit

import (
	"errors"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// appendAttempts is how many times one batch is offered to the store
// before it is dropped: enough to ride out a busy database, few enough
// that a broken one does not hold the queue (and so the callers) for long.
const appendAttempts = 4

// maxNames bounds the team name cache; past it the cache starts over.
const maxNames = 1024

// writer is the Log's one goroutine. Only it touches names and batch.
type writer struct {
	*Log
	names map[string]string // team ID -> name ("" for a team not found)
	batch []store.AuditEntry
}

func (w *writer) run() {
	defer close(w.done)
	w.batch = make([]store.AuditEntry, 0, w.cfg.BatchSize)
	// The flush timer runs only while a batch is open, so an idle Log
	// does not wake up.
	flush := time.NewTimer(w.cfg.FlushInterval)
	flush.Stop()
	var prune <-chan time.Time
	if w.cfg.Retention > 0 {
		w.prune()
		t := time.NewTicker(w.cfg.PruneInterval)
		defer t.Stop()
		prune = t.C
	}
	for {
		select {
		case e := <-w.queue:
			if len(w.batch) == 0 {
				flush.Reset(w.cfg.FlushInterval)
			}
			w.add(e)
		case <-flush.C:
			w.flush()
		case <-prune:
			w.prune()
		case <-w.quit:
			flush.Stop()
			// Records that got past their closed check before Close
			// are still sending (or waiting for room).
			for w.drain(); w.inflight.Load() > 0; w.drain() {
				time.Sleep(time.Millisecond)
			}
			w.drain()
			w.flush()
			return
		}
	}
}

// drain adds whatever is queued to the batch.
func (w *writer) drain() {
	for {
		select {
		case e := <-w.queue:
			w.add(e)
		default:
			return
		}
	}
}

// add puts e in the batch, writing the batch once it is full.
func (w *writer) add(e store.AuditEntry) {
	if e.TeamName == "" && e.TeamID != "" {
		e.TeamName = w.teamName(e.TeamID)
	}
	w.batch = append(w.batch, e)
	if len(w.batch) >= w.cfg.BatchSize {
		w.flush()
	}
}

// flush writes the batch in one AppendAudit, retrying a few times.
func (w *writer) flush() {
	if len(w.batch) == 0 {
		return
	}
	n := len(w.batch)
	var err error
	for attempt := 1; attempt <= appendAttempts; attempt++ {
		if err = w.st.AppendAudit(w.ctx, w.batch); err == nil {
			w.metrics.entries.Add(float64(n))
			break
		}
		if attempt == appendAttempts || w.ctx.Err() != nil {
			break
		}
		select {
		case <-time.After(w.retryWait * time.Duration(attempt)):
		case <-w.ctx.Done():
		}
	}
	if err != nil {
		w.metrics.dropped.Add(float64(n))
		w.log.Error("audit entries lost: writing them failed", "entries", n,
			"first", w.batch[0].Time, "last", w.batch[n-1].Time, "err", err)
	}
	// The store has copied the entries (or never will): reuse the array,
	// cleared so it does not pin their strings.
	clear(w.batch)
	w.batch = w.batch[:0]
}

// teamName finds the name of team id, remembering it: names do not change,
// and a lookup per entry would cost a query per request.
func (w *writer) teamName(id string) string {
	if name, ok := w.names[id]; ok {
		return name
	}
	if w.teams == nil {
		return ""
	}
	t, err := w.teams.Team(w.ctx, id)
	switch {
	case err == nil:
	case errors.Is(err, errdefs.ErrNotFound):
		// Deleted since: remember that too, but keep the entry.
	default:
		// Transient, perhaps: try again for the next entry.
		w.log.Warn("naming the team of an audit entry", "team_id", id, "err", err)
		return ""
	}
	if len(w.names) >= maxNames {
		clear(w.names)
	}
	w.names[id] = t.Name
	return t.Name
}

// prune removes entries older than the retention.
func (w *writer) prune() {
	before := w.now().Add(-w.cfg.Retention)
	n, err := w.st.PruneAudit(w.ctx, before)
	if err != nil {
		w.log.Warn("pruning the audit log", "before", before, "err", err)
		return
	}
	if n > 0 {
		w.log.Info("pruned the audit log", "entries", n, "before", before)
	}
}
