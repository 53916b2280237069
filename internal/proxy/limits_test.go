package proxy_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/agent/filesystem"
	"github.com/sandpit-dev/sandpit/internal/agent/settings"
	"github.com/sandpit-dev/sandpit/internal/proxy"
	"github.com/sandpit-dev/sandpit/internal/safepath"
)

// TestOversizedRPCBody sends envd RPC bodies far over the agent's message
// limit through the proxy, with and without a Content-Length: the client
// gets Connect's resource_exhausted from the agent, never a 502, and the
// agent goes on serving.
func TestOversizedRPCBody(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"etc", "home/user", "tmp"} {
		os.MkdirAll(filepath.Join(dir, "root", d), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "root/etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nuser:x:0:0::/home/user:/bin/sh\n"), 0o644)
	root, err := safepath.Open(filepath.Join(dir, "root"))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	svc, err := filesystem.New(filesystem.Config{Root: root, Settings: settings.New(settings.Values{})})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	mux := http.NewServeMux()
	mux.Handle(svc.Handler())
	sock := filepath.Join(dir, "envd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	agentSrv := &http.Server{Handler: mux}
	go agentSrv.Serve(ln)
	defer agentSrv.Close()

	p := proxy.New(proxy.Config{
		Lookup: func(id string) (string, bool) { return sock, id == "sb1" },
		Next:   http.NotFoundHandler(),
	})
	srv := httptest.NewServer(p)
	defer srv.Close()

	big := append(append([]byte(`{"path":"`), bytes.Repeat([]byte("x"), 64<<20)...), `"}`...)
	post := func(body io.Reader) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL+"/filesystem.Filesystem/MakeDir", body)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("E2b-Sandbox-Id", "sb1")
		req.Header.Set("E2b-Sandbox-Port", "49983")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct {
			Code string `json:"code"`
		}
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Code
	}
	for name, body := range map[string]io.Reader{
		"with a length": bytes.NewReader(big),
		"chunked":       io.MultiReader(bytes.NewReader(big)), // hides the length
	} {
		if status, code := post(body); status != http.StatusTooManyRequests || code != "resource_exhausted" {
			t.Errorf("%s: %d %q, want 429 resource_exhausted", name, status, code)
		}
	}
	if status, code := post(bytes.NewReader([]byte(`{"path":"/tmp/after"}`))); status != 200 {
		t.Errorf("after the oversized bodies: %d %q", status, code)
	}
}
