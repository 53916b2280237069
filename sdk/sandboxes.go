package sandpit

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/gen/openapi"
)

// SandboxState is a sandbox's lifecycle state.
type SandboxState string

// Sandbox states.
const (
	StateRunning SandboxState = "running"
	StatePaused  SandboxState = "paused"
)

// SandboxInfo describes a sandbox as the server reports it.
type SandboxInfo struct {
	// ID is the sandbox's ID.
	ID string `json:"sandboxID"`
	// TemplateID is the template it was created from.
	TemplateID string `json:"templateID"`
	// Alias is the template's name, when the server reports one.
	Alias string `json:"alias,omitempty"`
	// State is running or paused.
	State SandboxState `json:"state"`
	// StartedAt is when the sandbox started; EndAt when it will be killed
	// unless its timeout is changed.
	StartedAt time.Time `json:"startedAt"`
	EndAt     time.Time `json:"endAt"`
	// CPUCount, MemoryMB and DiskSizeMB are its limits.
	CPUCount   int `json:"cpuCount"`
	MemoryMB   int `json:"memoryMB"`
	DiskSizeMB int `json:"diskSizeMB"`
	// EnvdVersion is the version of the agent inside the sandbox.
	EnvdVersion string `json:"envdVersion"`
	// Metadata is what the sandbox was created with.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Lifecycle is what its timeout does (GetInfo only).
	Lifecycle *SandboxLifecycle `json:"lifecycle,omitempty"`
	// Network is its network settings, when it has any (GetInfo only).
	Network *Network `json:"network,omitempty"`
}

// timeoutSeconds rounds d up to whole seconds, as the E2B SDKs do.
func timeoutSeconds(d time.Duration) int32 {
	return int32((d + time.Second - 1) / time.Second)
}

// Create starts a new sandbox and returns it once it is ready. Close (or
// Kill) it when done; otherwise it lives until its timeout.
func (c *Client) Create(ctx context.Context, opts ...CreateOption) (*Sandbox, error) {
	cfg := createConfig{template: "base"}
	for _, o := range opts {
		o.applyCreate(&cfg)
	}
	var out openapi.Sandbox
	var timeout *int32
	if cfg.timeout > 0 {
		t := timeoutSeconds(cfg.timeout)
		timeout = &t
	}
	var md *openapi.SandboxMetadata
	if cfg.metadata != nil {
		m := openapi.SandboxMetadata(cfg.metadata)
		md = &m
	}
	var envs *openapi.EnvVars
	if cfg.envs != nil {
		e := openapi.EnvVars(cfg.envs)
		envs = &e
	}
	if cfg.lifecycle != nil {
		if err := cfg.lifecycle.check(); err != nil {
			return nil, err
		}
	}
	autoPause, autoPauseMemory, autoResume := cfg.lifecycle.wire()
	const op = "create sandbox"
	var err error
	if cfg.secure != nil && !*cfg.secure {
		// Only the v1 endpoint can make a sandbox without a token; it
		// needs an explicit timeout.
		if timeout == nil {
			t := int32(300)
			timeout = &t
		}
		_, err = c.api(ctx, op, http.MethodPost, "/sandboxes", openapi.NewSandbox{
			TemplateID: cfg.template, Timeout: timeout, Metadata: md, EnvVars: envs,
			Secure: cfg.secure, AllowInternetAccess: cfg.internet,
			Network: wireNetwork(cfg.network), SandpitNetworkLimits: wireLimits(cfg.limits),
			AutoPause: autoPause, AutoPauseMemory: autoPauseMemory, AutoResume: autoResume,
		}, &out)
	} else {
		_, err = c.api(ctx, op, http.MethodPost, "/v2/sandboxes", openapi.NewSandboxV2{
			TemplateID: cfg.template, Timeout: timeout, Metadata: md, EnvVars: envs,
			AllowInternetAccess: cfg.internet, Network: wireNetwork(cfg.network), SandpitNetworkLimits: wireLimits(cfg.limits),
			AutoPause: autoPause, AutoPauseMemory: autoPauseMemory, AutoResume: autoResume,
		}, &out)
	}
	if err != nil {
		return nil, err
	}
	return c.newSandbox(out), nil
}

// Connect returns a handle on an existing sandbox, resuming it if it is
// paused and extending its life to the timeout (WithTimeout; default: the
// server's). A sandbox that does not exist gives ErrNotFound.
func (c *Client) Connect(ctx context.Context, id string, opts ...ConnectOption) (*Sandbox, error) {
	var cfg connectConfig
	for _, o := range opts {
		o.applyConnect(&cfg)
	}
	var body openapi.ConnectSandboxV2
	if cfg.timeout > 0 {
		t := timeoutSeconds(cfg.timeout)
		body.Timeout = &t
	}
	var out openapi.Sandbox
	if _, err := c.api(ctx, "connect to sandbox "+id, http.MethodPost, "/v2/sandboxes/"+url.PathEscape(id)+"/connect", body, &out); err != nil {
		return nil, err
	}
	return c.newSandbox(out), nil
}

// GetInfo describes one sandbox; ErrNotFound when it does not exist.
func (c *Client) GetInfo(ctx context.Context, id string) (SandboxInfo, error) {
	var out SandboxInfo
	_, err := c.api(ctx, "get sandbox "+id, http.MethodGet, "/sandboxes/"+url.PathEscape(id), nil, &out)
	return out, err
}

// Kill ends a sandbox now. A sandbox that does not exist (or is already
// gone) gives ErrNotFound.
func (c *Client) Kill(ctx context.Context, id string) error {
	_, err := c.api(ctx, "kill sandbox "+id, http.MethodDelete, "/sandboxes/"+url.PathEscape(id), nil, nil)
	return err
}

// SetTimeout makes the sandbox end d from now (which may be sooner than
// before). d is rounded up to whole seconds.
func (c *Client) SetTimeout(ctx context.Context, id string, d time.Duration) error {
	_, err := c.api(ctx, "set timeout of sandbox "+id, http.MethodPost, "/sandboxes/"+url.PathEscape(id)+"/timeout",
		openapi.SetTimeout{Timeout: timeoutSeconds(d)}, nil)
	return err
}

// List yields the sandboxes matching the filters (WithState, WithMetadata,
// WithTemplate), fetching pages as the loop needs them. On error it yields
// the error once and stops.
//
//	for info, err := range client.List(ctx) {
//		if err != nil { return err }
//		fmt.Println(info.ID)
//	}
func (c *Client) List(ctx context.Context, opts ...ListOption) iter.Seq2[SandboxInfo, error] {
	var cfg listConfig
	for _, o := range opts {
		o.applyList(&cfg)
	}
	return func(yield func(SandboxInfo, error) bool) {
		next := ""
		for {
			page, token, err := c.listPage(ctx, cfg, next)
			if err != nil {
				yield(SandboxInfo{}, err)
				return
			}
			for _, s := range page {
				if !yield(s, nil) {
					return
				}
			}
			if token == "" || token == next {
				return
			}
			next = token
		}
	}
}

// ListAll collects List into a slice.
func (c *Client) ListAll(ctx context.Context, opts ...ListOption) ([]SandboxInfo, error) {
	var all []SandboxInfo
	for s, err := range c.List(ctx, opts...) {
		if err != nil {
			return nil, err
		}
		all = append(all, s)
	}
	return all, nil
}

func (c *Client) listPage(ctx context.Context, cfg listConfig, token string) ([]SandboxInfo, string, error) {
	q := url.Values{}
	if len(cfg.metadata) > 0 {
		// A query string of escaped pairs, itself escaped as one value.
		pairs := url.Values{}
		for k, v := range cfg.metadata {
			pairs.Set(k, v)
		}
		q.Set("metadata", pairs.Encode())
	}
	if len(cfg.states) > 0 {
		s := make([]string, len(cfg.states))
		for i, st := range cfg.states {
			s[i] = string(st)
		}
		q.Set("state", strings.Join(s, ","))
	}
	if cfg.template != "" {
		q.Set("template", cfg.template)
	}
	if cfg.limit > 0 {
		q.Set("limit", strconv.Itoa(cfg.limit))
	}
	if token != "" {
		q.Set("nextToken", token)
	}
	path := "/v2/sandboxes"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out []SandboxInfo
	h, err := c.api(ctx, "list sandboxes", http.MethodGet, path, nil, &out)
	if err != nil {
		return nil, "", err
	}
	return out, h.Get("X-Next-Token"), nil
}

// isNotFound reports whether err is ErrNotFound.
func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
