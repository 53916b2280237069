package mcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// HTTPConfig is what NewHTTPHandler needs. Authenticate and NewClient are
// required.
type HTTPConfig struct {
	// Authenticate says whom an API key acts for: a stable ID of the key
	// (it binds a session to the key that opened it), ok false for a key
	// that is not valid, err when the check itself failed.
	Authenticate func(ctx context.Context, key string) (keyID string, ok bool, err error)
	// NewClient returns an SDK client that reaches the daemon with key.
	NewClient func(key string) (*sandpit.Client, error)
	// Server configures each session's Server; its Client is ignored.
	Server Config
	// SessionTimeout ends sessions idle this long (and kills their
	// sandboxes); 0 means DefaultSessionSandboxTimeout.
	SessionTimeout time.Duration
}

// tokenKey is where the verified API key rides in TokenInfo.Extra.
const tokenKey = "sandpit_api_key"

// NewHTTPHandler serves MCP over streamable HTTP. Every request carries an
// API key, as `Authorization: Bearer KEY` or `X-API-Key: KEY`; a session
// acts for the key that opened it, and only that key may use it.
func NewHTTPHandler(cfg HTTPConfig) (http.Handler, error) {
	if cfg.Authenticate == nil || cfg.NewClient == nil {
		return nil, errors.New("mcp: HTTPConfig.Authenticate and NewClient are required")
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = DefaultSessionSandboxTimeout
	}
	log := cfg.Server.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	streamable := mcp.NewStreamableHTTPHandler(func(r *http.Request) *mcp.Server {
		key, _ := auth.TokenInfoFromContext(r.Context()).Extra[tokenKey].(string)
		client, err := cfg.NewClient(key)
		if err != nil {
			log.Error("MCP session: making the daemon's client", "err", err)
			return nil
		}
		scfg := cfg.Server
		scfg.Client = client
		s, err := New(scfg)
		if err != nil {
			log.Error("MCP session", "err", err)
			return nil
		}
		return s.MCP()
	}, &mcp.StreamableHTTPOptions{Logger: log, SessionTimeout: cfg.SessionTimeout})

	verify := func(ctx context.Context, key string, _ *http.Request) (*auth.TokenInfo, error) {
		id, ok, err := cfg.Authenticate(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("checking the API key: %w", err)
		}
		if !ok {
			return nil, fmt.Errorf("%w: invalid API key: create one with `sandpit keys create`", auth.ErrInvalidToken)
		}
		// A key has no expiry of its own; a revoked one fails the next
		// request's check.
		return &auth.TokenInfo{UserID: id, Extra: map[string]any{tokenKey: key}}, nil
	}
	bearer := auth.RequireBearerToken(verify, &auth.RequireBearerTokenOptions{AllowMissingExpiration: true})(streamable)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// E2B's clients send X-API-Key; MCP's, a bearer token.
		if key := r.Header.Get("X-Api-Key"); key != "" && !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer "+key)
		}
		bearer.ServeHTTP(w, r)
	}), nil
}
