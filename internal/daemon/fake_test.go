package daemon

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/config"
)

// TestFakeRuntimeDaemon: with FakeRuntime (serve --role node --runtime
// fake) the daemon serves its REST API and proxy over in-memory
// sandboxes: a create, the sandbox's agent reached through the proxy, a
// kill, and no Linux sandbox state on disk.
func TestFakeRuntimeDaemon(t *testing.T) {
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.APIKey = "e2b_fake_runtime_test_key"
	cfg.FakeRuntime = true
	cfg.WarmPool = map[string]int{"base": 1}
	cfg.KillOnStop = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = ln.Addr().String()
	ctx := t.Context()
	d, err := New(ctx, cfg, slog.New(slog.DiscardHandler), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	sctx, stop := context.WithCancel(ctx)
	go func() { served <- d.Serve(sctx, ln) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	base := "http://" + cfg.Listen

	do := func(method, url, body string, hdr map[string]string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-API-Key", cfg.APIKey)
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}

	code, b := do("POST", base+"/sandboxes", `{"templateID":"base","timeout":60}`, nil)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, b)
	}
	var sb struct {
		SandboxID       string `json:"sandboxID"`
		EnvdAccessToken string `json:"envdAccessToken"`
	}
	if err := json.Unmarshal(b, &sb); err != nil || sb.SandboxID == "" {
		t.Fatalf("create answered %s (%v)", b, err)
	}
	if ok, err := d.HasSandbox(ctx, sb.SandboxID); !ok || err != nil {
		t.Errorf("HasSandbox(%s) = %v, %v after the create", sb.SandboxID, ok, err)
	}
	if n, err := d.SandboxCount(ctx); n < 1 || err != nil {
		t.Errorf("SandboxCount = %d, %v after the create", n, err)
	}

	// The sandbox's agent through the proxy, by E2B's sandbox host.
	req, err := http.NewRequest("GET", base+"/health", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "49983-" + sb.SandboxID + "." + cfg.SandboxDomain()
	req.Header.Set("X-Access-Token", sb.EnvdAccessToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Errorf("the fake agent's /health through the proxy: %d, want 204", res.StatusCode)
	}

	if code, b := do("DELETE", base+"/sandboxes/"+sb.SandboxID, "", nil); code != http.StatusNoContent {
		t.Errorf("kill: %d %s", code, b)
	}
	if ok, err := d.HasSandbox(ctx, sb.SandboxID); ok || err != nil {
		t.Errorf("HasSandbox(%s) = %v, %v after the kill", sb.SandboxID, ok, err)
	}
	// The Linux runtime keeps its state here; the fake one nothing.
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "sandboxes")); !os.IsNotExist(err) {
		t.Errorf("%s/sandboxes: %v, want none with the fake runtime", cfg.DataDir, err)
	}
}
