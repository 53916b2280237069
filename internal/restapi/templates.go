package restapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/gen/openapi"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// Templates is what the API needs of template builds; *template.Registry
// implements it. team is the ID of the request's team: it sees its own
// templates, public ones and builtins, and changes only its own; the
// rest answer as unknown templates do.
type Templates interface {
	Request(ctx context.Context, args template.RequestArgs) (template.Requested, error)
	Start(ctx context.Context, team, templateID, buildID string, spec template.BuildSpec) error
	Status(ctx context.Context, team, templateID, buildID string, offset int) (template.BuildStatus, error)
	List(ctx context.Context, team string) ([]template.Info, error)
	Delete(ctx context.Context, team, ref string) error
	Exists(ctx context.Context, team, ref string) (string, error)
	Tags(ctx context.Context, team, ref string) ([]template.Tag, error)
	AssignTags(ctx context.Context, team, target string, tags []string) (template.Assigned, error)
	RemoveTags(ctx context.Context, team, name string, tags []string) error
	SetPublic(ctx context.Context, team, ref string, public bool) ([]string, error)
	StorageUsage(ctx context.Context, team string) (int64, error)
	HasUpload(ctx context.Context, team, hash string) bool
	PutUpload(ctx context.Context, team string, up template.Upload) error
}

var _ Templates = (*template.Registry)(nil)

// uploadLinkTTL bounds how long a COPY upload link works.
const uploadLinkTTL = time.Hour

func (s *server) templates(w http.ResponseWriter, r *http.Request) (Templates, bool) {
	if s.cfg.Templates == nil {
		s.writeError(w, r, errdefs.New(errdefs.ErrNotImplemented, "this server builds no templates"))
		return nil, false
	}
	return s.cfg.Templates, true
}

// RequestTemplateBuildV3 implements POST /v3/templates.
func (s *server) RequestTemplateBuildV3(w http.ResponseWriter, r *http.Request) {
	tr, ok := s.templates(w, r)
	if !ok {
		return
	}
	var body openapi.TemplateBuildRequestV3
	if err := decodeBody(w, r, &body, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	name := body.Name
	if name == "" && body.Alias != nil {
		name = *body.Alias
	}
	p := principalOf(r)
	args := template.RequestArgs{Team: p.Team.ID, Admin: p.Admin, Name: name}
	if body.Tags != nil {
		args.Tags = *body.Tags
	}
	if body.CpuCount != nil {
		args.CPUCount = int(*body.CpuCount)
	}
	if body.MemoryMB != nil {
		args.MemoryMB = int(*body.MemoryMB)
	}
	if err := checkBuildResources(p.Team, args); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := checkTemplateStorage(r.Context(), tr, p.Team); err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := tr.Request(r.Context(), args)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, openapi.TemplateRequestResponseV3{
		TemplateID: req.TemplateID, BuildID: req.BuildID, Tags: req.Tags,
		Names: req.Names, Aliases: req.Names, Public: req.Public,
	})
}

// StartTemplateBuildV2 implements POST /v2/templates/{templateID}/builds/{buildID}.
func (s *server) StartTemplateBuildV2(w http.ResponseWriter, r *http.Request, templateID, buildID string) {
	tr, ok := s.templates(w, r)
	if !ok {
		return
	}
	var body openapi.TemplateBuildStartV2
	if err := decodeBody(w, r, &body, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	spec := template.BuildSpec{
		FromImage:    derefOr(body.FromImage),
		FromTemplate: derefOr(body.FromTemplate),
		StartCmd:     derefOr(body.StartCmd),
		ReadyCmd:     derefOr(body.ReadyCmd),
		Force:        body.Force != nil && *body.Force,
	}
	if reg := body.FromImageRegistry; reg != nil {
		if t := derefOr(reg.Type); t != "" && t != "registry" {
			s.writeError(w, r, errdefs.New(errdefs.ErrNotImplemented,
				fmt.Sprintf("fromImageRegistry of type %q is not supported; use a username and password", t)))
			return
		}
		spec.Registry = &template.RegistryAuth{Username: derefOr(reg.Username), Password: derefOr(reg.Password)}
	}
	if body.Steps != nil {
		for _, st := range *body.Steps {
			step := template.Step{Type: st.Type, Force: st.Force != nil && *st.Force, FilesHash: derefOr(st.FilesHash)}
			if st.Args != nil {
				step.Args = *st.Args
			}
			spec.Steps = append(spec.Steps, step)
		}
	}
	p := principalOf(r)
	if err := checkTemplateStorage(r.Context(), tr, p.Team); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := tr.Start(r.Context(), p.Team.ID, templateID, buildID, spec); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// GetTemplateBuildStatus implements GET /templates/{templateID}/builds/{buildID}/status.
func (s *server) GetTemplateBuildStatus(w http.ResponseWriter, r *http.Request, templateID, buildID string, params openapi.GetTemplateBuildStatusParams) {
	tr, ok := s.templates(w, r)
	if !ok {
		return
	}
	offset := 0
	if params.LogsOffset != nil {
		offset = int(*params.LogsOffset)
	}
	st, err := tr.Status(r.Context(), principalOf(r).Team.ID, templateID, buildID, offset)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	entries := st.Logs
	if params.Limit != nil && *params.Limit > 0 && int(*params.Limit) < len(entries) {
		entries = entries[:*params.Limit]
	}
	out := openapi.TemplateBuildInfo{
		BuildID: st.BuildID, TemplateID: st.TemplateID,
		Status:     openapi.TemplateBuildInfoStatus(st.Status),
		LogEntries: wireLogs(entries),
		Logs:       []string{},
	}
	if st.Reason != nil {
		out.Reason = &openapi.BuildStatusReason{Message: st.Reason.Message}
		if st.Reason.Step != "" {
			out.Reason.Step = &st.Reason.Step
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func wireLogs(in []template.LogEntry) []openapi.BuildLogEntry {
	out := make([]openapi.BuildLogEntry, 0, len(in))
	for _, e := range in {
		we := openapi.BuildLogEntry{Timestamp: e.Time, Level: openapi.BuildLogEntryLevel(e.Level), Message: e.Message}
		if e.Step != "" {
			step := e.Step
			we.Step = &step
		}
		out = append(out, we)
	}
	return out
}

// GetTemplateFilesUploadLink implements GET /templates/{templateID}/files/{hash}.
func (s *server) GetTemplateFilesUploadLink(w http.ResponseWriter, r *http.Request, templateID, hash string) {
	tr, ok := s.templates(w, r)
	if !ok {
		return
	}
	team := principalOf(r).Team
	out := openapi.TemplateBuildFileUpload{Present: tr.HasUpload(r.Context(), team.ID, hash)}
	if !out.Present {
		if err := checkTemplateStorage(r.Context(), tr, team); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	exp := time.Now().Add(uploadLinkTTL).Unix()
	q := url.Values{"token": {s.uploadToken(uploadGrant{templateID, hash, team.ID, team.Limits.MaxTemplateStorageMB, exp})}}
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	link := (&url.URL{Scheme: scheme, Host: r.Host, RawPath: "/templates/" + url.PathEscape(templateID) + "/files/" + url.PathEscape(hash),
		Path: "/templates/" + templateID + "/files/" + hash, RawQuery: q.Encode()}).String()
	out.Url = &link
	writeJSON(w, http.StatusCreated, out)
}

// UploadTemplateFiles implements PUT /templates/{templateID}/files/{hash}:
// the self-authorizing upload link GetTemplateFilesUploadLink hands out.
// The upload belongs to the team of the API key that asked for the link,
// bounded by that team's storage limit as it was then. A client that
// knows the body's SHA-256 sends it as Content-Digest (RFC 9530).
func (s *server) UploadTemplateFiles(w http.ResponseWriter, r *http.Request, templateID, hash string, params openapi.UploadTemplateFilesParams) {
	tr, ok := s.templates(w, r)
	if !ok {
		return
	}
	g, ok := s.checkUploadToken(templateID, hash, params.Token)
	if !ok {
		s.writeError(w, r, errdefs.New(errdefs.ErrUnauthenticated, "the upload link is invalid or expired; ask for a new one"))
		return
	}
	if r.ContentLength > template.MaxUploadBytes {
		s.writeError(w, r, errdefs.New(errdefs.ErrResourceExhausted,
			fmt.Sprintf("upload %s is larger than the limit of %d bytes per upload", hash, int64(template.MaxUploadBytes))))
		return
	}
	want, err := contentSHA256(r.Header)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	up := template.Upload{Hash: hash, Body: r.Body, Want: want, StorageLimitMB: g.storageLimitMB}
	if err := tr.PutUpload(r.Context(), g.team, up); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// uploadGrant is what an upload link allows: storing the files named
// hash for template templateID's team, within its storage limit, until
// exp (Unix seconds).
type uploadGrant struct {
	templateID, hash string
	team             string // store.Team ID: no dots
	storageLimitMB   int
	exp              int64
}

// uploadToken signs g with the server's upload key:
// "<expiry>.<team>.<storage limit MB>.<hex hmac>".
func (s *server) uploadToken(g uploadGrant) string {
	m := hmac.New(sha256.New, s.uploadKey)
	fmt.Fprintf(m, "%s\x00%s\x00%s\x00%d\x00%d", g.templateID, g.hash, g.team, g.storageLimitMB, g.exp)
	return fmt.Sprintf("%d.%s.%d.%s", g.exp, g.team, g.storageLimitMB, hex.EncodeToString(m.Sum(nil)))
}

// checkUploadToken returns what a valid, unexpired token allows.
func (s *server) checkUploadToken(templateID, hash, token string) (uploadGrant, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 4 {
		return uploadGrant{}, false
	}
	exp, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || time.Now().Unix() > exp {
		return uploadGrant{}, false
	}
	limit, err := strconv.Atoi(parts[2])
	if err != nil {
		return uploadGrant{}, false
	}
	g := uploadGrant{templateID: templateID, hash: hash, team: parts[1], storageLimitMB: limit, exp: exp}
	return g, hmac.Equal([]byte(token), []byte(s.uploadToken(g)))
}

// checkBuildResources refuses a build whose sandboxes would be larger
// than team's per-sandbox maximums.
func checkBuildResources(team store.Team, args template.RequestArgs) error {
	l := team.Limits
	if l.MaxCPUs > 0 && args.CPUCount > l.MaxCPUs {
		return errdefs.New(errdefs.ErrInvalidArgument,
			fmt.Sprintf("cpuCount %d is above team %s's maximum of %d CPUs", args.CPUCount, team.Name, l.MaxCPUs))
	}
	if l.MaxMemoryMB > 0 && args.MemoryMB > l.MaxMemoryMB {
		return errdefs.New(errdefs.ErrInvalidArgument,
			fmt.Sprintf("memoryMB %d is above team %s's maximum of %d MB", args.MemoryMB, team.Name, l.MaxMemoryMB))
	}
	return nil
}

// checkTemplateStorage refuses more template storage to a team at or
// over its limit.
func checkTemplateStorage(ctx context.Context, tr Templates, team store.Team) error {
	limit := team.Limits.MaxTemplateStorageMB
	if limit <= 0 {
		return nil
	}
	used, err := tr.StorageUsage(ctx, team.ID)
	if err != nil {
		return err
	}
	if used >= int64(limit)<<20 {
		return template.StorageLimitError("team "+team.Name, used, limit)
	}
	return nil
}

// contentSHA256 returns the sha-256 of a Content-Digest header (RFC 9530:
// `sha-256=:BASE64:`), or nil when there is none.
func contentSHA256(h http.Header) ([]byte, error) {
	for _, v := range h.Values("Content-Digest") {
		for _, item := range strings.Split(v, ",") {
			alg, val, ok := strings.Cut(strings.TrimSpace(item), "=")
			if !ok || !strings.EqualFold(alg, "sha-256") {
				continue
			}
			b64, ok := strings.CutPrefix(val, ":")
			if b64, ok2 := strings.CutSuffix(b64, ":"); ok && ok2 {
				sum, err := base64.StdEncoding.DecodeString(b64)
				if err == nil && len(sum) == sha256.Size {
					return sum, nil
				}
			}
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "malformed Content-Digest: want sha-256=:BASE64 of the 32-byte SHA-256:")
		}
	}
	return nil, nil
}

// GetTemplateByAlias implements GET /templates/aliases/{alias}.
func (s *server) GetTemplateByAlias(w http.ResponseWriter, r *http.Request, alias string) {
	tr, ok := s.templates(w, r)
	if !ok {
		return
	}
	id, err := tr.Exists(r.Context(), principalOf(r).Team.ID, alias)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, openapi.TemplateAliasResponse{TemplateID: id, Public: false})
}

// ListTemplates implements GET /templates.
func (s *server) ListTemplates(w http.ResponseWriter, r *http.Request, _ openapi.ListTemplatesParams) {
	tr, ok := s.templates(w, r)
	if !ok {
		return
	}
	infos, err := tr.List(r.Context(), principalOf(r).Team.ID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]openapi.Template, 0, len(infos))
	for _, in := range infos {
		out = append(out, s.toTemplate(in))
	}
	writeJSON(w, http.StatusOK, out)
}

// toTemplate fills every field of E2B's template list entry (`e2b
// template list` shows them all). Builtins are public (every team sees
// them) and named by their ids too, as E2B's "base" is an alias.
func (s *server) toTemplate(in template.Info) openapi.Template {
	names := []string{}
	if in.Builtin {
		names = append(names, in.ID)
	}
	for _, n := range in.Names {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	disk := in.DiskMB
	if disk == 0 {
		disk = s.cfg.Manager.DefaultDiskMB()
	}
	envd := in.EnvdVersion
	if envd == "" {
		envd = template.DefaultEnvdVersion
	}
	spawned, last := s.spawns.get(in.ID)
	t := openapi.Template{
		TemplateID: in.ID, BuildID: in.BuildID, CpuCount: int32(in.CPUCount), MemoryMB: int32(in.MemoryMB),
		DiskSizeMB: int32(disk), EnvdVersion: envd, Public: in.Public || in.Builtin,
		Aliases: names, Names: names, CreatedAt: in.CreatedAt.UTC(), UpdatedAt: in.UpdatedAt.UTC(), BuildStatus: in.Status,
		BuildCount: int32(in.BuildCount), SpawnCount: spawned, LastSpawnedAt: last,
	}
	if in.Builtin {
		b := true
		t.Builtin = &b
		t.BuildCount = max(t.BuildCount, 1) // the one its build ID names
	}
	return t
}

// DeleteTemplate implements DELETE /templates/{templateID}.
func (s *server) DeleteTemplate(w http.ResponseWriter, r *http.Request, templateID string) {
	tr, ok := s.templates(w, r)
	if !ok {
		return
	}
	// The SDKs delete a snapshot as a template: audit it as what it is.
	if sf, ok := tr.(snapshotFinder); ok && sf.IsSnapshot(r.Context(), principalOf(r).Team.ID, templateID) {
		if ri, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
			ri.action = "snapshot.delete"
		}
	}
	if err := tr.Delete(r.Context(), principalOf(r).Team.ID, templateID); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// UpdateTemplate implements PATCH /templates/{templateID}.
func (s *server) UpdateTemplate(w http.ResponseWriter, r *http.Request, templateID string) {
	s.updateTemplate(w, r, templateID)
}

// UpdateTemplateV2 implements PATCH /v2/templates/{templateID}.
func (s *server) UpdateTemplateV2(w http.ResponseWriter, r *http.Request, templateID string) {
	s.updateTemplate(w, r, templateID)
}

// updateTemplate makes a template of the request's team public or
// private. Only admin keys may: every team may start a public template
// by its name, so making one is the operator's call.
func (s *server) updateTemplate(w http.ResponseWriter, r *http.Request, templateID string) {
	tr, ok := s.templates(w, r)
	if !ok {
		return
	}
	var body openapi.TemplateUpdateRequest
	if err := decodeBody(w, r, &body, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	if body.Public == nil {
		s.writeError(w, r, errdefs.New(errdefs.ErrInvalidArgument, `nothing to update: give "public": true or false`))
		return
	}
	p := principalOf(r)
	if !p.Admin {
		s.writeError(w, r, errdefs.New(errdefs.ErrPermissionDenied,
			"only admin keys may make a template public or private: every team may start a public template by its name"))
		return
	}
	names, err := tr.SetPublic(r.Context(), p.Team.ID, templateID, *body.Public)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if names == nil {
		names = []string{}
	}
	writeJSON(w, http.StatusOK, openapi.TemplateUpdateResponse{Names: names})
}

func derefOr[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
