package restapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/internal/audit"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// Auditor records audit entries off the request's path; *audit.Log
// implements it.
type Auditor interface {
	Record(e store.AuditEntry)
}

// AuditReader reads the audit log back; store.Store implements it.
type AuditReader interface {
	QueryAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditEntry, error)
}

// auditActions names the audited control-plane routes (as ServeMux
// patterns): every one that changes state. Reads are not audited.
var auditActions = map[string]string{
	"POST /sandboxes":                                  "sandbox.create",
	"POST /v2/sandboxes":                               "sandbox.create",
	"DELETE /sandboxes/{sandboxID}":                    "sandbox.kill",
	"POST /sandboxes/{sandboxID}/timeout":              "sandbox.timeout",
	"PUT /sandboxes/{sandboxID}/network":               "sandbox.network",
	"POST /sandboxes/{sandboxID}/pause":                "sandbox.pause",
	"POST /sandboxes/{sandboxID}/resume":               "sandbox.resume",
	"POST /sandboxes/{sandboxID}/refreshes":            "sandbox.refresh",
	"POST /sandboxes/{sandboxID}/connect":              "sandbox.connect",
	"POST /sandboxes/{sandboxID}/snapshots":            "sandbox.snapshot",
	"POST /sandboxes/{sandboxID}/fork":                 "sandbox.fork",
	"POST /v2/sandboxes/{sandboxID}/connect":           "sandbox.connect",
	"POST /v3/templates":                               "template.request",
	"POST /v2/templates/{templateID}/builds/{buildID}": "template.build",
	"PUT /templates/{templateID}/files/{hash}":         "template.upload",
	"DELETE /templates/tags":                           "template.tags",
	"POST /templates/tags":                             "template.tags",
	"DELETE /templates/{templateID}":                   "template.delete",
	"PATCH /templates/{templateID}":                    "template.update",
	"PATCH /v2/templates/{templateID}":                 "template.update",
	"POST /secrets":                                    "secret.create",
	"POST /secrets/{secretID}":                         "secret.update",
	"DELETE /secrets/{secretID}":                       "secret.delete",
	"POST /sandpit/v1/keys":                            "key.create",
	"DELETE /sandpit/v1/keys/{id}":                     "key.revoke",
}

// audit records each request to an audited route once it has been
// answered: who (the principal authenticate found), what, on which
// target, the status, from where and how long it took. Recording is a
// queue append; the writing happens elsewhere.
func (s *server) audit(routes *http.ServeMux, next http.Handler) http.Handler {
	if s.cfg.Audit == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pattern := route(routes, r)
		action, ok := auditActions[pattern]
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		p := principalOf(r)
		target, detail := "", ""
		if ri, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
			target, detail = ri.sandboxID, ri.detail
			if ri.target != "" {
				target = ri.target
			}
			if ri.action != "" {
				action = ri.action
			}
		}
		if target == "" {
			target = patternTarget(pattern, r.URL.Path)
		}
		e := store.AuditEntry{
			Time:     start,
			TeamID:   p.Team.ID,
			TeamName: p.Team.Name,
			KeyID:    p.KeyID,
			KeyName:  p.KeyName,
			Action:   action,
			Target:   target,
			Result:   strconv.Itoa(rec.status),
			Client:   r.RemoteAddr,
			Duration: time.Since(start),
			Detail:   detail,
		}
		onBehalf(&e, p, r.Header)
		s.cfg.Audit.Record(e)
	})
}

// patternTarget is what a route acts on: its path's last wildcard segment
// but for a build, whose template and build are both named.
func patternTarget(pattern, path string) string {
	_, pat, _ := strings.Cut(pattern, " ")
	ps, xs := strings.Split(pat, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return ""
	}
	var ids []string
	for i, p := range ps {
		if strings.HasPrefix(p, "{") && p != "{hash}" {
			ids = append(ids, xs[i])
		}
	}
	return strings.Join(ids, "/")
}

// getAudit serves GET /sandpit/v1/audit?team=&since=&action=&limit= to
// admin keys: the audit log, oldest first, as a JSON array.
func (s *server) getAudit(w http.ResponseWriter, r *http.Request) {
	if s.cfg.AuditLog == nil {
		s.writeError(w, r, errdefs.New(errdefs.ErrNotImplemented, "this server keeps no audit log"))
		return
	}
	if !principalOf(r).Admin {
		s.writeError(w, r, errdefs.New(errdefs.ErrPermissionDenied,
			"reading the audit log needs an admin key (sandpit keys create --admin)"))
		return
	}
	q := store.AuditQuery{Team: r.URL.Query().Get("team"), Action: r.URL.Query().Get("action")}
	if v := r.URL.Query().Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err == nil {
			q.Since = time.Now().Add(-d)
		} else if q.Since, err = time.Parse(time.RFC3339, v); err != nil {
			s.writeError(w, r, errdefs.New(errdefs.ErrInvalidArgument,
				"since must be a duration (1h) or an RFC 3339 time, not "+strconv.Quote(v)))
			return
		}
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			s.writeError(w, r, errdefs.New(errdefs.ErrInvalidArgument, "limit must be between 1 and 10000"))
			return
		}
		q.Limit = n
	}
	entries, err := s.cfg.AuditLog.QueryAudit(r.Context(), q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]audit.JSON, 0, len(entries))
	for _, e := range entries {
		out = append(out, audit.ToJSON(e))
	}
	writeJSON(w, http.StatusOK, out)
}

// The headers an api replica of a cluster (internal/cluster's Router)
// sets on what it forwards to a node with the nodes' shared key: who the
// request is for, as the replica authenticated it, so the node's audit
// log names the caller rather than the shared key. The replica removes
// them from what clients send.
const (
	OnBehalfTeamID   = "X-Sandpit-On-Behalf-Team-Id"
	OnBehalfTeamName = "X-Sandpit-On-Behalf-Team"
	OnBehalfKeyID    = "X-Sandpit-On-Behalf-Key-Id"
	OnBehalfKeyName  = "X-Sandpit-On-Behalf-Key-Name"
	OnBehalfClient   = "X-Sandpit-On-Behalf-Client"
	// OnBehalfAdmin is "true" when the caller's key is an admin key: a
	// request on behalf of any other key acts without the shared key's
	// admin rights (building reserved names, making templates public,
	// the keys and audit APIs).
	OnBehalfAdmin = "X-Sandpit-On-Behalf-Admin"
)

// onBehalf puts the caller an api replica named in e, for a request made
// with SANDPIT_API_KEY (which only the replicas and the operator hold):
// a header from anyone else is ignored.
func onBehalf(e *store.AuditEntry, p store.Principal, h http.Header) {
	if p.KeyID != "env" || h.Get(OnBehalfKeyID) == "" {
		return
	}
	e.TeamID, e.TeamName = h.Get(OnBehalfTeamID), h.Get(OnBehalfTeamName)
	e.KeyID, e.KeyName = h.Get(OnBehalfKeyID), h.Get(OnBehalfKeyName)
	if c := h.Get(OnBehalfClient); c != "" {
		e.Client = c
	}
}
