package daemon

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/sandbox"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template/agentexec"
)

// A sandbox created with a network rule trusts the daemon's interception
// CA (file, system bundle, the variables clients read), and a connection
// of it to the rule's host, handed to the daemon's Interceptor as the
// egress proxy hands it, reaches the upstream with the rule's header, its
// secret resolved from the sandbox's team, while nothing of the secret is
// to be found in the sandbox. A sandbox without rules trusts nothing new.
func TestRuleHeaderReachesUpstreamNotSandbox(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the daemon needs root")
	}
	var mu sync.Mutex
	var seen http.Header
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		_, _ = io.WriteString(w, "hello from upstream")
	}))
	defer up.Close()
	upCA := filepath.Join(t.TempDir(), "upstream.pem")
	if err := os.WriteFile(upCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := idsConfig(t)
	cfg.InterceptUpstreamCA = upCA
	cfg.KillOnStop = true // the sandboxes go with the daemon, not left running on the host
	ctx := t.Context()
	d, err := New(ctx, cfg, slog.New(slog.DiscardHandler), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close(context.Background())
	team, err := d.store.Team(ctx, store.DefaultTeamName)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "sk-injected-0123456789"
	if _, err := d.secrets.Create(ctx, team.ID, "api-key", secret, nil); err != nil {
		t.Fatal(err)
	}
	sb, err := d.manager.Create(ctx, sandbox.CreateRequest{Team: team, Template: "base", Secure: true,
		Rules: map[string][]sandbox.Rule{"example.com": {{Headers: map[string]string{"Authorization": "Bearer ${e2b.secrets.api-key}"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := d.manager.Create(ctx, sandbox.CreateRequest{Team: team, Template: "base", Secure: true})
	if err != nil {
		t.Fatal(err)
	}
	run := func(id, token, script string) string {
		t.Helper()
		socket, ok := d.manager.Lookup(id)
		if !ok {
			t.Fatalf("sandbox %s is not running", id)
		}
		c := agentexec.New(socket, token)
		defer c.Close()
		var out strings.Builder
		if err := c.Run(ctx, agentexec.Command{Script: script, Output: &out}); err != nil {
			t.Fatalf("%s: %v: %s", script, err, out.String())
		}
		return out.String()
	}
	caPEM := strings.TrimSpace(string(d.Interceptor().CACertPEM()))
	if got := run(sb.ID, sb.AccessToken, "cat /usr/local/share/ca-certificates/sandpit-intercept.crt"); strings.TrimSpace(got) != caPEM {
		t.Errorf("the CA file in the sandbox: %q", got)
	}
	if got := run(sb.ID, sb.AccessToken, "cat $SSL_CERT_FILE"); !strings.Contains(got, caPEM) {
		t.Errorf("the sandbox's bundle ($SSL_CERT_FILE) lacks the CA")
	}
	if got := run(sb.ID, sb.AccessToken, "echo $NODE_EXTRA_CA_CERTS $REQUESTS_CA_BUNDLE"); got != "/usr/local/share/ca-certificates/sandpit-intercept.crt /etc/ssl/certs/ca-certificates.crt\n" {
		t.Errorf("CA variables: %q", got)
	}
	if got := run(plain.ID, plain.AccessToken, "echo \"[$NODE_EXTRA_CA_CERTS]\"; cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null | grep -c . || true"); !strings.HasPrefix(got, "[]\n") {
		t.Errorf("a sandbox without rules got the CA variables: %q", got)
	}
	if got := run(plain.ID, plain.AccessToken, "cat /usr/local/share/ca-certificates/sandpit-intercept.crt 2>&1 || true"); strings.Contains(got, "BEGIN CERTIFICATE") {
		t.Error("a sandbox without rules trusts the interception CA")
	}

	// The connection, as the egress proxy hands it over.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(d.Interceptor().CACertPEM())
	clientEnd, proxyEnd := net.Pipe()
	done := make(chan error, 1)
	go func() {
		handled, err := d.Interceptor().Intercept(ctx, sb.ID, "example.com", 443, proxyEnd, func(ctx context.Context) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "tcp", up.Listener.Addr().String())
		})
		if !handled {
			proxyEnd.Close()
		}
		done <- err
	}()
	tc := tls.Client(clientEnd, &tls.Config{ServerName: "example.com", RootCAs: pool})
	if _, err := io.WriteString(tc, "GET /v1/models HTTP/1.1\r\nHost: example.com\r\nAuthorization: Bearer from-the-sandbox\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tc.Close()
	if resp.StatusCode != 200 || string(body) != "hello from upstream" {
		t.Errorf("through the interception: %d %q", resp.StatusCode, body)
	}
	if err := <-done; err != nil {
		t.Errorf("Intercept: %v", err)
	}
	mu.Lock()
	got := seen.Values("Authorization")
	mu.Unlock()
	if len(got) != 1 || got[0] != "Bearer "+secret {
		t.Errorf("upstream got Authorization %q", got)
	}
	// The other sandbox's connections are not intercepted.
	if handled, _ := d.Interceptor().Intercept(ctx, plain.ID, "example.com", 443, nil, nil); handled {
		t.Error("a sandbox without rules was intercepted")
	}
	if got := run(sb.ID, sb.AccessToken, "env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; grep -rs "+secret+" /etc /tmp /home /root || true"); strings.Contains(got, secret) {
		t.Error("the secret is to be found in the sandbox")
	}
}
