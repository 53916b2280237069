package intercept_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/intercept"
)

// rules is a Transforms over a fixed table: sandbox → host → headers.
type rules struct {
	table map[string]map[string]http.Header
	err   error
	calls atomic.Int32
}

func (r *rules) Intercepts(sandboxID, host string) bool {
	_, ok := r.table[sandboxID][host]
	return ok
}

func (r *rules) Headers(_ context.Context, sandboxID, host string) (http.Header, error) {
	r.calls.Add(1)
	if r.err != nil {
		return nil, r.err
	}
	return r.table[sandboxID][host].Clone(), nil
}

// upstream is a server on 127.0.0.1 that records the headers it got.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func newUpstream(t *testing.T, tls bool) *upstream {
	t.Helper()
	u := &upstream{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Header.Clone())
		u.mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, "upstream saw "+r.Method+" "+r.Host+r.URL.Path+" body="+string(body))
	})
	if tls {
		u.Server = httptest.NewTLSServer(h)
	} else {
		u.Server = httptest.NewServer(h)
	}
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) headers() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.seen...)
}

// caFile writes the upstream's certificate where --intercept-upstream-ca
// would name it.
func caFile(t *testing.T, u *upstream) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "upstream-ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: u.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sandboxClient is an HTTP client standing in for a program in the
// sandbox: each connection it opens is handed to Intercept (as netproxy
// would) as going to name, and trusts the interception CA only.
func sandboxClient(t *testing.T, ic *intercept.Interceptor, sandboxID string, up *upstream, results chan<- result) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ic.CACertPEM()) {
		t.Fatal("CACertPEM holds no certificate")
	}
	addr := up.Listener.Addr().String()
	dialUp := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, hostport string) (net.Conn, error) {
			name, port, _ := net.SplitHostPort(hostport)
			c, s := net.Pipe()
			go func() {
				handled, err := ic.Intercept(context.Background(), sandboxID, name, atoiPort(port), s, dialUp)
				if !handled {
					s.Close()
				}
				results <- result{handled, err}
			}()
			return c, nil
		},
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

type result struct {
	handled bool
	err     error
}

func atoiPort(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func do(t *testing.T, c *http.Client, method, url, body string, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v // net/http ignores a Host header
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Over HTTPS: the sandbox's TLS ends at a certificate for the name the
// daemon's CA signed, every request on the connection gets the rule's
// headers (replacing what the sandbox sent, resolved per request), and
// the upstream, verified against the extra CA, answers.
func TestInjectsHeadersOverTLS(t *testing.T) {
	up := newUpstream(t, true)
	r := &rules{table: map[string]map[string]http.Header{"sb1": {"example.com": {"Authorization": {"Bearer real-secret"}, "X-Team": {"a"}}}}}
	ic, err := intercept.New(intercept.Config{DataDir: t.TempDir(), Transforms: r, UpstreamCAFile: caFile(t, up)})
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan result, 4)
	c := sandboxClient(t, ic, "sb1", up, results)
	for i, body := range []string{"", "payload"} {
		method := "GET"
		if body != "" {
			method = "POST"
		}
		status, got := do(t, c, method, "https://example.com/v1/x", body, map[string]string{"Authorization": "Bearer fake-from-sandbox"})
		if status != 200 || got != "upstream saw "+method+" example.com/v1/x body="+body {
			t.Fatalf("request %d: %d %q", i, status, got)
		}
	}
	seen := up.headers()
	if len(seen) != 2 {
		t.Fatalf("upstream saw %d requests", len(seen))
	}
	for _, h := range seen {
		if got := h.Values("Authorization"); len(got) != 1 || got[0] != "Bearer real-secret" || h.Get("X-Team") != "a" {
			t.Errorf("upstream headers %v", h)
		}
	}
	if r.calls.Load() != 2 {
		t.Errorf("Headers asked %d times, want once per request", r.calls.Load())
	}
	c.CloseIdleConnections()
	if res := <-results; !res.handled || res.err != nil {
		t.Errorf("Intercept = %v, %v; one connection expected, served", res.handled, res.err)
	}
}

// Plain HTTP is served the same way, without TLS.
func TestInjectsHeadersOverPlainHTTP(t *testing.T) {
	up := newUpstream(t, false)
	r := &rules{table: map[string]map[string]http.Header{"sb1": {"api.example.com": {"Authorization": {"Bearer plain"}}}}}
	ic, err := intercept.New(intercept.Config{DataDir: t.TempDir(), Transforms: r})
	if err != nil {
		t.Fatal(err)
	}
	c := sandboxClient(t, ic, "sb1", up, make(chan result, 4))
	if status, _ := do(t, c, "GET", "http://api.example.com/", "", nil); status != 200 {
		t.Fatalf("status %d", status)
	}
	// A Host naming another site on a matched connection gets nothing.
	if status, _ := do(t, c, "GET", "http://api.example.com/", "", map[string]string{"Host": "other.example"}); status != 200 {
		t.Fatalf("status %d", status)
	}
	seen := up.headers()
	if len(seen) != 2 || seen[0].Get("Authorization") != "Bearer plain" || seen[1].Get("Authorization") != "" {
		t.Errorf("upstream saw %v", seen)
	}
}

// A host no rule names is not touched: Intercept declines before reading
// a byte, and netproxy relays it.
func TestDeclinesUnnamedHosts(t *testing.T) {
	r := &rules{table: map[string]map[string]http.Header{"sb1": {"example.com": {"A": {"b"}}}}}
	ic, err := intercept.New(intercept.Config{DataDir: t.TempDir(), Transforms: r})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ sandbox, name string }{{"sb1", "other.example"}, {"sb2", "example.com"}} {
		client, peer := net.Pipe()
		// Nothing is written: a read would block forever.
		handled, err := ic.Intercept(t.Context(), c.sandbox, c.name, 443, client, func(context.Context) (net.Conn, error) {
			return nil, errors.New("dialed")
		})
		if handled || err != nil {
			t.Errorf("%s → %s: handled %v, %v", c.sandbox, c.name, handled, err)
		}
		client.Close()
		peer.Close()
	}
}

// An upstream whose certificate the host does not trust is not sent the
// headers: the sandbox gets 502. A rule whose secret cannot be resolved
// refuses the request the same way, before any upstream is dialed.
func TestRefusesRatherThanLeak(t *testing.T) {
	up := newUpstream(t, true)
	r := &rules{table: map[string]map[string]http.Header{"sb1": {"example.com": {"Authorization": {"Bearer real-secret"}}}}}
	ic, err := intercept.New(intercept.Config{DataDir: t.TempDir(), Transforms: r}) // no extra CA
	if err != nil {
		t.Fatal(err)
	}
	c := sandboxClient(t, ic, "sb1", up, make(chan result, 4))
	if status, body := do(t, c, "GET", "https://example.com/", "", nil); status != 502 || !strings.Contains(body, "could not be reached") {
		t.Errorf("untrusted upstream: %d %q", status, body)
	}
	if n := len(up.headers()); n != 0 {
		t.Errorf("the untrusted upstream got %d requests", n)
	}

	r.err = errors.New("secret k not found")
	ic2, err := intercept.New(intercept.Config{DataDir: t.TempDir(), Transforms: r, UpstreamCAFile: caFile(t, up)})
	if err != nil {
		t.Fatal(err)
	}
	c2 := sandboxClient(t, ic2, "sb1", up, make(chan result, 4))
	if status, body := do(t, c2, "GET", "https://example.com/", "", nil); status != 502 || strings.Contains(body, "secret k") {
		t.Errorf("unresolvable rule: %d %q", status, body)
	}
	if n := len(up.headers()); n != 0 {
		t.Errorf("the upstream got %d requests without the rule's headers", n)
	}
}

// The CA is made once per data dir (key 0600) and read back by the next
// Interceptor; leaves for a name are cached.
func TestCAPersists(t *testing.T) {
	dir := t.TempDir()
	r := &rules{}
	a, err := intercept.New(intercept.Config{DataDir: dir, Transforms: r})
	if err != nil {
		t.Fatal(err)
	}
	b, err := intercept.New(intercept.Config{DataDir: dir, Transforms: r})
	if err != nil {
		t.Fatal(err)
	}
	if string(a.CACertPEM()) != string(b.CACertPEM()) {
		t.Error("a second Interceptor on the data dir made another CA")
	}
	fi, err := os.Stat(filepath.Join(dir, intercept.CAKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key: %v, %v", fi.Mode(), err)
	}
	block, _ := pem.Decode(a.CACertPEM())
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !cert.IsCA {
		t.Errorf("CA certificate: %v, IsCA %v", err, cert != nil && cert.IsCA)
	}
}

// An intercepted connection ends with its context (a daemon stopping, a
// sandbox killed), even when the sandbox keeps it open and idle.
func TestConnectionEndsWithContext(t *testing.T) {
	r := &rules{table: map[string]map[string]http.Header{"sb1": {"example.com": {"A": {"b"}}}}}
	ic, err := intercept.New(intercept.Config{DataDir: t.TempDir(), Transforms: r})
	if err != nil {
		t.Fatal(err)
	}
	client, peer := net.Pipe()
	defer peer.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan result, 1)
	go func() {
		h, err := ic.Intercept(ctx, "sb1", "example.com", 80, client, func(context.Context) (net.Conn, error) { return nil, errors.New("no") })
		done <- result{h, err}
	}()
	// The first byte decides TLS or not; then the session waits for a
	// request that never comes.
	if _, err := peer.Write([]byte("G")); err != nil {
		t.Fatal(err)
	}
	cancel()
	if res := <-done; !res.handled {
		t.Errorf("Intercept = %+v", res)
	}
}

// An upgrade (WebSocket) on an intercepted connection gets the rule's
// headers on its request, then bytes flow both ways untouched.
func TestUpgradePassesThrough(t *testing.T) {
	var gotAuth atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth.Store(r.Header.Get("Authorization"))
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		buf := make([]byte, 5)
		if _, err := io.ReadFull(brw, buf); err == nil {
			_, _ = c.Write(append([]byte("echo:"), buf...))
		}
	}))
	defer up.Close()
	r := &rules{table: map[string]map[string]http.Header{"sb1": {"ws.example": {"Authorization": {"Bearer ws"}}}}}
	ic, err := intercept.New(intercept.Config{DataDir: t.TempDir(), Transforms: r})
	if err != nil {
		t.Fatal(err)
	}
	client, proxyEnd := net.Pipe()
	defer client.Close()
	done := make(chan error, 1)
	go func() {
		_, err := ic.Intercept(t.Context(), "sb1", "ws.example", 80, proxyEnd, func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", up.Listener.Addr().String())
		})
		done <- err
	}()
	go func() {
		_, _ = io.WriteString(client, "GET /ws HTTP/1.1\r\nHost: ws.example\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello")
	}()
	br := bufio.NewReader(client)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "echo:hello" {
		t.Fatalf("after the upgrade: %q, %v", buf, err)
	}
	if gotAuth.Load() != "Bearer ws" {
		t.Errorf("upgrade request Authorization = %v", gotAuth.Load())
	}
	client.Close()
	if err := <-done; err != nil {
		t.Errorf("Intercept: %v", err)
	}
}
