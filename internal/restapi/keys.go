package restapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// KeyAdmin is what the keys and teams API (GET, POST /sandpit/v1/keys,
// DELETE /sandpit/v1/keys/{id}, GET /sandpit/v1/teams) needs: the same
// store functions `sandpit keys` and `sandpit teams` use, so there is one
// way to make or revoke a key. *store.SQLite implements it.
type KeyAdmin interface {
	CreateKey(ctx context.Context, nk store.NewKey) (string, store.KeyInfo, error)
	ListKeys(ctx context.Context, team string) ([]store.KeyInfo, error)
	Key(ctx context.Context, idOrPrefix string) (store.KeyInfo, error)
	RevokeKey(ctx context.Context, idOrPrefix string) error
	ListTeams(ctx context.Context) ([]store.Team, error)
	// ListSandboxes gives the sandboxes each team has, for the team list.
	ListSandboxes(ctx context.Context) ([]store.SandboxRecord, error)
}

var _ KeyAdmin = (*store.SQLite)(nil)

// keyJSON is a key as the API shows it: never its secret or hash. The
// field names are those of `sandpit keys list --json`, and Current marks
// the key the request was made with.
type keyJSON struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	TeamID     string     `json:"team_id"`
	Team       string     `json:"team"`
	Admin      bool       `json:"admin"`
	Prefix     string     `json:"prefix"`
	CreatedAt  *time.Time `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	Current    bool       `json:"current"`
}

// newKeyJSON is the answer to a create: the key and, this once, its secret.
type newKeyJSON struct {
	keyJSON
	Key string `json:"key"`
}

// teamJSON is a team in GET /sandpit/v1/teams with what it holds.
type teamJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// Keys counts the team's unrevoked keys.
	Keys      int `json:"keys"`
	Sandboxes int `json:"sandboxes"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func toKeyJSON(k store.KeyInfo, p store.Principal) keyJSON {
	return keyJSON{
		ID: k.ID, Name: k.Name, TeamID: k.TeamID, Team: k.TeamName, Admin: k.Admin, Prefix: k.Prefix,
		CreatedAt: optTime(k.CreatedAt), LastUsedAt: optTime(k.LastUsedAt), RevokedAt: optTime(k.RevokedAt),
		Current: k.ID == p.KeyID,
	}
}

// noKeyAdmin answers 501 when the server has no key store (only
// SANDPIT_API_KEY), and reports whether it did.
func (s *server) noKeyAdmin(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.KeyAdmin != nil {
		return false
	}
	s.writeError(w, r, errdefs.New(errdefs.ErrNotImplemented, "this server keeps no API keys but SANDPIT_API_KEY"))
	return true
}

// noteAudit gives the audit entry of the request its target and detail.
func noteAudit(r *http.Request, target, detail string) {
	if ri, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		ri.target, ri.detail = target, detail
	}
}

// listKeys serves GET /sandpit/v1/keys[?team=]: the caller's team's keys,
// revoked ones too, oldest first. An admin key may name any team, and sees
// every team's keys when it names none.
func (s *server) listKeys(w http.ResponseWriter, r *http.Request) {
	if s.noKeyAdmin(w, r) {
		return
	}
	p := principalOf(r)
	team := r.URL.Query().Get("team")
	switch {
	case team != "" && !p.Admin && team != p.Team.ID && team != p.Team.Name:
		s.writeError(w, r, errdefs.New(errdefs.ErrPermissionDenied,
			"listing another team's keys needs an admin key (sandpit keys create --admin)"))
		return
	case team == "" && !p.Admin:
		team = p.Team.ID
	}
	ks, err := s.cfg.KeyAdmin.ListKeys(r.Context(), team)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]keyJSON, 0, len(ks))
	for _, k := range ks {
		out = append(out, toKeyJSON(k, p))
	}
	writeJSON(w, http.StatusOK, out)
}

// createKey serves POST /sandpit/v1/keys {name, team?, admin?}: a new key
// of the caller's team, its secret in the answer and nowhere else. Only an
// admin key may make an admin key or a key of another team.
func (s *server) createKey(w http.ResponseWriter, r *http.Request) {
	if s.noKeyAdmin(w, r) {
		return
	}
	var body struct {
		Name  string `json:"name"`
		Team  string `json:"team"`
		Admin bool   `json:"admin"`
	}
	if err := decodeBody(w, r, &body, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	p := principalOf(r)
	if body.Name == "" {
		s.writeError(w, r, errdefs.New(errdefs.ErrInvalidArgument, "name is required: what the key is for"))
		return
	}
	if len(body.Name) > 200 {
		s.writeError(w, r, errdefs.New(errdefs.ErrInvalidArgument, "name must be at most 200 bytes"))
		return
	}
	team := p.Team.ID
	if body.Team != "" && body.Team != p.Team.ID && body.Team != p.Team.Name {
		if !p.Admin {
			s.writeError(w, r, errdefs.New(errdefs.ErrPermissionDenied, "making a key of another team needs an admin key"))
			return
		}
		team = body.Team
	}
	if body.Admin && !p.Admin {
		s.writeError(w, r, errdefs.New(errdefs.ErrPermissionDenied, "making an admin key needs an admin key"))
		return
	}
	secret, info, err := s.cfg.KeyAdmin.CreateKey(r.Context(), store.NewKey{Name: body.Name, Team: team, Admin: body.Admin})
	if errors.Is(err, errdefs.ErrNotFound) {
		// The team named in the body is bad input, not a missing route.
		err = errdefs.New(errdefs.ErrInvalidArgument, "no team "+body.Team)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	detail := "name=" + info.Name + " team=" + info.TeamName
	if info.Admin {
		detail += " admin"
	}
	noteAudit(r, info.ID, detail)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, newKeyJSON{keyJSON: toKeyJSON(info, p), Key: secret})
}

// revokeKey serves DELETE /sandpit/v1/keys/{id}. Another team's key is as
// unknown as one that never existed unless the caller is an admin.
// Revoking a revoked key is fine, as in the CLI.
func (s *server) revokeKey(w http.ResponseWriter, r *http.Request) {
	if s.noKeyAdmin(w, r) {
		return
	}
	id := r.PathValue("id")
	p := principalOf(r)
	unknown := errdefs.New(errdefs.ErrNotFound, "no API key "+id)
	// Only ids: a prefix could be probed for other teams' keys.
	if !validKeyID(id) {
		s.writeError(w, r, unknown)
		return
	}
	k, err := s.cfg.KeyAdmin.Key(r.Context(), id)
	if errors.Is(err, errdefs.ErrNotFound) || (err == nil && !p.Admin && k.TeamID != p.Team.ID) {
		s.writeError(w, r, unknown)
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.cfg.KeyAdmin.RevokeKey(r.Context(), k.ID); err != nil {
		s.writeError(w, r, err)
		return
	}
	noteAudit(r, k.ID, "name="+k.Name+" team="+k.TeamName)
	w.WriteHeader(http.StatusNoContent)
}

// validKeyID reports whether id has the shape of a key id: "key_" and
// hex digits (store.CreateKey's ids).
func validKeyID(id string) bool {
	hex, ok := strings.CutPrefix(id, "key_")
	if !ok || hex == "" || len(hex) > 64 {
		return false
	}
	for _, c := range []byte(hex) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// listTeams serves GET /sandpit/v1/teams: the caller's team, or every team
// to an admin key, each with its unrevoked keys and its sandboxes counted.
func (s *server) listTeams(w http.ResponseWriter, r *http.Request) {
	if s.noKeyAdmin(w, r) {
		return
	}
	p := principalOf(r)
	ctx := r.Context()
	teams, err := s.cfg.KeyAdmin.ListTeams(ctx)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ks, err := s.cfg.KeyAdmin.ListKeys(ctx, "")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	sbs, err := s.cfg.KeyAdmin.ListSandboxes(ctx)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	keys, sandboxes := map[string]int{}, map[string]int{}
	for _, k := range ks {
		if !k.Revoked() {
			keys[k.TeamID]++
		}
	}
	for _, sb := range sbs {
		sandboxes[sb.TeamID]++
	}
	out := []teamJSON{}
	for _, t := range teams {
		if !p.Admin && t.ID != p.Team.ID {
			continue
		}
		out = append(out, teamJSON{ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt.UTC(),
			Keys: keys[t.ID], Sandboxes: sandboxes[t.ID]})
	}
	writeJSON(w, http.StatusOK, out)
}
