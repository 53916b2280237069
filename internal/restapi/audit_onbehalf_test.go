package restapi_test

import (
	"testing"

	"github.com/sandpit-dev/sandpit/internal/restapi"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// A cluster's api replica forwards with the nodes' shared key and names
// the caller in headers: the node's audit entry names the caller. The
// same headers with any other key change nothing.
func TestAuditOnBehalfOfAClusterCaller(t *testing.T) {
	e, rec := keysEnv(t)
	other := teamKey(t, e, "other", store.Limits{})
	caller := map[string]string{
		restapi.OnBehalfTeamID: "team-uuid-1", restapi.OnBehalfTeamName: "acme",
		restapi.OnBehalfKeyID: "key_1", restapi.OnBehalfKeyName: "ci", restapi.OnBehalfClient: "203.0.113.7:5555",
	}
	for _, key := range []string{extraKey, other} {
		h := map[string]string{"X-Api-Key": key}
		for k, v := range caller {
			h[k] = v
		}
		if r := e.doKey(t, "POST", "/v2/sandboxes", `{"templateID":"base"}`, h); r.status != 201 {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
	}
	var creates []store.AuditEntry
	for _, en := range rec.all() {
		if en.Action == "sandbox.create" {
			creates = append(creates, en)
		}
	}
	if len(creates) != 2 {
		t.Fatalf("audited creates: %+v", creates)
	}
	if c := creates[0]; c.TeamID != "team-uuid-1" || c.TeamName != "acme" || c.KeyID != "key_1" || c.KeyName != "ci" || c.Client != "203.0.113.7:5555" {
		t.Errorf("create with the shared key on behalf of acme/ci: %+v", c)
	}
	if c := creates[1]; c.TeamName != "other" || c.KeyID == "key_1" || c.Client == "203.0.113.7:5555" {
		t.Errorf("create with a team's own key and the headers: %+v, want the key's own team and key", c)
	}
}

// A request a replica forwards for a key that is not an admin's acts
// without the shared key's admin rights; for an admin key it keeps them.
func TestOnBehalfOfANonAdminKeyIsNoAdmin(t *testing.T) {
	e, _ := keysEnv(t)
	for _, c := range []struct {
		admin string
		want  int
	}{{"false", 403}, {"", 403}, {"true", 201}} {
		h := map[string]string{"X-Api-Key": extraKey, restapi.OnBehalfKeyID: "key_1", restapi.OnBehalfTeamName: "acme"}
		if c.admin != "" {
			h[restapi.OnBehalfAdmin] = c.admin
		}
		r := e.doKey(t, "POST", "/sandpit/v1/keys", `{"name":"k","admin":true}`, h)
		if r.status != c.want {
			t.Errorf("admin key made on behalf of a key with admin=%q: %d %s, want %d", c.admin, r.status, r.body, c.want)
		}
	}
	// The shared key alone is the operator's, an admin.
	if r := e.doKey(t, "POST", "/sandpit/v1/keys", `{"name":"k2","admin":true}`, map[string]string{"X-Api-Key": extraKey}); r.status != 201 {
		t.Errorf("admin key made with the shared key: %d %s", r.status, r.body)
	}
}
