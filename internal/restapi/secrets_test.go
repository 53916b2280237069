package restapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/restapi"
	"github.com/sandpit-dev/sandpit/internal/secrets"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// withSecrets remakes e's handler with a secrets service.
func withSecrets(t *testing.T, e *env) {
	t.Helper()
	svc, err := secrets.New(e.st, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e.h = restapi.New(restapi.Config{Manager: e.m, Keys: e.st, ExtraKey: extraKey, Secrets: svc})
}

// E2B's secrets API: create answers the metadata (never the value),
// get and list never carry the value either, update adds a version,
// delete is 204 then 404, and another team's secret is unknown.
func TestSecretsAPI(t *testing.T) {
	e := newEnv(t, "")
	withSecrets(t, e)
	r := e.do(t, "POST", "/secrets", `{"name":"OpenAI-Key","value":"sk-top-secret","metadata":{"env":"prod"}}`)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	sec := r.json(t)
	id, _ := sec["secretID"].(string)
	if !strings.HasPrefix(id, "sec_") || sec["name"] != "openai-key" || sec["currentVersion"] != float64(1) ||
		sec["metadata"].(map[string]any)["env"] != "prod" || sec["createdAt"] == nil || sec["updatedAt"] == nil {
		t.Errorf("created %s", r.body)
	}
	if _, ok := sec["value"]; ok {
		t.Errorf("create answered the value: %s", r.body)
	}
	wantError(t, e.do(t, "POST", "/secrets", `{"name":"openai-key","value":"x"}`), http.StatusConflict, "already exists")
	wantError(t, e.do(t, "POST", "/secrets", `{"name":"a{b}","value":"x"}`), http.StatusBadRequest, "must not contain")

	for _, path := range []string{"/secrets/" + id, "/secrets/openai-key", "/secrets"} {
		r := e.do(t, "GET", path, "")
		if r.status != http.StatusOK || strings.Contains(string(r.body), "sk-top-secret") || !strings.Contains(string(r.body), id) {
			t.Errorf("GET %s: %d %s", path, r.status, r.body)
		}
	}
	r = e.do(t, "POST", "/secrets/"+id, `{"value":"sk-2"}`)
	if r.status != http.StatusOK || r.json(t)["currentVersion"] != float64(2) || strings.Contains(string(r.body), "sk-2") {
		t.Errorf("update: %d %s", r.status, r.body)
	}

	other := teamKey(t, e, "other", store.Limits{})
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/secrets/" + id, ""}, {"GET", "/secrets/openai-key", ""},
		{"POST", "/secrets/" + id, `{"value":"stolen"}`}, {"DELETE", "/secrets/" + id, ""},
	} {
		wantError(t, e.doKey(t, c.method, c.path, c.body, map[string]string{"X-API-KEY": other}), http.StatusNotFound, "not found")
	}
	r = e.doKey(t, "GET", "/secrets", "", map[string]string{"X-API-KEY": other})
	if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != "[]" {
		t.Errorf("other team's list: %d %s", r.status, r.body)
	}
	// The other team's own secret of the same name is its own.
	if r := e.doKey(t, "POST", "/secrets", `{"name":"openai-key","value":"theirs"}`, map[string]string{"X-API-KEY": other}); r.status != http.StatusCreated {
		t.Errorf("other team's create: %d %s", r.status, r.body)
	}

	for _, n := range []string{"k0", "k1", "k2"} {
		if r := e.do(t, "POST", "/secrets", `{"name":"`+n+`","value":"v"}`); r.status != http.StatusCreated {
			t.Fatalf("create %s: %d %s", n, r.status, r.body)
		}
	}
	r = e.do(t, "GET", "/secrets?limit=1", "")
	if len(r.list(t)) != 1 || r.header.Get("X-Next-Token") == "" {
		t.Errorf("first page: %s next %q", r.body, r.header.Get("X-Next-Token"))
	}
	r = e.do(t, "GET", "/secrets?limit=1&nextToken="+r.header.Get("X-Next-Token"), "")
	if l := r.list(t); len(l) != 1 || l[0]["secretID"] == id {
		t.Errorf("second page: %s", r.body)
	}

	if r := e.do(t, "DELETE", "/secrets/"+id, ""); r.status != http.StatusNoContent {
		t.Errorf("delete: %d %s", r.status, r.body)
	}
	wantError(t, e.do(t, "DELETE", "/secrets/"+id, ""), http.StatusNotFound, "not found")
	wantError(t, e.do(t, "GET", "/secrets/"+id, ""), http.StatusNotFound, "not found")
}

// Private ports: allowPublicTraffic false returns a trafficAccessToken at
// create and connect, getInfo reports the network as asked, and public
// sandboxes send null.
func TestPrivatePortsAtCreate(t *testing.T) {
	e := newEnv(t, "")
	sb := e.create(t, `{"templateID":"base","network":{"allowPublicTraffic":false,"maskRequestHost":"localhost:${PORT}","rules":{"API.example.com":[{"transform":{"headers":{"Authorization":"Bearer ${e2b.secrets.k}"}}}]}}}`)
	id := sb["sandboxID"].(string)
	tok, _ := sb["trafficAccessToken"].(string)
	if len(tok) < 32 || tok == sb["envdAccessToken"] {
		t.Fatalf("create: %v", sb)
	}
	r := e.do(t, "POST", "/v2/sandboxes/"+id+"/connect", `{"timeout":60}`)
	if r.json(t)["trafficAccessToken"] != tok {
		t.Errorf("connect: %s", r.body)
	}
	r = e.do(t, "GET", "/sandboxes/"+id, "")
	if !strings.Contains(string(r.body), `"allowPublicTraffic":false`) || !strings.Contains(string(r.body), `"maskRequestHost":"localhost:${PORT}"`) ||
		!strings.Contains(string(r.body), `"api.example.com":[{"transform":{"headers":{"Authorization":"Bearer ${e2b.secrets.k}"}}}]`) ||
		strings.Contains(string(r.body), tok) {
		t.Errorf("getInfo: %s", r.body)
	}
	r = e.do(t, "PUT", "/sandboxes/"+id+"/network", `{"rules":{"*.example.org":[{"transform":{"headers":{"X-K":"v"}}}]}}`)
	if r.status != http.StatusNoContent {
		t.Fatalf("update: %d %s", r.status, r.body)
	}
	if tr, _ := e.m.Traffic(id); len(tr.Rules) != 1 || tr.Rules["*.example.org"][0].Headers["X-K"] != "v" || tr.AccessToken != tok {
		t.Errorf("after update: %+v", tr)
	}
	pub := e.create(t, `{"templateID":"base"}`)
	if v, ok := pub["trafficAccessToken"]; !ok || v != nil {
		t.Errorf("public sandbox trafficAccessToken = %v (present %v), want null", v, ok)
	}
}
