// Command agent is the reason-execute-reflect loop of an AI coding agent:
// a model writes Python for a task, the code runs in a sandbox, and what it
// printed (or the error it raised) goes back to the model, which fixes the
// code, until it runs cleanly or the attempts run out.
//
// The model is any OpenAI-compatible chat completions endpoint:
//
//	OPENAI_BASE_URL  (default https://api.openai.com/v1)
//	OPENAI_API_KEY
//	MODEL            (default gpt-4o-mini)
//
// The task is the command line's arguments, or a default one.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

const maxAttempts = 5

const systemPrompt = `You are a careful Python programmer. Answer with one Python program in a ` +
	"```python" + ` block that does the task and prints its result. If you are told the program failed, reply with the whole corrected program.`

func main() {
	task := strings.Join(os.Args[1:], " ")
	if task == "" {
		task = "Print the first 15 Fibonacci numbers, comma-separated, on one line."
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := run(ctx, task); err != nil {
		log.Fatal(err)
	}
}

// message is one chat message.
type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

func run(ctx context.Context, task string) error {
	model := newModel()
	client, err := sandpit.NewClient()
	if err != nil {
		return err
	}
	sb, err := client.Create(ctx, sandpit.WithTimeout(10*time.Minute))
	if err != nil {
		return err
	}
	defer sb.Close()

	history := []message{{"system", systemPrompt}, {"user", task}}
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		// Reason: ask the model for code.
		reply, err := model.complete(ctx, history)
		if err != nil {
			return err
		}
		history = append(history, message{"assistant", reply})
		code := extractCode(reply)
		fmt.Printf("--- attempt %d: the model's code ---\n%s\n", attempt, code)

		// Execute: run it in the sandbox, capturing everything.
		exec, err := sb.RunCode(ctx, code, sandpit.WithTimeout(time.Minute))
		if err != nil {
			return fmt.Errorf("running the code: %w", err)
		}
		stdout := strings.Join(exec.Logs.Stdout, "")
		stderr := strings.Join(exec.Logs.Stderr, "")
		fmt.Printf("--- attempt %d: stdout ---\n%s", attempt, stdout)
		if stderr != "" {
			fmt.Printf("--- attempt %d: stderr ---\n%s", attempt, stderr)
		}

		// Reflect: done, or tell the model what went wrong.
		if exec.Error == nil {
			fmt.Printf("--- solved in %d attempt(s) ---\n", attempt)
			return nil
		}
		fmt.Printf("--- attempt %d: error ---\n%s: %s\n", attempt, exec.Error.Name, exec.Error.Value)
		history = append(history, message{"user", fmt.Sprintf(
			"The program failed.\nstdout:\n%s\nstderr:\n%s\nerror: %s: %s\ntraceback:\n%s\nFix it and reply with the whole program.",
			stdout, stderr, exec.Error.Name, exec.Error.Value, stripANSI(exec.Error.Traceback))})
	}
	return fmt.Errorf("no working program after %d attempts", maxAttempts)
}

var fence = regexp.MustCompile("(?s)```(?:python|py)?\\s*\\n(.*?)```")

// extractCode takes the first fenced block, or the whole reply.
func extractCode(reply string) string {
	if m := fence.FindStringSubmatch(reply); m != nil {
		return strings.TrimSpace(m[1])
	}
	return strings.TrimSpace(reply)
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*m`)

func stripANSI(s string) string { return ansi.ReplaceAllString(s, "") }

// model is an OpenAI-compatible chat completions client.
type model struct {
	baseURL, apiKey, name string
	hc                    *http.Client
}

func newModel() *model {
	m := &model{
		baseURL: strings.TrimRight(os.Getenv("OPENAI_BASE_URL"), "/"),
		apiKey:  os.Getenv("OPENAI_API_KEY"),
		name:    os.Getenv("MODEL"),
		hc:      &http.Client{Timeout: 2 * time.Minute},
	}
	if m.baseURL == "" {
		m.baseURL = "https://api.openai.com/v1"
	}
	if m.name == "" {
		m.name = "gpt-4o-mini"
	}
	return m
}

func (m *model) complete(ctx context.Context, history []message) (string, error) {
	body, _ := json.Marshal(map[string]any{"model": m.name, "messages": history, "temperature": 0})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.baseURL+"/chat/completions", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if m.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+m.apiKey)
	}
	resp, err := m.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("asking the model: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", fmt.Errorf("reading the model's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("the model endpoint answered %s: %s", resp.Status, bytes.TrimSpace(raw))
	}
	var out struct {
		Choices []struct {
			Message message `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", fmt.Errorf("decoding the model's answer: %w", err)
	}
	if len(out.Choices) == 0 {
		return "", errors.New("the model returned no choices")
	}
	return out.Choices[0].Message.Content, nil
}
