// Package files serves envd's /files endpoint: GET downloads a file
// (ranges, optional gzip), POST uploads one or many (multipart, or a raw
// octet-stream body, optionally gzipped). Paths are resolved inside the
// sandbox root through internal/safepath as the user named by the
// username query parameter (else the sandbox's default user), who owns what
// is written. Files stream both ways: nothing holds a whole file in memory.
//
// The handler checks access itself (the agent mounts it with OwnAuth): when
// the sandbox has an access token, a request must carry it as
// X-Access-Token or carry a valid URL signature (wire spec §3.3).
package files

import (
	"bufio"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/agent/settings"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/safepath"
)

// Pattern is where the handler is mounted.
const Pattern = "/files"

// copyBufferSize is the chunk size of uploads and gzipped downloads.
const copyBufferSize = 256 << 10

// Config configures a Handler.
type Config struct {
	// Root is the sandbox's root ("/" inside the sandbox); required. The
	// Handler does not close it.
	Root *safepath.Root
	// Settings give the access token, default user and workdir; required.
	Settings *settings.Settings
	Logger   *slog.Logger
	// Now tells the time for signature expiry (time.Now when nil).
	Now func() time.Time
}

// Handler serves GET and POST /files.
type Handler struct {
	root     *safepath.Root
	settings *settings.Settings
	logger   *slog.Logger
	now      func() time.Time
	buffers  sync.Pool // *[]byte of copyBufferSize
	readers  sync.Pool // *bufio.Reader of copyBufferSize
}

var _ http.Handler = (*Handler)(nil)

// New returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Root == nil || cfg.Settings == nil {
		return nil, errors.New("files: Config.Root and Config.Settings are required")
	}
	h := &Handler{root: cfg.Root, settings: cfg.Settings, logger: cfg.Logger, now: cfg.Now}
	if h.logger == nil {
		h.logger = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	h.buffers.New = func() any {
		b := make([]byte, copyBufferSize)
		return &b
	}
	h.readers.New = func() any { return bufio.NewReaderSize(nil, copyBufferSize) }
	return h, nil
}

// ServeHTTP dispatches on the method.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.download(w, r)
	case http.MethodPost:
		h.upload(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}

// request is what every /files request names: the raw path (as signed),
// the resolved path, and the acting user.
type request struct {
	rawPath string
	user    safepath.Account
	workdir string
	// root is the sandbox root as the user: what the user may not read
	// or write, the request may not either.
	root *safepath.Root
}

// identify authorizes r for op ("read" or "write") and resolves its user.
func (h *Handler) identify(r *http.Request, op string) (request, error) {
	q := r.URL.Query()
	req := request{rawPath: q.Get("path")}
	username := q.Get("username")
	v := h.settings.Get()
	if err := h.authorize(r, v.AccessToken, op, req.rawPath, username); err != nil {
		return req, err
	}
	accts, err := h.root.Accounts()
	if err != nil {
		return req, err
	}
	name := username
	if name == "" {
		name = v.DefaultUser
	}
	acct, ok := accts.User(name)
	switch {
	case !ok && username != "":
		return req, errdefs.New(errdefs.ErrUnauthenticated, "error looking up user '"+name+"'")
	case !ok:
		return req, errdefs.New(errdefs.ErrInvalidArgument, "no user given and the default user '"+name+"' does not exist")
	}
	req.user, req.root = acct, h.root.As(acct.Cred())
	req.workdir = v.WorkdirOf(acct.Name)
	return req, nil
}

// resolve turns a client path into a clean absolute path for req's user.
func (req request) resolve(p string) (string, error) {
	return safepath.Resolve(p, req.user.Home, req.workdir)
}

// errorBody is envd's HTTP error body.
type errorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Del("Content-Encoding")
	w.Header().Del("Content-Disposition")
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Code: status, Message: msg})
}

// statusOf maps an error's category to the HTTP status the SDKs expect:
// the one place /files does so.
func statusOf(err error) int {
	switch {
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return http.StatusInsufficientStorage
	case errors.Is(err, errdefs.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errdefs.ErrInvalidArgument), errors.Is(err, errdefs.ErrAlreadyExists):
		return http.StatusBadRequest
	case errors.Is(err, errdefs.ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, errdefs.ErrPermissionDenied):
		return http.StatusForbidden
	case errors.Is(err, errdefs.ErrResourceExhausted):
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

// fail writes err; the message of a category-less error is the agent's
// fault and is logged as well.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	if status == http.StatusInternalServerError {
		h.logger.Error("files request failed", "method", r.Method, "err", err)
	}
	writeError(w, status, err.Error())
}
