package agent

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/sandpit-dev/sandpit/internal/agent/settings"
)

func (a *Agent) health(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusNoContent)
}

func (a *Agent) envs(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(a.settings.Get().Env)
}

// initRequest is POST /init's body; fields sandpit has no use for
// (timestamp, volumeMounts, ...) are ignored.
type initRequest struct {
	EnvVars        map[string]string `json:"envVars"`
	AccessToken    *string           `json:"accessToken"`
	DefaultUser    *string           `json:"defaultUser"`
	DefaultWorkdir *string           `json:"defaultWorkdir"`
}

// init updates the settings. It is exempt from the header check so the
// orchestrator can set the first token, but once a token is set the request
// must prove it knows it (X-Access-Token, or the same token in the body):
// otherwise anyone who reaches the agent could replace the token.
func (a *Agent) init(w http.ResponseWriter, r *http.Request) {
	var req initRequest
	if r.ContentLength != 0 {
		err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req)
		if err != nil && !errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, "invalid /init body: "+err.Error())
			return
		}
	}
	if a.settings.HasToken() {
		ok := r.Header.Get("X-Access-Token") != "" && a.settings.CheckToken(r.Header.Get("X-Access-Token"))
		if !ok && req.AccessToken != nil {
			ok = a.settings.CheckToken(*req.AccessToken)
		}
		if !ok {
			writeError(w, http.StatusUnauthorized, unauthorizedMessage)
			return
		}
	}
	a.settings.Apply(settings.Update{
		Env:            req.EnvVars,
		AccessToken:    req.AccessToken,
		DefaultUser:    req.DefaultUser,
		DefaultWorkdir: req.DefaultWorkdir,
	})
	w.WriteHeader(http.StatusNoContent)
}
