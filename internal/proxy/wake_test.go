package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/proxy"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// TestAutoResume: requests to any port of a paused sandbox created with
// autoResume resume it, once however many come at the same time, and are
// all served; a sandbox without autoResume stays paused and its request
// is refused as before.
func TestAutoResume(t *testing.T) {
	var served atomic.Int64
	rt := fake.New(fake.Options{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			// A port's tunnel: what comes through it is counted below.
			c, brw, _ := http.NewResponseController(w).Hijack()
			defer c.Close()
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
			if _, err := http.ReadRequest(brw.Reader); err == nil {
				served.Add(1)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nserved 8000")
			}
			return
		}
		served.Add(1)
		_, _ = io.WriteString(w, "served "+r.Header.Get("E2b-Sandbox-Port"))
	})})
	st, err := store.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "sandpit.db"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := sandbox.NewManager(sandbox.Config{Runtime: rt, Store: st,
		Templates: sandbox.StaticTemplates{{ID: "base", Mounts: []runtime.Mount{{Target: "/", Layers: []string{"/x"}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = m.Close(context.Background())
		_ = rt.Close()
		_ = st.Close()
	})
	auto, err := m.Create(t.Context(), sandbox.CreateRequest{Template: "base", AutoPause: true, AutoResume: true})
	if err != nil {
		t.Fatal(err)
	}
	manual, err := m.Create(t.Context(), sandbox.CreateRequest{Template: "base", AutoPause: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{auto.ID, manual.ID} {
		if err := m.Pause(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(proxy.New(proxy.Config{Lookup: m.Lookup, Wake: m.Wake, Next: http.NotFoundHandler()}))
	defer srv.Close()
	get := func(id, port string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+"/", nil)
		req.Header.Set("E2b-Sandbox-Id", id)
		req.Header.Set("E2b-Sandbox-Port", port)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if status, _ := get(manual.ID, "8000"); status != http.StatusBadGateway {
		t.Errorf("a paused sandbox without autoResume: %d, want 502", status)
	}
	if info, _ := m.Get(t.Context(), manual.ID); info.State != sandbox.StatePaused || served.Load() != 0 {
		t.Errorf("a request woke a sandbox without autoResume: %s, %d served", info.State, served.Load())
	}

	gate := make(chan struct{})
	rt.SetHook(func(string) { <-gate })
	const n = 10
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			port := "8000"
			if i%2 == 0 {
				port = "49983"
			}
			if status, body := get(auto.ID, port); status != http.StatusOK || body != "served "+port {
				t.Errorf("request %d to a paused autoResume sandbox: %d %q", i, status, body)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond) // let them all find it paused
	close(gate)
	wg.Wait()
	if r := rt.Resumes(auto.ID); r != 1 {
		t.Errorf("%d resumes for %d concurrent first requests, want 1", r, n)
	}
	if served.Load() != n {
		t.Errorf("%d of %d requests served", served.Load(), n)
	}
	if info, _ := m.Get(t.Context(), auto.ID); info.State != sandbox.StateRunning {
		t.Errorf("state after the wake: %s", info.State)
	}
}
