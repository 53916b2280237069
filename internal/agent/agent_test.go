package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/sandpit-dev/sandpit/gen/proto/process"
	"github.com/sandpit-dev/sandpit/gen/proto/process/processconnect"
)

const token = "secret-token"

func newAgent(t testing.TB, cfg Config) (*Agent, *httptest.Server) {
	t.Helper()
	if cfg.DefaultUser == "" {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		cfg.DefaultUser = u.Username
	}
	a := New(cfg)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.Close()
		if err := a.Close(); err != nil {
			t.Errorf("closing agent: %v", err)
		}
	})
	return a, srv
}

func do(t testing.TB, srv *httptest.Server, method, path, tok string, body io.Reader, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("X-Access-Token", tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestAccessToken(t *testing.T) {
	_, srv := newAgent(t, Config{AccessToken: token, Env: map[string]string{"A": "1"}})
	const unauthorized = `{"code":401,"message":"unauthorized access, please provide a valid access token or method signing if supported"}` + "\n"
	for _, tc := range []struct {
		method, path, tok string
		want              int
	}{
		{"GET", "/health", "", http.StatusNoContent},
		{"GET", "/envs", "", http.StatusUnauthorized},
		{"GET", "/envs", "wrong", http.StatusUnauthorized},
		{"GET", "/envs", token, http.StatusOK},
		{"GET", "/metrics", "", http.StatusUnauthorized},
		{"GET", "/metrics", token, http.StatusOK},
		{"POST", "/process.Process/List", "", http.StatusUnauthorized},
		{"GET", "/nowhere", "", http.StatusUnauthorized},
		{"GET", "/nowhere", token, http.StatusNotFound},
	} {
		resp, body := do(t, srv, tc.method, tc.path, tc.tok, strings.NewReader("{}"), "Content-Type", "application/json")
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s token %q: %d, want %d (%s)", tc.method, tc.path, tc.tok, resp.StatusCode, tc.want, body)
		}
		if tc.want == http.StatusUnauthorized && (body != unauthorized || resp.Header.Get("Content-Type") != "application/json; charset=utf-8") {
			t.Errorf("401 body %q, type %q", body, resp.Header.Get("Content-Type"))
		}
	}

	// The Connect client with the token works, without it gets
	// unauthenticated.
	client := processconnect.NewProcessClient(srv.Client(), srv.URL, connect.WithProtoJSON())
	req := connect.NewRequest(&pb.ListRequest{})
	if _, err := client.List(t.Context(), req); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("List without token: %v", err)
	}
	req.Header().Set("X-Access-Token", token)
	if _, err := client.List(t.Context(), req); err != nil {
		t.Errorf("List with token: %v", err)
	}
}

func TestEnvsAndInit(t *testing.T) {
	a, srv := newAgent(t, Config{AccessToken: token, Env: map[string]string{"A": "1"}})
	resp, body := do(t, srv, "GET", "/envs", token, nil)
	if resp.Header.Get("Cache-Control") != "no-store" || strings.TrimSpace(body) != `{"A":"1"}` {
		t.Errorf("/envs: %q %q", resp.Header.Get("Cache-Control"), body)
	}
	// /init without proof of the current token is refused.
	if resp, _ := do(t, srv, "POST", "/init", "", strings.NewReader(`{"accessToken":"new"}`)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/init taking over the token: %d", resp.StatusCode)
	}
	resp, body = do(t, srv, "POST", "/init", token, strings.NewReader(`{"envVars":{"B":"2"},"accessToken":"new","defaultUser":"root","defaultWorkdir":"/tmp","timestamp":"2025-01-01T00:00:00Z"}`))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("/init: %d %s", resp.StatusCode, body)
	}
	v := a.Settings().Get()
	if v.Env["A"] != "1" || v.Env["B"] != "2" || v.AccessToken != "new" || v.DefaultUser != "root" || v.DefaultWorkdir != "/tmp" {
		t.Errorf("settings after /init: %+v", v)
	}
	if resp, _ := do(t, srv, "GET", "/envs", token, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("old token still accepted: %d", resp.StatusCode)
	}

	// Without a token /init sets the first one.
	a2, srv2 := newAgent(t, Config{})
	if resp, _ := do(t, srv2, "POST", "/init", "", strings.NewReader(`{"accessToken":"first"}`)); resp.StatusCode != http.StatusNoContent {
		t.Errorf("first /init: %d", resp.StatusCode)
	}
	if !a2.Settings().CheckToken("first") || a2.Settings().CheckToken("") {
		t.Error("first token not set")
	}
}

func TestMetrics(t *testing.T) {
	_, srv := newAgent(t, Config{})
	_, body := do(t, srv, "GET", "/metrics", "", nil)
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	for _, k := range []string{"ts", "cpu_count", "cpu_used_pct", "mem_total", "mem_used", "mem_cache", "mem_total_mib", "mem_used_mib", "disk_used", "disk_total"} {
		if _, ok := m[k]; !ok {
			t.Errorf("metrics lack %s: %s", k, body)
		}
	}
	if m["mem_total"].(float64) <= 0 || m["disk_total"].(float64) <= 0 || m["cpu_count"].(float64) < 1 {
		t.Errorf("implausible metrics: %s", body)
	}
}

func TestInterpreterAndMounts(t *testing.T) {
	interp := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "interp "+r.URL.Path) })
	var gotDeps Deps
	mount := func(d Deps) []Route {
		gotDeps = d
		return []Route{
			{Pattern: "/filesystem.Filesystem/", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "fs") })},
			{Pattern: "/files", OwnAuth: true, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "files") })},
		}
	}
	_, srv := newAgent(t, Config{AccessToken: token, Interpreter: interp, Mounts: []Mount{mount}})
	if gotDeps.Settings == nil || gotDeps.Logger == nil {
		t.Error("mount got no deps")
	}
	if _, body := do(t, srv, "POST", "/execute", "", nil, "E2b-Sandbox-Port", "49999"); body != "interp /execute" {
		t.Errorf("interpreter: %q", body)
	}
	if _, body := do(t, srv, "GET", "/health", "", nil, "E2b-Sandbox-Port", "49983"); body != "" {
		t.Errorf("envd port: %q", body)
	}
	if resp, _ := do(t, srv, "POST", "/filesystem.Filesystem/Stat", "", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("filesystem without token: %d", resp.StatusCode)
	}
	if _, body := do(t, srv, "POST", "/filesystem.Filesystem/Stat", token, nil); body != "fs" {
		t.Errorf("filesystem: %q", body)
	}
	if _, body := do(t, srv, "GET", "/files", "", nil); body != "files" {
		t.Errorf("files (own auth): %q", body)
	}

	_, bare := newAgent(t, Config{})
	if resp, _ := do(t, bare, "POST", "/execute", "", nil, "E2b-Sandbox-Port", "49999"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("no interpreter: %d", resp.StatusCode)
	}
}

// envelope frames one Connect streaming message.
func envelope(flag byte, payload []byte) []byte {
	b := make([]byte, 5, 5+len(payload))
	b[0] = flag
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

// TestRawConnectJSONStart sends Start exactly as the JS SDK does (wire spec
// §4.4) and checks the envelopes byte by byte.
func TestRawConnectJSONStart(t *testing.T) {
	_, srv := newAgent(t, Config{AccessToken: token})
	body := envelope(0, []byte(`{"process":{"cmd":"/bin/bash","args":["-l","-c","echo hi"]},"stdin":false}`))
	resp, raw := do(t, srv, "POST", "/process.Process/Start", token, bytes.NewReader(body),
		"Content-Type", "application/connect+json",
		"Connect-Protocol-Version", "1",
		"Connect-Timeout-Ms", "60000",
		"Keepalive-Ping-Interval", "50",
		"E2b-Sandbox-Id", "sbx",
		"E2b-Sandbox-Port", "49983",
	)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/connect+json" {
		t.Fatalf("status %d, type %q: %q", resp.StatusCode, resp.Header.Get("Content-Type"), raw)
	}
	type env struct {
		flag byte
		msg  string
	}
	var envs []env
	rest := []byte(raw)
	for len(rest) > 0 {
		if len(rest) < 5 {
			t.Fatalf("truncated envelope: %q", rest)
		}
		n := binary.BigEndian.Uint32(rest[1:5])
		// protojson adds random spaces on purpose: compare compacted.
		var msg bytes.Buffer
		if err := json.Compact(&msg, rest[5:5+n]); err != nil {
			t.Fatalf("envelope is not JSON: %q", rest[5:5+n])
		}
		envs = append(envs, env{rest[0], msg.String()})
		rest = rest[5+n:]
	}
	if len(envs) < 4 {
		t.Fatalf("envelopes: %q", envs)
	}
	var start struct {
		Event struct {
			Start struct {
				Pid int `json:"pid"`
			} `json:"start"`
		} `json:"event"`
	}
	if err := json.Unmarshal([]byte(envs[0].msg), &start); err != nil || envs[0].flag != 0 || start.Event.Start.Pid == 0 ||
		envs[0].msg != `{"event":{"start":{"pid":`+itoa(start.Event.Start.Pid)+`}}}` {
		t.Errorf("first envelope %q", envs[0])
	}
	var out string
	for _, e := range envs[1 : len(envs)-2] {
		var d struct {
			Event struct {
				Data struct {
					Stdout string `json:"stdout"`
				} `json:"data"`
			} `json:"event"`
		}
		if err := json.Unmarshal([]byte(e.msg), &d); err != nil || e.flag != 0 {
			t.Errorf("data envelope %q", e)
		}
		b, _ := base64.StdEncoding.DecodeString(d.Event.Data.Stdout)
		out += string(b)
	}
	if out != "hi\n" {
		t.Errorf("stdout %q", out)
	}
	if end := envs[len(envs)-2]; end.flag != 0 || end.msg != `{"event":{"end":{"exited":true,"status":"exit status 0"}}}` {
		t.Errorf("end envelope %q", end)
	}
	if last := envs[len(envs)-1]; last.flag != 2 || last.msg != "{}" {
		t.Errorf("end-stream envelope %q", last)
	}
}

func itoa(n int) string { return jsonNum(n) }

func jsonNum(n int) string { b, _ := json.Marshal(n); return string(b) }

// echoServer accepts connections on 127.0.0.1 and echoes them.
func echoServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func connectTunnel(t testing.TB, srv *httptest.Server, target, tok string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if tok != "" {
		req += "X-Access-Token: " + tok + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	return c, br, resp
}

func TestConnectTunnel(t *testing.T) {
	addr := echoServer(t)
	_, port, _ := net.SplitHostPort(addr)
	_, srv := newAgent(t, Config{AccessToken: token})

	for _, target := range []string{"127.0.0.1:" + port, "localhost:" + port} {
		c, br, resp := connectTunnel(t, srv, target, token)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT %s: %d", target, resp.StatusCode)
		}
		if _, err := io.WriteString(c, "ping\n"); err != nil {
			t.Fatal(err)
		}
		line, err := br.ReadString('\n')
		if err != nil || line != "ping\n" {
			t.Errorf("through the tunnel: %q %v", line, err)
		}
		c.Close()
	}

	for _, tc := range []struct {
		target, tok string
		want        int
	}{
		// The daemon alone reaches the socket; it sends no token.
		{"127.0.0.1:" + port, "", http.StatusOK},
		{"10.0.0.1:" + port, token, http.StatusForbidden},
		{"example.com:80", token, http.StatusForbidden},
		{"127.0.0.1:1", token, http.StatusBadGateway},
	} {
		c, _, resp := connectTunnel(t, srv, tc.target, tc.tok)
		if resp.StatusCode != tc.want {
			t.Errorf("CONNECT %s token %q: %d, want %d", tc.target, tc.tok, resp.StatusCode, tc.want)
		}
		c.Close()
	}
}

// unixClient returns an HTTP client that dials sock.
func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

func TestServeUnixSocketAndStop(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "envd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := user.Current()
	a := New(Config{DefaultUser: u.Username})
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()

	client := unixClient(sock)
	resp, err := client.Get("http://envd/health")
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("health over the socket: %v %v", resp, err)
	}
	resp.Body.Close()

	// A long-running stream must not hold up the stop.
	pc := processconnect.NewProcessClient(client, "http://envd", connect.WithProtoJSON())
	s, err := pc.Start(t.Context(), connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "sleep", Args: []string{"60"}}}))
	if err != nil || !s.Receive() {
		t.Fatalf("start: %v %v", err, s.Err())
	}
	stopped := time.Now()
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not stop")
	}
	if d := time.Since(stopped); d > 3*time.Second {
		t.Errorf("stop took %v", d)
	}
	client.CloseIdleConnections()
}

func TestCompressionOff(t *testing.T) {
	_, srv := newAgent(t, Config{})
	body := envelope(0, []byte(`{"process":{"cmd":"/bin/sh","args":["-c","yes | head -c 20000"]},"stdin":false}`))
	resp, _ := do(t, srv, "POST", "/process.Process/Start", "", bytes.NewReader(body),
		"Content-Type", "application/connect+json", "Connect-Accept-Encoding", "gzip", "Accept-Encoding", "gzip")
	if enc := resp.Header.Get("Connect-Content-Encoding"); enc != "" {
		t.Errorf("stream compressed with %q", enc)
	}
}

func TestAgentStopsEveryGoroutine(t *testing.T) {
	addr := echoServer(t) // stops in Cleanup, so start it before counting
	before := runtime.NumGoroutine()
	func() {
		a, srv := newAgent(t, Config{})
		client := processconnect.NewProcessClient(srv.Client(), srv.URL, connect.WithProtoJSON())
		s, err := client.Start(t.Context(), connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "sleep", Args: []string{"60"}}}))
		if err != nil || !s.Receive() {
			t.Fatalf("start: %v", err)
		}
		c, _, resp := connectTunnel(t, srv, addr, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("tunnel: %d", resp.StatusCode)
		}
		defer c.Close()
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
		srv.Close()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func FuzzTunnelTarget(f *testing.F) {
	for _, s := range []string{"127.0.0.1:80", "localhost:1", "[::1]:22", "10.0.0.1:80", "127.0.0.1:0", "host"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		target, err := tunnelTarget(s)
		if err != nil {
			return
		}
		host, _, err := net.SplitHostPort(target)
		if err != nil || (host != "127.0.0.1" && host != "::1") {
			t.Errorf("tunnelTarget(%q) = %q: not loopback", s, target)
		}
	})
}

// TestServeInSandboxListeners checks the listeners for code inside the
// sandbox: envd with its token check but no CONNECT tunnels, and the code
// interpreter alone; all stop with the agent.
func TestServeInSandboxListeners(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "envd.sock")
	listen := func(network, addr string) net.Listener {
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	ls := Listeners{Daemon: listen("unix", sock), Envd: listen("tcp", "127.0.0.1:0"), Interpreter: listen("tcp", "127.0.0.1:0")}
	envdURL, interpURL := "http://"+ls.Envd.Addr().String(), "http://"+ls.Interpreter.Addr().String()
	u, _ := user.Current()
	a := New(Config{
		DefaultUser: u.Username,
		AccessToken: token,
		Interpreter: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "interpreter "+r.URL.Path)
		}),
	})
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- a.ServeListeners(ctx, ls) }()

	get := func(url string, header ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, _ := get(envdURL + "/health"); st != http.StatusNoContent {
		t.Errorf("envd /health: %d", st)
	}
	if st, _ := get(envdURL + "/envs"); st != http.StatusUnauthorized {
		t.Errorf("envd /envs without a token: %d", st)
	}
	if st, _ := get(envdURL+"/envs", "X-Access-Token", token); st != http.StatusOK {
		t.Errorf("envd /envs with the token: %d", st)
	}
	if st, body := get(interpURL + "/health"); st != http.StatusOK || body != "interpreter /health" {
		t.Errorf("interpreter /health: %d %q", st, body)
	}
	// No tunnels from inside: CONNECT is for the daemon's socket.
	c, err := net.Dial("tcp", ls.Envd.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	target := ls.Interpreter.Addr().String()
	_, _ = io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\nX-Access-Token: "+token+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("CONNECT on the in-sandbox listener: %d", resp.StatusCode)
	}
	c.Close()

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeListeners: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeListeners did not stop")
	}
	for _, addr := range []string{ls.Envd.Addr().String(), ls.Interpreter.Addr().String()} {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Errorf("%s still accepts after the stop", addr)
		}
	}
}
