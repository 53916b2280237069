// Package coder is sandpit's coding agent: the reason-execute-reflect loop
// of a model that writes code, a sandbox that runs it, and the output or
// the error fed back to the model until the code runs cleanly (Solve), and
// the code-repair mode that copies files into a sandbox, runs their tests
// and asks the model for fixes until the tests pass (Fix).
//
// The model is any OpenAI-compatible chat completions endpoint (Chat). The
// agent offers it tools (function calling) where the endpoint supports
// them and falls back to reading fenced code blocks from its answers where
// it does not. The sandboxes come from sandpit's public Go SDK.
package coder

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/internal/clip"
	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// ErrGaveUp is returned (wrapped) when the attempts ran out.
var ErrGaveUp = errors.New("attempts ran out")

// ToolMode says whether the agent offers the model tools.
type ToolMode string

// Tool modes.
const (
	// ToolsAuto offers tools and falls back to code blocks for good when
	// the endpoint refuses them.
	ToolsAuto ToolMode = "auto"
	// ToolsOn always offers tools.
	ToolsOn ToolMode = "on"
	// ToolsOff never does: the model answers with code blocks.
	ToolsOff ToolMode = "off"
)

// Defaults of Config.
const (
	DefaultMaxAttempts = 5
	DefaultTemplate    = "code-interpreter-v1"
	// maxFeedback bounds each output sent back to the model.
	maxFeedback = 8 << 10
)

// Config is what New needs. Chat and Client are required.
type Config struct {
	Chat   *Chat
	Client *sandpit.Client
	// Template is the sandbox's template (default code-interpreter-v1,
	// which runs both code and commands).
	Template string
	// MaxAttempts bounds the programs (Solve) or fixes (Fix) tried.
	MaxAttempts int
	// Tools is the tool mode (default ToolsAuto).
	Tools ToolMode
	// Progress receives the transcript: each attempt's code and output
	// (nil: none).
	Progress io.Writer
	// Stream streams the model's answers and the code's output to
	// Progress as they come, for a terminal.
	Stream bool
	// RunTimeout bounds each program or test run (default 2 minutes).
	RunTimeout time.Duration
}

// Agent runs the loops. It holds no state between calls.
type Agent struct {
	cfg Config
}

// New returns an Agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Chat == nil || cfg.Client == nil {
		return nil, errors.New("coder: Config.Chat and Config.Client are required")
	}
	if cfg.Template == "" {
		cfg.Template = DefaultTemplate
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	switch cfg.Tools {
	case "":
		cfg.Tools = ToolsAuto
	case ToolsAuto, ToolsOn, ToolsOff:
	default:
		return nil, fmt.Errorf("coder: tool mode %q: use auto, on or off", cfg.Tools)
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.RunTimeout <= 0 {
		cfg.RunTimeout = 2 * time.Minute
	}
	return &Agent{cfg: cfg}, nil
}

// conversation is one loop's exchange with the model.
type conversation struct {
	a       *Agent
	history []Message
	tools   []Tool
	// plain is set once the endpoint refused tools.
	plain bool
}

// ask gets the model's next message and adds it to the history.
func (c *conversation) ask(ctx context.Context, turn int) (Message, error) {
	p := c.a.cfg.Progress
	fmt.Fprintf(p, "--- turn %d: asking %s ---\n", turn, c.a.cfg.Chat.Model)
	var stream io.Writer
	if c.a.cfg.Stream {
		stream = p
	}
	tools := c.tools
	if c.plain || c.a.cfg.Tools == ToolsOff {
		tools = nil
	}
	reply, err := c.a.cfg.Chat.Complete(ctx, c.history, tools, stream)
	if err != nil && tools != nil && c.a.cfg.Tools == ToolsAuto && rejectsTools(err) {
		fmt.Fprintf(p, "(the endpoint refused tools (%v); asking for code blocks instead)\n", err)
		c.plain = true
		c.history[0].Content = plainPrompt(c.history[0].Content)
		reply, err = c.a.cfg.Chat.Complete(ctx, c.history, nil, stream)
	}
	if err != nil {
		return Message{}, err
	}
	if stream != nil && reply.Content != "" {
		fmt.Fprintln(p)
	}
	for i := range reply.ToolCalls {
		if reply.ToolCalls[i].ID == "" {
			reply.ToolCalls[i].ID = fmt.Sprintf("call_%d_%d", turn, i)
		}
		if reply.ToolCalls[i].Type == "" {
			reply.ToolCalls[i].Type = "function"
		}
	}
	c.history = append(c.history, reply)
	return reply, nil
}

// answer adds the result of a tool call to the history.
func (c *conversation) answer(call ToolCall, content string) {
	c.history = append(c.history, Message{Role: "tool", ToolCallID: call.ID, Content: content})
}

// say adds a user message to the history.
func (c *conversation) say(content string) {
	c.history = append(c.history, Message{Role: "user", Content: content})
}

// plainPrompt turns a system prompt that mentions tools into one for an
// endpoint without them.
func plainPrompt(system string) string {
	return system + "\n\nNo tools are available: answer with fenced code blocks as described."
}

// args decodes a tool call's arguments, saying what is wrong for the model
// to fix.
func args(call ToolCall, into any) error {
	if err := json.Unmarshal([]byte(cmp.Or(call.Function.Arguments, "{}")), into); err != nil {
		return fmt.Errorf("the arguments of %s are not a valid JSON object (%v): call it again with valid JSON", call.Function.Name, err)
	}
	return nil
}

var fence = regexp.MustCompile("(?s)```([^\\n`]*)\\n(.*?)```")

// codeBlock is a fenced block of an answer: its info string (language and
// maybe a file name) and its body.
type codeBlock struct {
	info, body string
}

func codeBlocks(reply string) []codeBlock {
	var out []codeBlock
	for _, m := range fence.FindAllStringSubmatch(reply, -1) {
		out = append(out, codeBlock{info: strings.TrimSpace(m[1]), body: m[2]})
	}
	return out
}

// extractCode takes the first fenced block of a reply, or the whole reply.
func extractCode(reply string) string {
	if b := codeBlocks(reply); len(b) > 0 {
		return strings.TrimSpace(b[0].body)
	}
	return strings.TrimSpace(reply)
}

func cut(s string) string { return clip.Middle(s, maxFeedback) }

// createSandbox starts the loop's sandbox.
func (a *Agent) createSandbox(ctx context.Context, purpose string) (*sandpit.Sandbox, error) {
	sb, err := a.cfg.Client.Create(ctx, sandpit.WithTemplate(a.cfg.Template), sandpit.WithTimeout(30*time.Minute),
		sandpit.WithMetadata(map[string]string{"created_by": "sandpit-agent", "purpose": purpose}))
	if err != nil {
		return nil, fmt.Errorf("creating a sandbox from %s: %w", a.cfg.Template, err)
	}
	fmt.Fprintf(a.cfg.Progress, "--- sandbox %s (%s) ---\n", sb.ID, a.cfg.Template)
	return sb, nil
}
