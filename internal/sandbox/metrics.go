package sandbox

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// metrics are the Manager's Prometheus collectors.
type metrics struct {
	createSeconds *prometheus.HistogramVec
	sandboxes     *prometheus.GaugeVec
	errors        *prometheus.CounterVec
	// Per team, the team label bounded by maxTeamLabels.
	teamSandboxes *prometheus.GaugeVec
	teamCreates   *prometheus.CounterVec
	limitHits     *prometheus.CounterVec
	// refused counts creates refused by the daemon's own limits.
	refused       *prometheus.CounterVec
	resumeSeconds *prometheus.HistogramVec
	// The warm pool's, by template (pool.go).
	poolSpares      *prometheus.GaugeVec
	poolTarget      *prometheus.GaugeVec
	poolSpareMemory *prometheus.GaugeVec
	poolClaims      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		createSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sandpit_sandbox_create_seconds",
			Help: "Time to create a sandbox, by stage of the runtime's Create and in total.",
			// 0.5 ms .. ~4 s
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"stage"}),
		sandboxes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sandpit_sandboxes",
			Help: "Sandboxes the daemon holds, by state.",
		}, []string{"state"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandpit_errors_total",
			Help: "Errors returned by sandbox operations, by category.",
		}, []string{"kind"}),
		teamSandboxes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sandpit_team_sandboxes",
			Help: "Sandboxes the daemon holds, by team and state.",
		}, []string{"team", "state"}),
		teamCreates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandpit_team_creates_total",
			Help: "Sandboxes created, by team.",
		}, []string{"team"}),
		limitHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandpit_team_limit_hits_total",
			Help: "Creates refused by a team limit (answered 429), by team and limit.",
		}, []string{"team", "limit"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandpit_creates_refused_total",
			Help: "Creates refused by the daemon's own limits (answered 503), by reason: memory, max_sandboxes, pending_creates.",
		}, []string{"reason"}),
		resumeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sandpit_sandbox_resume_seconds",
			Help:    "Time to resume a paused sandbox, by pause kind (memory, filesystem).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"kind"}),
		poolSpares: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sandpit_warm_pool_sandboxes",
			Help: "Warm sandboxes ready to be claimed, by template.",
		}, []string{"template"}),
		poolTarget: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sandpit_warm_pool_target",
			Help: "Warm sandboxes the pool fills to, by template: the configured size, or more while demand asks within the memory budget.",
		}, []string{"template"}),
		poolSpareMemory: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sandpit_warm_pool_sandbox_memory_bytes",
			Help: "Memory one warm sandbox is counted at against the pool's budget, by template (measured, or a conservative default until measured).",
		}, []string{"template"}),
		poolClaims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandpit_warm_pool_claims_total",
			Help: "Creates that could take a warm sandbox, by template and result: hit (took one) or miss (started cold).",
		}, []string{"template", "result"}),
	}
	// Every reason shows from the start, so a rate over it needs no
	// first refusal.
	for _, r := range []string{refusedMemory, refusedMaxSandboxes, refusedPending} {
		m.refused.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.createSeconds, m.sandboxes, m.errors, m.teamSandboxes, m.teamCreates, m.limitHits, m.refused, m.resumeSeconds,
		m.poolSpares, m.poolTarget, m.poolSpareMemory, m.poolClaims} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// errorKinds names each errdefs category in metrics, in match order.
func errorKinds() []struct {
	err  error
	kind string
} {
	return []struct {
		err  error
		kind string
	}{
		{errdefs.ErrNotFound, "not_found"},
		{errdefs.ErrInvalidArgument, "invalid_argument"},
		{errdefs.ErrAlreadyExists, "already_exists"},
		{errdefs.ErrConflict, "conflict"},
		{errdefs.ErrUnauthenticated, "unauthenticated"},
		{errdefs.ErrPermissionDenied, "permission_denied"},
		{errdefs.ErrResourceExhausted, "resource_exhausted"},
		{errdefs.ErrUnavailable, "unavailable"},
		{errdefs.ErrDeadlineExceeded, "deadline_exceeded"},
		{errdefs.ErrNotImplemented, "not_implemented"},
		{context.Canceled, "canceled"},
		{context.DeadlineExceeded, "deadline_exceeded"},
	}
}

// errorKind is err's category name: "not_found", ..., or "internal".
func errorKind(err error) string {
	for _, k := range errorKinds() {
		if errors.Is(err, k.err) {
			return k.kind
		}
	}
	return "internal"
}

// count records err (if any) in sandpit_errors_total and returns it.
func (m *Manager) count(err error) error {
	if err != nil {
		m.metrics.errors.WithLabelValues(errorKind(err)).Inc()
	}
	return err
}
