package restapi

import (
	"context"
	"net/http"

	"github.com/sandpit-dev/sandpit/internal/store"
)

// NewAs is New with the request's principal taken from principals by its
// X-API-KEY instead of verified: for tests of what teams see and may do.
// A request whose key is not in principals acts for the zero Principal.
// Requests are audited when cfg.Audit is set.
func NewAs(cfg Config, principals map[string]store.Principal) http.Handler {
	s, mux := newServer(cfg)
	h := s.audit(mux, mux)
	return s.logRequests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principals[apiKey(r.Header)]
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	}))
}
