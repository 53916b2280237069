package restapi_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/restapi"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// TestSnapshotsAPI: E2B's snapshot routes as the JS SDK calls them:
// create (named and not), start a sandbox from either, list by sandbox in
// pages, delete through DELETE /templates/{id}; another team's sandbox and
// snapshots answer as unknown ones everywhere.
func TestSnapshotsAPI(t *testing.T) {
	e, _ := newTeamsEnv(t, nil, store.Limits{}, store.Limits{})
	rec := &recorder{}
	cfg := e.cfg
	cfg.Audit = rec
	e.h = restapi.NewAs(cfg, teamPrincipals(store.Limits{}, store.Limits{}))
	r := e.as(t, keyA, "POST", "/v2/sandboxes", `{"templateID":"base","envVars":{"A":"1"}}`)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	id := r.json(t)["sandboxID"].(string)
	const unknownSandbox = "i0000000000000000000z"
	e.wantAsUnknown(t, keyB, call{"POST", "/sandboxes/%s/snapshots", `{}`}, id, unknownSandbox)

	named := e.as(t, keyA, "POST", "/sandboxes/"+id+"/snapshots", `{"name":"snap1"}`)
	if named.status != http.StatusCreated {
		t.Fatalf("named snapshot: %d %s", named.status, named.body)
	}
	nm := named.json(t)
	if nm["snapshotID"] != "alpha/snap1:default" || len(nm["names"].([]any)) != 1 || nm["names"].([]any)[0] != "alpha/snap1:default" {
		t.Errorf("named snapshot: %s", named.body)
	}
	plain := e.as(t, keyA, "POST", "/sandboxes/"+id+"/snapshots", "")
	pm := plain.json(t)
	plainID, _ := pm["snapshotID"].(string)
	if plain.status != http.StatusCreated || !strings.HasSuffix(plainID, ":default") || len(pm["names"].([]any)) != 0 {
		t.Fatalf("unnamed snapshot: %d %s", plain.status, plain.body)
	}
	wantError(t, e.as(t, keyA, "POST", "/sandboxes/"+id+"/snapshots", `{"name":"Not A Name"}`), http.StatusBadRequest, "invalid snapshot name")
	wantError(t, e.as(t, keyA, "POST", "/sandboxes/"+id+"/snapshots", `{"name":"app"}`), http.StatusConflict, "template's name")

	for _, ref := range []string{"alpha/snap1:default", plainID} {
		if r := e.as(t, keyA, "POST", "/v2/sandboxes", `{"templateID":"`+ref+`"}`); r.status != http.StatusCreated {
			t.Errorf("starting %s: %d %s", ref, r.status, r.body)
		}
		e.wantAsUnknown(t, keyB, call{"POST", "/v2/sandboxes", `{"templateID": "%s"}`}, ref, "nosuch:default")
	}

	var got []string
	next := ""
	for range 4 {
		q := "/snapshots?limit=1&sandboxID=" + id
		if next != "" {
			q += "&nextToken=" + url.QueryEscape(next)
		}
		r := e.as(t, keyA, "GET", q, "")
		if r.status != http.StatusOK {
			t.Fatalf("list: %d %s", r.status, r.body)
		}
		for _, s := range r.list(t) {
			got = append(got, s["snapshotID"].(string))
		}
		if next = r.header.Get("X-Next-Token"); next == "" {
			break
		}
	}
	if strings.Join(got, " ") != plainID+" alpha/snap1:default" {
		t.Errorf("pages: %v", got)
	}
	for _, name := range []string{"snap1", "alpha/snap1:default", plainID} {
		if l := e.as(t, keyA, "GET", "/snapshots?name="+url.QueryEscape(name), "").list(t); len(l) != 1 {
			t.Errorf("by name %s: %v", name, l)
		}
	}
	if l := e.as(t, keyB, "GET", "/snapshots", "").list(t); len(l) != 0 {
		t.Errorf("another team lists %v", l)
	}
	wantError(t, e.as(t, keyA, "GET", "/snapshots?limit=0", ""), http.StatusBadRequest, "limit")

	e.wantAsUnknown(t, keyB, call{"DELETE", "/templates/alpha%2F%s:default", ""}, "snap1", "nosuch")
	if r := e.as(t, keyA, "DELETE", "/templates/"+url.PathEscape(plainID), ""); r.status != http.StatusNoContent {
		t.Errorf("deleting %s: %d %s", plainID, r.status, r.body)
	}
	if r := e.as(t, keyA, "DELETE", "/templates/"+url.PathEscape(plainID), ""); r.status != http.StatusNotFound {
		t.Errorf("deleting %s again: %d %s", plainID, r.status, r.body)
	}
	actions := map[string]int{}
	for _, a := range rec.all() {
		if a.TeamID == teamAID {
			actions[a.Action+" "+a.Result]++
		}
	}
	for _, want := range []string{"sandbox.snapshot 201", "sandbox.snapshot 400", "snapshot.delete 204"} {
		if actions[want] == 0 {
			t.Errorf("no audit entry %q in %v", want, actions)
		}
	}
}

// TestForkAPI: fork answers 201 with one sandbox per count; count < 1 is
// 400; another team's sandbox and a killed one are 404.
func TestForkAPI(t *testing.T) {
	e, _ := newTeamsEnv(t, nil, store.Limits{}, store.Limits{})
	r := e.as(t, keyA, "POST", "/v2/sandboxes", `{"templateID":"base","metadata":{"m":"1"}}`)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	id := r.json(t)["sandboxID"].(string)
	rec := &recorder{}
	cfg := e.cfg
	cfg.Audit = rec
	e.h = restapi.NewAs(cfg, teamPrincipals(store.Limits{}, store.Limits{}))
	for _, body := range []string{`{"count":0}`, `{"count":-2}`} {
		wantError(t, e.as(t, keyA, "POST", "/sandboxes/"+id+"/fork", body), http.StatusBadRequest, "count")
	}
	e.wantAsUnknown(t, keyB, call{"POST", "/sandboxes/%s/fork", `{"count":1}`}, id, "i0000000000000000000z")
	r = e.as(t, keyA, "POST", "/sandboxes/"+id+"/fork", `{"count":2,"timeout":60}`)
	if r.status != http.StatusCreated {
		t.Fatalf("fork: %d %s", r.status, r.body)
	}
	l := r.list(t)
	if len(l) != 2 {
		t.Fatalf("fork: %s", r.body)
	}
	for _, f := range l {
		sb, _ := f["sandbox"].(map[string]any)
		fid, _ := sb["sandboxID"].(string)
		if fid == "" || fid == id || sb["envdAccessToken"] == nil {
			t.Fatalf("fork entry %v", f)
		}
		d := e.as(t, keyA, "GET", "/sandboxes/"+fid, "").json(t)
		if d["metadata"].(map[string]any)["m"] != "1" || d["templateID"] != "base" {
			t.Errorf("fork %s: %v", fid, d)
		}
	}
	if r := e.as(t, keyA, "POST", "/sandboxes/"+id+"/fork", ""); r.status != http.StatusCreated || len(r.list(t)) != 1 {
		t.Errorf("fork without a body: %d %s", r.status, r.body)
	}
	if r := e.as(t, keyA, "DELETE", "/sandboxes/"+id, ""); r.status != http.StatusNoContent {
		t.Fatal(r.status)
	}
	wantError(t, e.as(t, keyA, "POST", "/sandboxes/"+id+"/fork", `{"count":1}`), http.StatusNotFound, "not found")
	n := 0
	for _, a := range rec.all() {
		if a.Action == "sandbox.fork" && a.Result == "201" && a.Target == id {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d audited forks of %s, want 2", n, id)
	}
}

// TestSnapshotTemplateStorage: a team at its template storage limit, which
// its snapshots count towards, cannot take another.
func TestSnapshotTemplateStorage(t *testing.T) {
	e, _ := newTeamsEnv(t, nil, store.Limits{MaxTemplateStorageMB: 1}, store.Limits{})
	r := e.as(t, keyA, "POST", "/v2/sandboxes", `{"templateID":"base"}`)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	id := r.json(t)["sandboxID"].(string)
	if r := e.as(t, keyA, "POST", "/sandboxes/"+id+"/snapshots", ""); r.status != http.StatusCreated {
		t.Fatalf("a snapshot under the limit: %d %s", r.status, r.body)
	}
	if _, err := e.st.PutSnapshot(t.Context(), store.SnapshotRecord{ID: "big", TeamID: teamAID, Spec: []byte("{}"), Bytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	wantError(t, e.as(t, keyA, "POST", "/sandboxes/"+id+"/snapshots", ""), http.StatusTooManyRequests, "template storage")
}
