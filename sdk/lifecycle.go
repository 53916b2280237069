package sandpit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/sandpit-dev/sandpit/gen/openapi"
)

// OnTimeout is what a sandbox's timeout does to it.
type OnTimeout string

// What a timeout may do: kill the sandbox (the default) or pause it.
const (
	OnTimeoutKill  OnTimeout = "kill"
	OnTimeoutPause OnTimeout = "pause"
)

// Lifecycle is what happens to a sandbox at its timeout and after, as
// E2B's lifecycle option at create says.
type Lifecycle struct {
	// OnTimeout kills (the default) or pauses the sandbox at its timeout.
	OnTimeout OnTimeout
	// FilesystemOnly makes the timeout's pause keep the filesystem only
	// (E2B's keepMemory false): processes end, and a resume boots the
	// sandbox again. Only with OnTimeoutPause.
	FilesystemOnly bool
	// AutoResume resumes the sandbox, paused with its memory, on the
	// first request to any of its ports. Only with OnTimeoutPause, and
	// not with FilesystemOnly.
	AutoResume bool
}

// SandboxLifecycle is a sandbox's lifecycle as the server reports it.
type SandboxLifecycle struct {
	OnTimeout  OnTimeout `json:"onTimeout"`
	AutoResume bool      `json:"autoResume"`
}

// WithLifecycle sets what the sandbox's timeout does. The combinations
// E2B refuses (AutoResume without OnTimeoutPause, AutoResume with
// FilesystemOnly, FilesystemOnly without OnTimeoutPause) fail Create with
// ErrInvalidArgument before any request.
func WithLifecycle(l Lifecycle) CreateOption { return lifecycleOption(l) }

type lifecycleOption Lifecycle

func (o lifecycleOption) applyCreate(c *createConfig) { l := Lifecycle(o); c.lifecycle = &l }

func (l Lifecycle) check() error {
	switch {
	case l.OnTimeout != "" && l.OnTimeout != OnTimeoutKill && l.OnTimeout != OnTimeoutPause:
		return fmt.Errorf("lifecycle OnTimeout must be %q or %q, not %q: %w", OnTimeoutKill, OnTimeoutPause, l.OnTimeout, ErrInvalidArgument)
	case l.FilesystemOnly && l.OnTimeout != OnTimeoutPause:
		return fmt.Errorf("lifecycle FilesystemOnly needs OnTimeoutPause: %w", ErrInvalidArgument)
	case l.AutoResume && l.OnTimeout != OnTimeoutPause:
		return fmt.Errorf("lifecycle AutoResume needs OnTimeoutPause: %w", ErrInvalidArgument)
	case l.AutoResume && l.FilesystemOnly:
		return fmt.Errorf("lifecycle AutoResume cannot be had with FilesystemOnly: a sandbox paused keeping its filesystem only is resumed by Connect: %w", ErrInvalidArgument)
	}
	return nil
}

// wire is l in the create request's fields.
func (l *Lifecycle) wire() (autoPause, autoPauseMemory *bool, autoResume *openapi.SandboxAutoResumeConfig) {
	if l == nil || l.OnTimeout == "" {
		return nil, nil, nil
	}
	pause := l.OnTimeout == OnTimeoutPause
	autoPause = &pause
	if l.FilesystemOnly {
		memory := false
		autoPauseMemory = &memory
	}
	if pause {
		autoResume = &openapi.SandboxAutoResumeConfig{Enabled: l.AutoResume}
	}
	return autoPause, autoPauseMemory, autoResume
}

// PauseOption configures Client.Pause.
type PauseOption interface{ applyPause(*pauseConfig) }

type pauseConfig struct {
	keepMemory *bool
}

// WithKeepMemory(false) pauses keeping the filesystem only: the
// sandbox's processes end and its memory is freed, and Connect boots it
// again on the same files, running its template's start command, as
// after a reboot. The default keeps memory: processes freeze where they
// are.
func WithKeepMemory(keep bool) PauseOption { return keepMemoryOption(keep) }

type keepMemoryOption bool

func (o keepMemoryOption) applyPause(c *pauseConfig) { b := bool(o); c.keepMemory = &b }

// Pause pauses a sandbox, memory kept unless WithKeepMemory(false);
// Connect resumes it. It reports false when the sandbox was paused
// already.
func (c *Client) Pause(ctx context.Context, id string, opts ...PauseOption) (bool, error) {
	var cfg pauseConfig
	for _, o := range opts {
		o.applyPause(&cfg)
	}
	_, err := c.api(ctx, "pause sandbox "+id, http.MethodPost, "/sandboxes/"+url.PathEscape(id)+"/pause",
		openapi.PauseSandboxJSONBody{Memory: cfg.keepMemory}, nil)
	var e *Error
	if errors.As(err, &e) && e.StatusCode == http.StatusConflict {
		return false, nil
	}
	return err == nil, err
}
