package sandbox_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
	"github.com/sandpit-dev/sandpit/internal/sandbox/sandboxtest"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// gatedRuntime is the fake runtime whose Creates wait for the test to let
// them through, so that creates can be held in flight.
type gatedRuntime struct {
	*fake.Fake
	entered chan struct{} // a Create has started
	gate    chan struct{} // closed: Creates go on
}

func (g *gatedRuntime) Create(ctx context.Context, spec runtime.Spec) (*runtime.Sandbox, error) {
	g.entered <- struct{}{}
	<-g.gate
	return g.Fake.Create(ctx, spec)
}

// newHostEnv is newEnv with the daemon's own limits set, over rt (the
// fake itself when nil).
func newHostEnv(t *testing.T, limits sandbox.HostLimits, rt runtime.Runtime) *env {
	t.Helper()
	st, err := store.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "sandpit.db"))
	if err != nil {
		t.Fatal(err)
	}
	f := fake.New(fake.Options{})
	if rt == nil {
		rt = f
	} else if g, ok := rt.(*gatedRuntime); ok {
		g.Fake = f
	}
	e := &env{rt: f, st: st, clock: sandboxtest.NewClock(t0), reg: prometheus.NewRegistry()}
	e.m, err = sandbox.NewManager(sandbox.Config{
		Runtime:    rt,
		Store:      st,
		Templates:  templates(),
		Logger:     slog.New(slog.DiscardHandler),
		Metrics:    e.reg,
		MaxTimeout: time.Hour,
		Clock:      e.clock,
		Host:       limits,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.m.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		_ = f.Close()
		_ = st.Close()
	})
	return e
}

// wantBusy fails the test unless err is a refusal the client should retry
// after a while (503 with Retry-After on the wire) whose message says msg.
func wantBusy(t *testing.T, err error, msg string) {
	t.Helper()
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), msg) {
		t.Fatalf("create: %v, want unavailable saying %q", err, msg)
	}
	if retry, after, ok := errdefs.Retry(err); !ok || !retry || after < time.Second {
		t.Fatalf("a busy daemon must say when to retry (retry=%v after=%v ok=%v)", retry, after, ok)
	}
}

// wantRuntimeSandboxes fails the test unless the runtime holds n sandboxes:
// a refused create leaves nothing behind.
func wantRuntimeSandboxes(t *testing.T, e *env, n int) {
	t.Helper()
	ids, err := e.rt.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != n {
		t.Fatalf("runtime holds %d sandboxes, want %d", len(ids), n)
	}
}

func TestMemoryFloorRefusesCreates(t *testing.T) {
	var avail atomic.Int64
	avail.Store(100 << 20)
	var reads atomic.Int32
	e := newHostEnv(t, sandbox.HostLimits{MinFreeMemory: 256 << 20, MemAvailable: func() (int64, error) {
		reads.Add(1)
		return avail.Load(), nil
	}}, nil)
	req := sandbox.CreateRequest{Team: team("a", store.Limits{}), Template: "base"}
	for range 3 {
		_, err := e.m.Create(t.Context(), req)
		wantBusy(t, err, "the host has 100 MiB of memory available, below the 256 MiB floor (sandpit serve --min-free-memory)")
	}
	if n := reads.Load(); n != 1 {
		t.Fatalf("three creates in a moment read the host's memory %d times, want once", n)
	}
	if v := metricValue(t, e, "sandpit_creates_refused_total", map[string]string{"reason": "memory"}); v != 3 {
		t.Fatalf("refused{reason=memory} = %v, want 3", v)
	}
	wantRuntimeSandboxes(t, e, 0)

	// Memory frees: the next reading, a moment later, lets creates in.
	avail.Store(1 << 30)
	e.clock.Advance(250 * time.Millisecond)
	e.create(t, req)
	if n := reads.Load(); n != 2 {
		t.Fatalf("%d readings, want 2", n)
	}
}

// A host whose memory cannot be read is not held to the floor: refusing
// every create would be worse.
func TestMemoryFloorWithoutAReadingAdmits(t *testing.T) {
	e := newHostEnv(t, sandbox.HostLimits{MinFreeMemory: 256 << 20, MemAvailable: func() (int64, error) {
		return 0, errors.New("no /proc")
	}}, nil)
	e.create(t, sandbox.CreateRequest{Team: team("a", store.Limits{})})
}

func TestDaemonMaxSandboxes(t *testing.T) {
	e := newHostEnv(t, sandbox.HostLimits{MaxSandboxes: 2}, nil)
	a, b := team("a", store.Limits{}), team("b", store.Limits{})
	first := e.create(t, sandbox.CreateRequest{Team: a})
	e.create(t, sandbox.CreateRequest{Team: b})
	_, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: a, Template: "base"})
	wantBusy(t, err, "its maximum (sandpit serve --max-sandboxes 2)")
	if v := metricValue(t, e, "sandpit_creates_refused_total", map[string]string{"reason": "max_sandboxes"}); v != 1 {
		t.Fatalf("refused{reason=max_sandboxes} = %v, want 1", v)
	}
	wantRuntimeSandboxes(t, e, 2)
	// A refusal by the daemon gives the team's place back.
	if err := e.m.Kill(t.Context(), first.ID); err != nil {
		t.Fatal(err)
	}
	e.create(t, sandbox.CreateRequest{Team: a})
}

// A team at its own quota hears about the quota (lasting, 429) rather than
// about the busy daemon (passing, 503).
func TestTeamQuotaBeforeDaemonLimits(t *testing.T) {
	e := newHostEnv(t, sandbox.HostLimits{MaxSandboxes: 1}, nil)
	a := team("a", store.Limits{MaxSandboxes: 1})
	e.create(t, sandbox.CreateRequest{Team: a})
	_, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: a, Template: "base"})
	if !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("create past the team's quota: %v, want resource exhausted", err)
	}
}

func TestMaxPendingCreates(t *testing.T) {
	g := &gatedRuntime{entered: make(chan struct{}, 8), gate: make(chan struct{})}
	e := newHostEnv(t, sandbox.HostLimits{MaxPendingCreates: 2}, g)
	req := sandbox.CreateRequest{Team: team("a", store.Limits{}), Template: "base"}

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Go(func() {
			_, err := e.m.Create(context.Background(), req)
			errs <- err
		})
	}
	<-g.entered
	<-g.entered
	_, err := e.m.Create(t.Context(), req)
	wantBusy(t, err, "2 creates already in flight, the daemon's maximum (sandpit serve --max-pending-creates 2)")
	if v := metricValue(t, e, "sandpit_creates_refused_total", map[string]string{"reason": "pending_creates"}); v != 1 {
		t.Fatalf("refused{reason=pending_creates} = %v, want 1", v)
	}
	close(g.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a create in flight: %v", err)
		}
	}
	wantRuntimeSandboxes(t, e, 2)
	// The places come back as the creates return, failed ones too.
	if _, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: req.Team, Template: "nope"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown template: %v", err)
	}
	for range 3 {
		go func() { <-g.entered }()
		e.create(t, req)
	}
	wantRuntimeSandboxes(t, e, 5)
}
