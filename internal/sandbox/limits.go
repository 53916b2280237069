package sandbox

import (
	"fmt"
	"math"
	"time"

	"golang.org/x/time/rate"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// maxTeamLabels bounds the team label's values in the per-team metrics: the
// teams past it share the label "other", so a daemon with many teams does
// not grow /metrics without end.
const maxTeamLabels = 100

// teamUse is what the Manager tracks of one team. Guarded by Manager.mu.
type teamUse struct {
	// live counts the team's sandboxes plus its creates in flight, so
	// concurrent creates cannot overshoot MaxSandboxes together.
	live int
	// creates is the team's token bucket; nil while it has no rate limit.
	creates *rate.Limiter
}

// admit reserves a place for one more sandbox of team t, or says which
// limit forbids it. The caller undoes a reservation that does not become
// a sandbox with unadmit.
func (m *Manager) admit(t store.Team) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.teamLocked(t.ID)
	l := t.Limits
	if l.MaxSandboxes > 0 && u.live >= l.MaxSandboxes {
		m.metrics.limitHits.WithLabelValues(m.teamLabelLocked(t.Name), "max_sandboxes").Inc()
		// Waiting does not help until the team frees a sandbox.
		return errdefs.NoRetry(errdefs.New(errdefs.ErrResourceExhausted, fmt.Sprintf(
			"team %q has %d sandboxes, its limit (max-sandboxes %d); kill one or raise the limit",
			t.Name, u.live, l.MaxSandboxes)))
	}
	if l.CreatesPerSecond > 0 {
		burst := l.CreateBurst
		if burst <= 0 {
			burst = max(1, int(math.Ceil(l.CreatesPerSecond)))
		}
		if u.creates == nil {
			u.creates = rate.NewLimiter(rate.Limit(l.CreatesPerSecond), burst)
		}
		// Limits may change while the daemon runs; the bucket follows.
		if u.creates.Limit() != rate.Limit(l.CreatesPerSecond) {
			u.creates.SetLimit(rate.Limit(l.CreatesPerSecond))
		}
		if u.creates.Burst() != burst {
			u.creates.SetBurst(burst)
		}
		now := m.clock.Now()
		res := u.creates.ReserveN(now, 1)
		if d := res.DelayFrom(now); !res.OK() || d > 0 {
			res.CancelAt(now)
			m.metrics.limitHits.WithLabelValues(m.teamLabelLocked(t.Name), "creates_per_second").Inc()
			wait := max(time.Second, d.Round(time.Second))
			if d > wait {
				wait += time.Second
			}
			return errdefs.RetryAfter(errdefs.New(errdefs.ErrResourceExhausted, fmt.Sprintf(
				"team %q is over its rate limit (creates-per-second %g, burst %d); retry in %s",
				t.Name, l.CreatesPerSecond, burst, wait)), wait)
		}
	} else {
		u.creates = nil
	}
	u.live++
	return nil
}

// unadmit gives back a place admit reserved.
func (m *Manager) unadmit(teamID string) {
	m.mu.Lock()
	m.teamLocked(teamID).live--
	m.mu.Unlock()
}

// teamLocked returns team id's use, made on first sight. Precondition:
// m.mu is held.
func (m *Manager) teamLocked(id string) *teamUse {
	u, ok := m.teams[id]
	if !ok {
		u = &teamUse{}
		m.teams[id] = u
	}
	return u
}

// teamLabelLocked is the team label for name: the name itself for the
// first maxTeamLabels teams seen, "other" after. Precondition: m.mu is
// held.
func (m *Manager) teamLabelLocked(name string) string {
	if _, ok := m.teamLabels[name]; ok {
		return name
	}
	if len(m.teamLabels) >= maxTeamLabels {
		return "other"
	}
	m.teamLabels[name] = struct{}{}
	return name
}

// checkSize refuses a sandbox of tpl bigger than team t allows per
// sandbox, and a timeout past its longest lifetime.
func checkSize(t store.Team, tpl *template.Template, cpus, memMB, diskMB int, timeout time.Duration) error {
	l := t.Limits
	over := func(what string, got int, limit string, maxv int, unit string) error {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf(
			"template %s asks for %s %d%s; team %q allows at most %d%s per sandbox (%s)",
			tpl.ID, what, got, unit, t.Name, maxv, unit, limit))
	}
	switch {
	case l.MaxCPUs > 0 && cpus > l.MaxCPUs:
		return over("cpuCount", cpus, "max-cpus", l.MaxCPUs, "")
	case l.MaxMemoryMB > 0 && memMB > l.MaxMemoryMB:
		return over("memoryMB", memMB, "max-memory-mb", l.MaxMemoryMB, " MB")
	case l.MaxDiskMB > 0 && diskMB > l.MaxDiskMB:
		return over("diskSizeMB", diskMB, "max-disk-mb", l.MaxDiskMB, " MB")
	case l.MaxLifetime > 0 && timeout > l.MaxLifetime:
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf(
			"timeout %s is longer than team %q's maximum sandbox lifetime of %s (max-lifetime)",
			timeout, t.Name, l.MaxLifetime))
	}
	return nil
}
