// Package restapi serves the control-plane REST API: the E2B sandbox
// endpoints the official SDKs call (api/openapi/sandpit.yaml), with API key
// auth, E2B's error body and a log line per request. Handlers translate
// between the generated wire types (gen/openapi) and the sandbox Manager;
// errors are mapped to HTTP statuses in one place (errors.go).
package restapi

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/gen/openapi"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
	"github.com/sandpit-dev/sandpit/internal/sandboxlog"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// Sandboxes is what the API needs of the sandbox lifecycle;
// *sandbox.Manager implements it.
type Sandboxes interface {
	Create(ctx context.Context, req sandbox.CreateRequest) (sandbox.Info, error)
	Get(ctx context.Context, id string) (sandbox.Info, error)
	List(ctx context.Context, f sandbox.ListFilter) (sandbox.Page, error)
	Kill(ctx context.Context, id string) error
	SetTimeout(ctx context.Context, id string, timeout time.Duration) error
	Refresh(ctx context.Context, id string, d time.Duration) error
	Connect(ctx context.Context, id string, timeout time.Duration) (info sandbox.Info, resumed bool, err error)
	Pause(ctx context.Context, id string) error
	PauseFilesystemOnly(ctx context.Context, id string) error
	Resume(ctx context.Context, id string, timeout time.Duration, memory bool) (sandbox.Info, error)
	Metrics(ctx context.Context, id string, start, end time.Time) ([]sandbox.Metric, error)
	Logs(ctx context.Context, id string, q sandboxlog.Query) ([]sandboxlog.Entry, error)
	// DefaultDiskMB is the disk of a sandbox whose template names none.
	DefaultDiskMB() int
	CheckTimeout(d time.Duration) error
	UpdateNetwork(ctx context.Context, id string, n *sandbox.Network, allowInternet bool) error
	// SetRules replaces a sandbox's network rules (header transforms).
	SetRules(ctx context.Context, id string, rules map[string][]sandbox.Rule) error
	// CheckSetRules says whether SetRules would refuse, changing nothing.
	CheckSetRules(id string, rules map[string][]sandbox.Rule) error
	// Owner is the team of a sandbox that runs, is paused, or ended
	// lately.
	Owner(id string) (team string, ok bool)
}

var _ Sandboxes = (*sandbox.Manager)(nil)

// KeyVerifier checks API keys; store.Store implements it.
type KeyVerifier interface {
	// VerifyKey reports whether plaintext is a valid, unrevoked key and
	// who it acts for; the error is for the check itself failing.
	VerifyKey(ctx context.Context, plaintext string) (store.Principal, bool, error)
	// Team finds a team by name or ID: ExtraKey acts for the default one.
	Team(ctx context.Context, nameOrID string) (store.Team, error)
}

// Config is what New needs. Manager is required.
type Config struct {
	Manager Sandboxes
	// Keys verifies X-API-KEY; nil accepts only ExtraKey.
	Keys KeyVerifier
	// Logger defaults to discarding.
	Logger *slog.Logger
	// ExtraKey, when set, is accepted besides the stored keys
	// (SANDPIT_API_KEY).
	ExtraKey string
	// Domain is reported to SDKs as the sandboxes' domain; null when
	// empty.
	Domain string
	// Templates, when set, serves the template build API (templates.go).
	Templates Templates
	// Audit, when set, records every state-changing request.
	Audit Auditor
	// AuditLog, when set, serves the audit log to admin keys at GET
	// /sandpit/v1/audit.
	AuditLog AuditReader
	// Secrets, when set, serves E2B's secrets API (secrets.go); nil
	// answers it with 501.
	Secrets Secrets
	// KeyAdmin, when set, serves the keys and teams API (keys.go) the
	// console's Keys and Team pages use; nil answers it with 501.
	KeyAdmin KeyAdmin
	// Fallback, when set, serves requests that match no API route (e.g.
	// /metrics, the web UI), without API key checks. When nil they get an
	// E2B-style 404 or 405.
	Fallback http.Handler
}

// ClientID is the constant, deprecated clientID E2B responses carry.
const ClientID = "6532622b"

// maxBodyBytes bounds a request body.
const maxBodyBytes = 1 << 20

// New returns the control-plane handler. Every path but GET /health needs
// an API key in X-API-KEY.
func New(cfg Config) http.Handler {
	s, mux := newServer(cfg)
	return s.logRequests(s.authenticate(mux, s.audit(mux, mux)))
}

// newServer returns the server and the routes New puts behind
// authentication.
func newServer(cfg Config) (*server, *http.ServeMux) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ExtraKey != "" && !store.WellFormedKey(cfg.ExtraKey) {
		cfg.Logger.Warn("the extra API key is not e2b_ followed by 40 lowercase hex digits; the Python SDK will refuse it unless E2B_VALIDATE_API_KEY=false")
	}
	s := &server{cfg: cfg, log: cfg.Logger, uploadKey: make([]byte, 32)}
	_, _ = rand.Read(s.uploadKey)
	mux := http.NewServeMux()
	openapi.HandlerWithOptions(s, openapi.StdHTTPServerOptions{
		BaseRouter: routeMux{ServeMux: mux, notFound: func(w http.ResponseWriter, r *http.Request) { s.noRoute(w, r, mux) }},
		ErrorHandlerFunc: func(w http.ResponseWriter, r *http.Request, err error) {
			// Malformed parameters: the generated binder's message names
			// the parameter.
			s.writeError(w, r, errdefs.New(errdefs.ErrInvalidArgument, err.Error()))
		},
	})
	mux.HandleFunc("GET /sandpit/v1/audit", s.getAudit)
	mux.HandleFunc("GET /sandpit/v1/keys", s.listKeys)
	mux.HandleFunc("POST /sandpit/v1/keys", s.createKey)
	mux.HandleFunc("DELETE /sandpit/v1/keys/{id}", s.revokeKey)
	mux.HandleFunc("GET /sandpit/v1/teams", s.listTeams)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if notImplemented(w, r) {
			return
		}
		if cfg.Fallback != nil {
			cfg.Fallback.ServeHTTP(w, r)
			return
		}
		s.noRoute(w, r, mux)
	})
	return s, mux
}

// server implements openapi.ServerInterface.
type server struct {
	cfg Config
	log *slog.Logger
	// uploadKey signs the template file upload links this server hands out.
	uploadKey []byte
	// idem answers retried creates (same Idempotency-Key) with the first.
	idem idempotency
	// spawns counts creates per template for the template list.
	spawns spawns
}

var _ openapi.ServerInterface = (*server)(nil)

// noRoute answers paths and methods the API does not serve, in the E2B
// error shape.
func (s *server) noRoute(w http.ResponseWriter, r *http.Request, mux *http.ServeMux) {
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); routed(pattern, probe) {
			writeJSON(w, http.StatusMethodNotAllowed, openapi.Error{
				Code:    http.StatusMethodNotAllowed,
				Message: "method " + r.Method + " is not allowed on " + r.URL.Path,
			})
			return
		}
	}
	writeJSON(w, http.StatusNotFound, openapi.Error{
		Code:    http.StatusNotFound,
		Message: "no such endpoint: " + r.Method + " " + r.URL.Path,
	})
}

// authenticate lets a request for an API route through when its X-API-KEY
// is ExtraKey or a key Keys accepts. GET /health and requests that match no
// API route (routes tells) need no key.
func (s *server) authenticate(routes *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The upload link of a template's files authorizes itself.
		if pattern := route(routes, r); pattern == "/" || pattern == "GET /health" ||
			pattern == "PUT /templates/{templateID}/files/{hash}" {
			next.ServeHTTP(w, r)
			return
		}
		key := apiKey(r.Header)
		if key == "" {
			s.writeError(w, r, errdefs.New(errdefs.ErrUnauthenticated,
				"missing API key: send it in the X-API-KEY header (E2B_API_KEY for the SDKs); create one with `sandpit keys create`"))
			return
		}
		p, ok, err := Authenticator{Keys: s.cfg.Keys, ExtraKey: s.cfg.ExtraKey}.Principal(r.Context(), key)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if !ok {
			s.writeError(w, r, errdefs.New(errdefs.ErrUnauthenticated,
				"invalid API key: keys look like e2b_ followed by 40 hex digits; create one with `sandpit keys create` or set SANDPIT_API_KEY on the server"))
			return
		}
		if p.KeyID == "env" && r.Header.Get(OnBehalfKeyID) != "" && r.Header.Get(OnBehalfAdmin) != "true" {
			p.Admin = false
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// Authenticator finds who an API key acts for: ExtraKey
// (SANDPIT_API_KEY) or a key Keys holds. The API and the sandbox proxy
// share it.
type Authenticator struct {
	Keys     KeyVerifier // nil accepts ExtraKey only
	ExtraKey string
}

// Principal returns who key acts for; ok is false for a key that is not
// valid, and err for the check failing.
func (a Authenticator) Principal(ctx context.Context, key string) (p store.Principal, ok bool, err error) {
	if a.ExtraKey != "" && subtle.ConstantTimeCompare([]byte(key), []byte(a.ExtraKey)) == 1 {
		p, err = a.extraPrincipal(ctx)
		return p, err == nil, err
	}
	if a.Keys == nil {
		return store.Principal{}, false, nil
	}
	return a.Keys.VerifyKey(ctx, key)
}

// extraPrincipal is who ExtraKey (SANDPIT_API_KEY) acts for: an admin of
// the default team. The team is read on every request, as VerifyKey reads
// a stored key's, so its limits apply as soon as they change.
func (a Authenticator) extraPrincipal(ctx context.Context) (store.Principal, error) {
	p := store.Principal{KeyID: "env", KeyName: "SANDPIT_API_KEY", Admin: true,
		Team: store.Team{Name: store.DefaultTeamName}}
	if a.Keys == nil {
		return p, nil
	}
	t, err := a.Keys.Team(ctx, store.DefaultTeamName)
	if err != nil {
		return store.Principal{}, fmt.Errorf("finding the team of SANDPIT_API_KEY: %w", err)
	}
	p.Team = t
	return p, nil
}

type principalKey struct{}

// principalOf returns who the request acts for, as authenticate found it;
// the zero Principal for requests that need no key.
func principalOf(r *http.Request) store.Principal {
	p, _ := r.Context().Value(principalKey{}).(store.Principal)
	return p
}

// apiKey returns the X-API-KEY header, whatever the case of its name. The
// server canonicalises names it reads off the wire; handlers called
// directly may not have.
func apiKey(h http.Header) string {
	if v := h.Get("X-Api-Key"); v != "" {
		return v
	}
	for name, vs := range h {
		if strings.EqualFold(name, "X-Api-Key") && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

// reqInfo carries what handlers learn about a request to its log line.
type reqInfo struct {
	// pattern is the API route r matched ("/" for none), once looked up.
	pattern   string
	routed    bool
	sandboxID string
	// action, when set, is the audit action instead of the route's.
	action string
	// target and detail, when set, are the audit entry's (a key made by
	// a POST has no ID in its path).
	target, detail string
}

type reqInfoKey struct{}

// route returns the pattern of the API route r matches ("/" for none),
// looked up once per request however many layers ask.
func route(routes *http.ServeMux, r *http.Request) string {
	ri, ok := r.Context().Value(reqInfoKey{}).(*reqInfo)
	if ok && ri.routed {
		return ri.pattern
	}
	_, pattern := routes.Handler(r)
	if ok {
		ri.pattern, ri.routed = pattern, true
	}
	return pattern
}

// noteSandbox records the sandbox a request is about, for the log line.
func noteSandbox(r *http.Request, id string) {
	if ri, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		ri.sandboxID = id
	}
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// logRequests logs one line per request: method, path, status, duration
// and the sandbox it concerned.
func (s *server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &reqInfo{}
		r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, ri))
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", time.Since(start)}
		if ri.sandboxID != "" {
			attrs = append(attrs, "sandbox_id", ri.sandboxID)
		}
		s.log.InfoContext(r.Context(), "request", attrs...)
	})
}
