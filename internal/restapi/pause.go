package restapi

import (
	"net/http"
	"time"

	"github.com/sandpit-dev/sandpit/gen/openapi"
)

// PauseSandbox implements openapi.ServerInterface: POST
// /sandboxes/{sandboxID}/pause. memory false (the SDKs' keepMemory false)
// keeps the filesystem only; absent or true keeps memory too.
func (s *server) PauseSandbox(w http.ResponseWriter, r *http.Request, id openapi.SandboxID) {
	if !s.owned(w, r, id) {
		return
	}
	var body openapi.PauseSandboxJSONBody
	if err := decodeBody(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	pause := s.cfg.Manager.Pause
	if body.Memory != nil && !*body.Memory {
		pause = s.cfg.Manager.PauseFilesystemOnly
	}
	if err := pause(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ResumeSandbox implements openapi.ServerInterface: POST
// /sandboxes/{sandboxID}/resume, E2B's deprecated resume (the SDKs
// connect). memory false boots the sandbox again even if it kept its
// memory; a running sandbox is 409.
func (s *server) ResumeSandbox(w http.ResponseWriter, r *http.Request, id openapi.SandboxID) {
	if !s.owned(w, r, id) {
		return
	}
	var body openapi.ResumedSandbox
	if err := decodeBody(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	d, err := s.seconds(body.Timeout)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	info, err := s.cfg.Manager.Resume(r.Context(), id, d, body.Memory == nil || *body.Memory)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.toSandbox(info))
}

// GetSandboxMetrics implements openapi.ServerInterface.
func (s *server) GetSandboxMetrics(w http.ResponseWriter, r *http.Request, id openapi.SandboxID, params openapi.GetSandboxMetricsParams) {
	if !s.owned(w, r, id) {
		return
	}
	var start, end time.Time
	if params.Start != nil {
		start = time.Unix(*params.Start, 0)
	}
	if params.End != nil {
		end = time.Unix(*params.End, 0)
	}
	ms, err := s.cfg.Manager.Metrics(r.Context(), id, start, end)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]openapi.SandboxMetric, 0, len(ms))
	for _, m := range ms {
		out = append(out, openapi.SandboxMetric{
			Timestamp:     m.Time.UTC(),
			TimestampUnix: m.Time.Unix(),
			CpuCount:      int32(m.CPUCount),
			CpuUsedPct:    float32(m.CPUUsedPct),
			MemUsed:       int64(m.MemUsed),
			MemTotal:      int64(m.MemTotal),
			MemCache:      int64(m.MemCache),
			DiskUsed:      int64(m.DiskUsed),
			DiskTotal:     int64(m.DiskTotal),
		})
	}
	writeJSON(w, http.StatusOK, out)
}
