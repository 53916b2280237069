package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/proxy"
)

// agent stands in for a sandbox's agent: it echoes what it saw and answers
// CONNECT by serving one HTTP response itself on the hijacked connection,
// as a server on that port inside the sandbox would.
func agent(t testing.TB) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "envd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			if r.Host != "127.0.0.1:8000" {
				http.Error(w, "closed", http.StatusBadGateway)
				return
			}
			c, brw, _ := http.NewResponseController(w).Hijack()
			defer c.Close()
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
			req, err := http.ReadRequest(brw.Reader)
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nport 8000 "+req.URL.Path[:0])
			return
		}
		_, _ = io.WriteString(w, "envd "+r.Header.Get("E2b-Sandbox-Port")+" "+r.URL.Path)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestRouting(t *testing.T) {
	sock := agent(t)
	control := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "control "+r.URL.Path) })
	p := proxy.New(proxy.Config{
		Lookup: func(id string) (string, bool) { return sock, id == "sb1" },
		Signed: func(r *http.Request) (string, string, bool) {
			return "sb1", sock, r.URL.Query().Get("signature") == "good"
		},
		Next: control,
	})
	srv := httptest.NewServer(p)
	defer srv.Close()

	for _, tc := range []struct {
		name, path, host string
		headers          map[string]string
		status           int
		body             string
	}{
		{"control plane", "/v2/sandboxes", "", nil, 200, "control /v2/sandboxes"},
		{"envd by headers", "/health", "", map[string]string{"E2b-Sandbox-Id": "sb1", "E2b-Sandbox-Port": "49983"}, 200, "envd 49983 /health"},
		{"interpreter by headers", "/execute", "", map[string]string{"E2b-Sandbox-Id": "sb1", "E2b-Sandbox-Port": "49999"}, 200, "envd 49999 /execute"},
		{"envd by host", "/health", "49983-sb1.sandpit.test", nil, 200, "envd 49983 /health"},
		{"port by host through a tunnel", "/", "8000-sb1.sandpit.test", nil, 200, "port 8000 "},
		{"closed port", "/", "8001-sb1.sandpit.test", nil, 502, "no server listening on port 8001"},
		{"unknown sandbox", "/health", "", map[string]string{"E2b-Sandbox-Id": "nope", "E2b-Sandbox-Port": "49983"}, 502, `"code":502`},
		{"half the headers", "/health", "", map[string]string{"E2b-Sandbox-Id": "sb1"}, 400, "missing header"},
		{"bad port", "/health", "", map[string]string{"E2b-Sandbox-Id": "sb1", "E2b-Sandbox-Port": "x"}, 400, "invalid E2b-Sandbox-Port"},
		{"signed file URL", "/files?path=a&signature=good", "", nil, 200, "envd 49983 /files"},
		{"badly signed file URL", "/files?path=a&signature=bad", "", nil, 401, "invalid signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+tc.path, nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) {
				t.Errorf("got %d %q, want %d containing %q", resp.StatusCode, body, tc.status, tc.body)
			}
		})
	}
}

// TestStreamWhileUploading checks that a response the agent starts before
// the request body is drained is not cut (full duplex).
func TestStreamWhileUploading(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "envd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	agentSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				_, _ = io.WriteString(w, "got "+line)
				w.(http.Flusher).Flush()
			}
			if err != nil {
				return
			}
		}
	})}
	go func() { _ = agentSrv.Serve(ln) }()
	defer agentSrv.Close()
	p := proxy.New(proxy.Config{Lookup: func(string) (string, bool) { return sock, true }, Next: http.NotFoundHandler()})
	srv := httptest.NewServer(p)
	defer srv.Close()

	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", srv.URL+"/stream", pr)
	req.Header.Set("E2b-Sandbox-Id", "sb1")
	req.Header.Set("E2b-Sandbox-Port", "49983")
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			close(done)
			return
		}
		done <- resp
	}()
	_, _ = io.WriteString(pw, "one\n")
	resp := <-done
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if l, _ := br.ReadString('\n'); l != "got one\n" {
		t.Fatalf("first line %q", l)
	}
	_, _ = io.WriteString(pw, "two\n")
	if l, _ := br.ReadString('\n'); l != "got two\n" {
		t.Fatalf("second line %q", l)
	}
	pw.Close()
}
