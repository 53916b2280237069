package restapi

import (
	"net/http"
	"time"

	"github.com/sandpit-dev/sandpit/gen/openapi"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
)

// GetHealth implements openapi.ServerInterface.
func (s *server) GetHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, openapi.Health{Status: "ok"})
}

// seconds converts a wire timeout. nil means "not given" (zero, the
// Manager's default); a given value must pass CheckTimeout.
func (s *server) seconds(v *int32) (time.Duration, error) {
	if v == nil {
		return 0, nil
	}
	d := time.Duration(*v) * time.Second
	if err := s.cfg.Manager.CheckTimeout(d); err != nil {
		return 0, err
	}
	return d, nil
}

// allowInternet reads allow_internet_access; E2B's default is allowed.
func allowInternet(v *bool) bool { return v == nil || *v }

func deref[M ~map[string]string](m *M) map[string]string {
	if m == nil {
		return nil
	}
	return *m
}

// CreateSandbox implements openapi.ServerInterface: POST /sandboxes, the
// Python SDK's create. Secure only when asked.
func (s *server) CreateSandbox(w http.ResponseWriter, r *http.Request) {
	s.createFrom(w, r, false)
}

// CreateSandboxV2 implements openapi.ServerInterface: POST /v2/sandboxes,
// the JS SDK's create. Always secure.
func (s *server) CreateSandboxV2(w http.ResponseWriter, r *http.Request) {
	s.createFrom(w, r, true)
}

// createFrom serves both creates: NewSandbox is NewSandboxV2 plus secure,
// so one body type reads either.
func (s *server) createFrom(w http.ResponseWriter, r *http.Request, alwaysSecure bool) {
	var body openapi.NewSandbox
	if err := decodeBody(w, r, &body, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	timeout, err := s.seconds(body.Timeout)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	network, err := toNetwork(body.Network)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if network, err = withLimits(network, body.SandpitNetworkLimits); err != nil {
		s.writeError(w, r, err)
		return
	}
	req := sandbox.CreateRequest{
		Team:                principalOf(r).Team,
		Network:             network,
		Template:            body.TemplateID,
		Timeout:             timeout,
		Metadata:            deref(body.Metadata),
		EnvVars:             deref(body.EnvVars),
		Secure:              alwaysSecure || (body.Secure != nil && *body.Secure),
		AllowInternetAccess: allowInternet(body.AllowInternetAccess),
		AutoPause:           body.AutoPause != nil && *body.AutoPause,
		// E2B's default keeps memory.
		AutoPauseFilesystemOnly: body.AutoPauseMemory != nil && !*body.AutoPauseMemory,
		AutoResume:              body.AutoResume != nil && body.AutoResume.Enabled,
	}
	if err := withTraffic(&req, body.Network); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.create(w, r, req)
}

func (s *server) create(w http.ResponseWriter, r *http.Request, req sandbox.CreateRequest) {
	s.idempotent(w, r, func() (any, error) {
		info, err := s.cfg.Manager.Create(r.Context(), req)
		if err != nil {
			return nil, err
		}
		noteSandbox(r, info.ID)
		s.spawns.add(info.TemplateID, info.StartedAt)
		return s.toSandbox(info), nil
	})
}

// GetSandbox implements openapi.ServerInterface.
func (s *server) GetSandbox(w http.ResponseWriter, r *http.Request, id openapi.SandboxID) {
	if !s.owned(w, r, id) {
		return
	}
	info, err := s.cfg.Manager.Get(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.toDetail(info))
}

// KillSandbox implements openapi.ServerInterface.
func (s *server) KillSandbox(w http.ResponseWriter, r *http.Request, id openapi.SandboxID) {
	if !s.owned(w, r, id) {
		return
	}
	if err := s.cfg.Manager.Kill(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// SetSandboxTimeout implements openapi.ServerInterface.
func (s *server) SetSandboxTimeout(w http.ResponseWriter, r *http.Request, id openapi.SandboxID) {
	if !s.owned(w, r, id) {
		return
	}
	var body openapi.SetTimeout
	if err := decodeBody(w, r, &body, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.cfg.Manager.SetTimeout(r.Context(), id, time.Duration(body.Timeout)*time.Second); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// RefreshSandbox implements openapi.ServerInterface.
func (s *server) RefreshSandbox(w http.ResponseWriter, r *http.Request, id openapi.SandboxID) {
	if !s.owned(w, r, id) {
		return
	}
	var body openapi.Refresh
	if err := decodeBody(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	var d time.Duration
	if body.Duration != nil {
		d = time.Duration(*body.Duration) * time.Second
	}
	if err := s.cfg.Manager.Refresh(r.Context(), id, d); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ConnectSandbox implements openapi.ServerInterface: the Python SDK's
// connect. A timeout of 0 means the default.
func (s *server) ConnectSandbox(w http.ResponseWriter, r *http.Request, id openapi.SandboxID) {
	if !s.owned(w, r, id) {
		return
	}
	var body openapi.ConnectSandbox
	if err := decodeBody(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	var timeout *int32
	if body.Timeout != 0 {
		timeout = &body.Timeout
	}
	s.connect(w, r, id, timeout)
}

// ConnectSandboxV2 implements openapi.ServerInterface: the JS SDK's
// connect.
func (s *server) ConnectSandboxV2(w http.ResponseWriter, r *http.Request, id openapi.SandboxID) {
	if !s.owned(w, r, id) {
		return
	}
	var body openapi.ConnectSandboxV2
	if err := decodeBody(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.connect(w, r, id, body.Timeout)
}

func (s *server) connect(w http.ResponseWriter, r *http.Request, id string, timeout *int32) {
	d, err := s.seconds(timeout)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	info, resumed, err := s.cfg.Manager.Connect(r.Context(), id, d)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK // it was running
	if resumed {
		status = http.StatusCreated
	}
	writeJSON(w, status, s.toSandbox(info))
}

// owned reports whether sandbox id is the requesting team's. When it is
// not, it answers exactly as for a sandbox that does not exist: another
// team's sandbox IDs are not to be told from unknown ones.
func (s *server) owned(w http.ResponseWriter, r *http.Request, id string) bool {
	noteSandbox(r, id)
	if team, ok := s.cfg.Manager.Owner(id); ok && team == principalOf(r).Team.ID {
		return true
	}
	s.writeError(w, r, sandbox.NotFound(id))
	return false
}
