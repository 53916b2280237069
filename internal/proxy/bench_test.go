package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/proxy"
)

// BenchmarkServeHTTP measures the proxy's own cost per request (ServeHTTP
// into a recorder, the agent a stub on a Unix socket), so that changes to
// the hot path show in ns/op and allocs/op.
func BenchmarkServeHTTP(b *testing.B) {
	sock := agent(b)
	cfg := proxy.Config{
		Lookup: func(id string) (string, bool) { return sock, id == "sb1" },
		Next:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "control") }),
	}
	plain := proxy.New(cfg)
	cfg.Audit = func(*http.Request, proxy.Event) {}
	audited := proxy.New(cfg)
	for _, tc := range []struct {
		name, method, path, port, body string
		p                              *proxy.Proxy
	}{
		{"control-plane", "GET", "/v2/sandboxes", "", "", plain},
		{"envd-GET", "GET", "/files?path=/tmp/x", "49983", "", plain},
		{"envd-ListDir", "POST", "/filesystem.Filesystem/ListDir", "49983", `{"path":"/tmp"}`, plain},
		{"interpreter-GET", "GET", "/contexts", "49999", "", plain},
		// With auditing on: reads cost what they did; audited requests
		// pay for their detail.
		{"audit-on/control-plane", "GET", "/v2/sandboxes", "", "", audited},
		{"audit-on/envd-GET", "GET", "/files?path=/tmp/x", "49983", "", audited},
		{"audit-on/envd-ListDir", "POST", "/filesystem.Filesystem/ListDir", "49983", `{"path":"/tmp"}`, audited},
		{"audit-on/interpreter-GET", "GET", "/contexts", "49999", "", audited},
		{"audit-on/envd-MakeDir", "POST", "/filesystem.Filesystem/MakeDir", "49983", `{"path":"/tmp/x"}`, audited},
		{"audit-on/interpreter-execute", "POST", "/execute", "49999", `{"code":"print(1)"}`, audited},
	} {
		p := tc.p
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(tc.method, "http://sandpit.test"+tc.path, strings.NewReader(tc.body))
				req.Header.Set("Content-Type", "application/json")
				if tc.port != "" {
					req.Header.Set("E2b-Sandbox-Id", "sb1")
					req.Header.Set("E2b-Sandbox-Port", tc.port)
				}
				w := httptest.NewRecorder()
				p.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", tc.name, w.Code, w.Body)
				}
			}
		})
	}
}
