package sandpit

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/sandpit-dev/sandpit/gen/openapi"
	"github.com/sandpit-dev/sandpit/gen/proto/filesystem/filesystemconnect"
	"github.com/sandpit-dev/sandpit/gen/proto/process/processconnect"
)

// Sandbox is a handle on one running sandbox. Its fields are the services
// inside it; its methods manage its life. It is safe for concurrent use.
// Close it when done: Close kills the sandbox.
type Sandbox struct {
	// ID is the sandbox's ID.
	ID string
	// TemplateID is the template it was created from.
	TemplateID string
	// EnvdVersion is the version of the agent inside it.
	EnvdVersion string

	// Commands runs processes in the sandbox.
	Commands *Commands
	// Files reads and writes the sandbox's filesystem.
	Files *Files
	// PTY opens interactive terminals in the sandbox.
	PTY *PTY

	client       *Client
	accessToken  string
	trafficToken string
	domain       string

	closeOnce sync.Once
	closeErr  error
}

func (c *Client) newSandbox(s openapi.Sandbox) *Sandbox {
	sb := &Sandbox{
		ID:          s.SandboxID,
		TemplateID:  s.TemplateID,
		EnvdVersion: s.EnvdVersion,
		client:      c,
		domain:      c.domain,
	}
	if s.EnvdAccessToken != nil {
		sb.accessToken = *s.EnvdAccessToken
	}
	if s.TrafficAccessToken != nil {
		sb.trafficToken = *s.TrafficAccessToken
	}
	if s.Domain != nil && *s.Domain != "" {
		sb.domain = *s.Domain
	}
	envd := &sandboxDoer{sb: sb, port: EnvdPort}
	base := sb.baseURL(EnvdPort)
	opts := []connect.ClientOption{connect.WithProtoJSON()}
	sb.Commands = &Commands{sb: sb, rpc: processconnect.NewProcessClient(envd, base, opts...)}
	sb.PTY = &PTY{sb: sb, rpc: sb.Commands.rpc}
	sb.Files = &Files{sb: sb, rpc: filesystemconnect.NewFilesystemClient(envd, base, opts...), base: base}
	return sb
}

// knownE2BDomains are reached through one sandbox host plus headers, as the
// E2B SDKs do outside a browser.
var knownE2BDomains = map[string]bool{"e2b.app": true, "e2b.dev": true, "e2b.pro": true, "e2b-staging.dev": true}

// baseURL is where traffic for a sandbox port goes.
func (sb *Sandbox) baseURL(port int) string {
	if sb.client.sandboxURL != "" {
		return sb.client.sandboxURL
	}
	if port == EnvdPort && knownE2BDomains[sb.domain] {
		return "https://sandbox." + sb.domain
	}
	return "https://" + sb.Host(port)
}

// Host returns the host name at which the sandbox's port is served,
// "PORT-ID.DOMAIN". Requests to it reach a server listening on that port
// inside the sandbox (with sandpit, the server's --domain must resolve to it).
func (sb *Sandbox) Host(port int) string {
	return fmt.Sprintf("%d-%s.%s", port, sb.ID, sb.domain)
}

// sandboxDoer sends requests to one port of a sandbox: it adds the routing
// headers and the access token. It is connect.HTTPClient.
type sandboxDoer struct {
	sb   *Sandbox
	port int
}

func (d *sandboxDoer) Do(req *http.Request) (*http.Response, error) {
	d.sb.setHeaders(req.Header, d.port)
	return d.sb.client.hc.Do(req)
}

// setHeaders adds what every request into the sandbox carries.
func (sb *Sandbox) setHeaders(h http.Header, port int) {
	h.Set("E2b-Sandbox-Id", sb.ID)
	h.Set("E2b-Sandbox-Port", strconv.Itoa(port))
	h.Set("User-Agent", userAgent)
	if sb.accessToken != "" {
		h.Set("X-Access-Token", sb.accessToken)
	}
	if port == CodeInterpreterPort && sb.trafficToken != "" {
		h.Set(trafficTokenHeader, sb.trafficToken)
	}
}

// setUser names the sandbox user of an RPC (Basic auth, empty password).
func setUser(h http.Header, user string) {
	if user != "" {
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":")))
	}
}

// Info describes the sandbox.
func (sb *Sandbox) Info(ctx context.Context) (SandboxInfo, error) {
	return sb.client.GetInfo(ctx, sb.ID)
}

// SetTimeout makes the sandbox end d from now.
func (sb *Sandbox) SetTimeout(ctx context.Context, d time.Duration) error {
	return sb.client.SetTimeout(ctx, sb.ID, d)
}

// Kill ends the sandbox now. Killing a sandbox that is already gone gives
// ErrNotFound.
func (sb *Sandbox) Kill(ctx context.Context) error {
	return sb.client.Kill(ctx, sb.ID)
}

// Close kills the sandbox, waiting at most 10 seconds. It is safe to call
// more than once and after Kill: a sandbox that is already gone is not an
// error.
func (sb *Sandbox) Close() error {
	sb.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sb.Kill(ctx); err != nil && !isNotFound(err) {
			sb.closeErr = err
		}
	})
	return sb.closeErr
}

// IsRunning reports whether the sandbox's agent answers.
func (sb *Sandbox) IsRunning(ctx context.Context) (bool, error) {
	ctx, cancel := sb.client.withRequestTimeout(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sb.baseURL(EnvdPort)+"/health", nil)
	if err != nil {
		return false, err
	}
	sb.setHeaders(req.Header, EnvdPort)
	resp, err := sb.client.hc.Do(req)
	if err != nil {
		return false, sb.client.transportError("health of sandbox "+sb.ID, err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		return true, nil
	case resp.StatusCode == http.StatusBadGateway:
		return false, nil
	}
	return false, sandboxHTTPError("health of sandbox "+sb.ID, resp.StatusCode, resp.Status)
}
