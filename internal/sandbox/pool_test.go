package sandbox_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
	"github.com/sandpit-dev/sandpit/internal/template"
)

func TestWarmPool(t *testing.T) {
	var mu sync.Mutex
	inits := map[string]map[string]string{} // token → env set through /init
	e := newEnv(t, fake.Options{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/init" {
			http.NotFound(w, r)
			return
		}
		var body struct {
			EnvVars map[string]string `json:"envVars"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		inits[r.Header.Get("X-Access-Token")] = body.EnvVars
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})})
	if err := e.m.StartPool(t.Context(), map[string]int{"base": 1}); err != nil {
		t.Fatal(err)
	}
	warm := waitWarm(t, e, 1)

	// A secure create takes the warm sandbox, with its env set.
	info := e.create(t, sandbox.CreateRequest{Secure: true, AllowInternetAccess: true, EnvVars: map[string]string{"A": "1"}})
	if info.ID != warm[0] {
		t.Fatalf("create made %s instead of taking warm %s", info.ID, warm[0])
	}
	mu.Lock()
	got := inits[info.AccessToken]
	mu.Unlock()
	if got["A"] != "1" || got["FROM_TEMPLATE"] != "1" || got["E2B_SANDBOX_ID"] != info.ID || got["E2B_SANDBOX"] != "true" {
		t.Errorf("claimed sandbox's env = %v", got)
	}
	if spec, _ := e.rt.Spec(info.ID); spec.Env["E2B_SANDBOX_ID"] != info.ID {
		t.Errorf("warm sandbox started with env %v", spec.Env)
	}
	if _, ok := e.m.Lookup(info.ID); !ok {
		t.Error("claimed sandbox is not routable")
	}
	// The pool refills.
	var spare string
	for _, id := range waitWarm(t, e, 2) {
		if id != info.ID {
			spare = id
		}
	}
	// An insecure create (no token for the client to send) starts afresh,
	// and so does an offline one (warm sandboxes are online).
	plain := e.create(t, sandbox.CreateRequest{AllowInternetAccess: true})
	if plain.ID == spare {
		t.Error("an insecure create took a warm sandbox")
	}
	offline := e.create(t, sandbox.CreateRequest{Secure: true})
	if offline.ID == spare {
		t.Error("an offline create took an online warm sandbox")
	}
	if spec, _ := e.rt.Spec(offline.ID); spec.AllowInternet {
		t.Error("the offline create got internet access")
	}
	if _, err := e.m.Get(t.Context(), spare); err == nil {
		t.Error("an unclaimed warm sandbox is visible through the API")
	}
	// Close kills the unclaimed one.
	if err := e.m.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if e.rt.Kills(spare) == 0 {
		t.Error("Close left the warm sandbox running")
	}
}

// waitWarm waits until the runtime holds n sandboxes and returns their ids.
func waitWarm(t *testing.T, e *env, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ids, _ := e.rt.List(t.Context())
		if len(ids) >= n {
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pool did not reach %d sandboxes (has %v)", n, ids)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// swapTemplates resolves every ref to whichever template it holds now, as
// a registry does across a rebuild or between tags.
type swapTemplates struct {
	mu  sync.Mutex
	tpl *template.Template
}

func (s *swapTemplates) Resolve(context.Context, string, string) (*template.Template, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tpl, nil
}

func (s *swapTemplates) set(t *template.Template) { s.mu.Lock(); s.tpl = t; s.mu.Unlock() }

// A warm sandbox of one build is never handed out for another build of the
// same template.
func TestWarmPoolKeepsBuildsApart(t *testing.T) {
	v1 := &template.Template{ID: "app", User: "user", Mounts: []runtime.Mount{{Target: "/", Layers: []string{"/layers/v1"}}}}
	v2 := &template.Template{ID: "app", User: "user", Mounts: []runtime.Mount{{Target: "/", Layers: []string{"/layers/v2", "/layers/v1"}}}}
	tpls := &swapTemplates{tpl: v1}
	e := newEnvWith(t, fake.Options{}, tpls)
	if err := e.m.StartPool(t.Context(), map[string]int{"app": 1}); err != nil {
		t.Fatal(err)
	}
	warm := waitWarm(t, e, 1)
	tpls.set(v2)
	got := e.create(t, sandbox.CreateRequest{Template: "app:v2", Secure: true, AllowInternetAccess: true})
	if got.ID == warm[0] {
		t.Fatal("a create of build v2 took a warm sandbox of v1")
	}
	if spec, _ := e.rt.Spec(got.ID); len(spec.Mounts[0].Layers) != 2 {
		t.Errorf("sandbox of v2 started with layers %v", spec.Mounts[0].Layers)
	}
	tpls.set(v1)
	if got := e.create(t, sandbox.CreateRequest{Template: "app:v1", Secure: true, AllowInternetAccess: true}); got.ID != warm[0] {
		t.Errorf("a create of v1 made %s instead of taking warm %s", got.ID, warm[0])
	}
}

// A claimed sandbox's agent gets the create's environment while its record
// is written, not after: here the agent answers /init only once it can
// see the record, which a create that wrote the record after /init never
// lets it do (it would start a sandbox cold instead).
func TestWarmPoolHandOverOverlapsRecord(t *testing.T) {
	var e *env
	ready := make(chan struct{})
	e = newEnv(t, fake.Options{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-ready
		var body struct {
			EnvVars map[string]string `json:"envVars"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		id := body.EnvVars["E2B_SANDBOX_ID"]
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if _, err := e.st.GetSandbox(r.Context(), id); err == nil {
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		http.Error(w, "no record of "+id+" while its environment is set", http.StatusConflict)
	})})
	close(ready)
	if err := e.m.StartPool(t.Context(), map[string]int{"base": 1}); err != nil {
		t.Fatal(err)
	}
	warm := waitWarm(t, e, 1)
	info := e.create(t, sandbox.CreateRequest{Secure: true, AllowInternetAccess: true, EnvVars: map[string]string{"A": "1"}})
	if info.ID != warm[0] {
		t.Fatalf("create made %s instead of taking warm %s", info.ID, warm[0])
	}
	// The record is what a restarted daemon takes the sandbox over from.
	rec, err := e.st.GetSandbox(t.Context(), info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.AccessToken != info.AccessToken || rec.Pid != info.Pid || !rec.EndAt.Equal(info.EndAt) ||
		rec.Env["A"] != "1" || rec.Env["E2B_SANDBOX_ID"] != info.ID || rec.State != string(sandbox.StateRunning) {
		t.Errorf("record of the claimed sandbox = %+v, info %+v", rec, info)
	}
}

// When a claimed sandbox's agent fails /init, the create starts a sandbox
// cold; the spare is killed and leaves no record behind.
func TestWarmPoolHandOverFails(t *testing.T) {
	e := newEnv(t, fake.Options{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "broken", http.StatusInternalServerError)
	})})
	if err := e.m.StartPool(t.Context(), map[string]int{"base": 1}); err != nil {
		t.Fatal(err)
	}
	warm := waitWarm(t, e, 1)
	info := e.create(t, sandbox.CreateRequest{Secure: true, AllowInternetAccess: true, EnvVars: map[string]string{"A": "1"}})
	if info.ID == warm[0] {
		t.Fatal("a create took a warm sandbox whose agent failed")
	}
	if e.rt.Kills(warm[0]) == 0 {
		t.Error("the failed spare was not killed")
	}
	if _, err := e.st.GetSandbox(t.Context(), warm[0]); err == nil {
		t.Error("the failed spare's record stayed")
	}
	if _, err := e.st.GetSandbox(t.Context(), info.ID); err != nil {
		t.Errorf("the cold sandbox has no record: %v", err)
	}
	if _, err := e.m.Get(t.Context(), info.ID); err != nil {
		t.Errorf("the cold sandbox is not served: %v", err)
	}
}
