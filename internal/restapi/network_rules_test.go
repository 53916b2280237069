package restapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/restapi"
	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
	"github.com/sandpit-dev/sandpit/internal/sandbox/sandboxtest"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// An update that adds rules to a paused sandbox is refused (the CA cannot
// be installed in it) before anything of it is applied: its allowOut and
// denyOut stay as they were.
func TestNetworkUpdateRefusedWhole(t *testing.T) {
	ctx := t.Context()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "sandpit.db"))
	if err != nil {
		t.Fatal(err)
	}
	rt := fake.New(fake.Options{})
	m, err := sandbox.NewManager(sandbox.Config{
		Runtime: rt, Store: st, Templates: sandbox.StaticTemplates{{ID: "base"}},
		Logger: slog.New(slog.DiscardHandler), MaxTimeout: time.Hour, Clock: sandboxtest.NewClock(t0),
		InterceptCA: []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = m.Close(context.Background())
		_ = rt.Close()
		_ = st.Close()
	})
	key, _, err := st.CreateKey(ctx, store.NewKey{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, rt: rt, m: m, key: key, h: restapi.New(restapi.Config{Manager: m, Keys: st, Logger: slog.New(slog.DiscardHandler)})}

	r := e.do(t, "POST", "/sandboxes", `{"templateID":"base","network":{"denyOut":["10.0.0.0/8"]}}`)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	id := r.json(t)["sandboxID"].(string)
	if r := e.do(t, "POST", "/sandboxes/"+id+"/pause", ""); r.status != http.StatusNoContent {
		t.Fatalf("pause: %d %s", r.status, r.body)
	}
	r = e.do(t, "PUT", "/sandboxes/"+id+"/network", `{"denyOut":["0.0.0.0/0"],"rules":{"api.example.com":[{"headers":{"X-K":"v"}}]}}`)
	if r.status != http.StatusConflict || !strings.Contains(string(r.body), "resume it") {
		t.Fatalf("adding rules to a paused sandbox: %d %s, want 409", r.status, r.body)
	}
	if r := e.do(t, "GET", "/sandboxes/"+id, ""); !strings.Contains(string(r.body), `"network":{"denyOut":["10.0.0.0/8"]}`) {
		t.Errorf("the refused update changed the network: %s", r.body)
	}
}
