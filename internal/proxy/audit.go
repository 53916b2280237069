package proxy

import (
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sandpit-dev/sandpit/gen/proto/filesystem"
	"github.com/sandpit-dev/sandpit/gen/proto/filesystem/filesystemconnect"
	"github.com/sandpit-dev/sandpit/gen/proto/process"
	"github.com/sandpit-dev/sandpit/gen/proto/process/processconnect"
)

// Event is one audited sandbox request: one that changes state in the
// sandbox (writes a file, starts a process, runs code). Reads, process
// input and traffic to the sandbox's own ports are not audited.
type Event struct {
	SandboxID string
	// Action is one of the Action constants.
	Action string
	// Detail says what was acted on: a path, a command line, the start of
	// some code; at most maxDetail bytes and "…". It is "(unparsed)" when
	// the request body could not be read for it.
	Detail string
	// Status is the HTTP status the client got, from the agent or from
	// the proxy when the agent did not answer; 0 when the client went away
	// before any answer.
	Status int
	// Duration runs from the request's arrival to the end of its
	// response; for a stream (a process's output), to the stream's end.
	Duration time.Duration
}

// Audited actions of sandbox traffic.
const (
	ActionFilesWrite         = "files.write"
	ActionProcessStart       = "process.start"
	ActionProcessSignal      = "process.signal"
	ActionFilesystemMkdir    = "filesystem.mkdir"
	ActionFilesystemRemove   = "filesystem.remove"
	ActionFilesystemMove     = "filesystem.move"
	ActionCodeExecute        = "code.execute"
	ActionCodeContextCreate  = "code.context.create"
	ActionCodeContextDelete  = "code.context.delete"
	ActionCodeContextRestart = "code.context.restart"
)

// unparsed is the Detail of a request whose body said nothing readable.
const unparsed = "(unparsed)"

// maxDetail bounds an Event's Detail (before the "…" that marks a cut).
const maxDetail = 512

// classify names the action of a request to a sandbox, or "" for one that
// is not audited. It runs on every sandbox request while auditing is on,
// so it only compares strings.
func classify(method string, port int, path string) string {
	switch port {
	case EnvdPort:
		switch path {
		case "/files":
			if method == http.MethodPost || method == http.MethodPut {
				return ActionFilesWrite
			}
		// Connect RPCs are POSTs; a GET to one of these (Connect's
		// idempotent form) would be refused by the agent, but auditing
		// it costs nothing and misses nothing.
		case processconnect.ProcessStartProcedure:
			return ActionProcessStart
		case processconnect.ProcessSendSignalProcedure:
			return ActionProcessSignal
		case filesystemconnect.FilesystemMakeDirProcedure:
			return ActionFilesystemMkdir
		case filesystemconnect.FilesystemRemoveProcedure:
			return ActionFilesystemRemove
		case filesystemconnect.FilesystemMoveProcedure:
			return ActionFilesystemMove
		}
	case InterpreterPort:
		switch {
		case method == http.MethodPost && path == "/execute":
			return ActionCodeExecute
		case method == http.MethodPost && path == "/contexts":
			return ActionCodeContextCreate
		case method == http.MethodDelete && contextID(path, "") != "":
			return ActionCodeContextDelete
		case method == http.MethodPost && contextID(path, "/restart") != "":
			return ActionCodeContextRestart
		}
	}
	return ""
}

// contextID returns ID from a path /contexts/ID+suffix, or "".
func contextID(path, suffix string) string {
	id, ok := strings.CutPrefix(path, "/contexts/")
	if !ok {
		return ""
	}
	if id, ok = strings.CutSuffix(id, suffix); !ok || id == "" || strings.Contains(id, "/") {
		return ""
	}
	return id
}

// serveAudited proxies an audited request and reports it to the audit
// hook once the response is over (or the client is gone). The details
// that live in the body are read first, from a peek that is then handed
// to the agent in front of the rest.
func (p *Proxy) serveAudited(w http.ResponseWriter, r, out *http.Request, id, action string) {
	start := time.Now()
	detail := describe(action, out)
	sw := &statusWriter{ResponseWriter: w}
	// Deferred: the reverse proxy aborts a stream whose client went away
	// by panicking with http.ErrAbortHandler, and that request happened
	// all the same.
	defer func() {
		p.audit(r, Event{SandboxID: id, Action: action, Detail: detail, Status: sw.status, Duration: time.Since(start)})
	}()
	p.rp.ServeHTTP(sw, out)
}

// describe builds an action's Detail from its request; for actions whose
// detail is in the body it replaces out.Body with one that gives the agent
// the same bytes.
func describe(action string, out *http.Request) string {
	switch action {
	case ActionFilesWrite:
		q := out.URL.Query()
		d := q.Get("path")
		if d == "" {
			d = "(paths in the multipart body)"
		}
		if u := q.Get("username"); u != "" {
			d += " (user " + u + ")"
		}
		return truncate(d)
	case ActionProcessStart:
		return startCommand(out)
	case ActionProcessSignal:
		var m process.SendSignalRequest
		if !decodeRPC(out, &m) {
			return unparsed
		}
		sig := strings.TrimPrefix(m.GetSignal().String(), "SIGNAL_")
		switch sel := m.GetProcess().GetSelector().(type) {
		case *process.ProcessSelector_Pid:
			return "pid " + strconv.FormatUint(uint64(sel.Pid), 10) + " " + sig
		case *process.ProcessSelector_Tag:
			return truncate("tag " + sel.Tag + " " + sig)
		}
		return sig
	case ActionFilesystemMkdir:
		var m filesystem.MakeDirRequest
		if !decodeRPC(out, &m) {
			return unparsed
		}
		return truncate(m.GetPath())
	case ActionFilesystemRemove:
		var m filesystem.RemoveRequest
		if !decodeRPC(out, &m) {
			return unparsed
		}
		return truncate(m.GetPath())
	case ActionFilesystemMove:
		var m filesystem.MoveRequest
		if !decodeRPC(out, &m) {
			return unparsed
		}
		return truncate(m.GetSource() + " -> " + m.GetDestination())
	case ActionCodeExecute:
		code, ok := jsonStringField(peek(out, false), "code")
		if !ok {
			return unparsed
		}
		return truncate(code)
	case ActionCodeContextDelete:
		return truncate(contextID(out.URL.Path, ""))
	case ActionCodeContextRestart:
		return truncate(contextID(out.URL.Path, "/restart"))
	}
	return ""
}

// statusWriter notes the status of the response it passes on. Unwrap
// lets http.ResponseController reach the connection under it (flushes,
// full duplex, the hijack of a protocol switch).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	// 1xx answers other than a protocol switch come before the real one.
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// commandLine joins a command and its arguments as a shell would read
// them, quoting where needed, truncated.
func commandLine(cmd string, args []string) string {
	var b strings.Builder
	b.WriteString(shellQuote(cmd))
	for _, a := range args {
		if b.Len() > maxDetail {
			break // the rest would be cut anyway
		}
		b.WriteByte(' ')
		b.WriteString(shellQuote(a))
	}
	return truncate(b.String())
}

// shellQuote quotes s for a POSIX shell unless it needs none.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("@%+=:,./_-", c)) {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
}

// truncate cuts s to maxDetail bytes, on a character boundary, marking the
// cut with "…".
func truncate(s string) string {
	if len(s) <= maxDetail {
		return s
	}
	n := maxDetail
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
