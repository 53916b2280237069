package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// holdWriteLock takes SQLite's write lock on a connection of its own, so
// that the store's writes queue behind it, and returns the function that
// lets it go.
func holdWriteLock(t *testing.T, path string) (release func()) {
	t.Helper()
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if _, err := conn.ExecContext(context.Background(), "COMMIT"); err != nil {
				t.Error(err)
			}
			_ = conn.Close()
			_ = other.Close()
		})
	}
	t.Cleanup(release)
	return release
}

// queued waits until n writes wait in s's commit queue.
func queued(t *testing.T, s *SQLite, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		s.commits.mu.Lock()
		got := len(s.commits.pending)
		s.commits.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// leading waits until a write of s is committing (or waiting for the lock
// to) and none waits behind it.
func leading(t *testing.T, s *SQLite) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		s.commits.mu.Lock()
		ok := s.commits.running && len(s.commits.pending) == 0
		s.commits.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no write took the lead")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGroupCommit: writes made while another commits wait and then share
// one transaction, each durable when its call returns; a write that fails
// in the group fails alone, and its changes are undone.
func TestGroupCommit(t *testing.T) {
	s, path := openTest(t)
	ctx := t.Context()
	if err := s.PutSandbox(ctx, SandboxRecord{ID: "old", State: "running"}); err != nil {
		t.Fatal(err)
	}
	release := holdWriteLock(t, path)

	// The first write takes the lead and waits for the lock; the next
	// ones queue behind it and go in one group.
	first := make(chan error, 1)
	go func() { first <- s.PutSandbox(ctx, SandboxRecord{ID: "lead", State: "running"}) }()
	leading(t, s)
	const n = 8
	errs := make(chan error, n+3)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs <- s.PutSandbox(ctx, SandboxRecord{ID: fmt.Sprintf("sb%d", i), State: "running"}) })
	}
	// Fails: no such record.
	wg.Go(func() {
		if err := s.SetSandboxEnd(ctx, "missing", time.Now()); !errors.Is(err, errdefs.ErrNotFound) {
			errs <- fmt.Errorf("SetSandboxEnd of a missing sandbox: %v, want not found", err)
		}
	})
	// Fails after a change of its own, which must not stay.
	boom := errors.New("boom")
	wg.Go(func() {
		err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `DELETE FROM sandboxes WHERE id = 'old'`); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			errs <- fmt.Errorf("a failing write: %v, want boom", err)
		}
	})
	wg.Go(func() { errs <- s.DeleteSandbox(ctx, "never-there") })
	queued(t, s, n+3)
	groups := s.commits.groups.Load()
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	// The lead's commit, then two for the eleven queued behind it: the
	// volatile ones (the records of running sandboxes, the delete) apart
	// from the durable ones, which would make them wait for an fsync.
	if got := s.commits.groups.Load() - groups; got != 3 {
		t.Errorf("%d commits for %d writes queued behind one, want 3", got, n+3)
	}
	list, err := s.ListSandboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n+2 {
		t.Errorf("%d records, want %d (old, lead and %d queued)", len(list), n+2, n)
	}
	if _, err := s.GetSandbox(ctx, "old"); err != nil {
		t.Errorf("the failed write's delete stayed: %v", err)
	}
}

// TestGroupCommitCancelled: a write whose caller gave up before it ran is
// not made.
func TestGroupCommitCancelled(t *testing.T) {
	s, path := openTest(t)
	release := holdWriteLock(t, path)
	lead := make(chan error, 1)
	go func() { lead <- s.PutSandbox(t.Context(), SandboxRecord{ID: "lead", State: "running"}) }()
	leading(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	gone := make(chan error, 1)
	go func() { gone <- s.PutSandbox(ctx, SandboxRecord{ID: "gone", State: "running"}) }()
	queued(t, s, 1)
	cancel()
	release()
	if err := <-lead; err != nil {
		t.Fatal(err)
	}
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled write: %v, want context.Canceled", err)
	}
	if _, err := s.GetSandbox(t.Context(), "gone"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("the cancelled write was made: %v", err)
	}
}

// A caller that commits for others returns once its own write committed:
// the writes queued behind it are committed by another goroutine, so a
// steady stream of writes cannot keep one caller committing for ever.
func TestGroupCommitLeaderReturns(t *testing.T) {
	s, path := openTest(t)
	ctx := t.Context()
	release := holdWriteLock(t, path)
	lead := make(chan error, 1)
	go func() { lead <- s.PutSandbox(ctx, SandboxRecord{ID: "lead", State: "running"}) }()
	leading(t, s)
	unblock := make(chan struct{})
	behind := make(chan error, 1)
	go func() {
		behind <- s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
			<-unblock // a slow write, committed after the leader's
			return nil
		})
	}()
	queued(t, s, 1)
	release()
	select {
	case err := <-lead:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the leader's write is still waiting for the write queued behind it")
	}
	close(unblock)
	if err := <-behind; err != nil {
		t.Fatal(err)
	}
}

// TestVolatileCommit: a running sandbox's record commits without an fsync
// (synchronous=NORMAL on its connection for that commit only): other
// connections read it, and the connection goes back to the pool set to
// FULL, so the next durable write on it is fsynced as before. A paused
// sandbox's record, which outlives a reboot, commits durably.
func TestVolatileCommit(t *testing.T) {
	s, _ := openTest(t)
	s.db.SetMaxOpenConns(1) // every statement below shares the one connection
	ctx := t.Context()
	var during []int
	err := s.writeVolatile(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var level int
		if err := tx.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&level); err != nil {
			return err
		}
		during = append(during, level)
		_, err := tx.ExecContext(ctx, `INSERT INTO sandboxes (`+sandboxColumns+`) SELECT 'v', 'base', '', '{}', '{}', 0, 0, 0, 0, 0, 'running', '', 0, 0, 0, '', '', 0, 0, '', 0, 0, 0, '', ''`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(during) != 1 || during[0] != 1 {
		t.Errorf("synchronous during a volatile commit = %v, want NORMAL (1)", during)
	}
	var level int
	if err := s.db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&level); err != nil {
		t.Fatal(err)
	}
	if level != 2 {
		t.Errorf("synchronous after a volatile commit = %d, want FULL (2)", level)
	}
	if _, err := s.GetSandbox(ctx, "v"); err != nil {
		t.Errorf("the volatile write is not there: %v", err)
	}
	// A group that holds a durable write commits durably, whatever else
	// it holds; PutSandbox picks by the record's state.
	err = s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&level)
	})
	if err != nil || level != 2 {
		t.Errorf("synchronous during a durable commit = %d (%v), want FULL (2)", level, err)
	}
}
