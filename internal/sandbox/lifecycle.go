package sandbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// bootRecipe is what it takes to boot a sandbox again after a
// filesystem-only pause: the runtime's spec (its egress policy is taken
// from the sandbox's network rules as they are then), the template whose
// start command runs again, and the timeout it was created with (an
// autoResume gives it that long again).
type bootRecipe struct {
	spec    runtime.Spec
	tpl     *template.Template
	timeout time.Duration
}

// checkLifecycle applies E2B's rules to a create's lifecycle: autoResume
// needs the timeout to pause (onTimeout "pause"), and cannot wake a
// sandbox that kept no memory. A filesystem-only flag without AutoPause
// means nothing and is dropped.
func checkLifecycle(req *CreateRequest) error {
	if req.AutoResume && !req.AutoPause {
		return errdefs.New(errdefs.ErrInvalidArgument,
			"autoResume can only be enabled when autoPause is true (lifecycle onTimeout 'pause')")
	}
	if req.AutoResume && req.AutoPauseFilesystemOnly {
		return errdefs.New(errdefs.ErrInvalidArgument,
			"autoResume cannot be combined with autoPauseMemory false: a filesystem-only paused sandbox cannot be resumed by traffic and must be resumed with connect")
	}
	if !req.AutoPause {
		req.AutoPauseFilesystemOnly = false
	}
	return nil
}

// Wake returns the agent socket of sandbox id as Lookup does, but first
// resumes the sandbox if it is paused with its memory and was created with
// AutoResume, so that the request which found it paused is served rather
// than refused. Concurrent Wakes of one sandbox share one resume. A woken
// sandbox's deadline is its create timeout from now. Anything else Lookup
// does not find, Wake does not either.
func (m *Manager) Wake(ctx context.Context, id string) (socketPath string, ok bool) {
	if socket, ok := m.Lookup(id); ok {
		return socket, true
	}
	resumed, err := m.resume(ctx, id, resumeHow{auto: true})
	if err != nil {
		// Traffic to a sandbox that is gone, or paused for good, is
		// the client's business; a resume that failed is the server's.
		if !errors.Is(err, errdefs.ErrNotFound) && !errors.Is(err, errdefs.ErrConflict) {
			m.count(err)
			m.log.WarnContext(ctx, "resuming a sandbox for traffic", "sandbox_id", id, "err", err)
		}
		return "", false
	}
	if resumed {
		m.mu.Lock()
		var d time.Duration
		if e, ok := m.sandboxes[id]; ok {
			d = e.boot.timeout
		}
		m.mu.Unlock()
		if d <= 0 {
			d = m.defTO
		}
		// Paused, its deadline was the longest timeout.
		info, err := m.extend(ctx, id, d, true)
		if err != nil {
			return "", false
		}
		if err := m.store.SetSandboxState(ctx, id, string(StateRunning), false, info.EndAt); err != nil {
			m.log.WarnContext(ctx, "recording sandbox state", "sandbox_id", id, "err", err)
		}
		m.log.InfoContext(ctx, "sandbox resumed by traffic", "sandbox_id", id)
	}
	return m.Lookup(id)
}

// resume brings paused sandbox id back and reports whether it was paused:
// a thaw when it kept its memory, else a new boot on its files followed by
// its template's start command. A resume waits for a pause or resume of
// the sandbox in flight: concurrent resumes make one, and the others find
// it running; a resume during a pause resumes once it is paused.
//
// how.auto is a resume by traffic (Wake): it resumes only a sandbox created
// with AutoResume that kept its memory, and is errdefs.ErrConflict
// otherwise. how.cold boots the sandbox again on its files even if it kept
// its memory (E2B's resume with memory false), which is then dropped.
func (m *Manager) resume(ctx context.Context, id string, how resumeHow) (bool, error) {
	e, done, err := m.begin(ctx, id)
	if err != nil {
		return false, err
	}
	if e.info.State != StatePaused {
		done()
		m.mu.Unlock()
		return false, nil
	}
	if how.auto && (!e.info.AutoResume || e.info.PausedFilesystemOnly) {
		done()
		m.mu.Unlock()
		return false, errdefs.New(errdefs.ErrConflict, fmt.Sprintf("sandbox %s is paused and does not resume on traffic", id))
	}
	fsOnly := e.info.PausedFilesystemOnly
	recipe := e.boot
	recipe.spec.Egress, _ = e.info.Network.policy(e.info.InternetBlocked, m.intercepts(e.info.Traffic)) // valid: it was applied before
	token := e.info.AccessToken
	m.mu.Unlock()

	started := time.Now()
	sb, err := m.wake(ctx, id, fsOnly, how.cold, recipe, token)

	m.mu.Lock()
	defer m.mu.Unlock()
	defer done()
	if cur, ok := m.sandboxes[id]; !ok || cur != e {
		return false, notFound(id) // killed meanwhile
	}
	if err != nil {
		return false, err
	}
	e.info.State = StateRunning
	e.info.PausedFilesystemOnly = false
	fsOnly = fsOnly || how.cold
	if sb != nil {
		e.info.Pid = sb.Pid
	}
	e.route.paused.Store(false)
	m.countState(e.team, StatePaused, StateRunning)
	m.metrics.resumeSeconds.WithLabelValues(pauseKind(!fsOnly)).Observe(time.Since(started).Seconds())
	m.log.InfoContext(ctx, "sandbox resumed", "sandbox_id", id, "memory", !fsOnly, "duration", time.Since(started))
	return true, nil
}

// resumeHow says how resume goes about it.
type resumeHow struct {
	auto bool // by traffic
	cold bool // boot again, memory or not
}

// wake does the runtime's part of a resume; sb is the new boot's sandbox
// after a filesystem-only pause (or for a cold resume), nil after a thaw.
func (m *Manager) wake(ctx context.Context, id string, fsOnly, cold bool, recipe bootRecipe, token string) (*runtime.Sandbox, error) {
	if !fsOnly && !cold {
		p, ok := m.rt.(runtime.Pauser)
		if !ok {
			return nil, errdefs.New(errdefs.ErrUnavailable, "this runtime cannot resume sandboxes")
		}
		if err := p.Resume(ctx, id); err != nil {
			return nil, fmt.Errorf("resuming sandbox %s: %w", id, err)
		}
		return nil, nil
	}
	s, ok := m.rt.(runtime.Stopper)
	if !ok {
		return nil, errdefs.New(errdefs.ErrUnavailable, "this runtime cannot resume sandboxes")
	}
	// A resume is the caller's wait, but a boot half done is not left to
	// a caller that went away.
	ctx = context.WithoutCancel(ctx)
	if !fsOnly {
		// Frozen with its memory: that memory goes first.
		if err := s.Stop(ctx, id); err != nil {
			return nil, fmt.Errorf("dropping the memory of sandbox %s: %w", id, err)
		}
	}
	sb, err := s.Start(ctx, recipe.spec)
	if err != nil {
		return nil, fmt.Errorf("resuming sandbox %s: %w", id, err)
	}
	if recipe.tpl != nil {
		// As on a reboot, the start command runs again; if it fails the
		// sandbox is up all the same, its log says why.
		if err := startTemplate(ctx, m.bg, recipe.tpl, sb.EnvdSocket, token, m.sandboxLog(id)); err != nil {
			m.log.WarnContext(ctx, "start command after a resume", "sandbox_id", id, "err", err)
		}
	}
	return sb, nil
}

func pauseKind(memory bool) string {
	if memory {
		return "memory"
	}
	return "filesystem"
}

// pausedCollector reports paused sandboxes by kind and the memory the
// ones paused with their memory hold (their cgroups' use, page cache
// included), read when scraped.
type pausedCollector struct{ m *Manager }

var (
	pausedDesc = prometheus.NewDesc("sandpit_paused_sandboxes",
		"Paused sandboxes, by kind: memory (frozen, memory held) or filesystem (processes ended).", []string{"kind"}, nil)
	pausedMemDesc = prometheus.NewDesc("sandpit_paused_memory_bytes",
		"Memory held by sandboxes paused with their memory, from their cgroups.", nil, nil)
)

func (c pausedCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pausedDesc
	ch <- pausedMemDesc
}

func (c pausedCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	var memIDs []string
	fsCount := 0
	m.mu.Lock()
	for id, e := range m.sandboxes {
		if e.info.State != StatePaused {
			continue
		}
		if e.info.PausedFilesystemOnly {
			fsCount++
		} else {
			memIDs = append(memIDs, id)
		}
	}
	m.mu.Unlock()
	var held uint64
	if sr, ok := m.rt.(runtime.StatsReader); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, id := range memIDs {
			if st, err := sr.Stats(ctx, id); err == nil {
				held += st.MemUsed
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(pausedDesc, prometheus.GaugeValue, float64(len(memIDs)), "memory")
	ch <- prometheus.MustNewConstMetric(pausedDesc, prometheus.GaugeValue, float64(fsCount), "filesystem")
	ch <- prometheus.MustNewConstMetric(pausedMemDesc, prometheus.GaugeValue, float64(held))
}

// Resume resumes paused sandbox id (E2B's deprecated POST
// /sandboxes/{id}/resume) with its deadline at now plus timeout (the
// default when zero). memory false boots it again on its files even if
// it was paused with its memory, which is dropped. A sandbox that is not
// paused is errdefs.ErrConflict.
func (m *Manager) Resume(ctx context.Context, id string, timeout time.Duration, memory bool) (Info, error) {
	if timeout == 0 {
		timeout = m.defTO
	}
	if err := m.CheckTimeout(timeout); err != nil {
		return Info{}, m.count(err)
	}
	resumed, err := m.resume(ctx, id, resumeHow{cold: !memory})
	if err != nil {
		return Info{}, m.count(err)
	}
	if !resumed {
		return Info{}, m.count(errdefs.New(errdefs.ErrConflict, fmt.Sprintf("sandbox %s is already running", id)))
	}
	info, err := m.armResumed(ctx, id, timeout)
	return info, m.count(err)
}

// armResumed sets a just resumed sandbox's deadline to now plus timeout:
// paused, it was the longest timeout.
func (m *Manager) armResumed(ctx context.Context, id string, timeout time.Duration) (Info, error) {
	m.mu.Lock()
	e, ok := m.sandboxes[id]
	var info Info
	if ok {
		m.armLocked(e, m.clock.Now().Add(timeout))
		info = e.info.clone()
	}
	m.mu.Unlock()
	if !ok {
		return Info{}, notFound(id)
	}
	if err := m.store.SetSandboxState(ctx, id, string(StateRunning), false, info.EndAt); err != nil {
		m.log.WarnContext(ctx, "recording sandbox state", "sandbox_id", id, "err", err)
	}
	return info, nil
}
