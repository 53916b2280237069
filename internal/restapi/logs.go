package restapi

import (
	"net/http"
	"time"

	"github.com/sandpit-dev/sandpit/gen/openapi"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/sandboxlog"
)

// GetSandboxLogs implements GET /sandboxes/{sandboxID}/logs, E2B's v1
// logs endpoint that `e2b sandbox logs` polls with start = the last
// timestamp it saw + 1 ms: each entry as a JSON line (which the CLI
// parses for level and logger) and as a structured entry.
func (s *server) GetSandboxLogs(w http.ResponseWriter, r *http.Request, id openapi.SandboxID, params openapi.GetSandboxLogsParams) {
	if !s.owned(w, r, id) {
		return
	}
	q := sandboxlog.Query{}
	if params.Start != nil {
		q.Cursor = time.UnixMilli(*params.Start)
	}
	if params.Limit != nil {
		if *params.Limit < 0 {
			s.writeError(w, r, errdefs.New(errdefs.ErrInvalidArgument, "limit must not be negative"))
			return
		}
		q.Limit = int(*params.Limit)
	}
	entries, err := s.cfg.Manager.Logs(r.Context(), id, q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := openapi.SandboxLogs{Logs: make([]openapi.SandboxLog, 0, len(entries)), LogEntries: make([]openapi.SandboxLogEntry, 0, len(entries))}
	for _, e := range entries {
		out.Logs = append(out.Logs, openapi.SandboxLog{Timestamp: e.Time.UTC(), Line: e.Line()})
		out.LogEntries = append(out.LogEntries, logEntry(e))
	}
	writeJSON(w, http.StatusOK, out)
}

// GetSandboxLogsV2 implements GET /v2/sandboxes/{sandboxID}/logs.
func (s *server) GetSandboxLogsV2(w http.ResponseWriter, r *http.Request, id openapi.SandboxID, params openapi.GetSandboxLogsV2Params) {
	if !s.owned(w, r, id) {
		return
	}
	q := sandboxlog.Query{}
	if params.Cursor != nil {
		q.Cursor = time.UnixMilli(*params.Cursor)
	}
	if params.Limit != nil {
		if *params.Limit < 0 {
			s.writeError(w, r, errdefs.New(errdefs.ErrInvalidArgument, "limit must not be negative"))
			return
		}
		q.Limit = int(*params.Limit)
	}
	if params.Direction != nil {
		switch *params.Direction {
		case openapi.Forward:
		case openapi.Backward:
			q.Backward = true
		default:
			s.writeError(w, r, errdefs.New(errdefs.ErrInvalidArgument, "direction must be forward or backward"))
			return
		}
	}
	if params.Level != nil {
		switch *params.Level {
		case openapi.LogLevelDebug, openapi.LogLevelInfo, openapi.LogLevelWarn, openapi.LogLevelError:
			q.MinLevel = string(*params.Level)
		default:
			s.writeError(w, r, errdefs.New(errdefs.ErrInvalidArgument, "level must be debug, info, warn or error"))
			return
		}
	}
	if params.Search != nil {
		q.Search = *params.Search
	}
	entries, err := s.cfg.Manager.Logs(r.Context(), id, q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := openapi.SandboxLogsV2Response{Logs: make([]openapi.SandboxLogEntry, 0, len(entries))}
	for _, e := range entries {
		out.Logs = append(out.Logs, logEntry(e))
	}
	writeJSON(w, http.StatusOK, out)
}

// logEntry is e as E2B's structured log entry: the logger goes with the
// other fields, as upstream's do.
func logEntry(e sandboxlog.Entry) openapi.SandboxLogEntry {
	fields := make(map[string]string, len(e.Fields)+1)
	for k, v := range e.Fields {
		fields[k] = v
	}
	if e.Logger != "" {
		fields["logger"] = e.Logger
	}
	return openapi.SandboxLogEntry{Timestamp: e.Time.UTC(), Level: openapi.LogLevel(e.Level), Message: e.Message, Fields: fields}
}
