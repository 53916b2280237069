package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/proxy"
)

// hostAgent stands in for a sandbox's agent whose port 8000 answers with
// the Host its request carried, and whose envd answers "envd".
func hostAgent(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "envd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			_, _ = io.WriteString(w, "envd host="+r.Host)
			return
		}
		c, brw, _ := http.NewResponseController(w).Hijack()
		defer c.Close()
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
		req, err := http.ReadRequest(brw.Reader)
		if err != nil {
			return
		}
		body := "port host=" + req.Host
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return sock
}

// Private ports answer only requests with the sandbox's traffic token
// (403 in E2B's shape otherwise), envd keeps its own auth and no token,
// a paused private sandbox is not woken by a request without the token,
// and maskRequestHost replaces the Host (${PORT} included) for ports only.
func TestPrivatePortsAndMask(t *testing.T) {
	sock := hostAgent(t)
	woken := 0
	p := proxy.New(proxy.Config{
		Lookup: func(id string) (string, bool) { return sock, id == "priv" || id == "mask" },
		Wake: func(_ context.Context, id string) (string, bool) {
			woken++
			return sock, id == "paused"
		},
		Traffic: func(id string) (proxy.Traffic, bool) {
			switch id {
			case "priv", "paused":
				return proxy.Traffic{AccessToken: "tok-" + id}, true
			case "mask":
				return proxy.Traffic{MaskRequestHost: "localhost:${PORT}"}, true
			}
			return proxy.Traffic{}, false
		},
		Next: http.NotFoundHandler(),
	})
	srv := httptest.NewServer(p)
	defer srv.Close()

	for _, tc := range []struct {
		name, host, token string
		status            int
		body, message     string
	}{
		{"no token", "8000-priv.sandpit.test", "", 403, "", "Sandbox is secured with traffic access token. Token header 'e2b-traffic-access-token' is missing"},
		{"wrong token", "8000-priv.sandpit.test", "tok-mask", 403, "", "Sandbox is secured with traffic access token. Provided token in header 'e2b-traffic-access-token' is invalid"},
		{"right token", "8000-priv.sandpit.test", "tok-priv", 200, "port host=8000-priv.sandpit.test", ""},
		{"interpreter port needs it too", "49999-priv.sandpit.test", "", 403, "", "Token header 'e2b-traffic-access-token' is missing"},
		{"envd needs none", "49983-priv.sandpit.test", "", 200, "envd host=49983-priv.sandpit.test", ""},
		{"paused, no token: not woken", "8000-paused.sandpit.test", "", 403, "", "is missing"},
		{"masked host", "8000-mask.sandpit.test", "", 200, "port host=localhost:8000", ""},
		{"envd host not masked", "49983-mask.sandpit.test", "", 200, "envd host=49983-mask.sandpit.test", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/", nil)
			req.Host = tc.host
			if tc.token != "" {
				req.Header.Set("E2B-Traffic-Access-Token", tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.status)
			}
			if tc.status == 403 {
				var e struct {
					SandboxID string `json:"sandboxId"`
					Message   string `json:"message"`
					Code      int    `json:"code"`
				}
				if err := json.Unmarshal(body, &e); err != nil || e.Code != 403 || e.SandboxID == "" || !strings.Contains(e.Message, tc.message) {
					t.Errorf("body %s, want message containing %q", body, tc.message)
				}
				return
			}
			if string(body) != tc.body {
				t.Errorf("body %q, want %q", body, tc.body)
			}
		})
	}
	if woken != 0 {
		t.Errorf("a request without the token woke a sandbox %d times", woken)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/", nil)
	req.Host = "49983-paused.sandpit.test"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || woken != 1 {
		t.Errorf("envd traffic to a paused sandbox: %d, woken %d", resp.StatusCode, woken)
	}
}
