package mcp

import (
	"context"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// connect runs a Server over in-memory transports and returns a client
// session on it. The server's SDK client points at a closed port: these
// tests never reach a daemon, so every answer comes from argument checks.
func connect(t *testing.T) *mcp.ClientSession {
	t.Helper()
	client, err := sandpit.NewClient(sandpit.WithURL("http://127.0.0.1:1"), sandpit.WithAPIKey("e2b_test"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	st, ct := mcp.NewInMemoryTransports()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, st) }()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cs.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return cs
}

func TestToolsHaveSchemas(t *testing.T) {
	cs := connect(t)
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	required := map[string]string{"run_code": "code", "run_command": "command", "read_file": "path", "write_file": "path,content"}
	if len(res.Tools) != 7 {
		t.Errorf("%d tools, want 7", len(res.Tools))
	}
	for _, tool := range res.Tools {
		schema, _ := tool.InputSchema.(map[string]any)
		if schema["type"] != "object" || tool.Description == "" {
			t.Errorf("%s: schema %v, description %q", tool.Name, schema, tool.Description)
		}
		var got []string
		if req, ok := schema["required"].([]any); ok {
			for _, r := range req {
				got = append(got, r.(string))
			}
		}
		if strings.Join(got, ",") != required[tool.Name] {
			t.Errorf("%s requires %v, want %q", tool.Name, got, required[tool.Name])
		}
	}
}

// TestBadArguments: each mistake is a tool error (not a protocol error)
// that names what to fix, before anything reaches the daemon.
func TestBadArguments(t *testing.T) {
	cs := connect(t)
	for _, tc := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"run_code", map[string]any{"code": "  "}, "code is empty"},
		{"run_code", map[string]any{}, `missing properties: ["code"]`},
		{"run_code", map[string]any{"code": "1", "timeout_seconds": -1}, "timeout_seconds must be between 1 and 1800"},
		{"run_command", map[string]any{"command": ""}, "command is empty"},
		{"run_command", map[string]any{"command": "true", "timeout_seconds": 5000}, "timeout_seconds must be between 1 and 1800 seconds, not 5000"},
		{"run_command", map[string]any{"command": 42}, "command"},
		{"read_file", map[string]any{"path": ""}, "path is empty"},
		{"write_file", map[string]any{"path": " ", "content": "x"}, "path is empty"},
		{"list_files", map[string]any{"depth": 9}, "depth must be between 1 and 5"},
		{"create_sandbox", map[string]any{"timeout_seconds": 100000}, "timeout_seconds must be between 1 and 86400"},
	} {
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: tc.tool, Arguments: tc.args})
		if err != nil {
			t.Errorf("%s %v: protocol error %v, want a tool error", tc.tool, tc.args, err)
			continue
		}
		text := ""
		for _, c := range res.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				text += tc.Text
			}
		}
		if !res.IsError || !strings.Contains(text, tc.want) {
			t.Errorf("%s %v: isError %v, %q; want an error saying %q", tc.tool, tc.args, res.IsError, text, tc.want)
		}
	}
}
