package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Group commit. The writes a burst of creates and kills makes (a sandbox's
// record, its deletion, audit entries) each used to be a transaction of
// its own on a connection of its own. SQLite lets one writer in at a time
// and turns the others away with SQLITE_BUSY; its busy handler then
// sleeps 1, 2, 5, 10 ms... before trying again, so the fourth create of a
// burst waited ~15 ms for three commits that take well under one each.
//
// Instead, writes of the sandbox records and the audit log queue here:
// the first caller to find no commit running runs one transaction holding
// every write queued by then, each in a savepoint of its own, and one
// commit (one fsync of the WAL) makes all of them durable. Each caller
// returns after the commit that holds its write, so a write acknowledged
// is as durable as before (synchronous=FULL); a write that fails rolls
// back to its savepoint and fails alone.

// A write may also be volatile: a record of a running sandbox, which a
// power loss or an OS crash ends with everything it describes, or audit
// entries (audit.go says why). Volatile writes commit in a group of their
// own with synchronous=NORMAL: in WAL mode that is no fsync, and still
// durable when the daemon crashes (the WAL is in the kernel's hands),
// which is the crash such a record must survive. The next durable commit
// makes them durable on the disk too. A create no longer waits for the
// disk.

// commitQueue holds the writes waiting for a group commit.
type commitQueue struct {
	mu sync.Mutex
	// pending are the writes queued for the next commit; running is
	// set while a goroutine commits and will look at pending again.
	pending []*queuedWrite
	running bool
	// groups counts the transactions committed.
	groups atomic.Int64
}

// queuedWrite is one caller's write: fn runs in the group's transaction.
type queuedWrite struct {
	ctx      context.Context
	fn       func(ctx context.Context, tx *sql.Tx) error
	volatile bool       // see the top of this file
	done     chan error // buffered: the committer never blocks on it
}

// maxGroup bounds the writes one commit holds, so a long queue makes
// several commits rather than one transaction that holds the write lock
// for long.
const maxGroup = 64

// write runs fn in a transaction shared with the writes of other callers
// queued at the same time, and returns once that transaction committed
// (fn's error, or the commit's). fn must only use tx, and must not call
// write. A caller whose ctx ends while its write waits gets ctx's error if
// the write had not run yet; once it runs, fn gets a context that is not
// cancelled and the caller waits for the commit (milliseconds, bounded by
// the busy timeout).
func (s *SQLite) write(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return s.queue(&queuedWrite{ctx: ctx, fn: fn, done: make(chan error, 1)})
}

// writeVolatile is write for a volatile write (see the top of this file).
func (s *SQLite) writeVolatile(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return s.queue(&queuedWrite{ctx: ctx, fn: fn, volatile: true, done: make(chan error, 1)})
}

func (s *SQLite) queue(w *queuedWrite) error {
	q := &s.commits
	q.mu.Lock()
	q.pending = append(q.pending, w)
	lead := !q.running
	q.running = true
	q.mu.Unlock()
	if lead {
		s.commitPending(w)
	}
	return <-w.done
}

// commitPending commits queued writes, a group at a time, until none is
// left, or, when own is set, until own's group committed: a goroutine
// then takes over the writes queued since, so that a caller does not
// commit for others for as long as they keep coming. The caller set
// commits.running; commitPending clears it when the queue is empty.
func (s *SQLite) commitPending(own *queuedWrite) {
	q := &s.commits
	for {
		q.mu.Lock()
		n := min(len(q.pending), maxGroup)
		group := q.pending[:n:n]
		q.pending = q.pending[n:]
		if n == 0 {
			q.pending = nil
			q.running = false
		}
		q.mu.Unlock()
		if n == 0 {
			return
		}
		// Volatile writes commit apart: a durable one among them would
		// make them all wait for its fsync.
		volatile := func(w *queuedWrite) bool { return w.volatile }
		s.commitGroup(slices.DeleteFunc(slices.Clone(group), func(w *queuedWrite) bool { return !volatile(w) }))
		s.commitGroup(slices.DeleteFunc(slices.Clone(group), volatile))
		if own != nil && slices.Contains(group, own) {
			q.mu.Lock()
			idle := len(q.pending) == 0
			if idle {
				q.pending = nil
				q.running = false
			}
			q.mu.Unlock()
			if !idle {
				// Ends once the queue is empty; after Close every
				// commit fails at once, which empties it too.
				go s.commitPending(nil)
			}
			return
		}
	}
}

// commitGroup runs group in one transaction and tells each write how it
// went.
func (s *SQLite) commitGroup(group []*queuedWrite) {
	var live []*queuedWrite
	for _, w := range group {
		if err := w.ctx.Err(); err != nil {
			w.done <- err
			continue
		}
		live = append(live, w)
	}
	if len(live) == 0 {
		return
	}
	// The transaction is everyone's: no one caller's cancellation may
	// end it, and neither may it interrupt a statement (SQLite rolls the
	// whole transaction back when a write is interrupted). A write whose
	// caller gave up before it ran was skipped above.
	volatile := true
	for _, w := range live {
		volatile = volatile && w.volatile
	}
	conn, err := s.commitConn(volatile)
	if err != nil {
		for _, w := range live {
			w.done <- err
		}
		return
	}
	defer s.releaseCommitConn(conn, volatile)
	tx, err := conn.BeginTx(context.Background(), nil)
	if err != nil {
		err = fmt.Errorf("beginning a transaction: %w", err)
		for _, w := range live {
			w.done <- err
		}
		return
	}
	fail := func(err error) {
		_ = tx.Rollback()
		for _, w := range live {
			w.done <- err
		}
	}
	errs := make([]error, len(live))
	if len(live) == 1 {
		// Alone, the write needs no savepoint: the transaction is its.
		if errs[0] = live[0].fn(context.WithoutCancel(live[0].ctx), tx); errs[0] != nil {
			fail(errs[0])
			return
		}
	} else {
		for i, w := range live {
			var err error
			if errs[i], err = s.runSaved(w.ctx, tx, w.fn); err != nil {
				// The transaction's state is unknown: none of it
				// may commit.
				fail(err)
				return
			}
		}
	}
	if err := tx.Commit(); err != nil {
		fail(fmt.Errorf("committing: %w", err))
		return
	}
	q := &s.commits
	q.groups.Add(1)
	for i, w := range live {
		w.done <- errs[i]
	}
}

// commitConn takes a connection for a group commit, set to commit without
// an fsync when the group is volatile.
func (s *SQLite) commitConn(volatile bool) (*sql.Conn, error) {
	ctx := context.Background()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("taking a connection: %w", err)
	}
	if volatile {
		if _, err := conn.ExecContext(ctx, "PRAGMA synchronous=NORMAL"); err != nil {
			s.releaseCommitConn(conn, true)
			return nil, fmt.Errorf("setting synchronous=NORMAL: %w", err)
		}
	}
	return conn, nil
}

// releaseCommitConn gives conn back to the pool, set back to
// synchronous=FULL: a connection that cannot be is dropped, never
// handed to a durable write.
func (s *SQLite) releaseCommitConn(conn *sql.Conn, volatile bool) {
	if volatile {
		if _, err := conn.ExecContext(context.Background(), "PRAGMA synchronous=FULL"); err != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}
	_ = conn.Close()
}

// The savepoint each write of a group runs in (runSaved).
const (
	savepointQuery  = `SAVEPOINT write`
	rollbackToQuery = `ROLLBACK TO write`
	releaseQuery    = `RELEASE write`
)

// runSaved runs fn in tx inside a savepoint, so that a failing fn undoes
// only its own changes and leaves the other writes of the transaction to
// commit. fnErr is fn's error; err is the savepoint's failing, after which
// the transaction must not commit.
func (s *SQLite) runSaved(ctx context.Context, tx *sql.Tx, fn func(context.Context, *sql.Tx) error) (fnErr, err error) {
	bg := context.WithoutCancel(ctx) // see commitGroup
	if _, err := tx.StmtContext(bg, s.stmts.savepoint).ExecContext(bg); err != nil {
		return nil, fmt.Errorf("opening a savepoint: %w", err)
	}
	if fnErr = fn(bg, tx); fnErr != nil {
		if _, err := tx.StmtContext(bg, s.stmts.rollbackTo).ExecContext(bg); err != nil {
			return fnErr, fmt.Errorf("rolling back after %w: %w", fnErr, err)
		}
	}
	if _, err := tx.StmtContext(bg, s.stmts.release).ExecContext(bg); err != nil {
		return fnErr, fmt.Errorf("releasing a savepoint: %w", err)
	}
	return fnErr, nil
}
