package coder_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/coder"
	"github.com/sandpit-dev/sandpit/sdk/sandpittest"
)

// The agent runs as `sandpit agent` against a real server (real
// sandboxes); only the model is scripted, an OpenAI-compatible endpoint on
// loopback.
var (
	server     *sandpittest.Server
	skipReason string
)

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	var bin string
	err := sandpittest.ErrNotRoot
	if os.Geteuid() == 0 {
		// This tree's agent command, not a binary from SANDPIT_BIN.
		bin, err = sandpittest.Build(ctx, "")
	}
	if err == nil {
		server, err = sandpittest.Start(ctx, sandpittest.Options{Bin: bin})
	}
	cancel()
	switch {
	case errors.Is(err, sandpittest.ErrNotRoot):
		skipReason = "the agent tests run real sandboxes, which need root to run sandpit serve (run as root, as CI does)"
	case err != nil:
		fmt.Fprintln(os.Stderr, "starting sandpit serve:", err)
		os.Exit(1)
	}
	code := m.Run()
	if server != nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "--- server log ---\n%s\n", server.Log())
		}
		server.Close()
	}
	os.Exit(code)
}

// request is what the scripted model was sent.
type request struct {
	Model    string           `json:"model"`
	Messages []coder.Message  `json:"messages"`
	Tools    []map[string]any `json:"tools"`
	Stream   bool             `json:"stream"`
}

// model is a scripted OpenAI-compatible endpoint: answer gives the n-th
// (from 1) answered request's reply message, as the wire's JSON object.
type model struct {
	*httptest.Server
	// noTools makes it refuse requests that offer tools, as servers
	// without function calling do.
	noTools bool
	answer  func(n int, req request) map[string]any

	mu       sync.Mutex
	requests []request // answered ones
	refused  int
}

func newModel(t *testing.T, noTools bool, answer func(n int, req request) map[string]any) *model {
	m := &model{noTools: noTools, answer: answer}
	m.Server = httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(m.Close)
	return m
}

func (m *model) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer test-key" {
		http.Error(w, "unexpected request "+r.URL.Path, http.StatusNotFound)
		return
	}
	var req request
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Model != "scripted" {
		http.Error(w, fmt.Sprintf("bad request: %v", err), http.StatusBadRequest)
		return
	}
	m.mu.Lock()
	if m.noTools && len(req.Tools) > 0 {
		m.refused++
		m.mu.Unlock()
		http.Error(w, `{"error":{"message":"tools are not supported"}}`, http.StatusBadRequest)
		return
	}
	m.requests = append(m.requests, req)
	n := len(m.requests)
	m.mu.Unlock()
	msg := m.answer(n, req)
	if !req.Stream {
		json.NewEncoder(w).Encode(map[string]any{"choices": []any{map[string]any{"message": msg}}})
		return
	}
	// Streamed: the content in two deltas, tool calls with their
	// arguments split across chunks.
	w.Header().Set("Content-Type", "text/event-stream")
	send := func(delta map[string]any) {
		b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"delta": delta}}})
		fmt.Fprintf(w, "data: %s\n\n", b)
	}
	if c, _ := msg["content"].(string); c != "" {
		send(map[string]any{"role": "assistant", "content": c[:len(c)/2]})
		send(map[string]any{"content": c[len(c)/2:]})
	}
	calls, _ := msg["tool_calls"].([]any)
	for i, c := range calls {
		call := c.(map[string]any)
		fn := call["function"].(map[string]any)
		a := fn["arguments"].(string)
		send(map[string]any{"tool_calls": []any{map[string]any{"index": i, "id": call["id"], "type": "function",
			"function": map[string]any{"name": fn["name"], "arguments": a[:len(a)/2]}}}})
		send(map[string]any{"tool_calls": []any{map[string]any{"index": i, "function": map[string]any{"arguments": a[len(a)/2:]}}}})
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}

func (m *model) sent() []request {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]request(nil), m.requests...)
}

func toolCall(id, name string, args map[string]string) map[string]any {
	b, _ := json.Marshal(args)
	return map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{
		"id": id, "type": "function", "function": map[string]any{"name": name, "arguments": string(b)},
	}}}
}

func text(content string) map[string]any {
	return map[string]any{"role": "assistant", "content": content}
}

type result struct {
	stdout, stderr string
	code           int
}

// agent runs `sandpit agent ARGS...` against the server and the model.
func agent(t *testing.T, m *model, args ...string) result {
	t.Helper()
	if server == nil {
		t.Skip(skipReason)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, server.Bin, append([]string{"agent"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SANDPIT_") && !strings.HasPrefix(kv, "E2B_") && !strings.HasPrefix(kv, "OPENAI_") && !strings.HasPrefix(kv, "MODEL=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(append(cmd.Env, server.Env()...), "OPENAI_BASE_URL="+m.URL+"/v1", "OPENAI_API_KEY=test-key", "MODEL=scripted")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("sandpit agent: %v", err)
	}
	r := result{out.String(), errb.String(), cmd.ProcessState.ExitCode()}
	t.Logf("exit %d\n--- stdout ---\n%s--- stderr ---\n%s", r.code, r.stdout, r.stderr)
	return r
}

const (
	buggy = "def mean(xs):\n    return sum(xs) / len(xs)\n\nprint('mean:', mean([]))"
	fixed = "def mean(xs):\n    return sum(xs) / len(xs) if xs else 0.0\n\nprint('mean:', mean([]))\nprint('mean:', mean([1, 2, 3, 4]))"
)

// TestSolveFixesItsBug: the model's first program raises, the traceback
// goes back to it (as the run_code tool's result), its second runs: exit
// 0, the program's output last, two attempts. The answers are streamed.
func TestSolveFixesItsBug(t *testing.T) {
	m := newModel(t, false, func(n int, req request) map[string]any {
		if n == 1 {
			return toolCall("call_a", "run_code", map[string]string{"code": buggy})
		}
		return toolCall("call_b", "run_code", map[string]string{"code": fixed})
	})
	r := agent(t, m, "--stream", "on", "--max-attempts", "4", "compute", "the", "mean")
	if r.code != 0 {
		t.Fatalf("exit code %d, want 0", r.code)
	}
	if r.stdout != "mean: 0.0\nmean: 2.5\n" {
		t.Errorf("stdout %q: want the program's output alone", r.stdout)
	}
	for _, want := range []string{"attempt 1", "ZeroDivisionError", "attempt 2", "solved in 2 attempt(s)"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the transcript lacks %q", want)
		}
	}
	reqs := m.sent()
	if len(reqs) != 2 {
		t.Fatalf("the model was asked %d times, want 2", len(reqs))
	}
	if !reqs[0].Stream || len(reqs[0].Tools) != 2 || reqs[0].Messages[1].Content != "compute the mean" {
		t.Errorf("first request: stream %v, %d tools, task %q", reqs[0].Stream, len(reqs[0].Tools), reqs[0].Messages[1].Content)
	}
	last := reqs[1].Messages[len(reqs[1].Messages)-1]
	if last.Role != "tool" || last.ToolCallID != "call_a" {
		t.Fatalf("the second request does not end with run_code's result: %+v", last)
	}
	for _, want := range []string{"ZeroDivisionError", "division by zero", "traceback:", "mean([])", "line 2"} {
		if !strings.Contains(last.Content, want) {
			t.Errorf("the traceback sent back lacks %q:\n%s", want, last.Content)
		}
	}
	if strings.Contains(last.Content, "\x1b[") {
		t.Errorf("terminal codes sent to the model: %q", last.Content)
	}
	if prev := reqs[1].Messages[len(reqs[1].Messages)-2]; len(prev.ToolCalls) != 1 || prev.ToolCalls[0].ID != "call_a" {
		t.Errorf("the model's own call is not in the history: %+v", prev)
	}
}

// TestSolveGivesUp: a model that never fixes its program (and has no tool
// support: the agent falls back to code blocks) ends the loop after
// --max-attempts programs with exit 1.
func TestSolveGivesUp(t *testing.T) {
	m := newModel(t, true, func(n int, req request) map[string]any {
		return text(fmt.Sprintf("Attempt %d:\n```python\n%s\n```\n", n, buggy))
	})
	r := agent(t, m, "--max-attempts", "3", "compute the mean")
	if r.code != 1 {
		t.Fatalf("exit code %d, want 1", r.code)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q: want nothing when no program ran cleanly", r.stdout)
	}
	if !strings.Contains(r.stderr, "no program ran cleanly after 3 attempt(s)") || !strings.Contains(r.stderr, "attempt 3") ||
		strings.Contains(r.stderr, "attempt 4") {
		t.Errorf("the transcript does not end after 3 attempts")
	}
	reqs := m.sent()
	if len(reqs) != 3 || m.refused != 1 {
		t.Fatalf("the model answered %d requests and refused %d, want 3 and 1 (tools once)", len(reqs), m.refused)
	}
	for i, req := range reqs[1:] {
		last := req.Messages[len(req.Messages)-1]
		if last.Role != "user" || !strings.Contains(last.Content, "ZeroDivisionError") {
			t.Errorf("request %d does not carry the error back: %+v", i+2, last)
		}
	}
}

// testCommand runs the project's pytest-style tests: with pytest where the
// sandbox's python has it, else the test file as a script.
func testCommand() string {
	return `if python3 -c 'import pytest' 2>/dev/null; then python3 -m pytest -q; else python3 test_stats.py; fi`
}

const (
	statsBuggy = "def median(xs):\n    s = sorted(xs)\n    return s[len(s) // 2]\n"
	statsFixed = "def median(xs):\n    s = sorted(xs)\n    n = len(s)\n    if n % 2:\n        return s[n // 2]\n    return (s[n // 2 - 1] + s[n // 2]) / 2\n"
	statsTest  = "from stats import median\n\n\ndef test_odd():\n    assert median([3, 1, 2]) == 2\n\n\ndef test_even():\n    assert median([4, 1, 3, 2]) == 2.5\n\n\n" +
		"if __name__ == '__main__':\n    test_odd()\n    test_even()\n    print('ok')\n"
)

func writeProject(t *testing.T) string {
	dir := t.TempDir()
	for name, content := range map[string]string{"stats.py": statsBuggy, "test_stats.py": statsTest} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestFixRepairsModule: fix DIR copies the project in, sees the test fail,
// gets a fix (a write_file call), reruns the tests, and once they pass
// prints the diff and writes the fixed module back, and only it.
func TestFixRepairsModule(t *testing.T) {
	m := newModel(t, false, func(n int, req request) map[string]any {
		return toolCall("call_fix", "write_file", map[string]string{"path": "stats.py", "content": statsFixed})
	})
	dir := writeProject(t)
	r := agent(t, m, "fix", dir, "--test", testCommand())
	if r.code != 0 {
		t.Fatalf("exit code %d, want 0", r.code)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "stats.py"))
	if string(got) != statsFixed {
		t.Errorf("stats.py on the host:\n%s\nwant the fix", got)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "stats.py")); fi.Mode().Perm() != 0o640 {
		t.Errorf("stats.py's mode is %v, want 0640 kept", fi.Mode().Perm())
	}
	if tst, _ := os.ReadFile(filepath.Join(dir, "test_stats.py")); string(tst) != statsTest {
		t.Errorf("the test file changed")
	}
	for _, want := range []string{"--- a/stats.py", "+++ b/stats.py", "-    return s[len(s) // 2]", "+    return (s[n // 2 - 1] + s[n // 2]) / 2"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the diff lacks %q", want)
		}
	}
	reqs := m.sent()
	if len(reqs) != 1 {
		t.Fatalf("the model was asked %d times, want 1", len(reqs))
	}
	first := reqs[0].Messages[1].Content
	for _, want := range []string{"File stats.py:", "return s[len(s) // 2]", "File test_stats.py:", "test_even"} {
		if !strings.Contains(first, want) {
			t.Errorf("the model was not shown %q:\n%s", want, first)
		}
	}
}

// TestFixGivesUpLeavesFile: with fixes that never make the tests pass
// (code blocks, tools off), fix FILE exits 1 after --max-attempts and the
// file on the host is as it was.
func TestFixGivesUpLeavesFile(t *testing.T) {
	m := newModel(t, false, func(n int, req request) map[string]any {
		return text("Try this:\n```python\n" + strings.Replace(statsBuggy, "//", "// 1 //", 1) + "```\n")
	})
	dir := writeProject(t)
	// A single FILE is the whole project: the test is the command.
	test := `python3 -c 'from stats import median; assert median([4, 1, 3, 2]) == 2.5, median([4, 1, 3, 2])'`
	r := agent(t, m, "fix", "--tools", "off", "--max-attempts", "2", filepath.Join(dir, "stats.py"), "--test", test)
	if r.code != 1 {
		t.Fatalf("exit code %d, want 1", r.code)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "stats.py")); string(got) != statsBuggy {
		t.Errorf("stats.py was changed though the tests never passed:\n%s", got)
	}
	if !strings.Contains(r.stderr, "the tests still fail after 2 attempt(s)") || r.stdout != "" {
		t.Errorf("want the give-up message and no diff")
	}
	reqs := m.sent()
	if len(reqs) != 2 || len(reqs[0].Tools) != 0 {
		t.Fatalf("%d requests (tools offered: %d), want 2 without tools", len(reqs), len(reqs[0].Tools))
	}
	if last := reqs[1].Messages[len(reqs[1].Messages)-1]; !strings.Contains(last.Content, "AssertionError") {
		t.Errorf("the second request does not carry the failure: %q", last.Content)
	}
}
