package cluster

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sandpit-dev/sandpit/internal/store"
)

// Keys live in the API as hashes; the KeyCache knows a new key and forgets
// a revoked one by its watch.
func TestKeysInTheAPI(t *testing.T) {
	c := client(t)
	ctx := t.Context()
	team, err := c.CreateTeam(ctx, "keys-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTeam(ctx, "keys-a"); err == nil {
		t.Error("a second team keys-a was created")
	}
	kc := c.WatchKeys(ctx)
	plain, k, err := c.CreateKey(ctx, "ci", "keys-a", false)
	if err != nil {
		t.Fatal(err)
	}
	if !store.WellFormedKey(plain) || k.Spec.TeamID != team.Spec.ID || k.Spec.Hash != store.KeyHashHex(plain) {
		t.Fatalf("key %q: %+v", plain, k.Spec)
	}
	raw, err := c.apiKeys().Get(ctx, k.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(raw.Object); strings.Contains(string(b), plain) {
		t.Errorf("the APIKey object holds the key: %s", b)
	}
	if _, _, err := c.CreateKey(ctx, "x", "no-such-team", false); err == nil {
		t.Error("a key was made for a team that does not exist")
	}
	waitFor(t, 10*time.Second, "the new key in the cache", func() bool {
		id, ok := kc.Team(plain)
		return ok && id == team.Spec.ID
	})
	if _, ok := kc.Team("e2b_" + strings.Repeat("0", 40)); ok {
		t.Error("an unknown key was accepted")
	}
	ks, err := c.ListKeys(ctx, "keys-a")
	if err != nil || len(ks) != 1 || ks[0].Name != k.Name {
		t.Fatalf("ListKeys(keys-a) = %v, %v", ks, err)
	}
	got, err := c.GetKey(ctx, k.KeyID())
	if err != nil || got.Name != k.Name {
		t.Fatalf("GetKey(%s) = %v, %v", k.KeyID(), got, err)
	}
	if _, err := c.RevokeKey(ctx, got); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the revoked key out of the cache", func() bool {
		_, ok := kc.Team(plain)
		return !ok
	})
}

// Behind the Router a team sees, reaches and kills only its own
// sandboxes; the nodes get the shared key, never the team's.
func TestRouterScopesByTeam(t *testing.T) {
	c := client(t)
	ctx := t.Context()
	const shared = "e2b_" + "1111111111111111111111111111111111111111"
	f := newFakeNode(t, "team-n", shared)
	n := registerNode(t, c, f.name, f.addr(), 5*time.Second)
	go n.Run(ctx)
	keys := map[string]string{}
	kc := c.WatchKeys(ctx)
	for _, name := range []string{"scope-a", "scope-b"} {
		if _, err := c.CreateTeam(ctx, name); err != nil {
			t.Fatal(err)
		}
		plain, _, err := c.CreateKey(ctx, "t", name, false)
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = plain
		waitFor(t, 10*time.Second, "the key of "+name, func() bool { _, ok := kc.Team(plain); return ok })
	}
	api := httptest.NewServer(NewRouter(RouterConfig{
		Client: c, Placer: placerOn(c, 1, "team-n"), APIKey: shared, Keys: kc,
	}))
	t.Cleanup(api.Close)
	do := func(method, path, key string) (int, []map[string]any) {
		t.Helper()
		var body *strings.Reader
		if method == "POST" {
			body = strings.NewReader(`{"templateID":"base","timeout":60}`)
		} else {
			body = strings.NewReader("")
		}
		req, _ := http.NewRequest(method, api.URL+path, body)
		req.Header.Set("X-API-KEY", key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out []map[string]any
		if path == "/sandboxes" && method == "GET" {
			_ = json.NewDecoder(res.Body).Decode(&out)
		} else if method == "POST" {
			var one map[string]any
			_ = json.NewDecoder(res.Body).Decode(&one)
			out = []map[string]any{one}
		}
		return res.StatusCode, out
	}
	ids := map[string]string{}
	for team, key := range keys {
		code, out := do("POST", "/sandboxes", key)
		if code != http.StatusCreated {
			t.Fatalf("create as %s: %d", team, code)
		}
		ids[team], _ = out[0]["sandboxID"].(string)
		sb, err := c.GetSandbox(ctx, ids[team])
		if err != nil {
			t.Fatal(err)
		}
		tm, _ := c.GetTeam(ctx, team)
		if sb.Spec.TeamID != tm.Spec.ID || sb.Labels[TeamLabel] != tm.Spec.ID {
			t.Errorf("Sandbox of %s: teamID %q label %q, want %s", team, sb.Spec.TeamID, sb.Labels[TeamLabel], tm.Spec.ID)
		}
	}
	if code, _ := do("GET", "/sandboxes", "e2b_"+strings.Repeat("2", 40)); code != http.StatusUnauthorized {
		t.Errorf("list with an unknown key: %d, want 401", code)
	}
	for team, key := range keys {
		other := ids["scope-a"]
		if team == "scope-a" {
			other = ids["scope-b"]
		}
		_, listed := do("GET", "/sandboxes", key)
		var got []string
		for _, l := range listed {
			got = append(got, l["sandboxID"].(string))
		}
		if !slices.Equal(got, []string{ids[team]}) {
			t.Errorf("%s lists %v, want only %s", team, got, ids[team])
		}
		if code, _ := do("GET", "/sandboxes/"+other, key); code != http.StatusNotFound {
			t.Errorf("%s gets the other team's sandbox: %d, want 404", team, code)
		}
		if code, _ := do("DELETE", "/sandboxes/"+other, key); code != http.StatusNotFound {
			t.Errorf("%s kills the other team's sandbox: %d, want 404", team, code)
		}
		if code, _ := do("GET", "/sandboxes/"+ids[team], key); code != http.StatusOK {
			t.Errorf("%s gets its own sandbox: %d, want 200", team, code)
		}
	}
	// A template built through the API is recorded with its team.
	req, _ := http.NewRequest("POST", api.URL+"/v3/templates", strings.NewReader(`{"name":"mytpl"}`))
	req.Header.Set("X-API-KEY", keys["scope-a"])
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	t.Cleanup(func() {
		_ = c.dyn.Resource(templatesGVR).Namespace(c.ns).Delete(context.Background(), "tpl-team-n", metav1.DeleteOptions{})
	})
	ts, err := c.ListTemplates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ta, _ := c.GetTeam(ctx, "scope-a")
	if i := slices.IndexFunc(ts, func(st SandboxTemplate) bool { return st.Name == "tpl-team-n" }); res.StatusCode != http.StatusAccepted || i < 0 || ts[i].Spec.TeamID != ta.Spec.ID {
		t.Errorf("template built as scope-a: %d, recorded %+v, want teamID %s", res.StatusCode, ts, ta.Spec.ID)
	}

	// The shared key is the operator's: it sees only sandboxes of no team.
	if _, listed := do("GET", "/sandboxes", shared); len(listed) != 0 {
		t.Errorf("the shared key lists %v, want none", listed)
	}
	for team, key := range keys {
		if code, _ := do("DELETE", "/sandboxes/"+ids[team], key); code/100 != 2 {
			t.Errorf("%s kills its own sandbox: %d", team, code)
		}
	}
}
