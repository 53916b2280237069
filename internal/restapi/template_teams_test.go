package restapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// The keys of the teams tests: keyA is an admin of team alpha, which owns
// "app"; keyA2 is a key of alpha that is not an admin; keyB is an admin
// of team beta.
const (
	keyA  = "e2b_" + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	keyA2 = "e2b_" + "a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2"
	keyB  = "e2b_" + "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

	teamAID = "0a0a0a0a-0000-4000-8000-00000000000a"
	teamBID = "0b0b0b0b-0000-4000-8000-00000000000b"
)

// teamPrincipals returns who keyA, keyA2 and keyB act for, alpha with
// limits la and beta with lb.
func teamPrincipals(la, lb store.Limits) map[string]store.Principal {
	alpha := store.Team{ID: teamAID, Name: "alpha", Limits: la}
	beta := store.Team{ID: teamBID, Name: "beta", Limits: lb}
	return map[string]store.Principal{
		keyA:  {KeyID: "ka", KeyName: "alpha-admin", Admin: true, Team: alpha},
		keyA2: {KeyID: "ka2", KeyName: "alpha-user", Team: alpha},
		keyB:  {KeyID: "kb", KeyName: "beta-admin", Admin: true, Team: beta},
	}
}

func newTeamsEnv(t *testing.T, configure func(*template.RegistryConfig), la, lb store.Limits) (*env, string) {
	t.Helper()
	return newTemplateEnvAs(t, configure, teamPrincipals(la, lb))
}

func (e *env) as(t *testing.T, key, method, target, body string) response {
	t.Helper()
	return e.doKey(t, method, target, body, map[string]string{"X-API-KEY": key})
}

// call is one request of the teams tests; %s in path and body stands
// for a template ref.
type call struct{ method, path, body string }

func (c call) String() string { return c.method + " " + c.path + " " + c.body }

// wantAsUnknown checks that key's request about ref answers exactly as
// the same request about unknown, a ref that names nothing, with the
// names swapped.
func (e *env) wantAsUnknown(t *testing.T, key string, c call, ref, unknown string) {
	t.Helper()
	fill := func(s, ref string) string { return strings.ReplaceAll(s, "%s", ref) }
	got := e.as(t, key, c.method, fill(c.path, ref), fill(c.body, ref))
	want := e.as(t, key, c.method, fill(c.path, unknown), fill(c.body, unknown))
	if want.status != http.StatusNotFound {
		t.Fatalf("%s about %s, which does not exist: %d %s, want 404", c, unknown, want.status, want.body)
	}
	wantBody := strings.ReplaceAll(string(want.body), unknown, ref)
	if got.status != want.status || string(got.body) != wantBody {
		t.Errorf("%s about %s of another team: %d %s; want it to answer as an unknown one: %d %s", c, ref, got.status, got.body, want.status, wantBody)
	}
}

// TestTemplatesOfAnotherTeam: another team's private template answers
// every call exactly as an unknown one; made public by its team's admin,
// every team may see and start it but still not change it; names stay
// global.
func TestTemplatesOfAnotherTeam(t *testing.T) {
	e, _ := newTeamsEnv(t, nil, store.Limits{}, store.Limits{})
	// A build of alpha's app, waiting for its steps.
	r := e.as(t, keyA, "POST", "/v3/templates", `{"name": "app", "tags": ["v3"]}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("alpha requesting a build of its app: %d %s", r.status, r.body)
	}
	waiting, _ := r.json(t)["buildID"].(string)

	reads := []call{
		{"GET", "/templates/%s/tags", ""},
		{"GET", "/templates/aliases/%s", ""},
		{"POST", "/v2/sandboxes", `{"templateID": "%s"}`},
	}
	changes := []call{
		{"DELETE", "/templates/%s", ""},
		{"POST", "/templates/tags", `{"target": "%s:v1", "tags": ["x"]}`},
		{"DELETE", "/templates/tags", `{"name": "%s", "tags": ["v1"]}`},
		{"PATCH", "/templates/%s", `{"public": true}`},
		{"PATCH", "/v2/templates/%s", `{"public": false}`},
	}
	builds := []call{
		{"GET", "/templates/tpl1/builds/%s/status", ""},
		{"POST", "/v2/templates/tpl1/builds/%s", `{"fromTemplate": "base", "steps": []}`},
	}
	listed := func(key string) map[string]map[string]any {
		t.Helper()
		out := map[string]map[string]any{}
		for _, tpl := range e.as(t, key, "GET", "/templates", "").list(t) {
			out[tpl["templateID"].(string)] = tpl
		}
		return out
	}
	check := func(public bool) {
		t.Helper()
		for _, ref := range []string{"app", "tpl1"} {
			if !public {
				for _, c := range reads {
					e.wantAsUnknown(t, keyB, c, ref, "nope")
				}
			}
			for _, c := range changes {
				e.wantAsUnknown(t, keyB, c, ref, "nope")
			}
		}
		for _, bid := range []string{"b1", waiting} {
			for _, c := range builds {
				e.wantAsUnknown(t, keyB, c, bid, "b9")
			}
		}
		wantError(t, e.as(t, keyB, "POST", "/v3/templates", `{"name": "app"}`), 409, `template name "app" is taken`)
		if tpl, ok := listed(keyB)["tpl1"]; ok != public || ok && tpl["public"] != true {
			t.Errorf("beta's template list has alpha's app: %v (%v), want %v and public", ok, tpl, public)
		}
		if tpl := listed(keyA)["tpl1"]; tpl == nil || tpl["public"] != public {
			t.Errorf("alpha's template list: app %v, want it with public %v", tpl, public)
		}
		for _, key := range []string{keyA, keyB} {
			if base := listed(key)["base"]; base == nil || base["public"] != true {
				t.Errorf("base in the list of %s: %v, want it public", key[:6], base)
			}
		}
	}
	check(false)
	if l := listed(keyB); len(l) != 1 {
		t.Errorf("beta sees %d templates, want only base: %v", len(l), l)
	}
	// Beta starts builtins as every team does.
	if r := e.as(t, keyB, "POST", "/v2/sandboxes", `{"templateID": "base"}`); r.status != http.StatusCreated {
		t.Fatalf("beta starting base: %d %s", r.status, r.body)
	}

	// Only an admin of alpha makes app public.
	wantError(t, e.as(t, keyA2, "PATCH", "/templates/app", `{"public": true}`), 403, "only admin keys")
	wantError(t, e.as(t, keyA, "PATCH", "/templates/app", `{}`), 400, "public")
	wantError(t, e.as(t, keyA, "PATCH", "/templates/base", `{"public": false}`), 403, "built into sandpit")
	r = e.as(t, keyA, "PATCH", "/v2/templates/app", `{"public": true}`)
	if r.status != http.StatusOK || fmt.Sprint(r.json(t)["names"]) != "[app]" {
		t.Fatalf("alpha's admin making app public: %d %s", r.status, r.body)
	}
	check(true)
	if r := e.as(t, keyA, "POST", "/v3/templates", `{"name": "app"}`); r.status != http.StatusAccepted || r.json(t)["public"] != true {
		t.Errorf("a build of the public app: %d %s, want it public", r.status, r.body)
	}
	r = e.as(t, keyB, "POST", "/v2/sandboxes", `{"templateID": "app:v1"}`)
	if r.status != http.StatusCreated || r.json(t)["templateID"] != "tpl1" {
		t.Fatalf("beta starting alpha's public app: %d %s", r.status, r.body)
	}
	if r := e.as(t, keyB, "GET", "/templates/aliases/app", ""); r.status != http.StatusOK {
		t.Errorf("beta looking up alpha's public app: %d %s", r.status, r.body)
	}
	if l := e.as(t, keyB, "GET", "/templates/app/tags", "").list(t); len(l) != 3 {
		t.Errorf("beta reading the tags of alpha's public app: %v", l)
	}
	// And private again.
	if r := e.as(t, keyA, "PATCH", "/templates/tpl1", `{"public": false}`); r.status != http.StatusOK {
		t.Fatalf("making app private: %d %s", r.status, r.body)
	}
	check(false)
	// Alpha still does everything with its own.
	if r := e.as(t, keyA2, "POST", "/templates/tags", `{"target": "app:v1", "tags": ["prod"]}`); r.status != http.StatusCreated {
		t.Errorf("alpha tagging its app: %d %s", r.status, r.body)
	}
	if r := e.as(t, keyA2, "GET", "/templates/tpl1/builds/"+waiting+"/status", ""); r.status != http.StatusOK {
		t.Errorf("alpha reading its build: %d %s", r.status, r.body)
	}
	if r := e.as(t, keyA2, "DELETE", "/templates/app", ""); r.status != http.StatusNoContent {
		t.Errorf("alpha removing its app: %d %s", r.status, r.body)
	}
	// The name is free again, for any team.
	if r := e.as(t, keyB, "POST", "/v3/templates", `{"name": "app"}`); r.status != http.StatusAccepted {
		t.Errorf("beta taking the freed name: %d %s", r.status, r.body)
	}
}

// TestTemplateBuildLimits: a build whose sandboxes would be larger than
// the team's per-sandbox maximums is a 400 naming the maximum.
func TestTemplateBuildLimits(t *testing.T) {
	e, _ := newTeamsEnv(t, nil, store.Limits{MaxCPUs: 2, MaxMemoryMB: 1024}, store.Limits{})
	wantError(t, e.as(t, keyA, "POST", "/v3/templates", `{"name": "big", "cpuCount": 4}`), 400, "cpuCount 4 is above team alpha's maximum of 2 CPUs")
	wantError(t, e.as(t, keyA, "POST", "/v3/templates", `{"name": "big", "cpuCount": 2, "memoryMB": 2048}`), 400,
		"memoryMB 2048 is above team alpha's maximum of 1024 MB")
	if r := e.as(t, keyA, "POST", "/v3/templates", `{"name": "big", "cpuCount": 2, "memoryMB": 1024}`); r.status != http.StatusAccepted {
		t.Errorf("a build at the maximums: %d %s", r.status, r.body)
	}
	// Beta has no limits.
	if r := e.as(t, keyB, "POST", "/v3/templates", `{"name": "bigger", "cpuCount": 8, "memoryMB": 8192}`); r.status != http.StatusAccepted {
		t.Errorf("a build of a team without limits: %d %s", r.status, r.body)
	}
}

// TestTemplateStorageLimit: a team whose layers and uploads reach its
// MaxTemplateStorageMB can start no build and upload nothing more (429
// naming the limit and the usage) until it frees some; an upload may take
// only what is left. Another team's usage is its own.
func TestTemplateStorageLimit(t *testing.T) {
	e, _ := newTeamsEnv(t, nil, store.Limits{MaxTemplateStorageMB: 1}, store.Limits{MaxTemplateStorageMB: 3})
	const mb = 1 << 20
	ctx := t.Context()

	// Alpha: an upload over what is left is refused, one that fills it
	// is taken, and then nothing more.
	_, link := e.uploadLink(t, keyA, sha("big"))
	wantError(t, e.as(t, keyA, "PUT", link, strings.Repeat("x", mb+1)), 429, "MaxTemplateStorageMB 1 MB")
	_, late := e.uploadLink(t, keyA, sha("late"))
	_, link = e.uploadLink(t, keyA, sha("full"))
	if r := e.as(t, keyA, "PUT", link, strings.Repeat("x", mb)); r.status != http.StatusOK {
		t.Fatalf("an upload that fills the limit: %d %s", r.status, r.body)
	}
	const full = "the template storage of team alpha is at its limit: 1.0 MB used of MaxTemplateStorageMB 1 MB"
	wantError(t, e.as(t, keyA, "POST", "/v3/templates", `{"name": "more"}`), 429, full)
	wantError(t, e.as(t, keyA, "GET", "/templates/tpl1/files/"+sha("more"), ""), 429, full)
	wantError(t, e.as(t, keyA, "POST", "/v2/templates/tpl1/builds/b9", `{"fromTemplate": "base"}`), 429, full)
	// A link handed out before the limit was reached does not get round
	// it; what alpha has is still there for it.
	wantError(t, e.as(t, keyA, "PUT", late, "x"), 429, "1.0 MB used of MaxTemplateStorageMB 1 MB")
	if present, _ := e.uploadLink(t, keyA, sha("full")); !present {
		t.Error("alpha's upload is gone")
	}
	// Beta's storage is its own.
	_, link = e.uploadLink(t, keyB, sha("beta"))
	if r := e.as(t, keyB, "PUT", link, "beta's"); r.status != http.StatusOK {
		t.Fatalf("beta uploading: %d %s", r.status, r.body)
	}

	// Beta: its layers count, those of the builds its tags name.
	now := time.Now()
	if err := e.st.PutTemplate(ctx, store.TemplateRecord{ID: "tplb", Names: []string{"beta-app"}, TeamID: teamBID, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	req, _ := json.Marshal(map[string]any{"layerBytes": map[string]int64{"layer1": 2 * mb, "layer2": mb}})
	spec, _ := json.Marshal(template.Template{CPUCount: 1})
	if err := e.st.PutBuild(ctx, store.BuildRecord{ID: "bb1", TemplateID: "tplb", Status: template.StatusReady, Request: req, Spec: spec, CreatedAt: now, FinishedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetTags(ctx, "tplb", "bb1", []string{"default"}, now); err != nil {
		t.Fatal(err)
	}
	wantError(t, e.as(t, keyB, "POST", "/v3/templates", `{"name": "beta-app"}`), 429,
		"the template storage of team beta is at its limit: 3.0 MB used of MaxTemplateStorageMB 3 MB")
	if r := e.as(t, keyB, "DELETE", "/templates/tags", `{"name": "beta-app", "tags": ["default"]}`); r.status != http.StatusNoContent {
		t.Fatalf("removing beta's tag: %d %s", r.status, r.body)
	}
	if r := e.as(t, keyB, "POST", "/v3/templates", `{"name": "beta-app"}`); r.status != http.StatusAccepted {
		t.Errorf("a build once no tag names the layers: %d %s", r.status, r.body)
	}
}

// The names of builtin and ready-made templates, which every team starts,
// are built by admin keys only.
func TestReservedTemplateNamesNeedAnAdmin(t *testing.T) {
	e, _ := newTeamsEnv(t, func(c *template.RegistryConfig) {
		c.Builtin = append(c.Builtin, &template.Template{ID: "code-interpreter-v1"})
		c.Reserved = []string{"python"}
	}, store.Limits{}, store.Limits{})
	for _, name := range []string{"code-interpreter-v1", "python"} {
		wantError(t, e.as(t, keyA2, "POST", "/v3/templates", `{"name":"`+name+`"}`), http.StatusForbidden, "only an admin key")
		if r := e.as(t, keyA, "POST", "/v3/templates", `{"name":"`+name+`"}`); r.status != http.StatusAccepted {
			t.Errorf("admin build of %s = %d %s", name, r.status, r.body)
		}
	}
	if r := e.as(t, keyA2, "POST", "/v3/templates", `{"name":"my-python"}`); r.status != http.StatusAccepted {
		t.Errorf("a name of its own = %d %s", r.status, r.body)
	}
}
