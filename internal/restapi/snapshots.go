package restapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/sandpit-dev/sandpit/gen/openapi"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// Snapshotter is what the snapshot and fork routes need of the sandbox
// lifecycle; *sandbox.Manager implements it. A Manager without it
// answers 501.
type Snapshotter interface {
	Snapshot(ctx context.Context, req sandbox.SnapshotRequest) (template.Snapshot, error)
	Fork(ctx context.Context, req sandbox.ForkRequest) ([]sandbox.ForkResult, error)
}

var _ Snapshotter = (*sandbox.Manager)(nil)

// SnapshotLister lists a team's snapshots; *template.Registry implements
// it. Templates without it list none.
type SnapshotLister interface {
	Snapshots(ctx context.Context, f template.SnapshotFilter) ([]template.Snapshot, string, error)
}

var _ SnapshotLister = (*template.Registry)(nil)

// snapshotFinder tells a snapshot's ref from a template's;
// *template.Registry implements it.
type snapshotFinder interface {
	IsSnapshot(ctx context.Context, team, ref string) bool
}

var _ snapshotFinder = (*template.Registry)(nil)

// maxSnapshotPage bounds a page of GET /snapshots (E2B's limit).
const maxSnapshotPage = 100

func (s *server) snapshotter(w http.ResponseWriter, r *http.Request) (Snapshotter, bool) {
	sn, ok := s.cfg.Manager.(Snapshotter)
	if !ok {
		s.writeError(w, r, errdefs.New(errdefs.ErrNotImplemented, "this server cannot snapshot sandboxes"))
	}
	return sn, ok
}

// CreateSnapshot implements POST /sandboxes/{sandboxID}/snapshots.
func (s *server) CreateSnapshot(w http.ResponseWriter, r *http.Request, id openapi.SandboxID) {
	if !s.owned(w, r, id) {
		return
	}
	sn, ok := s.snapshotter(w, r)
	if !ok {
		return
	}
	var body openapi.SandboxSnapshotRequest
	if err := decodeBody(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	p := principalOf(r)
	// A snapshot's layer counts in its team's template storage.
	if s.cfg.Templates != nil {
		if err := checkTemplateStorage(r.Context(), s.cfg.Templates, p.Team); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	req := sandbox.SnapshotRequest{Team: p.Team, TeamName: p.Team.Name, ID: id}
	if body.Name != nil {
		req.Name = *body.Name
	}
	snap, err := sn.Snapshot(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toSnapshotInfo(snap))
}

func toSnapshotInfo(snap template.Snapshot) openapi.SnapshotInfo {
	names := snap.Names
	if names == nil {
		names = []string{}
	}
	return openapi.SnapshotInfo{SnapshotID: snap.SnapshotID, Names: names}
}

// ListSnapshots implements GET /snapshots: the team's snapshots, newest
// first, with the next page's cursor in X-Next-Token.
func (s *server) ListSnapshots(w http.ResponseWriter, r *http.Request, params openapi.ListSnapshotsParams) {
	p := principalOf(r)
	f := template.SnapshotFilter{Team: p.Team.ID, TeamName: p.Team.Name, Limit: maxSnapshotPage}
	if params.Limit != nil {
		if *params.Limit < 1 || *params.Limit > maxSnapshotPage {
			s.writeError(w, r, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("limit must be between 1 and %d", maxSnapshotPage)))
			return
		}
		f.Limit = int(*params.Limit)
	}
	if params.SandboxID != nil {
		f.SandboxID = *params.SandboxID
	}
	if params.Name != nil {
		f.Name = *params.Name
	}
	if params.NextToken != nil {
		f.Next = *params.NextToken
	}
	out := []openapi.SnapshotInfo{}
	if sl, ok := s.cfg.Templates.(SnapshotLister); ok {
		page, next, err := sl.Snapshots(r.Context(), f)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		for _, snap := range page {
			out = append(out, toSnapshotInfo(snap))
		}
		if next != "" {
			w.Header().Set("X-Next-Token", next)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// ForkSandbox implements POST /sandboxes/{sandboxID}/fork: 201 with one
// entry per fork once they were attempted; a request that fails before
// (a bad count, an unknown sandbox) gets its error status.
func (s *server) ForkSandbox(w http.ResponseWriter, r *http.Request, id openapi.SandboxID) {
	if !s.owned(w, r, id) {
		return
	}
	sn, ok := s.snapshotter(w, r)
	if !ok {
		return
	}
	var body openapi.SandboxForkRequest
	if err := decodeBody(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	req := sandbox.ForkRequest{Team: principalOf(r).Team, ID: id, Count: 1}
	if body.Count != nil {
		req.Count = int(*body.Count)
	}
	if body.Timeout != nil {
		req.Timeout = time.Duration(*body.Timeout) * time.Second
		if err := s.cfg.Manager.CheckTimeout(req.Timeout); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	res, err := sn.Fork(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]openapi.SandboxForkResult, len(res))
	for i, f := range res {
		if f.Err != nil {
			e := s.errorBody(r, f.Err)
			out[i].Error = &e
			continue
		}
		s.spawns.add(f.Info.TemplateID, f.Info.StartedAt)
		sb := s.toSandbox(f.Info)
		out[i].Sandbox = &sb
	}
	writeJSON(w, http.StatusCreated, out)
}
