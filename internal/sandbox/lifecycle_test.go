package sandbox_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
)

func okHandler() fake.Options {
	return fake.Options{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
}

// A filesystem-only pause stops the sandbox's processes (the runtime's
// Stop); it is paused, takes no traffic, is counted by kind, and Connect
// boots it again on the same socket with the same ID.
func TestPauseFilesystemOnly(t *testing.T) {
	e := newEnv(t, okHandler())
	info := e.create(t, sandbox.CreateRequest{Timeout: time.Minute, Metadata: map[string]string{"k": "v"}})
	socket, _ := e.m.Lookup(info.ID)
	if err := e.m.PauseFilesystemOnly(t.Context(), info.ID); err != nil {
		t.Fatal(err)
	}
	if !e.rt.Stopped(info.ID) || e.rt.Paused(info.ID) {
		t.Fatalf("runtime: stopped %v frozen %v, want stopped only", e.rt.Stopped(info.ID), e.rt.Paused(info.ID))
	}
	got, _ := e.m.Get(t.Context(), info.ID)
	if got.State != sandbox.StatePaused || !got.PausedFilesystemOnly || got.Metadata["k"] != "v" {
		t.Fatalf("after the pause: %+v", got)
	}
	if _, ok := e.m.Lookup(info.ID); ok {
		t.Error("a paused sandbox takes traffic")
	}
	if err := e.m.Pause(t.Context(), info.ID); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("a memory pause of a paused sandbox: %v, want a conflict", err)
	}
	kind := func(k string) float64 {
		return series(t, e.reg, "sandpit_paused_sandboxes", map[string]string{"kind": k})
	}
	if kind("filesystem") != 1 || kind("memory") != 0 {
		t.Errorf("paused by kind: filesystem %v memory %v", kind("filesystem"), kind("memory"))
	}

	c, resumed, err := e.m.Connect(t.Context(), info.ID, 30*time.Second)
	if err != nil || !resumed || c.State != sandbox.StateRunning || c.PausedFilesystemOnly || c.ID != info.ID || c.AccessToken != info.AccessToken {
		t.Fatalf("connect: %+v resumed %v err %v", c, resumed, err)
	}
	if e.rt.Stopped(info.ID) || e.rt.Starts(info.ID) != 1 {
		t.Fatalf("the runtime: stopped %v starts %d", e.rt.Stopped(info.ID), e.rt.Starts(info.ID))
	}
	if s, ok := e.m.Lookup(info.ID); !ok || s != socket {
		t.Errorf("after resume the route is %q %v, want %q", s, ok, socket)
	}
	if kind("filesystem") != 0 || resumes(t, e, "filesystem") != 1 {
		t.Error("the resume is not in the metrics")
	}
}

// resumes is the count of the resume-latency histogram of kind.
func resumes(t *testing.T, e *env, kind string) uint64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sandpit_sandbox_resume_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "kind" && lp.GetValue() == kind {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

// E2B's lifecycle rules: autoResume needs onTimeout pause and memory.
func TestLifecycleValidation(t *testing.T) {
	e := newEnv(t, fake.Options{})
	for _, req := range []sandbox.CreateRequest{
		{Template: "base", AutoResume: true},
		{Template: "base", AutoResume: true, AutoPause: true, AutoPauseFilesystemOnly: true},
	} {
		if _, err := e.m.Create(t.Context(), req); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%+v: %v, want invalid argument", req, err)
		}
	}
	info := e.create(t, sandbox.CreateRequest{AutoPauseFilesystemOnly: true})
	if info.AutoPause || info.AutoPauseFilesystemOnly {
		t.Errorf("a filesystem-only flag without autoPause: %+v", info)
	}
	info = e.create(t, sandbox.CreateRequest{AutoPause: true, AutoResume: true})
	if !info.AutoPause || !info.AutoResume || info.AutoPauseFilesystemOnly {
		t.Errorf("autoPause with autoResume: %+v", info)
	}
}

// onTimeout pause with keepMemory false pauses keeping the filesystem
// only; connect boots it again.
func TestAutoPauseFilesystemOnlyAtTimeout(t *testing.T) {
	e := newEnv(t, okHandler())
	info := e.create(t, sandbox.CreateRequest{Timeout: time.Minute, AutoPause: true, AutoPauseFilesystemOnly: true})
	e.clock.Advance(time.Minute + time.Second)
	waitState(t, e, info.ID, sandbox.StatePaused)
	if !e.rt.Stopped(info.ID) {
		t.Fatal("the timeout froze the sandbox instead of stopping it")
	}
	if _, resumed, err := e.m.Connect(t.Context(), info.ID, 30*time.Second); err != nil || !resumed {
		t.Fatalf("connect: resumed %v err %v", resumed, err)
	}
	if e.rt.Starts(info.ID) != 1 {
		t.Errorf("starts %d", e.rt.Starts(info.ID))
	}
}

// Wake resumes a memory-paused sandbox created with autoResume, once for
// any number of concurrent first requests, and gives it its create
// timeout again; it resumes nothing else.
func TestWake(t *testing.T) {
	e := newEnv(t, okHandler())
	auto := e.create(t, sandbox.CreateRequest{Timeout: 2 * time.Minute, AutoPause: true, AutoResume: true})
	manual := e.create(t, sandbox.CreateRequest{Timeout: 2 * time.Minute, AutoPause: true})
	for _, id := range []string{auto.ID, manual.ID} {
		if err := e.m.Pause(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	e.rt.SetStats(auto.ID, runtime.Stats{MemUsed: 3 << 20})
	e.rt.SetStats(manual.ID, runtime.Stats{MemUsed: 4 << 20})
	if got := series(t, e.reg, "sandpit_paused_memory_bytes", nil); got != 7<<20 {
		t.Errorf("paused memory %v, want %v", got, 7<<20)
	}

	if _, ok := e.m.Wake(t.Context(), manual.ID); ok {
		t.Error("a sandbox without autoResume woke")
	}
	if _, ok := e.m.Wake(t.Context(), "nope"); ok {
		t.Error("an unknown sandbox woke")
	}

	gate := make(chan struct{})
	e.rt.SetHook(func(string) { <-gate })
	const n = 8
	var wg sync.WaitGroup
	oks := make(chan bool, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ok := e.m.Wake(t.Context(), auto.ID)
			oks <- ok
		}()
	}
	time.Sleep(50 * time.Millisecond) // let them all find it paused
	close(gate)
	wg.Wait()
	close(oks)
	for ok := range oks {
		if !ok {
			t.Error("a concurrent first request was refused")
		}
	}
	if r := e.rt.Resumes(auto.ID); r != 1 {
		t.Errorf("%d resumes for %d concurrent requests, want 1", r, n)
	}
	got, _ := e.m.Get(t.Context(), auto.ID)
	if got.State != sandbox.StateRunning || !got.EndAt.Equal(e.clock.Now().Add(2*time.Minute)) {
		t.Errorf("after the wake: state %s end %v, want running until %v", got.State, got.EndAt, e.clock.Now().Add(2*time.Minute))
	}
	if got, _ := e.m.Get(t.Context(), manual.ID); got.State != sandbox.StatePaused {
		t.Error("the sandbox without autoResume did not stay paused")
	}

	// Paused keeping its filesystem only, even an autoResume sandbox
	// waits for connect.
	if err := e.m.PauseFilesystemOnly(t.Context(), auto.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.m.Wake(t.Context(), auto.ID); ok || !e.rt.Stopped(auto.ID) {
		t.Error("traffic resumed a filesystem-only paused sandbox")
	}
}

// A connect while a pause is under way waits for the pause, then resumes:
// it neither fails nor answers for a sandbox about to be paused.
func TestConnectDuringPause(t *testing.T) {
	e := newEnv(t, okHandler())
	info := e.create(t, sandbox.CreateRequest{Timeout: time.Minute})
	gate := make(chan struct{})
	e.rt.SetHook(func(string) { <-gate })
	paused := make(chan error, 1)
	go func() { paused <- e.m.PauseFilesystemOnly(context.Background(), info.ID) }()
	waitFor(t, func() bool { _, ok := e.m.Lookup(info.ID); return !ok }) // the pause began
	type result struct {
		resumed bool
		err     error
	}
	connected := make(chan result, 1)
	go func() {
		_, resumed, err := e.m.Connect(context.Background(), info.ID, time.Minute)
		connected <- result{resumed, err}
	}()
	time.Sleep(50 * time.Millisecond)
	e.rt.SetHook(nil)
	close(gate)
	if err := <-paused; err != nil {
		t.Fatal(err)
	}
	if r := <-connected; r.err != nil || !r.resumed {
		t.Fatalf("connect during the pause: resumed %v err %v", r.resumed, r.err)
	}
	if e.rt.Stopped(info.ID) || e.rt.Starts(info.ID) != 1 {
		t.Errorf("runtime: stopped %v starts %d", e.rt.Stopped(info.ID), e.rt.Starts(info.ID))
	}
}

// Resume (E2B's deprecated resume): 409 for a running sandbox; memory
// false boots even a memory-paused sandbox again.
func TestResume(t *testing.T) {
	e := newEnv(t, okHandler())
	info := e.create(t, sandbox.CreateRequest{Timeout: time.Minute})
	if _, err := e.m.Resume(t.Context(), info.ID, 0, true); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("resume of a running sandbox: %v, want a conflict", err)
	}
	if err := e.m.Pause(t.Context(), info.ID); err != nil {
		t.Fatal(err)
	}
	got, err := e.m.Resume(t.Context(), info.ID, 20*time.Second, true)
	if err != nil || got.State != sandbox.StateRunning || !got.EndAt.Equal(e.clock.Now().Add(20*time.Second)) || e.rt.Resumes(info.ID) != 1 {
		t.Fatalf("memory resume: %+v %v (resumes %d)", got, err, e.rt.Resumes(info.ID))
	}
	if err := e.m.Pause(t.Context(), info.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Resume(t.Context(), info.ID, 0, false); err != nil {
		t.Fatal(err)
	}
	if e.rt.Paused(info.ID) || e.rt.Stopped(info.ID) || e.rt.Starts(info.ID) != 1 || e.rt.Resumes(info.ID) != 1 {
		t.Errorf("a cold resume of a memory-paused sandbox: frozen %v stopped %v starts %d thaws %d, want one boot",
			e.rt.Paused(info.ID), e.rt.Stopped(info.ID), e.rt.Starts(info.ID), e.rt.Resumes(info.ID))
	}
	if _, err := e.m.Resume(t.Context(), "nope", 0, true); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("resume of an unknown sandbox: %v", err)
	}
}
