package daemon_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/sdk/sandpittest"
)

// TestStopLeavesNoCgroups: a daemon that stops with no sandbox left
// running (--kill-on-stop) removes its cgroups, those of its template
// builds included.
func TestStopLeavesNoCgroups(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs sandpit serve, which needs root")
	}
	dataDir, err := os.MkdirTemp("", "sandpit-cgroups-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	srv, err := sandpittest.Start(ctx, sandpittest.Options{Args: []string{"--data-dir", dataDir, "--warm-pool", "off"}})
	if err != nil {
		t.Fatal(err)
	}
	// A template build runs a build sandbox in the builds' cgroup.
	api := func(method, path string, body any, out any) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+path, bytes.NewReader(b))
		req.Header.Set("X-API-KEY", srv.APIKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Fatalf("%s %s = %d", method, path, resp.StatusCode)
		}
		if out != nil {
			if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
				t.Fatal(err)
			}
		}
	}
	var req struct{ TemplateID, BuildID string }
	api("POST", "/v3/templates", map[string]any{"name": "cgroup-test"}, &req)
	api("POST", "/v2/templates/"+req.TemplateID+"/builds/"+req.BuildID, map[string]any{
		"fromTemplate": "base", "steps": []map[string]any{{"type": "RUN", "args": []string{"true"}}},
	}, nil)
	for {
		var st struct{ Status string }
		api("GET", "/templates/"+req.TemplateID+"/builds/"+req.BuildID+"/status", nil, &st)
		if st.Status == "ready" {
			break
		}
		if st.Status == "error" {
			t.Fatal("the build failed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The daemon's cgroup parents are named by a hash of its data dir.
	abs, _ := filepath.Abs(dataDir)
	sum := sha256.Sum256([]byte(abs))
	name := hex.EncodeToString(sum[:4])
	patterns := []string{"/sys/fs/cgroup/*/sandpit/" + name + "*", "/sys/fs/cgroup/sandpit/" + name + "*"}
	srv.Close()
	for _, p := range patterns {
		if m, _ := filepath.Glob(p); len(m) != 0 {
			t.Errorf("cgroups left after the daemon stopped: %v", m)
		}
	}
}
