package sandbox_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
)

func TestPauseAndResume(t *testing.T) {
	e := newEnv(t, fake.Options{})
	info := e.create(t, sandbox.CreateRequest{Timeout: time.Minute})
	if err := e.m.Pause(t.Context(), info.ID); err != nil {
		t.Fatal(err)
	}
	if !e.rt.Paused(info.ID) {
		t.Fatal("the runtime was not asked to pause")
	}
	got, _ := e.m.Get(t.Context(), info.ID)
	if got.State != sandbox.StatePaused {
		t.Errorf("state %s after pause", got.State)
	}
	if _, ok := e.m.Lookup(info.ID); ok {
		t.Error("a paused sandbox still takes traffic")
	}
	paused := func() float64 { return series(t, e.reg, "sandpit_sandboxes", map[string]string{"state": "paused"}) }
	if gauge(t, e.reg) != 0 || paused() != 1 {
		t.Errorf("sandboxes gauge: running %v paused %v, want 0 and 1", gauge(t, e.reg), paused())
	}
	if err := e.m.Pause(t.Context(), info.ID); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("pausing twice: %v, want a conflict", err)
	}
	// Its one-minute timeout no longer applies while paused.
	e.clock.Advance(2 * time.Minute)
	if _, err := e.m.Get(t.Context(), info.ID); err != nil {
		t.Fatalf("a paused sandbox expired on its running timeout: %v", err)
	}
	page, _ := e.m.List(t.Context(), sandbox.ListFilter{States: []sandbox.State{sandbox.StatePaused}})
	if len(page.Sandboxes) != 1 {
		t.Errorf("list of paused sandboxes: %d", len(page.Sandboxes))
	}

	c, resumed, err := e.m.Connect(t.Context(), info.ID, 30*time.Second)
	if err != nil || !resumed || c.State != sandbox.StateRunning || e.rt.Paused(info.ID) {
		t.Fatalf("connect: resumed %v state %s err %v", resumed, c.State, err)
	}
	if !c.EndAt.Equal(e.clock.Now().Add(30 * time.Second)) {
		t.Errorf("deadline after resume %v", c.EndAt)
	}
	if _, ok := e.m.Lookup(info.ID); !ok {
		t.Error("a resumed sandbox takes no traffic")
	}
	if gauge(t, e.reg) != 1 || paused() != 0 {
		t.Errorf("sandboxes gauge after resume: running %v paused %v", gauge(t, e.reg), paused())
	}
	if _, resumed, _ := e.m.Connect(t.Context(), info.ID, 30*time.Second); resumed {
		t.Error("connecting to a running sandbox says it resumed it")
	}
	// Paused sandboxes are killed at the longest timeout allowed, and
	// can be killed any time.
	if err := e.m.Pause(t.Context(), info.ID); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour + time.Second) // the env's max timeout
	waitGone(t, e, info.ID)
	other := e.create(t, sandbox.CreateRequest{})
	if err := e.m.Pause(t.Context(), other.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Kill(t.Context(), other.ID); err != nil {
		t.Fatalf("killing a paused sandbox: %v", err)
	}
	if gauge(t, e.reg) != 0 || paused() != 0 {
		t.Errorf("sandboxes gauge after kills: running %v paused %v", gauge(t, e.reg), paused())
	}
	if err := e.m.Pause(t.Context(), "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("pausing an unknown sandbox: %v", err)
	}
}

// A sandbox created with AutoPause is paused at its timeout, not killed;
// resumed, it pauses again at its next timeout, and a paused one is
// killed at the longest timeout.
func TestAutoPauseAtTimeout(t *testing.T) {
	e := newEnv(t, fake.Options{})
	info := e.create(t, sandbox.CreateRequest{Timeout: time.Minute, AutoPause: true})
	plain := e.create(t, sandbox.CreateRequest{Timeout: time.Minute})
	e.clock.Advance(time.Minute + time.Second)
	waitState(t, e, info.ID, sandbox.StatePaused)
	waitGone(t, e, plain.ID)
	if !e.rt.Paused(info.ID) {
		t.Fatal("the runtime was not asked to pause")
	}
	c, resumed, err := e.m.Connect(t.Context(), info.ID, 30*time.Second)
	if err != nil || !resumed || !c.AutoPause {
		t.Fatalf("connect: resumed %v autoPause %v err %v", resumed, c.AutoPause, err)
	}
	e.clock.Advance(31 * time.Second)
	waitState(t, e, info.ID, sandbox.StatePaused)
	e.clock.Advance(time.Hour + time.Second) // the env's max timeout
	waitGone(t, e, info.ID)
}

func waitState(t *testing.T, e *env, id string, want sandbox.State) {
	t.Helper()
	var got sandbox.Info
	var err error
	for range 200 {
		if got, err = e.m.Get(t.Context(), id); err == nil && got.State == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("sandbox %s: state %q err %v, want %q", id, got.State, err, want)
}

func waitGone(t *testing.T, e *env, id string) {
	t.Helper()
	for range 200 {
		if _, err := e.m.Get(t.Context(), id); errors.Is(err, errdefs.ErrNotFound) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("sandbox %s outlived its deadline", id)
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, fake.Options{})
	info := e.create(t, sandbox.CreateRequest{Template: "big"}) // 4 CPUs, 2048 MB
	e.clock.Advance(10 * time.Second)
	e.rt.SetStats(info.ID, runtime.Stats{CPU: 20 * time.Second, MemUsed: 100 << 20, MemCache: 10 << 20, DiskUsed: 5 << 20, DiskTotal: 1 << 30})
	ms, err := e.m.Metrics(t.Context(), info.ID, time.Time{}, time.Time{})
	if err != nil || len(ms) != 1 {
		t.Fatalf("metrics: %v %v", ms, err)
	}
	m := ms[0]
	// 20 s of CPU in 10 s on 4 CPUs: half of them.
	if m.CPUCount != 4 || m.CPUUsedPct != 50 || m.MemUsed != 100<<20 || m.MemTotal != 2048<<20 || m.DiskTotal != 1<<30 || !m.Time.Equal(e.clock.Now()) {
		t.Fatalf("sample %+v", m)
	}
	e.clock.Advance(10 * time.Second)
	e.rt.SetStats(info.ID, runtime.Stats{CPU: 30 * time.Second})
	ms, _ = e.m.Metrics(t.Context(), info.ID, time.Time{}, time.Time{})
	if len(ms) != 2 || ms[1].CPUUsedPct != 25 {
		t.Fatalf("second sample: %+v", ms)
	}
	// start/end select samples.
	ms, _ = e.m.Metrics(t.Context(), info.ID, e.clock.Now().Add(-time.Second), time.Time{})
	if len(ms) != 2 { // the one just taken and the one before it (same instant)
		t.Fatalf("from a second ago: %d samples", len(ms))
	}
	if _, err := e.m.Metrics(t.Context(), "nope", time.Time{}, time.Time{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown sandbox: %v", err)
	}
}
