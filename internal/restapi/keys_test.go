package restapi_test

import (
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/restapi"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// keysEnv is an env whose API serves the keys API from its store and
// audits into rec.
func keysEnv(t *testing.T) (*env, *recorder) {
	t.Helper()
	e := newEnv(t, "")
	rec := &recorder{}
	e.h = restapi.New(restapi.Config{Manager: e.m, Keys: e.st, ExtraKey: extraKey, KeyAdmin: e.st, Audit: rec})
	return e, rec
}

// A key made over the API works once, shows its secret only in the create
// answer, is listed without it, and stops working when revoked.
func TestKeysCreateListRevoke(t *testing.T) {
	e, rec := keysEnv(t)
	r := e.do(t, "POST", "/sandpit/v1/keys", `{"name":"ci"}`)
	if r.status != 201 {
		t.Fatalf("create = %d %s", r.status, r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("create Cache-Control = %q, want no-store", r.header.Get("Cache-Control"))
	}
	created := r.json(t)
	secret, _ := created["key"].(string)
	id, _ := created["id"].(string)
	if !store.WellFormedKey(secret) || created["team"] != store.DefaultTeamName || created["admin"] != false ||
		created["name"] != "ci" || !strings.HasPrefix(secret, created["prefix"].(string)) {
		t.Fatalf("created = %v", created)
	}
	if r := e.as(t, secret, "GET", "/v2/sandboxes", ""); r.status != 200 {
		t.Fatalf("list with the new key = %d %s", r.status, r.body)
	}

	r = e.do(t, "GET", "/sandpit/v1/keys", "")
	if r.status != 200 {
		t.Fatalf("list = %d %s", r.status, r.body)
	}
	if strings.Contains(string(r.body), secret[len(store.KeyPrefix)+8:]) {
		t.Fatalf("the list shows the secret: %s", r.body)
	}
	keys := r.list(t)
	if len(keys) != 2 || keys[0]["name"] != "test" || keys[0]["current"] != true ||
		keys[1]["id"] != id || keys[1]["current"] != false || keys[1]["last_used_at"] == nil || keys[1]["revoked_at"] != nil {
		t.Fatalf("keys = %v", keys)
	}
	for _, k := range keys {
		if _, ok := k["key"]; ok {
			t.Errorf("listed key has a key field: %v", k)
		}
	}

	if r := e.do(t, "DELETE", "/sandpit/v1/keys/"+id, ""); r.status != 204 {
		t.Fatalf("revoke = %d %s", r.status, r.body)
	}
	wantError(t, e.as(t, secret, "GET", "/v2/sandboxes", ""), 401, "invalid API key")
	if r := e.do(t, "DELETE", "/sandpit/v1/keys/"+id, ""); r.status != 204 {
		t.Errorf("revoking again = %d %s", r.status, r.body)
	}
	keys = e.do(t, "GET", "/sandpit/v1/keys", "").list(t)
	if len(keys) != 2 || keys[1]["revoked_at"] == nil {
		t.Errorf("keys after revoke = %v", keys)
	}

	var actions []string
	for _, en := range rec.all() {
		if strings.HasPrefix(en.Action, "key.") {
			actions = append(actions, en.Action+" "+en.Target+" "+en.Result+" "+en.KeyName+" "+en.Detail)
			if strings.Contains(en.Detail, secret) {
				t.Errorf("audit detail holds the secret: %v", en)
			}
		}
	}
	want := []string{
		"key.create " + id + " 201 test name=ci team=default",
		"key.revoke " + id + " 204 test name=ci team=default",
		"key.revoke " + id + " 204 test name=ci team=default",
	}
	if strings.Join(actions, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit =\n%s\nwant\n%s", strings.Join(actions, "\n"), strings.Join(want, "\n"))
	}
}

// A team's key sees and revokes its own team's keys only; another team's
// key is as unknown as one that never existed. Admin keys see and act on
// every team.
func TestKeysAreTeamScoped(t *testing.T) {
	e, _ := keysEnv(t)
	keyB := teamKey(t, e, "b", store.Limits{})
	admin, _, err := e.st.CreateKey(t.Context(), store.NewKey{Name: "root", Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	aKeys := e.do(t, "GET", "/sandpit/v1/keys", "").list(t)
	bKeys := e.as(t, keyB, "GET", "/sandpit/v1/keys", "").list(t)
	if len(aKeys) != 2 || len(bKeys) != 1 || bKeys[0]["team"] != "b" {
		t.Fatalf("team a sees %v; team b sees %v", aKeys, bKeys)
	}
	aID := aKeys[0]["id"].(string)

	wantError(t, e.as(t, keyB, "GET", "/sandpit/v1/keys?team=default", ""), 403, "admin key")
	if r := e.as(t, keyB, "GET", "/sandpit/v1/keys?team=b", ""); r.status != 200 || len(r.list(t)) != 1 {
		t.Errorf("own team by name = %d %s", r.status, r.body)
	}
	got := e.as(t, keyB, "DELETE", "/sandpit/v1/keys/"+aID, "")
	want := e.as(t, keyB, "DELETE", "/sandpit/v1/keys/key_000000000000", "")
	wantError(t, got, 404, "no API key")
	if strings.ReplaceAll(string(got.body), aID, "ID") != strings.ReplaceAll(string(want.body), "key_000000000000", "ID") {
		t.Errorf("another team's key = %s; unknown = %s", got.body, want.body)
	}
	// A prefix is no way in either.
	wantError(t, e.as(t, keyB, "DELETE", "/sandpit/v1/keys/"+aKeys[0]["prefix"].(string), ""), 404, "no API key")
	if r := e.do(t, "GET", "/v2/sandboxes", ""); r.status != 200 {
		t.Fatalf("team b revoked team a's key: %d %s", r.status, r.body)
	}

	wantError(t, e.as(t, keyB, "POST", "/sandpit/v1/keys", `{"name":"x","team":"default"}`), 403, "another team")
	wantError(t, e.as(t, keyB, "POST", "/sandpit/v1/keys", `{"name":"x","admin":true}`), 403, "admin key")
	if r := e.as(t, keyB, "POST", "/sandpit/v1/keys", `{"name":"x","team":"b"}`); r.status != 201 || r.json(t)["team"] != "b" {
		t.Errorf("own team named = %d %s", r.status, r.body)
	}

	all := e.as(t, admin, "GET", "/sandpit/v1/keys", "").list(t)
	if len(all) != 4 {
		t.Errorf("admin sees %d keys, want 4: %v", len(all), all)
	}
	if r := e.as(t, admin, "GET", "/sandpit/v1/keys?team=b", ""); len(r.list(t)) != 2 {
		t.Errorf("admin ?team=b = %s", r.body)
	}
	r := e.as(t, admin, "POST", "/sandpit/v1/keys", `{"name":"b-admin","team":"b","admin":true}`)
	if r.status != 201 || r.json(t)["team"] != "b" || r.json(t)["admin"] != true {
		t.Fatalf("admin creates for b = %d %s", r.status, r.body)
	}
	bID := bKeys[0]["id"].(string)
	if r := e.as(t, admin, "DELETE", "/sandpit/v1/keys/"+bID, ""); r.status != 204 {
		t.Errorf("admin revokes b's key = %d %s", r.status, r.body)
	}
	wantError(t, e.as(t, keyB, "GET", "/sandpit/v1/keys", ""), 401, "invalid API key")
}

func TestKeysBadInput(t *testing.T) {
	e, _ := keysEnv(t)
	for _, c := range []struct{ body, msg string }{
		{``, "body is required"},
		{`{"name":""}`, "name is required"},
		{`{"name":"   "}`, "must not be empty"},
		{`{"name":7}`, `"name" must be a string`},
		{`{"name":"` + strings.Repeat("n", 201) + `"}`, "at most 200"},
		{`[1]`, "JSON object"},
	} {
		wantError(t, e.do(t, "POST", "/sandpit/v1/keys", c.body), 400, c.msg)
	}
	wantError(t, e.as(t, extraKey, "POST", "/sandpit/v1/keys", `{"name":"x","team":"nope"}`), 400, "no team nope")
	wantError(t, e.as(t, extraKey, "GET", "/sandpit/v1/keys?team=nope", ""), 404, "no team")
	wantError(t, e.doKey(t, "GET", "/sandpit/v1/keys", "", nil), 401, "missing API key")

	// Without a key store the API says it has none.
	e.h = restapi.New(restapi.Config{Manager: e.m, Keys: e.st})
	wantError(t, e.do(t, "GET", "/sandpit/v1/keys", ""), 501, "keeps no API keys")
	wantError(t, e.do(t, "GET", "/sandpit/v1/teams", ""), 501, "keeps no API keys")
}

// The teams list shows a team its own team only, and an admin every team,
// each with its unrevoked keys and sandboxes counted.
func TestTeamsList(t *testing.T) {
	e, _ := keysEnv(t)
	keyB := teamKey(t, e, "b", store.Limits{})
	if _, err := e.st.CreateTeam(t.Context(), "c", store.Limits{}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if r := e.as(t, keyB, "POST", "/v2/sandboxes", `{"templateID":"base"}`); r.status != 201 {
			t.Fatalf("create = %d %s", r.status, r.body)
		}
	}
	r := e.as(t, keyB, "POST", "/sandpit/v1/keys", `{"name":"gone"}`)
	if r := e.as(t, keyB, "DELETE", "/sandpit/v1/keys/"+r.json(t)["id"].(string), ""); r.status != 204 {
		t.Fatalf("revoke = %d", r.status)
	}

	teams := e.as(t, keyB, "GET", "/sandpit/v1/teams", "").list(t)
	if len(teams) != 1 || teams[0]["name"] != "b" || teams[0]["keys"] != 1.0 || teams[0]["sandboxes"] != 2.0 {
		t.Errorf("team b sees %v", teams)
	}
	teams = e.as(t, extraKey, "GET", "/sandpit/v1/teams", "").list(t)
	var got []string
	for _, tm := range teams {
		got = append(got, tm["name"].(string))
	}
	if strings.Join(got, ",") != "b,c,default" || teams[1]["keys"] != 0.0 || teams[2]["keys"] != 1.0 || teams[2]["sandboxes"] != 0.0 {
		t.Errorf("admin sees %v", teams)
	}
}
