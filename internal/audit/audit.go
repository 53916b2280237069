// Package audit records who did what, off the request path. Callers hand a
// Log finished store.AuditEntry values; one goroutine batches them into
// the store, names their teams, and prunes what is older than the
// retention.
package audit

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandpit-dev/sandpit/internal/store"
)

// TeamNames finds a team by ID; the store's Teams does. The Log uses it to
// fill an entry's TeamName when the caller gave only the TeamID.
type TeamNames interface {
	Team(ctx context.Context, nameOrID string) (store.Team, error)
}

// Defaults for the zero fields of Config.
const (
	DefaultQueueSize     = 4096
	DefaultBatchSize     = 256
	DefaultFlushInterval = 100 * time.Millisecond
	DefaultPruneInterval = time.Hour
)

// Config configures a Log. Every field may be zero.
type Config struct {
	// Retention is how long entries are kept; older ones are pruned at
	// start and every PruneInterval. Zero keeps everything.
	Retention time.Duration
	// QueueSize bounds the entries waiting to be written. When it is full,
	// Record waits for room rather than lose an entry
	// (sandpit_audit_blocked_total counts those waits).
	QueueSize int
	// BatchSize is the most entries written in one AppendAudit, and
	// FlushInterval the longest an entry waits for its batch to fill.
	BatchSize     int
	FlushInterval time.Duration
	PruneInterval time.Duration
	Logger        *slog.Logger
	// Now tells the time (time.Now when nil).
	Now func() time.Time
	// Metrics registers the Log's counters; nil registers nothing.
	Metrics prometheus.Registerer
}

// Log writes audit entries to a store.Audit in the background. Create it
// with New; Close it to flush. A nil *Log records nothing, so callers need
// no "is auditing on" checks.
type Log struct {
	st      store.Audit
	teams   TeamNames
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics

	queue chan store.AuditEntry
	// closed is set by Close before quit is closed; Record checks it so
	// that entries recorded after Close are counted as dropped rather than
	// left in the queue unseen. inflight counts the Records between that
	// check and their send: the writer, told to quit, waits for it to
	// reach zero, so an entry recorded while Close runs is written or
	// counted, never lost silently.
	closed    atomic.Bool
	inflight  atomic.Int64
	quit      chan struct{}
	quitOnce  sync.Once
	done      chan struct{}
	ctx       context.Context // the writer's; cancelled when Close gives up
	cancel    context.CancelFunc
	retryWait time.Duration
}

// New starts a Log writing to st. teams may be nil: entries then keep the
// TeamName their caller gave.
func New(st store.Audit, teams TeamNames, cfg Config) *Log {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.PruneInterval <= 0 {
		cfg.PruneInterval = DefaultPruneInterval
	}
	l := &Log{
		st:        st,
		teams:     teams,
		cfg:       cfg,
		log:       cfg.Logger,
		now:       cfg.Now,
		queue:     make(chan store.AuditEntry, cfg.QueueSize),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
		retryWait: 100 * time.Millisecond,
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	var err error
	if l.metrics, err = newMetrics(cfg.Metrics); err != nil {
		// Only a second Log on one registry gets here; its counters
		// then go unexported, which is no reason to stop auditing.
		l.log.Warn("audit metrics not registered", "err", err)
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	w := &writer{Log: l, names: make(map[string]string)}
	go w.run()
	return l
}

// Record queues e to be written. It does no I/O: it returns once e is in
// the queue, waiting only when the queue is full. A zero e.Time is set to
// now, here rather than in the writer, so the entry says when the action
// happened and not when its batch was written. After Close, Record drops e
// and counts it in sandpit_audit_dropped_total.
func (l *Log) Record(e store.AuditEntry) {
	if l == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	// Checked twice: the first keeps Records that come after Close out
	// of inflight, so that it drains to zero however busy the callers.
	if l.closed.Load() {
		l.metrics.dropped.Inc()
		return
	}
	l.inflight.Add(1)
	defer l.inflight.Add(-1)
	if l.closed.Load() {
		l.metrics.dropped.Inc()
		return
	}
	select {
	case l.queue <- e:
		return
	default:
	}
	// Full: the store is slow or down. Completeness over latency: wait,
	// but let it show.
	l.metrics.blocked.Inc()
	select {
	case l.queue <- e:
	case <-l.quit:
		l.metrics.dropped.Inc()
	}
}

// Close writes what is queued and stops the writer. If ctx ends first, the
// rest is dropped (and counted) and Close returns ctx's error. Close may be
// called more than once; a nil *Log's Close does nothing.
func (l *Log) Close(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.quitOnce.Do(func() {
		l.closed.Store(true)
		close(l.quit)
	})
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		l.cancel()
		<-l.done
		return ctx.Err()
	}
}
