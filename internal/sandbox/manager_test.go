package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"reflect"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
	"github.com/sandpit-dev/sandpit/internal/sandbox/sandboxtest"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

type env struct {
	m     *sandbox.Manager
	rt    *fake.Fake
	st    *store.SQLite
	clock *sandboxtest.Clock
	reg   *prometheus.Registry
}

func templates() sandbox.StaticTemplates {
	return sandbox.StaticTemplates{
		{ID: "base", Names: []string{"base-alias"}, Env: map[string]string{"FROM_TEMPLATE": "1", "OVERRIDE": "template"},
			User: "user", Workdir: "/home/user", Mounts: []runtime.Mount{{Target: "/", Layers: []string{"/layers/base"}}}},
		{ID: "big", Names: []string{"code-interpreter-v1"}, CPUCount: 4, MemoryMB: 2048, DiskMB: 4096, EnvdVersion: "0.9.0"},
	}
}

func newEnv(t *testing.T, opts fake.Options) *env {
	t.Helper()
	return newEnvWith(t, opts, templates())
}

func newEnvWith(t *testing.T, opts fake.Options, tpls sandbox.Templates) *env {
	t.Helper()
	return newEnvConfig(t, opts, tpls, nil)
}

// newEnvConfig is newEnvWith with the Manager's config changed by edit
// (which may also wrap the runtime) before it is made.
func newEnvConfig(t *testing.T, opts fake.Options, tpls sandbox.Templates, edit func(*sandbox.Config)) *env {
	t.Helper()
	st, err := store.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "sandpit.db"))
	if err != nil {
		t.Fatal(err)
	}
	rt := fake.New(opts)
	e := &env{rt: rt, st: st, clock: sandboxtest.NewClock(t0), reg: prometheus.NewRegistry()}
	cfg := sandbox.Config{
		Runtime:    rt,
		Store:      st,
		Templates:  tpls,
		Logger:     slog.New(slog.DiscardHandler),
		Metrics:    e.reg,
		MaxTimeout: time.Hour,
		Clock:      e.clock,
	}
	if edit != nil {
		edit(&cfg)
	}
	e.m, err = sandbox.NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.m.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		_ = rt.Close()
		_ = st.Close()
	})
	return e
}

func (e *env) create(t *testing.T, req sandbox.CreateRequest) sandbox.Info {
	t.Helper()
	if req.Template == "" {
		req.Template = "base"
	}
	info, err := e.m.Create(t.Context(), req)
	if err != nil {
		t.Fatalf("Create(%+v): %v", req, err)
	}
	return info
}

func (e *env) stored(t *testing.T) []string {
	t.Helper()
	recs, err := e.st.ListSandboxes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	return ids
}

func TestCreate(t *testing.T) {
	e := newEnv(t, fake.Options{})
	info := e.create(t, sandbox.CreateRequest{
		Template: "base",
		Metadata: map[string]string{"user": "abc"},
		EnvVars:  map[string]string{"OVERRIDE": "request", "X": "y"},
		Secure:   true, AllowInternetAccess: true,
	})
	if !strings.HasPrefix(info.ID, "i") || len(info.ID) != 21 {
		t.Errorf("id %q", info.ID)
	}
	if info.TemplateID != "base" || info.Alias != "" || info.EnvdVersion != template.DefaultEnvdVersion {
		t.Errorf("template fields: %+v", info)
	}
	if len(info.AccessToken) != 64 {
		t.Errorf("secure sandbox token %q", info.AccessToken)
	}
	if info.CPUCount != 2 || info.MemoryMB != 512 || info.DiskMB != 1024 {
		t.Errorf("default resources: %+v", info)
	}
	if !info.StartedAt.Equal(t0) || !info.EndAt.Equal(t0.Add(300*time.Second)) {
		t.Errorf("times %v .. %v", info.StartedAt, info.EndAt)
	}
	if info.State != sandbox.StateRunning || info.Metadata["user"] != "abc" || info.Pid == 0 {
		t.Errorf("info %+v", info)
	}
	spec, ok := e.rt.Spec(info.ID)
	if !ok {
		t.Fatal("runtime has no such sandbox")
	}
	if spec.AccessToken != info.AccessToken || !spec.AllowInternet || spec.DefaultUser != "user" ||
		spec.Resources.CPUCount != 2 || spec.Resources.MemoryMB != 512 || len(spec.Mounts) != 1 {
		t.Errorf("spec %+v", spec)
	}
	if spec.Env["FROM_TEMPLATE"] != "1" || spec.Env["OVERRIDE"] != "request" || spec.Env["X"] != "y" {
		t.Errorf("env %v: request envVars must override the template's", spec.Env)
	}
	// The variables E2B sets in every sandbox.
	if spec.Env["E2B_SANDBOX"] != "true" || spec.Env["E2B_SANDBOX_ID"] != info.ID || spec.Env["E2B_TEMPLATE_ID"] != "base" {
		t.Errorf("env %v lacks E2B_SANDBOX, E2B_SANDBOX_ID or E2B_TEMPLATE_ID", spec.Env)
	}
	rec, err := e.st.GetSandbox(t.Context(), info.ID)
	if err != nil {
		t.Fatalf("no store record: %v", err)
	}
	if rec.AccessToken != info.AccessToken || rec.TemplateID != "base" || rec.Env["X"] != "y" || !rec.EndAt.Equal(info.EndAt) {
		t.Errorf("record %+v", rec)
	}

	// Not secure: no token. Named template: its resources and alias.
	info2 := e.create(t, sandbox.CreateRequest{Template: "code-interpreter-v1", Timeout: time.Minute})
	if info2.AccessToken != "" {
		t.Errorf("insecure sandbox has token %q", info2.AccessToken)
	}
	if info2.TemplateID != "big" || info2.Alias != "code-interpreter-v1" || info2.EnvdVersion != "0.9.0" ||
		info2.CPUCount != 4 || info2.MemoryMB != 2048 || info2.DiskMB != 4096 {
		t.Errorf("info2 %+v", info2)
	}
	if !info2.EndAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("end %v", info2.EndAt)
	}

	if got := gauge(t, e.reg); got != 2 {
		t.Errorf("sandpit_sandboxes{state=running} = %v, want 2", got)
	}
	stages := histogramStages(t, e.reg)
	for _, s := range []string{"prepare", "start", "total"} {
		if stages[s] != 2 {
			t.Errorf("create_seconds{stage=%q} count = %d, want 2 (all: %v)", s, stages[s], stages)
		}
	}
}

func TestCreateInvalid(t *testing.T) {
	e := newEnv(t, fake.Options{})
	many := map[string]string{}
	for i := range sandbox.MaxMetadataPairs + 1 {
		many[fmt.Sprint(i)] = "v"
	}
	for _, tc := range []struct {
		name string
		req  sandbox.CreateRequest
		want error
		msg  string
	}{
		{"negative timeout", sandbox.CreateRequest{Template: "base", Timeout: -time.Second}, errdefs.ErrInvalidArgument, "timeout must be between 1 and 3600 seconds"},
		{"sub-second timeout", sandbox.CreateRequest{Template: "base", Timeout: time.Millisecond}, errdefs.ErrInvalidArgument, "timeout must be between 1 and 3600 seconds"},
		{"timeout over max", sandbox.CreateRequest{Template: "base", Timeout: 2 * time.Hour}, errdefs.ErrInvalidArgument, "timeout must be between 1 and 3600 seconds"},
		{"unknown template", sandbox.CreateRequest{Template: "nope:v1"}, errdefs.ErrNotFound, `template "nope:v1" not found`},
		{"no template", sandbox.CreateRequest{}, errdefs.ErrInvalidArgument, "templateID is required"},
		{"too much metadata", sandbox.CreateRequest{Template: "base", Metadata: many}, errdefs.ErrInvalidArgument, "at most 64"},
		{"empty metadata key", sandbox.CreateRequest{Template: "base", Metadata: map[string]string{"": "v"}}, errdefs.ErrInvalidArgument, "metadata keys must not be empty"},
		{"long metadata value", sandbox.CreateRequest{Template: "base", Metadata: map[string]string{"k": strings.Repeat("v", 1025)}}, errdefs.ErrInvalidArgument, "longer than 1024"},
		{"env with =", sandbox.CreateRequest{Template: "base", EnvVars: map[string]string{"A=B": "v"}}, errdefs.ErrInvalidArgument, "must not contain '='"},
		{"env with NUL", sandbox.CreateRequest{Template: "base", EnvVars: map[string]string{"A": "v\x00"}}, errdefs.ErrInvalidArgument, "NUL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.m.Create(t.Context(), tc.req)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
	if ids, _ := e.rt.List(t.Context()); len(ids) != 0 {
		t.Errorf("runtime holds %v after failed creates", ids)
	}
	if got := errCounter(t, e.reg, "invalid_argument"); got != 9 {
		t.Errorf("sandpit_errors_total{kind=invalid_argument} = %v, want 9", got)
	}
}

func TestCreateRuntimeFailureLeavesNothing(t *testing.T) {
	e := newEnv(t, fake.Options{})
	e.rt.FailCreate(errdefs.New(errdefs.ErrResourceExhausted, "no room"))
	_, err := e.m.Create(t.Context(), sandbox.CreateRequest{Template: "base"})
	if !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("err = %v", err)
	}
	if ids := e.stored(t); len(ids) != 0 {
		t.Errorf("store holds %v", ids)
	}
	p, _ := e.m.List(t.Context(), sandbox.ListFilter{})
	if len(p.Sandboxes) != 0 {
		t.Errorf("listed %v", p.Sandboxes)
	}
}

func TestCreateStoreFailureKillsSandbox(t *testing.T) {
	e := newEnv(t, fake.Options{})
	_ = e.st.Close() // every write now fails
	_, err := e.m.Create(t.Context(), sandbox.CreateRequest{Template: "base"})
	if err == nil {
		t.Fatal("Create succeeded with a closed store")
	}
	if ids, _ := e.rt.List(t.Context()); len(ids) != 0 {
		t.Errorf("runtime still holds %v", ids)
	}
}

func TestGetKill(t *testing.T) {
	e := newEnv(t, fake.Options{})
	info := e.create(t, sandbox.CreateRequest{Secure: true})
	got, err := e.m.Get(t.Context(), info.ID)
	if err != nil || got.ID != info.ID || got.AccessToken != info.AccessToken {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	got.Metadata["mutate"] = "x"
	if again, _ := e.m.Get(t.Context(), info.ID); again.Metadata["mutate"] != "" {
		t.Error("Get returned a shared map")
	}
	if err := e.m.Kill(t.Context(), info.ID); err != nil {
		t.Fatal(err)
	}
	if e.rt.Kills(info.ID) != 1 {
		t.Errorf("runtime kills = %d", e.rt.Kills(info.ID))
	}
	if ids := e.stored(t); len(ids) != 0 {
		t.Errorf("store holds %v", ids)
	}
	for _, op := range []func() error{
		func() error { return e.m.Kill(t.Context(), info.ID) },
		func() error { _, err := e.m.Get(t.Context(), info.ID); return err },
		func() error { return e.m.SetTimeout(t.Context(), info.ID, time.Minute) },
		func() error { return e.m.Refresh(t.Context(), info.ID, time.Minute) },
		func() error { _, _, err := e.m.Connect(t.Context(), info.ID, time.Minute); return err },
	} {
		if err := op(); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), info.ID) {
			t.Errorf("after kill: %v, want not found naming the id", err)
		}
	}
	if _, ok := e.m.Lookup(info.ID); ok {
		t.Error("Lookup finds a killed sandbox")
	}
	if got := gauge(t, e.reg); got != 0 {
		t.Errorf("gauge = %v after kill", got)
	}
}

func TestDeadlineKills(t *testing.T) {
	e := newEnv(t, fake.Options{})
	info := e.create(t, sandbox.CreateRequest{Timeout: 300 * time.Second})
	e.clock.Advance(299 * time.Second)
	if _, err := e.m.Get(t.Context(), info.ID); err != nil {
		t.Fatalf("gone before its deadline: %v", err)
	}
	e.clock.Advance(time.Second)
	if _, err := e.m.Get(t.Context(), info.ID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("still there at its deadline: %v", err)
	}
	if e.rt.Kills(info.ID) != 1 {
		t.Errorf("runtime kills = %d", e.rt.Kills(info.ID))
	}
	if ids := e.stored(t); len(ids) != 0 {
		t.Errorf("store holds %v", ids)
	}
	if e.clock.Pending() != 0 {
		t.Errorf("%d timers pending", e.clock.Pending())
	}
}

func TestSetTimeoutRefreshConnect(t *testing.T) {
	e := newEnv(t, fake.Options{})
	info := e.create(t, sandbox.CreateRequest{Timeout: 100 * time.Second, Secure: true})
	ctx := t.Context()
	end := func() time.Time {
		i, err := e.m.Get(ctx, info.ID)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := e.st.GetSandbox(ctx, info.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !rec.EndAt.Equal(i.EndAt) {
			t.Errorf("store end %v != manager end %v", rec.EndAt, i.EndAt)
		}
		return i.EndAt
	}

	e.clock.Advance(10 * time.Second) // now t0+10

	// SetTimeout may lengthen and shorten.
	if err := e.m.SetTimeout(ctx, info.ID, 500*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := end(); !got.Equal(t0.Add(510 * time.Second)) {
		t.Errorf("after SetTimeout(500s) end = %v", got)
	}
	if err := e.m.SetTimeout(ctx, info.ID, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := end(); !got.Equal(t0.Add(30 * time.Second)) {
		t.Errorf("after SetTimeout(20s) end = %v", got)
	}
	for _, bad := range []time.Duration{0, -time.Second, 2 * time.Hour} {
		if err := e.m.SetTimeout(ctx, info.ID, bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("SetTimeout(%v) = %v", bad, err)
		}
	}

	// Refresh and Connect never shorten.
	if err := e.m.Refresh(ctx, info.ID, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := end(); !got.Equal(t0.Add(30 * time.Second)) {
		t.Errorf("a shorter Refresh moved the end to %v", got)
	}
	if err := e.m.Refresh(ctx, info.ID, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := end(); !got.Equal(t0.Add(70 * time.Second)) {
		t.Errorf("after Refresh(60s) end = %v", got)
	}
	c, _, err := e.m.Connect(ctx, info.ID, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !c.EndAt.Equal(t0.Add(70*time.Second)) || c.AccessToken != info.AccessToken {
		t.Errorf("Connect(shorter) = end %v token %q", c.EndAt, c.AccessToken)
	}
	c, _, err = e.m.Connect(ctx, info.ID, 0) // default 300s
	if err != nil {
		t.Fatal(err)
	}
	if !c.EndAt.Equal(t0.Add(310*time.Second)) || c.AccessToken != info.AccessToken {
		t.Errorf("Connect(default) = end %v token %q", c.EndAt, c.AccessToken)
	}

	// Old timers are stale: passing the earlier deadlines kills nothing.
	e.clock.Advance(299 * time.Second) // t0+309
	if _, err := e.m.Get(ctx, info.ID); err != nil {
		t.Fatalf("killed by a stale timer: %v", err)
	}
	if e.clock.Pending() != 1 {
		t.Errorf("%d timers pending, want 1", e.clock.Pending())
	}
	e.clock.Advance(time.Second)
	if _, err := e.m.Get(ctx, info.ID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("alive past its deadline: %v", err)
	}
}

func TestShortenedDeadlineFires(t *testing.T) {
	e := newEnv(t, fake.Options{})
	info := e.create(t, sandbox.CreateRequest{})
	if err := e.m.SetTimeout(t.Context(), info.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	if _, err := e.m.Get(t.Context(), info.ID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("alive past a shortened deadline: %v", err)
	}
}

func TestLookup(t *testing.T) {
	e := newEnv(t, fake.Options{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})})
	info := e.create(t, sandbox.CreateRequest{})
	sock, ok := e.m.Lookup(info.ID)
	if !ok || !strings.HasSuffix(sock, info.ID+".sock") {
		t.Fatalf("Lookup = %q, %v", sock, ok)
	}
	if _, ok := e.m.Lookup("nope"); ok {
		t.Error("Lookup finds an unknown id")
	}
	e.clock.Advance(300 * time.Second)
	if _, ok := e.m.Lookup(info.ID); ok {
		t.Error("Lookup finds an expired sandbox")
	}
}

func TestExitedSandboxIsReaped(t *testing.T) {
	e := newEnv(t, fake.Options{})
	a := e.create(t, sandbox.CreateRequest{})
	b := e.create(t, sandbox.CreateRequest{})
	e.rt.Exit(a.ID)
	waitFor(t, func() bool {
		_, err := e.m.Get(t.Context(), a.ID)
		return errors.Is(err, errdefs.ErrNotFound) && e.rt.Kills(a.ID) == 1 && len(e.stored(t)) == 1
	})
	if _, err := e.m.Get(t.Context(), b.ID); err != nil {
		t.Errorf("the other sandbox went too: %v", err)
	}
	// An exit for an id the Manager never owned is still released.
	e.rt.Leave("stray")
	e.rt.Exit("stray")
	waitFor(t, func() bool { return e.rt.Kills("stray") == 1 })
}

// TestRecover: what an earlier run left is taken over where it still
// runs; a record whose sandbox is gone is removed, and a sandbox with no
// record is killed.
func TestRecover(t *testing.T) {
	e := newEnv(t, fake.Options{})
	ctx := t.Context()
	mine := e.create(t, sandbox.CreateRequest{})
	// An earlier run left: a sandbox with a record, one without, and a
	// record whose sandbox is gone (a host reboot).
	e.rt.Leave("iold1")
	e.rt.Leave("iold2")
	end := t0.Add(time.Hour)
	for _, id := range []string{"iold1", "igone"} {
		if err := e.st.PutSandbox(ctx, store.SandboxRecord{ID: id, TemplateID: "base", State: "running", StartedAt: t0, EndAt: end}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.m.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	ids, _ := e.rt.List(ctx)
	slices.Sort(ids)
	if want := sorted(mine.ID, "iold1"); !slices.Equal(ids, want) {
		t.Errorf("runtime holds %v, want %v", ids, want)
	}
	if got := e.stored(t); !slices.Equal(sorted(got...), sorted(mine.ID, "iold1")) {
		t.Errorf("store holds %v, want %s and iold1", got, mine.ID)
	}
	if e.rt.Kills("iold1") != 0 || e.rt.Adopts("iold1") != 1 || e.rt.Kills("iold2") != 1 || e.rt.Kills("igone") != 1 {
		t.Errorf("kills iold1 %d iold2 %d igone %d, adopts iold1 %d", e.rt.Kills("iold1"), e.rt.Kills("iold2"), e.rt.Kills("igone"), e.rt.Adopts("iold1"))
	}
	info, err := e.m.Get(ctx, "iold1")
	if err != nil || info.State != sandbox.StateRunning || !info.EndAt.Equal(end) {
		t.Errorf("Get(adopted) = %+v, %v", info, err)
	}
	// Recover is idempotent.
	if err := e.m.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if e.rt.Adopts("iold1") != 1 {
		t.Errorf("adopted again: %d", e.rt.Adopts("iold1"))
	}
	if _, err := e.m.Get(ctx, mine.ID); err != nil {
		t.Errorf("Recover killed an owned sandbox: %v", err)
	}
}

func sorted(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func TestCloseKillsEverythingAndStops(t *testing.T) {
	e := newEnv(t, fake.Options{})
	var ids []string
	for range 5 {
		ids = append(ids, e.create(t, sandbox.CreateRequest{}).ID)
	}
	if err := e.m.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if e.rt.Kills(id) != 1 {
			t.Errorf("%s killed %d times", id, e.rt.Kills(id))
		}
	}
	if got, _ := e.rt.List(t.Context()); len(got) != 0 {
		t.Errorf("runtime holds %v", got)
	}
	if got := e.stored(t); len(got) != 0 {
		t.Errorf("store holds %v", got)
	}
	if e.clock.Pending() != 0 {
		t.Errorf("%d timers pending after Close", e.clock.Pending())
	}
	if _, err := e.m.Create(t.Context(), sandbox.CreateRequest{Template: "base"}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("Create after Close = %v", err)
	}
	if err := e.m.Close(t.Context()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestCloseStopsGoroutines proves, with the wall clock, that the Manager's
// exit watcher and deadline timers are gone after Close.
func TestCloseStopsGoroutines(t *testing.T) {
	st, err := store.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "sandpit.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rt := fake.New(fake.Options{})
	defer rt.Close()
	before := goruntime.NumGoroutine()

	m, err := sandbox.NewManager(sandbox.Config{Runtime: rt, Store: st, Templates: templates()})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 3 {
		info, err := m.Create(t.Context(), sandbox.CreateRequest{Template: "base", Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.ID)
	}
	// A sandbox whose deadline passes for real is killed by its timer.
	waitFor(t, func() bool { return rt.Kills(ids[0]) == 1 })
	for range 3 {
		if _, err := m.Create(t.Context(), sandbox.CreateRequest{Template: "base", Timeout: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return goruntime.NumGoroutine() <= before })
}

func TestConcurrentUse(t *testing.T) {
	e := newEnv(t, fake.Options{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				info, err := e.m.Create(context.Background(), sandbox.CreateRequest{Template: "base"})
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = e.m.List(context.Background(), sandbox.ListFilter{})
				_, _ = e.m.Lookup(info.ID)
				_ = e.m.SetTimeout(context.Background(), info.ID, time.Minute)
				if err := e.m.Kill(context.Background(), info.ID); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 20 {
			e.clock.Advance(time.Second)
		}
	}()
	wg.Wait()
	if got := e.stored(t); len(got) != 0 {
		t.Errorf("store holds %v", got)
	}
}

func TestNewManagerValidates(t *testing.T) {
	if _, err := sandbox.NewManager(sandbox.Config{}); err == nil {
		t.Error("NewManager without Runtime succeeded")
	}
	reg := prometheus.NewRegistry()
	rt := fake.New(fake.Options{})
	st, err := store.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := sandbox.Config{Runtime: rt, Store: st, Templates: templates(), Metrics: reg}
	m, err := sandbox.NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(t.Context())
	if _, err := sandbox.NewManager(cfg); err == nil {
		t.Error("registering metrics twice should fail")
	}
	cfg.Metrics = nil
	cfg.DefaultTimeout = 2 * time.Hour
	cfg.MaxTimeout = time.Hour
	if _, err := sandbox.NewManager(cfg); err == nil {
		t.Error("default timeout above max accepted")
	}
}

func TestStaticTemplates(t *testing.T) {
	tpl := templates()
	for ref, want := range map[string]string{
		"base":                       "base",
		"base-alias":                 "base",
		"base:latest":                "base",
		"team/code-interpreter-v1:3": "big",
		"big":                        "big",
	} {
		got, err := tpl.Resolve(t.Context(), "", ref)
		if err != nil || got.ID != want {
			t.Errorf("Resolve(%q) = %v, %v; want %s", ref, got, err, want)
		}
	}
	_, err := tpl.Resolve(t.Context(), "", "missing:tag")
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), `"missing:tag"`) {
		t.Errorf("Resolve(missing) = %v", err)
	}
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func gauge(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	return series(t, reg, "sandpit_sandboxes", map[string]string{"state": "running"})
}

func errCounter(t *testing.T, reg *prometheus.Registry, kind string) float64 {
	t.Helper()
	return series(t, reg, "sandpit_errors_total", map[string]string{"kind": kind})
}

// series returns the value of the gauge or counter name with labels; 0 if
// there is none.
func series(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func histogramStages(t *testing.T, reg *prometheus.Registry) map[string]uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "sandpit_sandbox_create_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "stage" {
					out[lp.GetValue()] = m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return out
}

func TestKillFinishesWhenCallerCancels(t *testing.T) {
	e := newEnv(t, fake.Options{})
	info := e.create(t, sandbox.CreateRequest{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := e.m.Kill(ctx, info.ID); err != nil {
		t.Fatalf("Kill with a cancelled context: %v", err)
	}
	if got := e.stored(t); len(got) != 0 {
		t.Errorf("store holds %v", got)
	}
}

// TestRecoverAfterCrash plays a daemon restart: a first Manager dies
// without Close, a second one on the same runtime and store takes its
// sandboxes over as they were: same info, paused ones paused, deadlines
// honoured (one that passed while no daemon ran meets its timeout at once,
// killed or paused as its lifecycle says).
func TestRecoverAfterCrash(t *testing.T) {
	e := newEnv(t, fake.Options{})
	ctx := t.Context()
	a := e.create(t, sandbox.CreateRequest{Timeout: 10 * time.Minute, Secure: true, Metadata: map[string]string{"k": "v"},
		AllowInternetAccess: true, Network: &sandbox.Network{DenyOut: []string{"192.0.2.0/24"}}})
	b := e.create(t, sandbox.CreateRequest{Template: "code-interpreter-v1", Timeout: 20 * time.Minute, AutoPause: true})
	paused := e.create(t, sandbox.CreateRequest{Timeout: 10 * time.Minute})
	if err := e.m.Pause(ctx, paused.ID); err != nil {
		t.Fatal(err)
	}
	// A crash between a resume and its record leaves the freezer
	// thawed; the record (paused) wins.
	if err := e.rt.Resume(ctx, paused.ID); err != nil {
		t.Fatal(err)
	}
	short := e.create(t, sandbox.CreateRequest{Timeout: time.Minute})
	shortPause := e.create(t, sandbox.CreateRequest{Timeout: time.Minute, AutoPause: true})
	if err := e.m.UpdateNetwork(ctx, a.ID, &sandbox.Network{AllowOut: []string{"1.1.1.1"}}, false); err != nil {
		t.Fatal(err)
	}
	a, _ = e.m.Get(ctx, a.ID)
	b, _ = e.m.Get(ctx, b.ID)

	// The second daemon starts five minutes later, with a clock of its
	// own (the first Manager's timers stand for a dead process).
	clock := sandboxtest.NewClock(t0.Add(5 * time.Minute))
	m2, err := sandbox.NewManager(sandbox.Config{Runtime: e.rt, Store: e.st, Templates: templates(), Clock: clock, MaxTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close(context.Background())
	if err := m2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	for _, want := range []sandbox.Info{a, b} {
		got, err := m2.Get(ctx, want.ID)
		if err != nil {
			t.Fatalf("new Manager lost %s: %v", want.ID, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("taken over as\n%+v\nwant\n%+v", got, want)
		}
		if e.rt.Kills(want.ID) != 0 {
			t.Errorf("%s killed", want.ID)
		}
	}
	if spec, _ := e.rt.Spec(a.ID); len(spec.Egress.Allow) != 1 || len(spec.Egress.Deny) != 1 {
		t.Errorf("the adopted sandbox's egress policy: %+v", spec.Egress)
	}
	if got, _ := m2.Get(ctx, paused.ID); got.State != sandbox.StatePaused || !e.rt.Paused(paused.ID) {
		t.Errorf("paused sandbox taken over as %s (runtime paused %v)", got.State, e.rt.Paused(paused.ID))
	}
	if _, ok := m2.Lookup(paused.ID); ok {
		t.Error("a paused sandbox takes traffic")
	}
	if _, ok := m2.Lookup(a.ID); !ok {
		t.Error("a taken over sandbox takes no traffic")
	}

	// Deadlines that passed while no daemon ran.
	clock.Advance(0)
	waitFor(t, func() bool {
		_, err := m2.Get(ctx, short.ID)
		return errors.Is(err, errdefs.ErrNotFound) && e.rt.Kills(short.ID) == 1
	})
	waitFor(t, func() bool {
		got, err := m2.Get(ctx, shortPause.ID)
		return err == nil && got.State == sandbox.StatePaused
	})
	// Deadlines still ahead are kept.
	clock.Advance(5*time.Minute - time.Second)
	if _, err := m2.Get(ctx, a.ID); err != nil {
		t.Fatalf("killed before its deadline: %v", err)
	}
	clock.Advance(2 * time.Second)
	waitFor(t, func() bool { return e.rt.Kills(a.ID) == 1 })

	// The new Manager works.
	c, err := m2.Create(ctx, sandbox.CreateRequest{Template: "base"})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.stored(t); !slices.Contains(got, c.ID) {
		t.Errorf("store holds %v", got)
	}
}

// TestCloseKeepOnClose: with KeepOnClose, Close leaves the sandboxes
// running with their records, stops every timer, kills only the warm
// pool's spares, and the next Manager takes them over.
func TestCloseKeepOnClose(t *testing.T) {
	st, err := store.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "sandpit.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rt := fake.New(fake.Options{})
	defer rt.Close()
	clock := sandboxtest.NewClock(t0)
	m, err := sandbox.NewManager(sandbox.Config{Runtime: rt, Store: st, Templates: templates(), Clock: clock, KeepOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.StartPool(t.Context(), map[string]int{"base": 1}); err != nil {
		t.Fatal(err)
	}
	info, err := m.Create(t.Context(), sandbox.CreateRequest{Template: "base"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { ids, _ := rt.List(t.Context()); return len(ids) == 2 })
	if err := m.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	ids, _ := rt.List(t.Context())
	if !slices.Equal(ids, []string{info.ID}) || rt.Kills(info.ID) != 0 {
		t.Errorf("after Close the runtime holds %v (want only %s, not killed)", ids, info.ID)
	}
	recs, _ := st.ListSandboxes(t.Context())
	if len(recs) != 1 || recs[0].ID != info.ID {
		t.Errorf("after Close the store holds %+v", recs)
	}
	if clock.Pending() != 0 {
		t.Errorf("%d timers pending after Close", clock.Pending())
	}

	m2, err := sandbox.NewManager(sandbox.Config{Runtime: rt, Store: st, Templates: templates(), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close(context.Background())
	if err := m2.Recover(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Get(t.Context(), info.ID); err != nil {
		t.Fatalf("not taken over: %v", err)
	}
}

// ender is a runtime whose kills come in two steps (runtime.Ender), the
// second held until release is closed.
type ender struct {
	*fake.Fake
	ended   chan string
	release chan struct{}
}

func (r *ender) End(ctx context.Context, id string) (func(context.Context) error, error) {
	r.ended <- id
	return func(ctx context.Context) error {
		<-r.release
		return r.Fake.Kill(ctx, id)
	}, nil
}

// TestKillAnswersBeforeTheTeardown: with a runtime that can end a sandbox
// before releasing it, Kill returns once the processes are signalled; the
// sandbox is gone for the API at once, the runtime's release and the
// record's removal follow, and Close waits for them.
func TestKillAnswersBeforeTheTeardown(t *testing.T) {
	var rt *ender
	e := newEnvConfig(t, fake.Options{}, templates(), func(c *sandbox.Config) {
		rt = &ender{Fake: c.Runtime.(*fake.Fake), ended: make(chan string, 1), release: make(chan struct{})}
		c.Runtime = rt
	})
	info := e.create(t, sandbox.CreateRequest{})
	if err := e.m.Kill(t.Context(), info.ID); err != nil {
		t.Fatal(err)
	}
	if got := <-rt.ended; got != info.ID {
		t.Fatalf("ended %s, want %s", got, info.ID)
	}
	if _, err := e.m.Get(t.Context(), info.ID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get after Kill: %v, want not found", err)
	}
	if _, ok := e.m.Lookup(info.ID); ok {
		t.Error("Lookup finds a killed sandbox")
	}
	if e.rt.Kills(info.ID) != 0 {
		t.Fatal("the release ran before it was let go")
	}
	closed := make(chan error, 1)
	go func() { closed <- e.m.Close(context.Background()) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a kill's release was in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(rt.release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if e.rt.Kills(info.ID) != 1 {
		t.Errorf("runtime kills = %d after Close, want 1", e.rt.Kills(info.ID))
	}
	if ids := e.stored(t); len(ids) != 0 {
		t.Errorf("store holds %v after Close", ids)
	}
}
