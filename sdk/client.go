package sandpit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/gen/openapi"
)

// Default ports of the in-sandbox services, as E2B numbers them.
const (
	// EnvdPort is the port of the sandbox agent (commands, files).
	EnvdPort = 49983
	// CodeInterpreterPort is the port of the code interpreter (RunCode).
	CodeInterpreterPort = 49999
)

// defaultRequestTimeout bounds non-streaming requests, as the E2B SDKs do.
const defaultRequestTimeout = 60 * time.Second

// defaultStreamTimeout is the lifetime of a command, terminal or watch when
// the caller sets none, as in the E2B SDKs.
const defaultStreamTimeout = 60 * time.Second

// Client talks to a sandpit (or E2B) server's control plane and, through
// the Sandboxes it returns, to the sandboxes. It is safe for concurrent use.
type Client struct {
	apiURL         string
	sandboxURL     string // "" means per-port hosts under domain
	apiKey         string
	domain         string
	hc             *http.Client
	requestTimeout time.Duration
}

// NewClient returns a client configured from options, then the environment:
//
//   - API URL: WithAPIURL, $E2B_API_URL, $SANDPIT_URL, else
//     https://api.$E2B_DOMAIN;
//   - sandbox URL: WithSandboxURL, $E2B_SANDBOX_URL, $SANDPIT_URL, else
//     none (each sandbox port is reached at its own host);
//   - API key: WithAPIKey, $SANDPIT_API_KEY, $E2B_API_KEY;
//   - domain: WithDomain, $E2B_DOMAIN, else e2b.app.
//
// It fails only when no API key is found. It does not contact the server.
func NewClient(opts ...ClientOption) (*Client, error) {
	cfg := clientConfig{requestTimeout: defaultRequestTimeout}
	for _, o := range opts {
		o.applyClient(&cfg)
	}
	shortcut := os.Getenv("SANDPIT_URL")
	cfg.apiURL = firstNonEmpty(cfg.apiURL, os.Getenv("E2B_API_URL"), shortcut)
	cfg.sandboxURL = firstNonEmpty(cfg.sandboxURL, os.Getenv("E2B_SANDBOX_URL"), shortcut)
	cfg.apiKey = firstNonEmpty(cfg.apiKey, os.Getenv("SANDPIT_API_KEY"), os.Getenv("E2B_API_KEY"))
	cfg.domain = firstNonEmpty(cfg.domain, os.Getenv("E2B_DOMAIN"), "e2b.app")
	if cfg.apiURL == "" {
		cfg.apiURL = "https://api." + cfg.domain
	}
	if cfg.apiKey == "" {
		return nil, &Error{Op: "new client", Message: "no API key: set SANDPIT_API_KEY or E2B_API_KEY, or pass WithAPIKey", kind: ErrAuth}
	}
	if cfg.httpClient == nil {
		cfg.httpClient = &http.Client{Transport: http.DefaultTransport}
	}
	return &Client{
		apiURL:         strings.TrimRight(cfg.apiURL, "/"),
		sandboxURL:     strings.TrimRight(cfg.sandboxURL, "/"),
		apiKey:         cfg.apiKey,
		domain:         cfg.domain,
		hc:             cfg.httpClient,
		requestTimeout: cfg.requestTimeout,
	}, nil
}

// APIURL returns the control-plane URL the client uses.
func (c *Client) APIURL() string { return c.apiURL }

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// withRequestTimeout bounds a non-streaming call whose ctx has no deadline.
func (c *Client) withRequestTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || c.requestTimeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.requestTimeout)
}

// api does one control-plane request. in, when non-nil, is sent as JSON;
// out, when non-nil, receives the JSON answer. It returns the response
// headers.
func (c *Client) api(ctx context.Context, op, method, path string, in, out any) (http.Header, error) {
	ctx, cancel := c.withRequestTimeout(ctx)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, &Error{Op: op, cause: err}
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.apiURL+path, body)
	if err != nil {
		return nil, &Error{Op: op, cause: err}
	}
	req.Header.Set("X-API-KEY", c.apiKey)
	req.Header.Set("User-Agent", userAgent)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(op, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, c.transportError(op, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, apiError(op, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, &Error{Op: op, StatusCode: resp.StatusCode, Message: "decoding the server's answer: " + err.Error(), cause: err}
		}
	}
	return resp.Header, nil
}

// userAgent is sent on every request.
const userAgent = "sandpit-go-sdk"

// apiError decodes E2B's error body {"code","message"}.
func apiError(op string, status int, raw []byte) *Error {
	var body openapi.Error
	msg := strings.TrimSpace(string(raw))
	if json.Unmarshal(raw, &body) == nil && body.Message != "" {
		msg = body.Message
	}
	if len(msg) > 500 {
		msg = msg[:500] + "..."
	}
	return &Error{Op: op, StatusCode: status, Message: msg, kind: kindForStatus(status)}
}

// transportError wraps an error that kept the request from completing.
func (c *Client) transportError(op string, err error) error {
	e := &Error{Op: op, cause: err, kind: transportKind(err)}
	if errors.Is(err, context.DeadlineExceeded) {
		e.kind = ErrTimeout
	}
	if e.kind == nil && !errors.Is(err, context.Canceled) {
		e.kind = ErrUnavailable
		e.Message = fmt.Sprintf("cannot reach %s: %v", c.apiURL, unwrapURLError(err))
	}
	return e
}

// unwrapURLError drops net/http's "Post \"url\": " prefix, which repeats
// what the message already says.
func unwrapURLError(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || !strings.Contains(err.Error(), "://") {
			return err
		}
		next := u.Unwrap()
		if next == nil {
			return err
		}
		err = next
	}
}
