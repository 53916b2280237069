package audit

import "github.com/prometheus/client_golang/prometheus"

// metrics are the Log's Prometheus counters.
type metrics struct {
	entries prometheus.Counter
	dropped prometheus.Counter
	blocked prometheus.Counter
}

// newMetrics makes the counters and registers them on reg (nil: not at
// all). The counters work even when registering fails.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		entries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sandpit_audit_entries_total",
			Help: "Audit entries written to the store.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sandpit_audit_dropped_total",
			Help: "Audit entries lost: the store refused them after retries, or they came after shutdown.",
		}),
		blocked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sandpit_audit_blocked_total",
			Help: "Times a caller waited to record an audit entry because the queue was full.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.entries, m.dropped, m.blocked} {
		if err := reg.Register(c); err != nil {
			return m, err
		}
	}
	return m, nil
}
