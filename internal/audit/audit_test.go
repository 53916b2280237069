package audit_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandpit-dev/sandpit/internal/audit"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// memAudit is an in-memory store.Audit. gate, when set, holds every
// AppendAudit until it is closed; fail makes the next fail appends fail
// (-1: all of them).
type memAudit struct {
	mu      sync.Mutex
	entries []store.AuditEntry
	batches []int
	prunes  []time.Time
	fail    int
	calls   int
	gate    chan struct{}
	entered chan struct{} // gets a value each time an AppendAudit starts
}

func (m *memAudit) AppendAudit(ctx context.Context, entries []store.AuditEntry) error {
	m.mu.Lock()
	gate, entered := m.gate, m.entered
	m.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.fail != 0 {
		if m.fail > 0 {
			m.fail--
		}
		return errors.New("disk on fire")
	}
	for _, e := range entries {
		e.ID = int64(len(m.entries) + 1)
		m.entries = append(m.entries, e)
	}
	m.batches = append(m.batches, len(entries))
	return nil
}

func (m *memAudit) QueryAudit(context.Context, store.AuditQuery) ([]store.AuditEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]store.AuditEntry(nil), m.entries...), nil
}

func (m *memAudit) PruneAudit(_ context.Context, before time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.prunes = append(m.prunes, before)
	kept := m.entries[:0]
	for _, e := range m.entries {
		if !e.Time.Before(before) {
			kept = append(kept, e)
		}
	}
	n := len(m.entries) - len(kept)
	m.entries = kept
	return int64(n), nil
}

func (m *memAudit) snapshot() (entries []store.AuditEntry, batches []int, prunes []time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]store.AuditEntry(nil), m.entries...), append([]int(nil), m.batches...), append([]time.Time(nil), m.prunes...)
}

// teams names team "tN" "team-N", says "gone" is not found, and counts
// its lookups.
type teams struct {
	mu      sync.Mutex
	lookups map[string]int
}

func (t *teams) Team(_ context.Context, id string) (store.Team, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lookups == nil {
		t.lookups = map[string]int{}
	}
	t.lookups[id]++
	if id == "gone" {
		return store.Team{}, fmt.Errorf("team %q: %w", id, errdefs.ErrNotFound)
	}
	return store.Team{ID: id, Name: "team-" + id[1:]}, nil
}

// counter reads a counter of reg by name.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func closeLog(t *testing.T, l *audit.Log) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOrderBatchesAndTeamNames(t *testing.T) {
	st := &memAudit{}
	tn := &teams{}
	reg := prometheus.NewRegistry()
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	l := audit.New(st, tn, audit.Config{Now: func() time.Time { return now }, Metrics: reg, FlushInterval: time.Hour})
	const n = 1000
	given := now.Add(-time.Minute)
	for i := range n {
		e := store.AuditEntry{Action: "sandbox.create", Target: strconv.Itoa(i), TeamID: "t" + strconv.Itoa(i%3)}
		switch i {
		case 1:
			e.Time = given
		case 2:
			e.TeamName = "as-it-was"
		case 3:
			e.TeamID = "gone"
		}
		l.Record(e)
	}
	closeLog(t, l)

	entries, batches, _ := st.snapshot()
	if len(entries) != n {
		t.Fatalf("%d entries written, want %d", len(entries), n)
	}
	for i, e := range entries {
		if e.Target != strconv.Itoa(i) {
			t.Fatalf("entry %d is %q: order lost", i, e.Target)
		}
		wantTime, wantName := now, "team-"+strconv.Itoa(i%3)
		switch i {
		case 1:
			wantTime = given
		case 2:
			wantName = "as-it-was"
		case 3:
			wantName = ""
		}
		if !e.Time.Equal(wantTime) || e.TeamName != wantName {
			t.Errorf("entry %d: time %v team name %q, want %v %q", i, e.Time, e.TeamName, wantTime, wantName)
		}
	}
	for _, b := range batches {
		if b > audit.DefaultBatchSize {
			t.Errorf("a batch of %d entries, over %d", b, audit.DefaultBatchSize)
		}
	}
	if len(batches) < n/audit.DefaultBatchSize {
		t.Errorf("%d batches for %d entries", len(batches), n)
	}
	for id, c := range tn.lookups {
		if c != 1 {
			t.Errorf("team %s looked up %d times, want once", id, c)
		}
	}
	if got := counter(t, reg, "sandpit_audit_entries_total"); got != n {
		t.Errorf("entries_total %v, want %d", got, n)
	}
	if got := counter(t, reg, "sandpit_audit_dropped_total"); got != 0 {
		t.Errorf("dropped_total %v", got)
	}
}

// TestConcurrentRecord records from many goroutines at once (run it with
// -race): every entry lands, each goroutine's in the order it recorded.
func TestConcurrentRecord(t *testing.T) {
	st := &memAudit{}
	l := audit.New(st, nil, audit.Config{QueueSize: 16, BatchSize: 7})
	const workers, each = 8, 300
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				l.Record(store.AuditEntry{KeyID: strconv.Itoa(w), Target: strconv.Itoa(i)})
			}
		})
	}
	wg.Wait()
	closeLog(t, l)
	entries, _, _ := st.snapshot()
	if len(entries) != workers*each {
		t.Fatalf("%d entries, want %d", len(entries), workers*each)
	}
	next := map[string]int{}
	for _, e := range entries {
		if want := strconv.Itoa(next[e.KeyID]); e.Target != want {
			t.Fatalf("worker %s: entry %s where %s was next", e.KeyID, e.Target, want)
		}
		next[e.KeyID]++
	}
}

// TestFlushWithoutClose: a lone entry is written after FlushInterval,
// without waiting for a full batch or Close.
func TestFlushWithoutClose(t *testing.T) {
	st := &memAudit{}
	l := audit.New(st, nil, audit.Config{FlushInterval: 10 * time.Millisecond})
	defer closeLog(t, l)
	l.Record(store.AuditEntry{Action: "files.write"})
	waitFor(t, "the entry to be written", func() bool { e, _, _ := st.snapshot(); return len(e) == 1 })
}

// TestCloseFlushes: Close writes what is queued, even when neither the
// batch nor the interval would have yet.
func TestCloseFlushes(t *testing.T) {
	st := &memAudit{}
	l := audit.New(st, nil, audit.Config{FlushInterval: time.Hour, BatchSize: 1000})
	for i := range 10 {
		l.Record(store.AuditEntry{Target: strconv.Itoa(i)})
	}
	closeLog(t, l)
	if e, b, _ := st.snapshot(); len(e) != 10 || len(b) != 1 {
		t.Fatalf("%d entries in batches %v, want 10 in one", len(e), b)
	}
	closeLog(t, l) // twice is fine
}

func TestRetentionPrunes(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	st := &memAudit{entries: []store.AuditEntry{
		{Target: "old", Time: now.Add(-31 * 24 * time.Hour)},
		{Target: "recent", Time: now.Add(-29 * 24 * time.Hour)},
	}}
	l := audit.New(st, nil, audit.Config{Retention: 720 * time.Hour, PruneInterval: 10 * time.Millisecond, Now: func() time.Time { return now }})
	waitFor(t, "two prunes", func() bool { _, _, p := st.snapshot(); return len(p) >= 2 })
	closeLog(t, l)
	entries, _, prunes := st.snapshot()
	if len(entries) != 1 || entries[0].Target != "recent" {
		t.Errorf("after pruning: %+v", entries)
	}
	if want := now.Add(-720 * time.Hour); !prunes[0].Equal(want) {
		t.Errorf("pruned before %v, want %v", prunes[0], want)
	}

	// Zero retention keeps everything.
	st = &memAudit{entries: []store.AuditEntry{{Target: "old", Time: now.Add(-10 * 365 * 24 * time.Hour)}}}
	l = audit.New(st, nil, audit.Config{PruneInterval: time.Millisecond})
	time.Sleep(20 * time.Millisecond)
	closeLog(t, l)
	if e, _, p := st.snapshot(); len(e) != 1 || len(p) != 0 {
		t.Errorf("retention 0: %d entries left, %d prunes", len(e), len(p))
	}
}

// TestFullQueueBlocks: with the store stuck and the queue full, Record
// waits (and counts the wait) instead of dropping; once the store moves,
// every entry is written.
func TestFullQueueBlocks(t *testing.T) {
	st := &memAudit{gate: make(chan struct{}), entered: make(chan struct{}, 10)}
	reg := prometheus.NewRegistry()
	l := audit.New(st, nil, audit.Config{QueueSize: 2, BatchSize: 1, Metrics: reg})
	l.Record(store.AuditEntry{Target: "0"})
	<-st.entered // the writer holds entry 0, stuck in the store
	l.Record(store.AuditEntry{Target: "1"})
	l.Record(store.AuditEntry{Target: "2"}) // the queue is full now
	returned := make(chan struct{})
	go func() {
		l.Record(store.AuditEntry{Target: "3"})
		close(returned)
	}()
	waitFor(t, "Record to block", func() bool { return counter(t, reg, "sandpit_audit_blocked_total") == 1 })
	select {
	case <-returned:
		t.Fatal("Record returned with the queue full")
	default:
	}
	close(st.gate)
	<-returned
	closeLog(t, l)
	entries, _, _ := st.snapshot()
	if len(entries) != 4 {
		t.Fatalf("%d entries written, want 4", len(entries))
	}
	for i, e := range entries {
		if e.Target != strconv.Itoa(i) {
			t.Errorf("entry %d is %q", i, e.Target)
		}
	}
	if got := counter(t, reg, "sandpit_audit_dropped_total"); got != 0 {
		t.Errorf("dropped_total %v", got)
	}
}

// TestStoreFailure: a failing append is retried; one that keeps failing
// is dropped and counted, and the Log goes on with the next batch.
func TestStoreFailure(t *testing.T) {
	st := &memAudit{fail: 2}
	reg := prometheus.NewRegistry()
	l := audit.New(st, nil, audit.Config{Metrics: reg, FlushInterval: time.Hour})
	l.Record(store.AuditEntry{Target: "retried"})
	closeLog(t, l)
	if e, _, _ := st.snapshot(); len(e) != 1 || st.calls != 3 {
		t.Fatalf("two failures then success: %d entries after %d calls", len(e), st.calls)
	}

	st = &memAudit{fail: -1}
	reg = prometheus.NewRegistry()
	l = audit.New(st, nil, audit.Config{Metrics: reg, BatchSize: 2, FlushInterval: time.Hour})
	for i := range 3 {
		l.Record(store.AuditEntry{Target: strconv.Itoa(i)})
	}
	closeLog(t, l)
	if got := counter(t, reg, "sandpit_audit_dropped_total"); got != 3 {
		t.Errorf("dropped_total %v, want 3", got)
	}
	if got := counter(t, reg, "sandpit_audit_entries_total"); got != 0 {
		t.Errorf("entries_total %v, want 0", got)
	}
	if st.calls != 8 {
		t.Errorf("%d appends for two batches, want 4 attempts each", st.calls)
	}
}

// TestCloseGivesUp: Close with a stuck store returns when its context
// ends, dropping (and counting) what it could not write.
func TestCloseGivesUp(t *testing.T) {
	st := &memAudit{gate: make(chan struct{})}
	reg := prometheus.NewRegistry()
	l := audit.New(st, nil, audit.Config{Metrics: reg})
	l.Record(store.AuditEntry{})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := l.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v, want deadline exceeded", err)
	}
	if got := counter(t, reg, "sandpit_audit_dropped_total"); got != 1 {
		t.Errorf("dropped_total %v, want 1", got)
	}
	// After Close, Record drops and counts.
	l.Record(store.AuditEntry{})
	if got := counter(t, reg, "sandpit_audit_dropped_total"); got != 2 {
		t.Errorf("dropped_total after a late Record %v, want 2", got)
	}
}

// TestCloseWhileRecording closes the Log under callers that keep
// recording: Close returns, and every Record is either written or counted
// as dropped.
func TestCloseWhileRecording(t *testing.T) {
	st := &memAudit{}
	reg := prometheus.NewRegistry()
	l := audit.New(st, nil, audit.Config{QueueSize: 8, BatchSize: 4, Metrics: reg})
	var calls atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				l.Record(store.AuditEntry{})
				calls.Add(1)
			}
		})
	}
	waitFor(t, "some entries", func() bool { return calls.Load() > 1000 })
	closeLog(t, l)
	time.Sleep(10 * time.Millisecond) // Records after Close
	close(stop)
	wg.Wait()
	entries, _, _ := st.snapshot()
	written, dropped := counter(t, reg, "sandpit_audit_entries_total"), counter(t, reg, "sandpit_audit_dropped_total")
	if int(written) != len(entries) || int64(written+dropped) != calls.Load() || dropped == 0 {
		t.Errorf("%d Records: %v written (%d in the store), %v dropped", calls.Load(), written, len(entries), dropped)
	}
}

func TestNilLog(t *testing.T) {
	var l *audit.Log
	l.Record(store.AuditEntry{Action: "sandbox.create"})
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// discard is a store.Audit that keeps nothing.
type discard struct{}

func (discard) AppendAudit(context.Context, []store.AuditEntry) error { return nil }
func (discard) QueryAudit(context.Context, store.AuditQuery) ([]store.AuditEntry, error) {
	return nil, nil
}
func (discard) PruneAudit(context.Context, time.Time) (int64, error) { return 0, nil }

// BenchmarkRecord is what a request pays to be audited: Record's cost to
// the caller (the writer runs on its own goroutine).
func BenchmarkRecord(b *testing.B) {
	e := store.AuditEntry{
		TeamID: "3f0c1e9a-6c2b-4d7e-9a51-0c2f7e8d9b10", KeyID: "k1", KeyName: "ci",
		Action: "process.start", Target: "sbx123", Result: "200", Client: "127.0.0.1:5555",
		Duration: time.Millisecond, Detail: "/bin/bash -l -c 'echo hi'",
	}
	for _, tc := range []struct {
		name     string
		parallel bool
	}{{"serial", false}, {"parallel", true}} {
		b.Run(tc.name, func(b *testing.B) {
			l := audit.New(discard{}, &teams{}, audit.Config{})
			defer l.Close(context.Background())
			b.ReportAllocs()
			if tc.parallel {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						l.Record(e)
					}
				})
				return
			}
			for b.Loop() {
				l.Record(e)
			}
		})
	}
}
