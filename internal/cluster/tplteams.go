package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Templates and teams. The nodes know only the shared key, so the api
// role keeps a team's templates and snapshots its own, as one machine does
// (internal/template/teams.go): a team sees and starts its own, the
// built-in and the public ones; another team's answers exactly as an
// unknown one does; changing one (building into it, its tags, deleting it)
// needs ownership; names are global, so a name another team holds cannot
// be built into (409). Which key is an admin key the nodes learn from
// restapi.OnBehalfAdmin (making a template public, building reserved
// names).

type templateAccess int

const (
	accessNone  templateAccess = iota // another team's: as if unknown
	accessStart                       // another team's public template
	accessOwn                         // the caller's, or one no SandboxTemplate records (the node decides)
)

// templateAccess says what the caller of ctx may do with the template ref
// names.
func (rt *Router) templateAccess(ctx context.Context, ref string) (templateAccess, *SandboxTemplate, error) {
	team, scoped := teamOf(ctx)
	if !scoped || ref == "" {
		return accessOwn, nil, nil
	}
	ts, err := rt.templatesFor(ctx, ref)
	if err != nil {
		return accessNone, nil, err
	}
	t := findTemplate(ts, ref)
	if a := accessOf(t, team); a == accessOwn {
		return a, t, nil
	}
	// A refusal reads again: another replica may have made the template
	// public a moment ago.
	if ts, err = rt.readTemplates(ctx); err != nil {
		return accessNone, nil, err
	}
	t = findTemplate(ts, ref)
	return accessOf(t, team), t, nil
}

func accessOf(t *SandboxTemplate, team string) templateAccess {
	switch {
	case t == nil || t.Spec.TeamID == team:
		return accessOwn
	case t.Spec.Public:
		return accessStart
	}
	return accessNone
}

// templateNotFound answers as a node does for a template it does not know.
func templateNotFound(w http.ResponseWriter, ref string) {
	name, _, _ := strings.Cut(ref, ":")
	writeJSONError(w, http.StatusNotFound, fmt.Sprintf("template %q not found", name))
}

// templateAllowed writes the answer to a request for template ref the
// caller may not make (starting or reading it needs to see it, changing
// it to own it) and reports whether the request may go on.
func (rt *Router) templateAllowed(w http.ResponseWriter, r *http.Request, ref string, change bool) bool {
	a, _, err := rt.templateAccess(r.Context(), ref)
	if err != nil {
		rt.log.Warn("looking up a template's team", "template", ref, "err", err)
		writeJSONError(w, http.StatusServiceUnavailable, "looking up the template failed")
		return false
	}
	if a == accessNone || a == accessStart && change {
		templateNotFound(w, ref)
		return false
	}
	return true
}

// hiddenTemplates returns which templates (or snapshots) of a joined list
// the caller of ctx may not see, by the IDs the list names them by.
func (rt *Router) hiddenTemplates(ctx context.Context) (func(id string) bool, error) {
	team, scoped := teamOf(ctx)
	if !scoped {
		return func(string) bool { return false }, nil
	}
	ts, err := rt.readTemplates(ctx)
	if err != nil {
		return nil, err
	}
	return func(id string) bool { return accessOf(findTemplate(ts, id), team) == accessNone }, nil
}

// updateTemplate forwards a template update (PATCH /templates/{id}:
// public or private) to addr and records what it made of the template in
// its SandboxTemplate, which the api role reads to let other teams start
// it.
func (rt *Router) updateTemplate(w http.ResponseWriter, r *http.Request, ref, addr string) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCreateBody))
	if err != nil {
		writeJSONError(w, http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	buf := &bufferedWriter{header: http.Header{}}
	rt.forward(buf, r, addr)
	var req struct {
		Public *bool `json:"public"`
	}
	if buf.status/100 == 2 && json.Unmarshal(body, &req) == nil && req.Public != nil {
		if _, t, err := rt.templateAccess(r.Context(), ref); err == nil && t != nil {
			if err := rt.cfg.Client.SetTemplatePublic(r.Context(), t.Name, *req.Public); err != nil {
				rt.log.Warn("recording a template public", "template", t.Name, "err", err)
			}
			rt.mu.Lock()
			rt.tplAt = time.Time{}
			rt.mu.Unlock()
		}
	}
	buf.flushTo(w)
}

// SetTemplatePublic records whether the template of SandboxTemplate id is
// public (every team may start it).
func (c *Client) SetTemplatePublic(ctx context.Context, id string, public bool) error {
	res := c.dyn.Resource(templatesGVR).Namespace(c.ns)
	for attempt := 0; ; attempt++ {
		u, err := res.Get(ctx, id, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("getting SandboxTemplate %s: %w", id, err)
		}
		spec, _ := u.Object["spec"].(map[string]any)
		if spec == nil {
			spec = map[string]any{}
		}
		spec["public"] = public
		u.Object["spec"] = spec
		if _, err = res.Update(ctx, u, metav1.UpdateOptions{}); err == nil {
			return nil
		} else if !apierrors.IsConflict(err) || attempt == 4 {
			return fmt.Errorf("recording SandboxTemplate %s public=%v: %w", id, public, err)
		}
	}
}

// isTemplatePath reports whether p (escaped) names a template itself,
// /templates/{id} or /v2/templates/{id}, not a path under it.
func isTemplatePath(p string) bool {
	rest, ok := strings.CutPrefix(strings.TrimPrefix(p, "/v2"), "/templates/")
	return ok && rest != "" && !strings.Contains(rest, "/")
}

// templateTags sends a tag request (POST or DELETE /templates/tags, the
// template named in the body) to the node that holds the template, once
// the caller is found to own it.
func (rt *Router) templateTags(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCreateBody))
	if err != nil {
		writeJSONError(w, http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	var req struct {
		Target string `json:"target"`
		Name   string `json:"name"`
	}
	_ = json.Unmarshal(body, &req) // the node validates
	ref := req.Target
	if ref == "" {
		ref = req.Name
	}
	if ref != "" {
		// Changing tags needs ownership, whatever the method.
		if a, _, err := rt.templateAccess(r.Context(), ref); err != nil {
			writeJSONError(w, http.StatusServiceUnavailable, "looking up the template failed")
			return
		} else if a != accessOwn {
			templateNotFound(w, ref)
			return
		}
	}
	addr, ok := rt.templateAddr(r.Context(), ref)
	if !ok {
		if addr, err = rt.anyNode(r.Context()); err != nil {
			writeJSONError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	rt.forward(w, r, addr)
}
