package sandbox

import (
	"context"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
)

// Metric is one sample of a sandbox's resource use (E2B's SandboxMetric).
type Metric struct {
	Time       time.Time
	CPUCount   int
	CPUUsedPct float64 // of the sandbox's CPUs, since the sample before (or its start)
	MemUsed    uint64
	MemTotal   uint64
	MemCache   uint64
	DiskUsed   uint64
	DiskTotal  uint64
}

// maxSamples bounds the samples kept per sandbox.
const maxSamples = 720

// Metrics samples sandbox id's resource use now and returns every sample
// taken since it started that falls in [start, end] (a zero bound is
// open). Samples are taken when asked for, so a series is as dense as its
// readers make it; the first one's CPU share is the average since start.
func (m *Manager) Metrics(ctx context.Context, id string, start, end time.Time) ([]Metric, error) {
	sr, ok := m.rt.(runtime.StatsReader)
	if !ok {
		return nil, m.count(errdefs.New(errdefs.ErrUnavailable, "this runtime reports no resource use"))
	}
	m.mu.Lock()
	e, ok := m.sandboxes[id]
	if !ok {
		m.mu.Unlock()
		return nil, m.count(notFound(id))
	}
	cpus, memMB := e.info.CPUCount, e.info.MemoryMB
	prevCPU, prevAt := e.lastCPU, e.lastAt
	if prevAt.IsZero() {
		prevAt = e.info.StartedAt
	}
	m.mu.Unlock()

	st, err := sr.Stats(ctx, id)
	if err != nil {
		return nil, m.count(err)
	}
	now := m.clock.Now()
	s := Metric{
		Time: now, CPUCount: cpus, MemUsed: st.MemUsed, MemTotal: uint64(memMB) << 20, MemCache: st.MemCache,
		DiskUsed: st.DiskUsed, DiskTotal: st.DiskTotal,
	}
	if wall := now.Sub(prevAt).Seconds() * float64(max(cpus, 1)); wall > 0 {
		s.CPUUsedPct = min(100, max(0, 100*(st.CPU-prevCPU).Seconds()/wall))
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.sandboxes[id]; ok && cur == e {
		e.samples = append(e.samples, s)
		if len(e.samples) > maxSamples {
			e.samples = e.samples[len(e.samples)-maxSamples:]
		}
		e.lastCPU, e.lastAt = st.CPU, now
	}
	out := []Metric{}
	for _, x := range e.samples {
		if (start.IsZero() || !x.Time.Before(start)) && (end.IsZero() || !x.Time.After(end)) {
			out = append(out, x)
		}
	}
	return out, nil
}
