package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// HostLimits bound what the whole daemon takes on, whatever the team: past
// them a create is refused at once (errdefs.ErrUnavailable, 503 on the
// wire, with a Retry-After) instead of queuing without bound or pushing the
// host into the OOM killer. A zero field sets no bound.
type HostLimits struct {
	// MaxSandboxes bounds the sandboxes the Manager holds (running and
	// paused) plus its creates in flight. The runtime has a bound of its
	// own (its uid ranges), which warm spares count toward as well.
	MaxSandboxes int
	// MaxPendingCreates bounds the creates in flight at once, pooled ones
	// included while they run (they are fast), so a burst waits in the
	// clients' retries rather than in the daemon.
	MaxPendingCreates int
	// MinFreeMemory is the floor, in bytes, of the host's available memory
	// below which no sandbox is created.
	MinFreeMemory int64
	// MemAvailable reports the host's available memory in bytes; /proc/
	// meminfo's MemAvailable when nil. Tests pass their own.
	MemAvailable func() (int64, error)
}

// Reasons a create is refused for, as the "reason" label of
// sandpit_creates_refused_total.
const (
	refusedMemory       = "memory"
	refusedMaxSandboxes = "max_sandboxes"
	refusedPending      = "pending_creates"
)

// Retry-After advice per reason: a create in flight ends within a second
// or so; memory and sandboxes free up when clients end theirs, which takes
// longer, but asking again costs the daemon next to nothing.
const (
	retryPending = time.Second
	retryHost    = 2 * time.Second
)

// memReadEvery is how long a reading of the host's available memory is
// used before the next: a burst of creates must not read /proc/meminfo
// once each.
const memReadEvery = 200 * time.Millisecond

// memGauge caches readings of the host's available memory.
type memGauge struct {
	read func() (int64, error)

	mu     sync.Mutex
	at     time.Time // when avail was read; zero: never
	avail  int64
	err    error
	warned bool // a failed reading was reported
}

// available returns the host's available memory as of at most
// memReadEvery before now; ok is false while it cannot be read. warn is
// the reading's error the first time one fails, for the log.
func (g *memGauge) available(now time.Time) (avail int64, ok bool, warn error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if age := now.Sub(g.at); g.at.IsZero() || age >= memReadEvery || age < 0 {
		g.avail, g.err = g.read()
		g.at = now
		if g.err != nil && !g.warned {
			g.warned = true
			warn = g.err
		}
	}
	return g.avail, g.err == nil, warn
}

// admitHost reserves a place for one more create under the daemon's own
// limits, or says which one forbids it. The caller gives the place back
// with unadmitHost when the create returns, whatever its outcome.
func (m *Manager) admitHost() error {
	h := m.host
	if h.limits.MinFreeMemory > 0 {
		avail, ok, warn := h.mem.available(m.clock.Now())
		if warn != nil {
			// Without a reading the floor cannot be kept; refusing every
			// create for it would be worse than the risk.
			m.log.Warn("creates are not held to --min-free-memory: the host's available memory cannot be read", "err", warn)
		}
		if ok && avail < h.limits.MinFreeMemory {
			m.metrics.refused.WithLabelValues(refusedMemory).Inc()
			return errdefs.RetryAfter(errdefs.New(errdefs.ErrUnavailable, fmt.Sprintf(
				"the host has %d MiB of memory available, below the %d MiB floor (sandpit serve --min-free-memory); retry when sandboxes end",
				avail>>20, h.limits.MinFreeMemory>>20)), retryHost)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := h.limits.MaxPendingCreates; n > 0 && h.pending >= n {
		m.metrics.refused.WithLabelValues(refusedPending).Inc()
		return errdefs.RetryAfter(errdefs.New(errdefs.ErrUnavailable, fmt.Sprintf(
			"%d creates already in flight, the daemon's maximum (sandpit serve --max-pending-creates %d); retry in a moment",
			h.pending, n)), retryPending)
	}
	if n := h.limits.MaxSandboxes; n > 0 && len(m.sandboxes)+h.pending >= n {
		m.metrics.refused.WithLabelValues(refusedMaxSandboxes).Inc()
		return errdefs.RetryAfter(errdefs.New(errdefs.ErrUnavailable, fmt.Sprintf(
			"the daemon holds %d sandboxes (creates in flight included), its maximum (sandpit serve --max-sandboxes %d); retry when one ends",
			len(m.sandboxes)+h.pending, n)), retryHost)
	}
	h.pending++
	return nil
}

// unadmitHost gives back the place admitHost reserved.
func (m *Manager) unadmitHost() {
	m.mu.Lock()
	m.host.pending--
	m.mu.Unlock()
}

// hostUse is what the Manager tracks against its HostLimits.
type hostUse struct {
	limits HostLimits
	mem    memGauge
	// pending counts creates past admitHost that have not returned.
	// Guarded by Manager.mu.
	pending int
}

func newHostUse(l HostLimits) *hostUse {
	read := l.MemAvailable
	if read == nil {
		read = memAvailable
	}
	return &hostUse{limits: l, mem: memGauge{read: read}}
}

// memAvailable reads MemAvailable from /proc/meminfo, in bytes: the
// kernel's estimate of what can be allocated without swapping, page cache
// that can be dropped included.
func memAvailable() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("reading /proc/meminfo: %w", err)
	}
	return parseMemAvailable(b)
}

func parseMemAvailable(b []byte) (int64, error) {
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("MemAvailable:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("malformed MemAvailable line %q", bytes.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed MemAvailable line %q", bytes.TrimSpace(line))
		}
		return kb << 10, nil
	}
	return 0, errors.New("no MemAvailable in /proc/meminfo (kernel older than 3.14?)")
}
