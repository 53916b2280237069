package cluster

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestRouterKeepsTemplatesToTheirTeam: a team's template built through the
// API is another team's unknown template (list, start, read, tags, its
// name taken) until an update makes it public; a team key is no admin on
// the node, and a node's own keys API is not offered.
func TestRouterKeepsTemplatesToTheirTeam(t *testing.T) {
	c := client(t)
	ctx := t.Context()
	const shared = "e2b_" + "3333333333333333333333333333333333333333"
	f := newFakeNode(t, "tplteam-n", shared)
	n := registerNode(t, c, f.name, f.addr(), 5*time.Second)
	go n.Run(ctx)
	kc := c.WatchKeys(ctx)
	keys := map[string]string{}
	for _, name := range []string{"tpl-a", "tpl-b"} {
		if _, err := c.CreateTeam(ctx, name); err != nil {
			t.Fatal(err)
		}
		plain, _, err := c.CreateKey(ctx, "k", name, false)
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = plain
		waitFor(t, 10*time.Second, "the key of "+name, func() bool { _, ok := kc.Team(plain); return ok })
	}
	a, b := keys["tpl-a"], keys["tpl-b"]
	api := httptest.NewServer(NewRouter(RouterConfig{
		Client: c, Placer: placerOn(c, 1, f.name), APIKey: shared, Keys: kc,
	}))
	t.Cleanup(api.Close)
	do := func(method, path, key, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, api.URL+path, strings.NewReader(body))
		req.Header.Set("X-API-KEY", key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(out)
	}
	tpl := "tpl-" + f.name
	t.Cleanup(func() {
		_ = c.dyn.Resource(templatesGVR).Namespace(c.ns).Delete(context.Background(), tpl, metav1.DeleteOptions{})
	})
	if code, out := do("POST", "/v3/templates", a, `{"name":"mytpl-`+f.name+`"}`); code != http.StatusAccepted {
		t.Fatalf("team a builds a template: %d %s", code, out)
	}
	listed := func(key string) bool {
		_, out := do("GET", "/templates", key, "")
		var items []map[string]string
		if err := json.Unmarshal([]byte(out), &items); err != nil {
			t.Fatalf("template list %q: %v", out, err)
		}
		for _, it := range items {
			if it["templateID"] == tpl {
				return true
			}
		}
		return false
	}
	if !listed(a) || listed(b) {
		t.Errorf("template list: team a sees its template %v, team b sees it %v; want true, false", listed(a), listed(b))
	}
	for _, c := range []struct {
		who, method, path, body string
		want                    int
	}{
		{"a", "POST", "/sandboxes", `{"templateID":"` + tpl + `"}`, http.StatusCreated},
		{"b", "POST", "/sandboxes", `{"templateID":"` + tpl + `"}`, http.StatusNotFound},
		{"b", "POST", "/sandboxes", `{"templateID":"mytpl-` + f.name + `:v1"}`, http.StatusNotFound},
		{"a", "GET", "/templates/" + tpl, "", http.StatusOK},
		{"b", "GET", "/templates/" + tpl, "", http.StatusNotFound},
		{"b", "DELETE", "/templates/" + tpl, "", http.StatusNotFound},
		{"b", "POST", "/templates/tags", `{"target":"mytpl-` + f.name + `:v1","tags":["x"]}`, http.StatusNotFound},
		{"b", "POST", "/v3/templates", `{"name":"mytpl-` + f.name + `"}`, http.StatusConflict},
		{"b", "GET", "/sandpit/v1/keys", "", http.StatusNotImplemented},
		{"a", "GET", "/on-behalf-admin", "", http.StatusOK},
	} {
		key := a
		if c.who == "b" {
			key = b
		}
		code, out := do(c.method, c.path, key, c.body)
		if code != c.want {
			t.Errorf("team %s: %s %s: %d %s, want %d", c.who, c.method, c.path, code, out, c.want)
		}
		if c.path == "/on-behalf-admin" && out != "false" {
			t.Errorf("a team key reaches the node as admin=%q, want false", out)
		}
		if code == http.StatusNotFound && !strings.Contains(out, "not found") {
			t.Errorf("team %s: %s %s answers %q, not as an unknown template", c.who, c.method, c.path, out)
		}
	}
	// An update making it public (the node checks the key is an admin's)
	// lets every team start it, not change it.
	if code, out := do("PATCH", "/templates/"+tpl, a, `{"public":true}`); code != http.StatusOK {
		t.Fatalf("making the template public: %d %s", code, out)
	}
	if code, out := do("POST", "/sandboxes", b, `{"templateID":"`+tpl+`"}`); code != http.StatusCreated {
		t.Errorf("team b starts a public template: %d %s", code, out)
	}
	if !listed(b) {
		t.Error("team b does not list the public template")
	}
	if code, _ := do("DELETE", "/templates/"+tpl, b, ""); code != http.StatusNotFound {
		t.Errorf("team b deletes another team's public template: %d, want 404", code)
	}
	// A rebuild by its team keeps it public.
	if code, out := do("POST", "/v3/templates", a, `{"name":"mytpl-`+f.name+`"}`); code != http.StatusAccepted {
		t.Fatalf("team a rebuilds: %d %s", code, out)
	}
	st, err := c.dyn.Resource(templatesGVR).Namespace(c.ns).Get(ctx, tpl, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pub, _, _ := unstructured.NestedBool(st.Object, "spec", "public"); !pub {
		t.Errorf("a rebuild lost the template's public mark: %v", st.Object["spec"])
	}
}
