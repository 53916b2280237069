package agent

import (
	"encoding/json"
	"net/http"
)

// unauthorizedMessage is upstream envd's text, which clients show.
const unauthorizedMessage = "unauthorized access, please provide a valid access token or method signing if supported"

// authed requires a valid X-Access-Token when the sandbox has a token.
func (a *Agent) authed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.settings.CheckToken(r.Header.Get("X-Access-Token")) {
			writeError(w, http.StatusUnauthorized, unauthorizedMessage)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// writeError writes envd's HTTP error body.
func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{status, msg})
}
