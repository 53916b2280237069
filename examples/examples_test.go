package examples_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/sdk/sandpittest"
)

// Every example runs against one real server.
var (
	server     *sandpittest.Server
	binDir     string
	skipReason string
)

var examples = []string{"hello", "filesystem", "streaming", "closing", "agent"}

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var err error
	server, err = sandpittest.Start(ctx, sandpittest.Options{})
	if errors.Is(err, sandpittest.ErrNotRoot) {
		skipReason = "the examples run against a real sandpit server, which needs root (run as root, as CI does)"
		return m.Run()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting sandpit serve:", err)
		return 1
	}
	defer server.Close()
	binDir, err = os.MkdirTemp("", "sandpit-examples-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(binDir)
	args := []string{"build", "-o", binDir + "/"}
	for _, e := range examples {
		args = append(args, "./"+e)
	}
	if out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the examples: %v\n%s", err, out)
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "--- server log ---\n%s\n", server.Log())
	}
	return code
}

// runExample runs one example with the server's environment and returns its
// output, failing the test when it fails.
func runExample(t *testing.T, name string, extraEnv ...string) string {
	t.Helper()
	if server == nil {
		t.Skip(skipReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, name))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SANDPIT_") && !strings.HasPrefix(kv, "E2B_") && !strings.HasPrefix(kv, "OPENAI_") && !strings.HasPrefix(kv, "MODEL=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(append(cmd.Env, server.Env()...), extraEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
	t.Logf("%s:\n%s", name, out)
	return string(out)
}

func wantAll(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q", w)
		}
	}
}

func TestHello(t *testing.T) {
	out := runExample(t, "hello")
	wantAll(t, out, "hello from ", "running as user", "python says: 285")
}

func TestFilesystem(t *testing.T) {
	out := runExample(t, "filesystem")
	wantAll(t, out, "/home/user/experiment/data/c.txt", "file /home/user/experiment/notes.md",
		"bytes in a, b and c: 9", "left: README.md", "experiment/data is gone")
}

func TestStreaming(t *testing.T) {
	out := runExample(t, "streaming")
	wantAll(t, out, "tick 3", "to stdout", "to stderr", "step 2", "working", "stopped:")
	// Lines arrive as printed, not at the end: tick 1 well before tick 3.
	stamp := func(line string) int {
		m := regexp.MustCompile(`\[\s*(\d+)ms\] ` + regexp.QuoteMeta(line)).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no timestamped %q", line)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	if t1, t3 := stamp("tick 1"), stamp("tick 3"); t3-t1 < 400 {
		t.Errorf("tick 1 at %dms, tick 3 at %dms: output was not streamed", t1, t3)
	}
	if s0, s2 := stamp("step 0"), stamp("step 2"); s2-s0 < 400 {
		t.Errorf("step 0 at %dms, step 2 at %dms: output was not streamed", s0, s2)
	}
}

func TestClosing(t *testing.T) {
	out := runExample(t, "closing")
	wantAll(t, out, "closed it with defer", "killing it again: not found", "timed out", "cleaned up 1 leftover", "sandboxes left: 0")
}

// TestAgent runs the agent loop against a scripted model: it first answers
// with buggy code, then, having been shown the error, with the fix.
func TestAgent(t *testing.T) {
	var mu sync.Mutex
	var requests [][]map[string]string
	model := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer test-key" {
			http.Error(w, "unexpected request "+r.URL.Path, http.StatusNotFound)
			return
		}
		var body struct {
			Model    string              `json:"model"`
			Messages []map[string]string `json:"messages"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Model != "scripted" {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		mu.Lock()
		requests = append(requests, body.Messages)
		n := len(requests)
		mu.Unlock()
		// The bug: fib is called before it is defined, under another name.
		code := "nums = [fibonacci(i) for i in range(15)]\nprint(', '.join(map(str, nums)))"
		if n > 1 {
			code = "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\nprint(', '.join(str(fib(i)) for i in range(15)))"
		}
		json.NewEncoder(w).Encode(map[string]any{
			"choices": []any{map[string]any{"message": map[string]string{"role": "assistant", "content": "Here:\n```python\n" + code + "\n```"}}},
		})
	}))
	defer model.Close()

	out := runExample(t, "agent", "OPENAI_BASE_URL="+model.URL+"/v1", "OPENAI_API_KEY=test-key", "MODEL=scripted")
	wantAll(t, out, "NameError", "0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377", "solved in 2 attempt(s)")
	mu.Lock()
	defer mu.Unlock()
	if len(requests) != 2 {
		t.Fatalf("the model was asked %d times, want 2", len(requests))
	}
	// The second request carries the failure back to the model.
	last := requests[1][len(requests[1])-1]
	if last["role"] != "user" || !strings.Contains(last["content"], "NameError") || !strings.Contains(last["content"], "fibonacci") {
		t.Errorf("the model was not shown the error: %q", last)
	}
	if requests[1][len(requests[1])-2]["role"] != "assistant" {
		t.Errorf("the model's own code is not in the history: %q", requests[1])
	}
}
