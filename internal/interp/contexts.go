package interp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// execContext is one context: a kernel with its own state and cwd. Work on
// the kernel (executions, restarts, attaching a new kernel) holds the
// context's slot, so executions in one context run one at a time.
type execContext struct {
	id       string
	language string
	cwd      string
	created  time.Time

	slot chan struct{} // holding it (a buffered send) owns h

	// h is the context's kernel, nil until attached or after it died.
	// Guarded by slot.
	h *handle

	// mu guards current, deleted; current mirrors h for closing a kernel
	// from outside the slot (delete, restart, shutdown), and is nil once
	// killKernel closed it.
	mu      sync.Mutex
	current *handle
	deleted bool
	// quickExits counts the kernels in a row that exited on their own
	// soon after being attached (see supervise).
	quickExits int
}

// contextJSON is a context on the wire.
type contextJSON struct {
	ID       string `json:"id"`
	Language string `json:"language"`
	Cwd      string `json:"cwd"`
}

var errContextDeleted = errors.New("context was deleted")

func (s *Server) newContext(lang, cwd string) *execContext {
	c := &execContext{
		id:       newUUID(),
		language: lang,
		cwd:      cwd,
		created:  time.Now(),
		slot:     make(chan struct{}, 1),
	}
	s.contexts[c.id] = c
	return c
}

// newDefaultContext creates the default context of lang.
// Preconditions: s.mu is held, or s is not yet shared.
func (s *Server) newDefaultContext(lang string) *execContext {
	c := s.newContext(lang, s.cfg.Workdir)
	s.defaults[lang] = c
	return c
}

// acquire takes the context's slot, waiting until ctx is done.
func (c *execContext) acquire(ctx context.Context) error {
	select {
	case c.slot <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.mu.Lock()
	deleted := c.deleted
	c.mu.Unlock()
	if deleted {
		c.release()
		return errContextDeleted
	}
	return nil
}

func (c *execContext) release() { <-c.slot }

// setHandle records the context's kernel.
// Preconditions: the slot is held.
func (c *execContext) setHandle(h *handle) {
	c.h = h
	c.mu.Lock()
	c.current = h
	deleted := c.deleted
	c.mu.Unlock()
	if deleted && h != nil {
		// Deleted while the kernel was starting.
		_ = h.close()
		c.h = nil
	}
}

// killKernel closes the current kernel from outside the slot; an execution
// in progress ends with errKernelDied. The kernel is no longer current, so
// its supervisor leaves the replacing to the caller.
func (c *execContext) killKernel() {
	c.mu.Lock()
	h := c.current
	c.current = nil
	c.mu.Unlock()
	if h != nil {
		_ = h.close()
	}
}

// shutdown marks the context deleted and closes its kernel.
func (c *execContext) shutdown() {
	c.mu.Lock()
	c.deleted = true
	c.mu.Unlock()
	c.killKernel()
}

// ensureKernel attaches a kernel from the pool when the context has none.
// Preconditions: the slot is held.
func (s *Server) ensureKernel(ctx context.Context, c *execContext) error {
	if c.h != nil {
		if !exitedNow(c.h) {
			return nil
		}
		_ = c.h.close()
		c.setHandle(nil)
	}
	h, err := s.pool.get(ctx, c.language)
	if err != nil {
		return err
	}
	if c.cwd != "" {
		if err := h.chdir(ctx, c.cwd); err != nil {
			_ = h.close()
			return fmt.Errorf("changing to %s: %w", c.cwd, err)
		}
	}
	c.setHandle(h)
	s.supervise(c, h)
	return nil
}

// supervise gives c a new kernel when h, its kernel, exits on its own
// (killed, crashed) while no execution runs, as Jupyter's restarter does:
// the context's state is lost, and the next execution does not wait for a
// kernel start. A kernel that dies during an execution is replaced by
// execute, which tells the client.
//
// Kernels that keep dying right after they are attached (a startup file
// that exits, say) are not restarted past a few: the next execution starts
// one and shows what happens.
func (s *Server) supervise(c *execContext, h *handle) {
	attached := time.Now()
	s.background(func() {
		select {
		case <-h.exited():
		case <-s.closing:
			return
		}
		c.mu.Lock()
		current := c.current == h && !c.deleted
		if current && time.Since(attached) < quickExit {
			c.quickExits++
		} else if current {
			c.quickExits = 0
		}
		quick := c.quickExits
		c.mu.Unlock()
		if !current {
			return // closed on purpose, or already replaced
		}
		if quick > maxQuickRestarts {
			s.log.Warn("kernel keeps exiting, not restarting it until the next execution", "context_id", c.id, "language", c.language)
			return
		}
		s.log.Warn("kernel exited, starting a new one", "context_id", c.id, "language", c.language)
		s.attachInBackground(c, nil)
	})
}

// A kernel that exits within quickExit of being attached counts towards
// maxQuickRestarts.
const (
	quickExit        = 10 * time.Second
	maxQuickRestarts = 3
)

// attachInBackground gives c a kernel without a request waiting for it:
// the default context at start, and a context whose kernel died. then, if
// not nil, runs after the attempt.
func (s *Server) attachInBackground(c *execContext, then func()) {
	s.background(func() {
		if then != nil {
			defer then()
		}
		ctx, cancel := s.lifetime()
		defer cancel()
		if err := c.acquire(ctx); err != nil {
			return
		}
		defer c.release()
		if err := s.ensureKernel(ctx, c); err != nil && ctx.Err() == nil {
			s.log.Warn("starting context kernel", "context_id", c.id, "language", c.language, "err", err)
		}
	})
}

// lookup returns the context with id.
func (s *Server) lookup(id string) (*execContext, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.contexts[id]
	return c, ok
}

// defaultContext returns the default context of lang, creating it.
func (s *Server) defaultContext(lang string) (*execContext, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errPoolClosed
	}
	if c, ok := s.defaults[lang]; ok {
		return c, nil
	}
	return s.newDefaultContext(lang), nil
}

func (s *Server) handleCreateContext(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Language *string `json:"language"`
		Cwd      *string `json:"cwd"`
	}
	if err := decodeBody(r, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	lang := langPython
	if req.Language != nil {
		lang = normalizeLanguage(*req.Language)
	}
	if err := s.supported(lang); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cwd := s.cfg.Workdir
	if req.Cwd != nil && *req.Cwd != "" {
		cwd = *req.Cwd
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, errPoolClosed.Error(), http.StatusServiceUnavailable)
		return
	}
	c := s.newContext(lang, cwd)
	s.mu.Unlock()

	if err := c.acquire(r.Context()); err != nil {
		s.removeContext(c)
		http.Error(w, "creating context: "+err.Error(), http.StatusInternalServerError)
		return
	}
	err := s.ensureKernel(r.Context(), c)
	c.release()
	if err != nil {
		s.removeContext(c)
		s.log.Warn("creating context", "language", lang, "err", err)
		http.Error(w, "creating context: "+userMessage(err), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, contextJSON{ID: c.id, Language: c.language, Cwd: c.cwd})
}

func (s *Server) handleListContexts(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	cs := make([]*execContext, 0, len(s.contexts))
	for _, c := range s.contexts {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	sort.Slice(cs, func(i, j int) bool { return cs[i].created.Before(cs[j].created) })
	out := make([]contextJSON, 0, len(cs))
	for _, c := range cs {
		out = append(out, contextJSON{ID: c.id, Language: c.language, Cwd: c.cwd})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleDeleteContext(w http.ResponseWriter, r *http.Request) {
	c, ok := s.lookup(r.PathValue("id"))
	if !ok {
		notFound(w, r.PathValue("id"))
		return
	}
	s.removeContext(c)
	c.shutdown()
	writeJSON(w, http.StatusOK, nil)
}

// removeContext forgets c (it stays usable by whoever holds it).
func (s *Server) removeContext(c *execContext) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.contexts, c.id)
	if s.defaults[c.language] == c {
		delete(s.defaults, c.language)
	}
}

func (s *Server) handleRestartContext(w http.ResponseWriter, r *http.Request) {
	c, ok := s.lookup(r.PathValue("id"))
	if !ok {
		notFound(w, r.PathValue("id"))
		return
	}
	// Kill first so that an execution in progress ends and frees the slot.
	c.killKernel()
	if err := c.acquire(r.Context()); err != nil {
		if errors.Is(err, errContextDeleted) {
			notFound(w, c.id)
			return
		}
		http.Error(w, "restarting context: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer c.release()
	if c.h != nil {
		_ = c.h.close()
		c.setHandle(nil)
	}
	if err := s.ensureKernel(r.Context(), c); err != nil {
		s.log.Warn("restarting context", "context_id", c.id, "err", err)
		http.Error(w, "restarting context: "+userMessage(err), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, nil)
}

func notFound(w http.ResponseWriter, id string) {
	http.Error(w, "Context "+id+" not found", http.StatusNotFound)
}

// userMessage is what a client is told about an internal error: its
// category, without host paths or kernel output.
func userMessage(err error) string {
	switch {
	case errors.Is(err, errUnsupportedLanguage):
		return err.Error()
	case errors.Is(err, errPoolClosed):
		return errPoolClosed.Error()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "kernel start canceled or timed out"
	}
	return "kernel failed to start"
}

// decodeBody decodes an optional JSON body; an empty body is no fields.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 64<<20))
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("invalid JSON body: %w", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// newUUID returns a random (version 4) UUID, the shape upstream's context
// ids have.
func newUUID() string {
	id := []byte(newID())
	id[12] = '4'
	id[16] = "89ab"[id[16]%4]
	return strings.Join([]string{string(id[0:8]), string(id[8:12]), string(id[12:16]), string(id[16:20]), string(id[20:32])}, "-")
}
