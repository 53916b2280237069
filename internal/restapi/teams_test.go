package restapi_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/restapi"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// recorder is an Auditor that keeps what it is given.
type recorder struct {
	mu      sync.Mutex
	entries []store.AuditEntry
}

func (r *recorder) Record(e store.AuditEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, e)
}

func (r *recorder) all() []store.AuditEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]store.AuditEntry(nil), r.entries...)
}

// teamKey makes team name (when missing) and a key of it.
func teamKey(t *testing.T, e *env, name string, l store.Limits) string {
	t.Helper()
	if _, err := e.st.Team(t.Context(), name); err != nil {
		if _, err := e.st.CreateTeam(t.Context(), name, l); err != nil {
			t.Fatal(err)
		}
	}
	key, _, err := e.st.CreateKey(t.Context(), store.NewKey{Name: name + "-key", Team: name})
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// Every control-plane route of another team's sandbox answers as for a
// sandbox that never existed, byte for byte but the ID.
func TestAnotherTeamsSandboxIsUnknown(t *testing.T) {
	e := newEnv(t, "")
	keyB := teamKey(t, e, "b", store.Limits{})
	r := e.do(t, "POST", "/v2/sandboxes", `{"templateID":"base","metadata":{"owner_tag":"a"},"envVars":{"SECRET":"secret_value_a"}}`)
	if r.status != 201 {
		t.Fatalf("create = %d %s", r.status, r.body)
	}
	id := r.json(t)["sandboxID"].(string)
	const unknown = "iunknownunknownunknow"
	routes := []struct{ method, path, body string }{
		{"GET", "/sandboxes/%s", ""},
		{"DELETE", "/sandboxes/%s", ""},
		{"POST", "/sandboxes/%s/timeout", `{"timeout":30}`},
		{"POST", "/sandboxes/%s/refreshes", `{"duration":30}`},
		{"POST", "/sandboxes/%s/connect", `{"timeout":30}`},
		{"POST", "/v2/sandboxes/%s/connect", `{"timeout":30}`},
		{"POST", "/sandboxes/%s/pause", ``},
		{"GET", "/sandboxes/%s/metrics", ""},
		{"GET", "/sandboxes/%s/logs", ""},
		{"GET", "/v2/sandboxes/%s/logs", ""},
		{"PUT", "/sandboxes/%s/network", `{"allowOut":["1.1.1.1"]}`},
	}
	for _, rt := range routes {
		path := strings.Replace(rt.path, "%s", id, 1)
		got := e.as(t, keyB, rt.method, path, rt.body)
		want := e.as(t, keyB, rt.method, strings.Replace(rt.path, "%s", unknown, 1), rt.body)
		if got.status != 404 || got.status != want.status ||
			strings.ReplaceAll(string(got.body), id, "ID") != strings.ReplaceAll(string(want.body), unknown, "ID") {
			t.Errorf("%s %s as team b = %d %s; unknown = %d %s", rt.method, path, got.status, got.body, want.status, want.body)
		}
		// Underscores never appear in sandbox IDs.
		if strings.Contains(string(got.body), "secret_value_a") || strings.Contains(string(got.body), "owner_tag") {
			t.Errorf("%s %s leaked team a's data: %s", rt.method, path, got.body)
		}
	}
	// Team a's sandbox is untouched and still its own.
	if r := e.do(t, "GET", "/sandboxes/"+id, ""); r.status != 200 || r.json(t)["state"] != "running" {
		t.Fatalf("team a's sandbox after team b's tries: %d %s", r.status, r.body)
	}
	for _, list := range []string{"/v2/sandboxes", "/sandboxes"} {
		if l := e.as(t, keyB, "GET", list, "").list(t); len(l) != 0 {
			t.Errorf("team b's %s shows %v", list, l)
		}
		if l := e.do(t, "GET", list, "").list(t); len(l) != 1 {
			t.Errorf("team a's %s shows %d sandboxes", list, len(l))
		}
	}
}

func TestTeamLimitsAnswer429(t *testing.T) {
	e := newEnv(t, "")
	keyB := teamKey(t, e, "b", store.Limits{MaxSandboxes: 1})
	create := func() response { return e.as(t, keyB, "POST", "/v2/sandboxes", `{"templateID":"base"}`) }
	first := create()
	if first.status != 201 {
		t.Fatalf("first create = %d %s", first.status, first.body)
	}
	r := create()
	wantError(t, r, 429, "max-sandboxes 1")
	if r.header.Get("Should-Retry") != "false" || r.header.Get("Retry-After") != "" {
		t.Errorf("concurrency limit headers: Should-Retry %q Retry-After %q", r.header.Get("Should-Retry"), r.header.Get("Retry-After"))
	}
	if ids, _ := e.rt.List(t.Context()); len(ids) != 1 {
		t.Errorf("a refused create left sandboxes: %v", ids)
	}
	// Team a has no limit.
	if r := e.do(t, "POST", "/v2/sandboxes", `{"templateID":"base"}`); r.status != 201 {
		t.Fatalf("team a: %d %s", r.status, r.body)
	}
	// Kill frees the place.
	if r := e.as(t, keyB, "DELETE", "/sandboxes/"+first.json(t)["sandboxID"].(string), ""); r.status != 204 {
		t.Fatalf("kill = %d %s", r.status, r.body)
	}
	if r := create(); r.status != 201 {
		t.Fatalf("create after kill = %d %s", r.status, r.body)
	}

	// A rate limit set while the daemon runs applies at once; the clock
	// of the test does not move, so the bucket does not refill.
	if _, err := e.st.SetTeamLimits(t.Context(), "b", store.Limits{CreatesPerSecond: 0.5, CreateBurst: 1}); err != nil {
		t.Fatal(err)
	}
	if r := create(); r.status != 201 {
		t.Fatalf("create within the burst = %d %s", r.status, r.body)
	}
	r = create()
	wantError(t, r, 429, "creates-per-second 0.5")
	if r.header.Get("Should-Retry") != "true" || r.header.Get("Retry-After") != "2" {
		t.Errorf("rate limit headers: Should-Retry %q Retry-After %q", r.header.Get("Should-Retry"), r.header.Get("Retry-After"))
	}

	// Per-sandbox maximums are 400s naming the maximum.
	if _, err := e.st.SetTeamLimits(t.Context(), "b", store.Limits{MaxCPUs: 2}); err != nil {
		t.Fatal(err)
	}
	wantError(t, e.as(t, keyB, "POST", "/v2/sandboxes", `{"templateID":"code-interpreter-v1"}`), 400, "at most 2 per sandbox (max-cpus)")
	if _, err := e.st.SetTeamLimits(t.Context(), "b", store.Limits{MaxLifetime: 60e9}); err != nil {
		t.Fatal(err)
	}
	wantError(t, e.as(t, keyB, "POST", "/v2/sandboxes", `{"templateID":"base","timeout":120}`), 400, "maximum sandbox lifetime of 1m0s")
}

func TestAuditRecordsWhoDidWhat(t *testing.T) {
	e := newEnv(t, "")
	rec := &recorder{}
	e.h = restapi.New(restapi.Config{Manager: e.m, Keys: e.st, ExtraKey: extraKey, Audit: rec, AuditLog: e.st})
	keyB := teamKey(t, e, "b", store.Limits{})
	r := e.as(t, keyB, "POST", "/v2/sandboxes", `{"templateID":"base"}`)
	id := r.json(t)["sandboxID"].(string)
	e.as(t, keyB, "POST", "/sandboxes/"+id+"/timeout", `{"timeout":60}`)
	e.as(t, keyB, "GET", "/sandboxes/"+id, "")
	e.do(t, "DELETE", "/sandboxes/"+id, "") // team a: not found
	e.as(t, keyB, "DELETE", "/sandboxes/"+id, "")
	got := rec.all()
	want := []struct{ action, result, key string }{
		{"sandbox.create", "201", "b-key"},
		{"sandbox.timeout", "204", "b-key"},
		{"sandbox.kill", "404", "test"},
		{"sandbox.kill", "204", "b-key"},
	}
	if len(got) != len(want) {
		t.Fatalf("audit entries = %+v, want %d (reads are not audited)", got, len(want))
	}
	teamB, err := e.st.Team(t.Context(), "b")
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		g := got[i]
		if g.Action != w.action || g.Result != w.result || g.KeyName != w.key || g.Target != id || g.Client == "" {
			t.Errorf("entry %d = %+v, want %+v on %s", i, g, w, id)
		}
		if w.key == "b-key" && (g.TeamID != teamB.ID || g.TeamName != "b") {
			t.Errorf("entry %d team = %s/%s, want b", i, g.TeamID, g.TeamName)
		}
		for _, secret := range []string{keyB, e.key} {
			if strings.Contains(g.KeyID+g.KeyName+g.Detail, secret) {
				t.Errorf("entry %d holds a key's secret", i)
			}
		}
	}

	// Only admin keys read the log over HTTP.
	wantError(t, e.as(t, keyB, "GET", "/sandpit/v1/audit", ""), http.StatusForbidden, "admin key")
	if err := e.st.AppendAudit(t.Context(), got); err != nil {
		t.Fatal(err)
	}
	r = e.as(t, extraKey, "GET", "/sandpit/v1/audit?team=b&action=sandbox.", "")
	if r.status != 200 {
		t.Fatalf("admin audit read = %d %s", r.status, r.body)
	}
	if l := r.list(t); len(l) != 3 || l[0]["action"] != "sandbox.create" || l[0]["team"] != "b" {
		t.Fatalf("admin audit read = %v", l)
	}
	wantError(t, e.as(t, extraKey, "GET", "/sandpit/v1/audit?since=yesterday", ""), 400, "since must be")
}
