package interp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"
)

// executeRequest body of POST /execute. The Python SDK sends explicit
// nulls for unset fields.
type executeBody struct {
	Code      *string           `json:"code"`
	ContextID *string           `json:"context_id"`
	Language  *string           `json:"language"`
	EnvVars   map[string]string `json:"env_vars"`
}

func (s *Server) handleExecute(w http.ResponseWriter, r *http.Request) {
	var req executeBody
	if err := decodeBody(r, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if req.Code == nil {
		http.Error(w, "code is required", http.StatusBadRequest)
		return
	}
	hasID := req.ContextID != nil && *req.ContextID != ""
	hasLang := req.Language != nil && *req.Language != ""
	if hasID && hasLang {
		http.Error(w, "Only one of context_id or language can be provided", http.StatusBadRequest)
		return
	}
	var c *execContext
	if hasID {
		var ok bool
		if c, ok = s.lookup(*req.ContextID); !ok {
			notFound(w, *req.ContextID)
			return
		}
	} else {
		lang := langPython
		if hasLang {
			lang = normalizeLanguage(*req.Language)
		}
		if err := s.supported(lang); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var err error
		if c, err = s.defaultContext(lang); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	}

	out := newLineWriter(w, s.cfg.Keepalive)
	defer out.close()
	s.execute(r.Context(), c, *req.Code, req.EnvVars, out.emit)
	out.emit(typeLine{Type: "end_of_execution"})
}

// execute runs code in c, reporting every line through emit.
func (s *Server) execute(ctx context.Context, c *execContext, code string, envVars map[string]string, emit func(any)) {
	if err := c.acquire(ctx); err != nil {
		if errors.Is(err, errContextDeleted) {
			emit(newErrorLine("ContextNotFound", "Context "+c.id+" was deleted", ""))
		}
		return
	}
	defer c.release()
	if err := s.ensureKernel(ctx, c); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("starting context kernel", "context_id", c.id, "language", c.language, "err", err)
			emit(newErrorLine("KernelStartError", userMessage(err), ""))
		}
		return
	}
	h := c.h

	// Bring the kernel's environment up to date with the global one, then
	// apply this execution's variables.
	global := s.globalEnv()
	set, unset := envDiff(h.env, global)
	for k, v := range envVars {
		set[k] = v
	}
	err := h.setEnv(ctx, set, unset)
	if err == nil {
		h.env = global
		err = h.execute(ctx, code, emit)
	}
	if err == nil && len(envVars) > 0 {
		restore, drop := map[string]string{}, []string(nil)
		for k := range envVars {
			if v, ok := global[k]; ok {
				restore[k] = v
			} else {
				drop = append(drop, k)
			}
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.InterruptGrace)
		err = h.setEnv(rctx, restore, drop)
		cancel()
	}
	if err == nil {
		return
	}
	if errors.Is(err, errKernelDied) || exitedNow(h) {
		c.mu.Lock()
		deleted := c.deleted
		c.mu.Unlock()
		_ = h.close()
		c.setHandle(nil)
		if deleted {
			emit(newErrorLine("ContextNotFound", "Context "+c.id+" was deleted during the execution", ""))
			return
		}
		s.log.Warn("kernel died", "context_id", c.id, "language", c.language)
		emit(newErrorLine("DeadKernelError",
			"The kernel died during the execution (for example killed for lack of memory) and was restarted; its state was lost.", ""))
		s.attachInBackground(c, nil)
		return
	}
	if ctx.Err() == nil {
		s.log.Warn("execution failed", "context_id", c.id, "err", err)
		emit(newErrorLine("ExecutionError", "the execution failed: "+userMessage(err), ""))
	}
}

// envDiff returns what changes the environment have into want.
func envDiff(have, want map[string]string) (set map[string]string, unset []string) {
	set = map[string]string{}
	for k, v := range want {
		if old, ok := have[k]; !ok || old != v {
			set[k] = v
		}
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			unset = append(unset, k)
		}
	}
	return set, unset
}

// lineWriter writes NDJSON lines, flushing each one, and a keepalive line
// after each interval without output.
type lineWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	every time.Duration
	stop  chan struct{}
	done  chan struct{}

	mu   sync.Mutex
	last time.Time
	err  error
}

func newLineWriter(w http.ResponseWriter, every time.Duration) *lineWriter {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	lw := &lineWriter{
		w:     w,
		rc:    http.NewResponseController(w),
		every: every,
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		last:  time.Now(),
	}
	_ = lw.rc.Flush()
	go lw.keepalive()
	return lw
}

func (lw *lineWriter) keepalive() {
	defer close(lw.done)
	t := time.NewTimer(lw.every)
	defer t.Stop()
	for {
		select {
		case <-lw.stop:
			return
		case <-t.C:
		}
		lw.mu.Lock()
		idle := time.Since(lw.last)
		lw.mu.Unlock()
		if idle >= lw.every {
			lw.emit(typeLine{Type: "keepalive"})
			idle = 0
		}
		t.Reset(lw.every - idle)
	}
}

// emit writes one line; after a write error (client gone) it does nothing.
func (lw *lineWriter) emit(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	b = append(b, '\n')
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.err != nil {
		return
	}
	if _, err := lw.w.Write(b); err != nil {
		lw.err = err
		return
	}
	if err := lw.rc.Flush(); err != nil {
		lw.err = err
	}
	lw.last = time.Now()
}

// close stops the keepalive goroutine and waits for it.
func (lw *lineWriter) close() {
	close(lw.stop)
	<-lw.done
}
