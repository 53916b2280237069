package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// LostSweeper marks the Sandboxes of nodes whose Lease ran out as Lost, so
// `kubectl get sandboxes` shows what the API replicas already answer (not
// found). Every replica may run one: the marks are idempotent, and a
// conflict means another replica or the node itself got there first. A
// node that comes back sets its sandboxes Running again (Node.Reconcile).
type LostSweeper struct {
	c   *Client
	log *slog.Logger
	now func() time.Time
	// leases reads the Leases (the Router's watch, else the API server).
	leases func(context.Context) ([]coordinationv1.Lease, error)

	mu sync.Mutex
	// swept holds, per dead node, the renew time of the Lease whose
	// expiry was swept: a node that dies again is swept again.
	swept map[string]time.Time
}

// NewLostSweeper returns a LostSweeper.
func NewLostSweeper(c *Client, log *slog.Logger) *LostSweeper {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &LostSweeper{c: c, log: log, now: time.Now, leases: c.ListLeases, swept: map[string]time.Time{}}
}

// Sweep marks the Sandboxes of every node dead since its last sweep and
// returns how many it marked.
func (s *LostSweeper) Sweep(ctx context.Context) (int, error) {
	leases, err := s.leases(ctx)
	if err != nil {
		return 0, err
	}
	marked := 0
	var errs []error
	for i := range leases {
		l := &leases[i]
		if leaseLive(l, s.now()) || l.Spec.RenewTime == nil {
			continue
		}
		s.mu.Lock()
		done := s.swept[l.Name].Equal(l.Spec.RenewTime.Time)
		s.mu.Unlock()
		if done {
			continue
		}
		sbs, err := s.c.ListSandboxes(ctx, NodeLabel+"="+l.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ok := true
		for _, sb := range sbs {
			if sb.Status.Phase == PhaseLost {
				continue
			}
			sb.Status.Phase = PhaseLost
			_, err := s.c.UpdateSandboxStatus(ctx, &sb)
			switch {
			case err == nil:
				marked++
			case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
			default:
				ok = false
				errs = append(errs, err)
			}
		}
		if ok {
			s.log.Info("node's Lease ran out: its sandboxes are Lost", "node", l.Name, "sandboxes", len(sbs))
			s.mu.Lock()
			s.swept[l.Name] = l.Spec.RenewTime.Time
			s.mu.Unlock()
		}
	}
	return marked, errors.Join(errs...)
}

// Run sweeps every interval until ctx is done.
func (s *LostSweeper) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("marking dead nodes' sandboxes Lost", "err", err)
		}
	}
}
