package restapi

import (
	"context"
	"fmt"
	"net/http"

	"github.com/sandpit-dev/sandpit/gen/openapi"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/secrets"
)

// Secrets is what the API needs of the team secrets; *secrets.Service
// implements it. Every call is scoped to a team: another team's secret
// is errdefs.ErrNotFound.
type Secrets interface {
	Create(ctx context.Context, team, name, value string, metadata map[string]string) (secrets.Secret, error)
	Get(ctx context.Context, team, ref string) (secrets.Secret, error)
	List(ctx context.Context, team string, limit int, next string) ([]secrets.Secret, string, error)
	Update(ctx context.Context, team, ref, value string, metadata map[string]string) (secrets.Secret, error)
	Delete(ctx context.Context, team, ref string) error
}

var _ Secrets = (*secrets.Service)(nil)

// maxSecretsPage is the largest page of GET /secrets.
const maxSecretsPage = 100

// noSecrets answers 501 when the server keeps no secrets, and reports
// whether it did.
func (s *server) noSecrets(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.Secrets != nil {
		return false
	}
	s.writeError(w, r, errdefs.New(errdefs.ErrNotImplemented, "secrets ("+r.Method+" "+r.URL.Path+") is not implemented by this server: it keeps no secrets"))
	return true
}

func toWireSecret(sec secrets.Secret) openapi.Secret {
	return openapi.Secret{
		SecretID:       sec.ID,
		Name:           sec.Name,
		CurrentVersion: sec.Version,
		Metadata:       openapi.SecretMetadata(sec.Metadata),
		CreatedAt:      wireTime(sec.CreatedAt),
		UpdatedAt:      wireTime(sec.UpdatedAt),
	}
}

// ListSecrets implements openapi.ServerInterface.
func (s *server) ListSecrets(w http.ResponseWriter, r *http.Request, params openapi.ListSecretsParams) {
	if s.noSecrets(w, r) {
		return
	}
	limit := maxSecretsPage
	if params.Limit != nil {
		if *params.Limit < 1 || *params.Limit > maxSecretsPage {
			s.writeError(w, r, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("limit must be between 1 and %d", maxSecretsPage)))
			return
		}
		limit = int(*params.Limit)
	}
	next := ""
	if params.NextToken != nil {
		next = *params.NextToken
	}
	list, cursor, err := s.cfg.Secrets.List(r.Context(), principalOf(r).Team.ID, limit, next)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]openapi.Secret, 0, len(list))
	for _, sec := range list {
		out = append(out, toWireSecret(sec))
	}
	if cursor != "" {
		w.Header().Set("X-Next-Token", cursor)
	}
	writeJSON(w, http.StatusOK, out)
}

// CreateSecret implements openapi.ServerInterface.
func (s *server) CreateSecret(w http.ResponseWriter, r *http.Request) {
	if s.noSecrets(w, r) {
		return
	}
	var body openapi.NewSecret
	if err := decodeBody(w, r, &body, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	sec, err := s.cfg.Secrets.Create(r.Context(), principalOf(r).Team.ID, body.Name, body.Value, deref(body.Metadata))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toWireSecret(sec))
}

// GetSecret implements openapi.ServerInterface.
func (s *server) GetSecret(w http.ResponseWriter, r *http.Request, id string) {
	if s.noSecrets(w, r) {
		return
	}
	sec, err := s.cfg.Secrets.Get(r.Context(), principalOf(r).Team.ID, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toWireSecret(sec))
}

// UpdateSecret implements openapi.ServerInterface.
func (s *server) UpdateSecret(w http.ResponseWriter, r *http.Request, id string) {
	if s.noSecrets(w, r) {
		return
	}
	var body openapi.SecretUpdate
	if err := decodeBody(w, r, &body, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	sec, err := s.cfg.Secrets.Update(r.Context(), principalOf(r).Team.ID, id, body.Value, deref(body.Metadata))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toWireSecret(sec))
}

// DeleteSecret implements openapi.ServerInterface.
func (s *server) DeleteSecret(w http.ResponseWriter, r *http.Request, id string) {
	if s.noSecrets(w, r) {
		return
	}
	if err := s.cfg.Secrets.Delete(r.Context(), principalOf(r).Team.ID, id); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
