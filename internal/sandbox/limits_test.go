package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
	"github.com/sandpit-dev/sandpit/internal/store"
)

func team(name string, l store.Limits) store.Team {
	return store.Team{ID: "id-" + name, Name: name, Limits: l}
}

func TestTeamSeesOnlyItsOwnSandboxes(t *testing.T) {
	e := newEnv(t, fake.Options{})
	a, b := team("a", store.Limits{}), team("b", store.Limits{})
	sa, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: a, Template: "base"})
	if err != nil {
		t.Fatal(err)
	}
	if sa.TeamID != a.ID {
		t.Fatalf("TeamID = %q, want %q", sa.TeamID, a.ID)
	}
	if _, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: b, Template: "base"}); err != nil {
		t.Fatal(err)
	}
	for _, tm := range []store.Team{a, b} {
		page, err := e.m.List(t.Context(), sandbox.ListFilter{Team: tm.ID})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Sandboxes) != 1 || page.Sandboxes[0].TeamID != tm.ID {
			t.Fatalf("team %s lists %+v", tm.Name, page.Sandboxes)
		}
	}
	page, err := e.m.List(t.Context(), sandbox.ListFilter{Team: "nobody"})
	if err != nil || len(page.Sandboxes) != 0 {
		t.Fatalf("a team with no sandboxes lists %d (err %v)", len(page.Sandboxes), err)
	}
}

func TestMaxSandboxesCountsRunningAndFreesOnKill(t *testing.T) {
	e := newEnv(t, fake.Options{})
	a := team("a", store.Limits{MaxSandboxes: 2})
	var ids []string
	for range 2 {
		info, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: a, Template: "base"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.ID)
	}
	_, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: a, Template: "base"})
	if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "max-sandboxes 2") {
		t.Fatalf("third create: %v, want resource exhausted naming max-sandboxes 2", err)
	}
	if retry, _, ok := errdefs.Retry(err); !ok || retry {
		t.Fatalf("the concurrency limit must say waiting does not help (retry=%v ok=%v)", retry, ok)
	}
	// Another team is not affected, and a failed create gives its place back.
	if _, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: team("b", store.Limits{MaxSandboxes: 1}), Template: "base"}); err != nil {
		t.Fatalf("team b: %v", err)
	}
	if _, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: a, Template: "nope"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown template: %v", err)
	}
	if err := e.m.Kill(t.Context(), ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: a, Template: "base"}); err != nil {
		t.Fatalf("create after a kill: %v", err)
	}
	// A paused sandbox still counts.
	if err := e.m.Pause(t.Context(), ids[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: a, Template: "base"}); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("create beside a paused sandbox at the limit: %v", err)
	}
	if got := metricValue(t, e, "sandpit_team_limit_hits_total", map[string]string{"team": "a", "limit": "max_sandboxes"}); got != 2 {
		t.Fatalf("limit hits = %v, want 2", got)
	}
}

func TestCreatesPerSecondIsATokenBucket(t *testing.T) {
	e := newEnv(t, fake.Options{})
	a := team("a", store.Limits{CreatesPerSecond: 2, CreateBurst: 3})
	for i := range 3 {
		if _, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: a, Template: "base"}); err != nil {
			t.Fatalf("create %d within the burst: %v", i, err)
		}
	}
	_, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: a, Template: "base"})
	if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "creates-per-second 2") {
		t.Fatalf("fourth create: %v", err)
	}
	retry, after, ok := errdefs.Retry(err)
	if !ok || !retry || after < time.Second {
		t.Fatalf("the rate limit must say when to retry: retry=%v after=%v ok=%v", retry, after, ok)
	}
	// Half a second refills one token at 2/s.
	e.clock.Advance(500 * time.Millisecond)
	if _, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: a, Template: "base"}); err != nil {
		t.Fatalf("create after a refill: %v", err)
	}
	// A limit raised while the daemon runs applies to the next create.
	a.Limits.CreatesPerSecond, a.Limits.CreateBurst = 100, 100
	if _, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: a, Template: "base"}); err != nil {
		t.Fatalf("create after raising the limit: %v", err)
	}
}

func TestPerSandboxMaximums(t *testing.T) {
	e := newEnv(t, fake.Options{})
	cases := []struct {
		l    store.Limits
		tpl  string
		want string
	}{
		{store.Limits{MaxCPUs: 2}, "big", "at most 2 per sandbox (max-cpus)"},
		{store.Limits{MaxMemoryMB: 1024}, "big", "at most 1024 MB per sandbox (max-memory-mb)"},
		{store.Limits{MaxDiskMB: 2048}, "big", "at most 2048 MB per sandbox (max-disk-mb)"},
	}
	for _, c := range cases {
		_, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: team("a", c.l), Template: c.tpl})
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want invalid argument with %q", c.l, err, c.want)
		}
	}
	if _, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: team("a", store.Limits{MaxCPUs: 4, MaxMemoryMB: 2048}), Template: "big"}); err != nil {
		t.Fatalf("at the maximum: %v", err)
	}
}

func TestMaxLifetimeBoundsEveryDeadline(t *testing.T) {
	e := newEnv(t, fake.Options{})
	a := team("a", store.Limits{MaxLifetime: 10 * time.Minute})
	_, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: a, Template: "base", Timeout: 11 * time.Minute})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "maximum sandbox lifetime of 10m0s") {
		t.Fatalf("create past the lifetime: %v", err)
	}
	info, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: a, Template: "base", Timeout: 8 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5 * time.Minute)
	if err := e.m.SetTimeout(t.Context(), info.ID, 6*time.Minute); !errors.Is(err, errdefs.ErrInvalidArgument) ||
		!strings.Contains(err.Error(), "max-lifetime 10m0s") {
		t.Fatalf("SetTimeout past the lifetime: %v", err)
	}
	// Refresh and connect keep it alive only up to the lifetime.
	if err := e.m.Refresh(t.Context(), info.ID, 30*time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := e.m.Get(t.Context(), info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := info.StartedAt.Add(10 * time.Minute); !got.EndAt.Equal(want) {
		t.Fatalf("EndAt after refresh = %v, want the lifetime's end %v", got.EndAt, want)
	}
	e.clock.Advance(5*time.Minute + time.Second)
	waitGone(t, e, info.ID)
}

func TestTeamLabelsAreBounded(t *testing.T) {
	e := newEnv(t, fake.Options{})
	for i := range 105 {
		if _, err := e.m.Create(t.Context(), sandbox.CreateRequest{Team: team(fmt.Sprintf("t%03d", i), store.Limits{}), Template: "base"}); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sandpit_team_creates_total" {
			continue
		}
		if n := len(mf.GetMetric()); n != 101 {
			t.Fatalf("%d team series, want 100 teams and other", n)
		}
		return
	}
	t.Fatal("no sandpit_team_creates_total")
}

// metricValue is the value of the series of metric name with labels.
func metricValue(t *testing.T, e *env, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// A sandbox the last run left that is gone is reported with its record
// (the daemon writes it to the audit log), and an adopted one counts for
// its team's limit again.
func TestRecoverReportsTheReapedAndCountsTheAdopted(t *testing.T) {
	e := newEnv(t, fake.Options{})
	ctx := t.Context()
	e.rt.Leave("iold")
	end := t0.Add(time.Hour)
	for _, id := range []string{"iold", "igone"} {
		if err := e.st.PutSandbox(ctx, store.SandboxRecord{ID: id, TeamID: "id-a", TemplateID: "base", State: "running", StartedAt: t0, EndAt: end}); err != nil {
			t.Fatal(err)
		}
	}
	var reaped []string
	m, err := sandbox.NewManager(sandbox.Config{Runtime: e.rt, Store: e.st, Templates: templates(), Clock: e.clock,
		Reaped: func(_ context.Context, rec store.SandboxRecord, why error) {
			reaped = append(reaped, rec.ID+" "+rec.TeamID)
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	if err := m.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(reaped, []string{"igone id-a"}) {
		t.Fatalf("reaped %v, want igone of id-a", reaped)
	}
	if owner, ok := m.Owner("iold"); !ok || owner != "id-a" {
		t.Fatalf("the adopted sandbox's team = %q %v", owner, ok)
	}
	_, err = m.Create(ctx, sandbox.CreateRequest{Team: team("a", store.Limits{MaxSandboxes: 1}), Template: "base"})
	if !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("a create beside the adopted sandbox at a limit of 1: %v", err)
	}
}
