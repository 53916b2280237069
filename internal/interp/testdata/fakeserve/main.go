// Command fakeserve is a stand-in for `sandpit serve` that only does what the
// code-interpreter SDK needs: create and kill "sandboxes" that are each an
// interp.Server on the host, reached by E2b-Sandbox-Port 49999. It lets
// TestOfficialSDK run test/compat/interp.test.mjs against this package alone.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/sandpit-dev/sandpit/internal/interp"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "serve" {
		fmt.Fprintln(os.Stderr, "usage: fakeserve serve --listen ADDR --data-dir DIR")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "")
	dataDir := fs.String("data-dir", os.TempDir(), "")
	// The harness stops throwaway servers' sandboxes with them; these
	// stand-ins end with the process anyway.
	_ = fs.Bool("kill-on-stop", false, "")
	_ = fs.Parse(os.Args[2:])
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))

	var (
		mu    sync.Mutex
		boxes = map[string]*interp.Server{}
		n     int
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("POST /v2/sandboxes", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			TemplateID string            `json:"templateID"`
			EnvVars    map[string]string `json:"envVars"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		n++
		id := fmt.Sprintf("fake%d", n)
		mu.Unlock()
		srv, err := interp.New(interp.Config{
			Logger:  log.With("sandbox_id", id),
			Env:     func() map[string]string { return req.EnvVars },
			Workdir: "/tmp",
			TempDir: *dataDir,
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		mu.Lock()
		boxes[id] = srv
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"sandboxID": id, "templateID": req.TemplateID, "clientID": "fake", "envdVersion": "0.6.13",
		})
	})
	mux.HandleFunc("DELETE /sandboxes/{id}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		srv := boxes[r.PathValue("id")]
		delete(boxes, r.PathValue("id"))
		mu.Unlock()
		if srv == nil {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"code":404,"message":"not found"}`))
			return
		}
		_ = srv.Close(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Debug("request", "method", r.Method, "path", r.URL.Path, "port", r.Header.Get("E2b-Sandbox-Port"))
		if r.Header.Get("E2b-Sandbox-Port") == "49999" {
			mu.Lock()
			srv := boxes[r.Header.Get("E2b-Sandbox-Id")]
			mu.Unlock()
			if srv == nil {
				http.Error(w, `{"message":"The sandbox was not found","code":502}`, http.StatusBadGateway)
				return
			}
			srv.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	hs := &http.Server{Addr: *listen, Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		mu.Lock()
		for _, srv := range boxes {
			_ = srv.Close(sctx)
		}
		mu.Unlock()
		_ = hs.Shutdown(sctx)
	}()
	if err := hs.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Error("serving", "err", err)
		os.Exit(1)
	}
}
