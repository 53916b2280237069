package restapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/sandpit-dev/sandpit/gen/openapi"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
)

// parseMetadataFilter decodes the metadata query parameter as upstream
// does. The JS SDK encodes each key and value (encodeURIComponent), joins the
// pairs as a query string (URLSearchParams, a second encoding) and sends that
// as one parameter (a third): after query parsing, one more unescape yields
// "k1=v1&k2=v2" whose keys and values are unescaped once more. Plain
// values, as the Python SDK sends them, survive the extra unescape unless
// they contain '&', '=' or '%' (as upstream).
func parseMetadataFilter(v *string) (map[string]string, error) {
	if v == nil || *v == "" {
		return nil, nil
	}
	joined, err := url.QueryUnescape(*v)
	if err != nil {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "metadata filter: bad encoding")
	}
	out := map[string]string{}
	for pair := range strings.SplitSeq(joined, "&") {
		if pair == "" {
			continue
		}
		k, val, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("metadata filter: bad encoding in key %q", k))
		}
		value, err := url.QueryUnescape(val)
		if err != nil {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("metadata filter: bad encoding in value of %q", key))
		}
		if key == "" {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "metadata filter: empty key")
		}
		out[key] = value
	}
	return out, nil
}

// ListSandboxesV2 implements openapi.ServerInterface: one page, with the
// next page's cursor in X-Next-Token.
func (s *server) ListSandboxesV2(w http.ResponseWriter, r *http.Request, params openapi.ListSandboxesV2Params) {
	md, err := parseMetadataFilter(params.Metadata)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f := sandbox.ListFilter{Team: principalOf(r).Team.ID, Metadata: md}
	if params.State != nil {
		for _, st := range *params.State {
			f.States = append(f.States, sandbox.State(st))
		}
	}
	if params.StartedAfter != nil {
		f.StartedAfter = *params.StartedAfter
	}
	if params.Template != nil {
		f.Template = *params.Template
	}
	if params.Order != nil {
		f.Order = sandbox.Order(*params.Order)
	}
	if params.Limit != nil {
		if *params.Limit < 1 {
			s.writeError(w, r, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("limit must be between 1 and %d", sandbox.MaxListLimit)))
			return
		}
		f.Limit = int(*params.Limit)
	}
	if params.NextToken != nil {
		f.Cursor = *params.NextToken
	}
	page, err := s.cfg.Manager.List(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]openapi.ListedSandbox, 0, len(page.Sandboxes))
	for _, i := range page.Sandboxes {
		out = append(out, toListed(i))
	}
	if page.Next != "" {
		w.Header().Set("X-Next-Token", page.Next)
	}
	writeJSON(w, http.StatusOK, out)
}

// ListSandboxesV1 implements openapi.ServerInterface: every running
// sandbox, unpaged (the deprecated list).
func (s *server) ListSandboxesV1(w http.ResponseWriter, r *http.Request, params openapi.ListSandboxesV1Params) {
	md, err := parseMetadataFilter(params.Metadata)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f := sandbox.ListFilter{Team: principalOf(r).Team.ID, Metadata: md, States: []sandbox.State{sandbox.StateRunning}, Limit: sandbox.MaxListLimit}
	out := []openapi.ListedSandbox{}
	for {
		page, err := s.cfg.Manager.List(r.Context(), f)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		for _, i := range page.Sandboxes {
			out = append(out, toListed(i))
		}
		if page.Next == "" {
			break
		}
		f.Cursor = page.Next
	}
	writeJSON(w, http.StatusOK, out)
}
