package restapi

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/store"
)

// TestAuthenticatePutsPrincipal: a stored key acts for its own team with
// the team's current limits; SANDPIT_API_KEY acts as an admin of team
// default; a revoked key gets 401.
func TestAuthenticatePutsPrincipal(t *testing.T) {
	ctx := t.Context()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "sandpit.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	acme, err := st.CreateTeam(ctx, "acme", store.Limits{MaxSandboxes: 2})
	if err != nil {
		t.Fatal(err)
	}
	key, info, err := st.CreateKey(ctx, store.NewKey{Name: "ci", Team: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	def, err := st.Team(ctx, store.DefaultTeamName)
	if err != nil {
		t.Fatal(err)
	}
	extra := "e2b_" + strings.Repeat("ab", 20)
	s := &server{cfg: Config{Keys: st, ExtraKey: extra}, log: slog.New(slog.DiscardHandler)}
	routes := http.NewServeMux()
	var got store.Principal
	routes.HandleFunc("GET /sandboxes", func(w http.ResponseWriter, r *http.Request) { got = principalOf(r) })
	h := s.authenticate(routes, routes)
	call := func(k string) int {
		t.Helper()
		got = store.Principal{}
		r := httptest.NewRequest("GET", "/sandboxes", nil)
		r.Header.Set("X-API-KEY", k)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}

	if code := call(key); code != 200 || got.KeyID != info.ID || got.KeyName != "ci" || got.Admin ||
		got.Team.ID != acme.ID || got.Team.Limits.MaxSandboxes != 2 {
		t.Errorf("stored key: %d, principal %+v", code, got)
	}
	if _, err := st.SetTeamLimits(ctx, "acme", store.Limits{MaxSandboxes: 7}); err != nil {
		t.Fatal(err)
	}
	if call(key); got.Team.Limits.MaxSandboxes != 7 {
		t.Errorf("limits after a change = %+v, want max sandboxes 7", got.Team.Limits)
	}
	if code := call(extra); code != 200 || got.KeyID != "env" || got.KeyName != "SANDPIT_API_KEY" || !got.Admin ||
		got.Team.ID != def.ID || got.Team.Name != store.DefaultTeamName {
		t.Errorf("SANDPIT_API_KEY: %d, principal %+v", code, got)
	}
	if err := st.RevokeKey(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	if code := call(key); code != http.StatusUnauthorized || got != (store.Principal{}) {
		t.Errorf("revoked key: %d, principal %+v", code, got)
	}
}
