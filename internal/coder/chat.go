package coder

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Message is one chat message in the OpenAI wire format. Content is always
// sent, empty rather than null: some compatible servers reject null.
type Message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

// ToolCall is a function call the model asked for.
type ToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function FunctionCall `json:"function"`
}

// FunctionCall names the function and carries its arguments, a JSON
// object as text.
type FunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// Tool describes a function the model may call.
type Tool struct {
	Name        string
	Description string
	// Parameters is the JSON schema of the arguments object.
	Parameters map[string]any
}

func (t Tool) wire() map[string]any {
	return map[string]any{"type": "function", "function": map[string]any{
		"name": t.Name, "description": t.Description, "parameters": t.Parameters,
	}}
}

// Chat is a client of an OpenAI-compatible chat completions endpoint
// (OpenAI, vLLM, llama.cpp's server, Ollama, LM Studio, ...).
type Chat struct {
	// BaseURL is the API root, e.g. https://api.openai.com/v1 or
	// http://127.0.0.1:11434/v1.
	BaseURL string
	// APIKey is sent as a bearer token when set.
	APIKey string
	// Model names the model.
	Model string
	// HTTP sends the requests; nil means a client with a 5-minute timeout.
	HTTP *http.Client
}

// StatusError is an answer of the endpoint other than 200.
type StatusError struct {
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("the model endpoint answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Body)
}

// rejectsTools reports whether err is the endpoint refusing a request, as
// those without tool support refuse one that offers tools.
func rejectsTools(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && (se.Status == http.StatusBadRequest || se.Status == http.StatusNotFound ||
		se.Status == http.StatusUnprocessableEntity || se.Status == http.StatusNotImplemented ||
		se.Status == http.StatusInternalServerError)
}

// Complete asks for the next assistant message. With stream non-nil it
// asks for a streamed answer and writes the text to stream as it arrives
// (an endpoint that answers in one piece anyway is fine).
func (c *Chat) Complete(ctx context.Context, msgs []Message, tools []Tool, stream io.Writer) (Message, error) {
	body := map[string]any{"model": c.Model, "messages": msgs, "temperature": 0}
	if len(tools) > 0 {
		wire := make([]map[string]any, len(tools))
		for i, t := range tools {
			wire[i] = t.wire()
		}
		body["tools"] = wire
	}
	if stream != nil {
		body["stream"] = true
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return Message{}, fmt.Errorf("encoding the chat request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.BaseURL, "/")+"/chat/completions", bytes.NewReader(raw))
	if err != nil {
		return Message{}, fmt.Errorf("making the chat request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Minute}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Message{}, fmt.Errorf("asking the model at %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return Message{}, &StatusError{Status: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return readStream(resp.Body, stream)
	}
	m, err := readWhole(resp.Body)
	if err == nil && stream != nil && m.Content != "" {
		fmt.Fprint(stream, m.Content)
	}
	return m, err
}

// readWhole decodes a non-streamed answer.
func readWhole(r io.Reader) (Message, error) {
	var out struct {
		Choices []struct {
			Message struct {
				Role      string     `json:"role"`
				Content   *string    `json:"content"`
				ToolCalls []ToolCall `json:"tool_calls"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(io.LimitReader(r, 16<<20)).Decode(&out); err != nil {
		return Message{}, fmt.Errorf("decoding the model's answer: %w", err)
	}
	if len(out.Choices) == 0 {
		return Message{}, errors.New("the model's answer has no choices")
	}
	m := out.Choices[0].Message
	msg := Message{Role: "assistant", ToolCalls: m.ToolCalls}
	if m.Content != nil {
		msg.Content = *m.Content
	}
	return msg, nil
}

// readStream assembles a streamed answer (server-sent events of deltas),
// writing its text to w as it comes.
func readStream(r io.Reader, w io.Writer) (Message, error) {
	msg := Message{Role: "assistant"}
	var text strings.Builder
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		data, ok := strings.CutPrefix(line, "data:")
		if !ok {
			continue
		}
		data = strings.TrimSpace(data)
		if data == "[DONE]" {
			break
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					Content   string `json:"content"`
					ToolCalls []struct {
						Index    int    `json:"index"`
						ID       string `json:"id"`
						Type     string `json:"type"`
						Function struct {
							Name      string `json:"name"`
							Arguments string `json:"arguments"`
						} `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			return msg, fmt.Errorf("decoding the model's streamed answer: %w", err)
		}
		if len(chunk.Choices) == 0 {
			continue
		}
		d := chunk.Choices[0].Delta
		if d.Content != "" {
			text.WriteString(d.Content)
			if w != nil {
				fmt.Fprint(w, d.Content)
			}
		}
		for _, tc := range d.ToolCalls {
			for len(msg.ToolCalls) <= tc.Index {
				msg.ToolCalls = append(msg.ToolCalls, ToolCall{Type: "function"})
			}
			call := &msg.ToolCalls[tc.Index]
			if tc.ID != "" {
				call.ID = tc.ID
			}
			if tc.Type != "" {
				call.Type = tc.Type
			}
			call.Function.Name += tc.Function.Name
			call.Function.Arguments += tc.Function.Arguments
		}
	}
	if err := sc.Err(); err != nil {
		return msg, fmt.Errorf("reading the model's streamed answer: %w", err)
	}
	msg.Content = text.String()
	return msg, nil
}
