package restapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/restapi"
	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
)

var uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// committingFake lets the fake runtime back a template.Builder. These
// tests run no builds (they need real sandboxes): they seed built
// templates in the store and drive tags and creates through the API.
type committingFake struct{ *fake.Fake }

func (committingFake) Commit(context.Context, string, string) error {
	return errors.New("the restapi tests run no template builds")
}

// newTemplateEnv is newEnv with a real template registry, which the
// sandbox manager resolves templates through too. The template "app" has
// two builds: b1 (1 CPU) tagged v1 and default, b2 (2 CPUs) tagged v2.
func newTemplateEnv(t *testing.T) *env {
	t.Helper()
	e, _ := newTemplateEnvWith(t, nil)
	return e
}

// newTemplateEnvWith is newTemplateEnv with the registry configured by
// configure; it also returns the registry's dir.
func newTemplateEnvWith(t *testing.T, configure func(*template.RegistryConfig)) (*env, string) {
	t.Helper()
	return newTemplateEnvAs(t, configure, nil)
}

// newTemplateEnvAs is newTemplateEnvWith whose requests act for
// principals by their key (restapi.NewAs) when principals is not nil;
// "app" is then the template of the team of e.key.
func newTemplateEnvAs(t *testing.T, configure func(*template.RegistryConfig), principals map[string]store.Principal) (*env, string) {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "sandpit.db"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, rt: fake.New(fake.Options{}), logs: &syncBuffer{}}
	log := slog.New(slog.NewJSONHandler(e.logs, nil))
	builder, err := template.NewBuilder(template.BuilderConfig{Runtime: committingFake{e.rt}, LayerDir: filepath.Join(dir, "layers")})
	if err != nil {
		t.Fatal(err)
	}
	rcfg := template.RegistryConfig{
		Dir: filepath.Join(dir, "templates"), Store: st, Snapshots: st, Builder: builder,
		Builtin: []*template.Template{{ID: "base"}},
	}
	if configure != nil {
		configure(&rcfg)
	}
	reg, err := template.NewRegistry(ctx, rcfg)
	if err != nil {
		t.Fatal(err)
	}
	var info store.KeyInfo
	e.key, info, err = st.CreateKey(ctx, store.NewKey{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	team := info.TeamID
	if principals != nil {
		e.key = keyA
		team = principals[keyA].Team.ID
	}
	now := time.Now()
	if err := st.PutTemplate(ctx, store.TemplateRecord{ID: "tpl1", Names: []string{"app"}, TeamID: team, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	for i, b := range []struct {
		id   string
		cpus int
		tags []string
	}{{"b1", 1, []string{"v1", "default"}}, {"b2", 2, []string{"v2"}}} {
		spec, _ := json.Marshal(template.Template{CPUCount: b.cpus, MemoryMB: 512})
		at := now.Add(time.Duration(i) * time.Second)
		if err := st.PutBuild(ctx, store.BuildRecord{ID: b.id, TemplateID: "tpl1", Status: template.StatusReady, Spec: spec, CreatedAt: at, FinishedAt: at}); err != nil {
			t.Fatal(err)
		}
		if err := st.SetTags(ctx, "tpl1", b.id, b.tags, at); err != nil {
			t.Fatal(err)
		}
	}
	e.m, err = sandbox.NewManager(sandbox.Config{Runtime: e.rt, Store: st, Templates: reg, Snapshots: reg, Logger: log, MaxTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cfg := restapi.Config{Manager: e.m, Keys: st, Logger: log, Templates: reg}
	e.cfg = cfg
	if principals != nil {
		e.h = restapi.NewAs(cfg, principals)
	} else {
		e.h = restapi.New(cfg)
	}
	t.Cleanup(func() {
		_ = e.m.Close(context.Background())
		_ = reg.Close()
		_ = e.rt.Close()
		_ = st.Close()
	})
	return e, rcfg.Dir
}

func TestGetTemplateTags(t *testing.T) {
	e := newTemplateEnv(t)
	for _, ref := range []string{"app", "tpl1", "team/app:v2"} {
		r := e.do(t, "GET", "/templates/"+encodeURIComponent(ref)+"/tags", "")
		if r.status != http.StatusOK {
			t.Fatalf("tags of %s: %d %s", ref, r.status, r.body)
		}
		l := r.list(t)
		if len(l) != 3 {
			t.Fatalf("tags of %s: %s", ref, r.body)
		}
		for i, want := range [][2]string{{"default", "b1"}, {"v1", "b1"}, {"v2", "b2"}} {
			if l[i]["tag"] != want[0] || l[i]["buildID"] != want[1] {
				t.Fatalf("tag %d of %s = %v, want %v", i, ref, l[i], want)
			}
			if ts, _ := l[i]["createdAt"].(string); ts == "" {
				t.Fatalf("tag %d has no createdAt: %v", i, l[i])
			} else if _, err := time.Parse(time.RFC3339, ts); err != nil {
				t.Fatalf("createdAt %q: %v", ts, err)
			}
		}
	}
	// A builtin has no build; its build ID is still a UUID (the Python
	// SDK parses it as one), the same in the tags and the template list.
	l := e.do(t, "GET", "/templates/base/tags", "").list(t)
	if len(l) != 1 || l[0]["tag"] != "default" {
		t.Fatalf("tags of base: %v", l)
	}
	baseBuild, _ := l[0]["buildID"].(string)
	if !uuidRe.MatchString(baseBuild) {
		t.Errorf("build ID of base %q is not a UUID", baseBuild)
	}
	for _, tpl := range e.do(t, "GET", "/templates", "").list(t) {
		if tpl["templateID"] == "base" && tpl["buildID"] != baseBuild {
			t.Errorf("template list says base's build is %v, its tags say %s", tpl["buildID"], baseBuild)
		}
	}
	wantError(t, e.do(t, "GET", "/templates/nope/tags", ""), 404, `"nope"`)
	// The route takes any second segment; only "tags" is served.
	wantError(t, e.do(t, "GET", "/templates/app/other", ""), 404, "no such endpoint")
	wantError(t, e.do(t, "DELETE", "/templates/app/other", ""), 404, "no such endpoint")
	wantError(t, e.do(t, "POST", "/templates/app/tags", ""), 405, "not allowed")
	wantError(t, e.doKey(t, "GET", "/templates/app/tags", "", nil), 401, "API key")
	// /templates/aliases/{alias} still answers beside it.
	r := e.do(t, "GET", "/templates/aliases/app", "")
	if r.status != http.StatusOK || r.json(t)["templateID"] != "tpl1" {
		t.Fatalf("alias lookup: %d %s", r.status, r.body)
	}
	wantError(t, e.do(t, "GET", "/templates/aliases/nope", ""), 404, "nope")
}

func TestAssignAndRemoveTemplateTags(t *testing.T) {
	e := newTemplateEnv(t)
	cpus := func(ref string) float64 {
		t.Helper()
		id := e.create(t, `{"templateID":"`+ref+`"}`)["sandboxID"].(string)
		return e.do(t, "GET", "/sandboxes/"+id, "").json(t)["cpuCount"].(float64)
	}
	if got := cpus("app"); got != 1 {
		t.Fatalf("app (default) started from a %v-CPU build, want b1", got)
	}
	if got := cpus("app:v2"); got != 2 {
		t.Fatalf("app:v2 started from a %v-CPU build, want b2", got)
	}
	wantError(t, e.do(t, "POST", "/v2/sandboxes", `{"templateID":"app:v9"}`), 404, `template "app" has no tag "v9"`)

	r := e.do(t, "POST", "/templates/tags", `{"target":"app:v2","tags":["default","prod"]}`)
	if r.status != http.StatusCreated {
		t.Fatalf("assign: %d %s", r.status, r.body)
	}
	if m := r.json(t); m["buildID"] != "b2" || len(m["tags"].([]any)) != 2 {
		t.Fatalf("assign: %s", r.body)
	}
	if got := cpus("app"); got != 2 {
		t.Fatalf("app after moving default started from a %v-CPU build, want b2", got)
	}
	for _, c := range []struct {
		body   string
		status int
		msg    string
	}{
		{``, 400, "body is required"},
		{`{"target":"app:v1"}`, 400, "at least one tag"},
		{`{"target":"app:v1","tags":["no spaces"]}`, 400, "invalid tag"},
		{`{"target":"app:v9","tags":["x"]}`, 404, `"v9"`},
		{`{"target":"nope:v1","tags":["x"]}`, 404, `"nope"`},
		{`{"target":"base","tags":["x"]}`, 403, "built into sandpit"},
	} {
		wantError(t, e.do(t, "POST", "/templates/tags", c.body), c.status, c.msg)
	}

	for _, c := range []struct {
		body   string
		status int
		msg    string
	}{
		{``, 400, "body is required"},
		{`{"name":"app","tags":[]}`, 400, "at least one tag"},
		{`{"name":"app:v1","tags":["v1"]}`, 400, "without a tag"},
		{`{"name":"app","tags":["v1","v9"]}`, 404, `"v9"`},
		{`{"name":"nope","tags":["v1"]}`, 404, `"nope"`},
	} {
		wantError(t, e.do(t, "DELETE", "/templates/tags", c.body), c.status, c.msg)
	}
	r = e.do(t, "DELETE", "/templates/tags", `{"name":"app","tags":["v1","default"]}`)
	if r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("remove: %d %s", r.status, r.body)
	}
	wantError(t, e.do(t, "POST", "/v2/sandboxes", `{"templateID":"app:v1"}`), 404, `template "app" has no tag "v1"`)
	wantError(t, e.do(t, "POST", "/v2/sandboxes", `{"templateID":"app"}`), 404, `template "app" has no tag "default"`)
	// The name still exists: other tags of it point at builds.
	if r := e.do(t, "GET", "/templates/aliases/app", ""); r.status != http.StatusOK {
		t.Fatalf("alias of a template without a default tag: %d %s", r.status, r.body)
	}
	if l := e.do(t, "GET", "/templates/app/tags", "").list(t); len(l) != 2 || l[0]["tag"] != "prod" || l[1]["tag"] != "v2" {
		t.Fatalf("tags after removal: %v", l)
	}
}

// TestListTemplatesFields checks every field of E2B's template list
// entry, which `e2b template list` prints: builtins are named, public and
// dated (the data dir's first start, the same after a restart); disk and
// envd version fall back to the server's; spawns count creates.
func TestListTemplatesFields(t *testing.T) {
	e, dir := newTemplateEnvWith(t, nil)
	e.create(t, `{"templateID":"base"}`)
	e.create(t, `{"templateID":"app"}`)
	e.create(t, `{"templateID":"app"}`)
	byID := map[string]map[string]any{}
	for _, tpl := range e.do(t, "GET", "/templates", "").list(t) {
		byID[tpl["templateID"].(string)] = tpl
	}
	for _, k := range []string{"templateID", "buildID", "cpuCount", "memoryMB", "diskSizeMB", "envdVersion", "public", "aliases", "names",
		"createdAt", "updatedAt", "createdBy", "lastSpawnedAt", "spawnCount", "buildCount", "buildStatus"} {
		for id, tpl := range byID {
			if _, ok := tpl[k]; !ok {
				t.Errorf("template %s lacks %s: %v", id, k, tpl)
			}
		}
	}
	base, app := byID["base"], byID["tpl1"]
	if base == nil || app == nil {
		t.Fatalf("template list: %v", byID)
	}
	if fmt.Sprint(base["aliases"]) != "[base]" || fmt.Sprint(base["names"]) != "[base]" || base["public"] != true {
		t.Errorf("base: aliases %v, names %v, public %v; want [base], [base], true", base["aliases"], base["names"], base["public"])
	}
	if fmt.Sprint(app["aliases"]) != "[app]" || app["public"] != false || app["buildCount"] != 2.0 {
		t.Errorf("app: aliases %v, public %v, buildCount %v", app["aliases"], app["public"], app["buildCount"])
	}
	created, err := time.Parse(time.RFC3339Nano, base["createdAt"].(string))
	if err != nil || time.Since(created) > time.Minute || time.Since(created) < 0 {
		t.Errorf("base created at %v (%v), want about now", base["createdAt"], err)
	}
	for id, tpl := range byID {
		if tpl["diskSizeMB"] != float64(sandbox.DefaultDiskMB) || tpl["envdVersion"] != template.DefaultEnvdVersion || tpl["createdBy"] != nil {
			t.Errorf("%s: diskSizeMB %v, envdVersion %v, createdBy %v", id, tpl["diskSizeMB"], tpl["envdVersion"], tpl["createdBy"])
		}
	}
	if base["spawnCount"] != 1.0 || app["spawnCount"] != 2.0 || base["lastSpawnedAt"] == nil {
		t.Errorf("spawns: base %v (last %v), app %v", base["spawnCount"], base["lastSpawnedAt"], app["spawnCount"])
	}

	// A second registry on the same dir dates the builtins the same.
	reg, err := template.NewRegistry(t.Context(), template.RegistryConfig{Dir: dir, Store: e.st, Builder: mustBuilder(t),
		Builtin: []*template.Template{{ID: "base"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	infos, err := reg.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		if in.Builtin && !in.CreatedAt.Equal(created) {
			t.Errorf("after a restart base was created at %v, before at %v", in.CreatedAt, created)
		}
	}
}

func mustBuilder(t *testing.T) *template.Builder {
	t.Helper()
	b, err := template.NewBuilder(template.BuilderConfig{Runtime: committingFake{fake.New(fake.Options{})}, LayerDir: filepath.Join(t.TempDir(), "layers")})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
