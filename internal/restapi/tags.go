package restapi

import (
	"net/http"

	"github.com/sandpit-dev/sandpit/gen/openapi"
)

// AssignTemplateTags implements POST /templates/tags.
func (s *server) AssignTemplateTags(w http.ResponseWriter, r *http.Request) {
	tr, ok := s.templates(w, r)
	if !ok {
		return
	}
	var body openapi.AssignTemplateTagsRequest
	if err := decodeBody(w, r, &body, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	as, err := tr.AssignTags(r.Context(), principalOf(r).Team.ID, body.Target, body.Tags)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, openapi.AssignedTemplateTags{BuildID: as.BuildID, Tags: as.Tags})
}

// DeleteTemplateTags implements DELETE /templates/tags (the tags to
// remove are in a JSON body).
func (s *server) DeleteTemplateTags(w http.ResponseWriter, r *http.Request) {
	tr, ok := s.templates(w, r)
	if !ok {
		return
	}
	var body openapi.DeleteTemplateTagsRequest
	if err := decodeBody(w, r, &body, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := tr.RemoveTags(r.Context(), principalOf(r).Team.ID, body.Name, body.Tags); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// GetTemplateTags implements GET /templates/{templateID}/tags, routed as
// described in routes.go.
func (s *server) GetTemplateTags(w http.ResponseWriter, r *http.Request, templateID string) {
	tr, ok := s.templates(w, r)
	if !ok {
		return
	}
	tags, err := tr.Tags(r.Context(), principalOf(r).Team.ID, templateID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]openapi.TemplateTag, 0, len(tags))
	for _, t := range tags {
		out = append(out, openapi.TemplateTag{Tag: t.Tag, BuildID: t.BuildID, CreatedAt: wireTime(t.CreatedAt)})
	}
	writeJSON(w, http.StatusOK, out)
}
