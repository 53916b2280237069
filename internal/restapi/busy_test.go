package restapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/restapi"
	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
	"github.com/sandpit-dev/sandpit/internal/sandbox/sandboxtest"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// A create the daemon is too busy for is a 503 with Retry-After, which
// E2B's SDKs raise as ServiceBusyError (JS) and ServiceBusyException
// (Python, after retrying as told), audited like any other failed create.
func TestBusyDaemonAnswers503WithRetryAfter(t *testing.T) {
	st, err := store.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "sandpit.db"))
	if err != nil {
		t.Fatal(err)
	}
	rt := fake.New(fake.Options{})
	m, err := sandbox.NewManager(sandbox.Config{
		Runtime:    rt,
		Store:      st,
		Templates:  sandbox.StaticTemplates{{ID: "base"}},
		Logger:     slog.New(slog.DiscardHandler),
		MaxTimeout: time.Hour,
		Clock:      sandboxtest.NewClock(t0),
		Host: sandbox.HostLimits{MinFreeMemory: 10 << 40, MemAvailable: func() (int64, error) {
			return 3 << 30, nil
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = m.Close(context.Background())
		_ = rt.Close()
		_ = st.Close()
	})
	rec := &recorder{}
	e := &env{m: m, st: st, rt: rt}
	e.h = restapi.New(restapi.Config{Manager: m, Keys: st, ExtraKey: extraKey, Audit: rec})
	keyB := teamKey(t, e, "b", store.Limits{})

	r := e.as(t, keyB, "POST", "/v2/sandboxes", `{"templateID":"base"}`)
	wantError(t, r, http.StatusServiceUnavailable,
		"the host has 3072 MiB of memory available, below the 10485760 MiB floor (sandpit serve --min-free-memory)")
	if r.header.Get("Should-Retry") != "true" || r.header.Get("Retry-After") != "2" {
		t.Errorf("busy headers: Should-Retry %q Retry-After %q, want true and 2", r.header.Get("Should-Retry"), r.header.Get("Retry-After"))
	}
	if ids, _ := rt.List(t.Context()); len(ids) != 0 {
		t.Errorf("a refused create left %v in the runtime", ids)
	}
	got := rec.all()
	if len(got) != 1 || got[0].Action != "sandbox.create" || got[0].Result != "503" || got[0].TeamName != "b" || got[0].KeyName != "b-key" {
		t.Fatalf("audit entries = %+v, want one sandbox.create of team b with result 503", got)
	}
}
