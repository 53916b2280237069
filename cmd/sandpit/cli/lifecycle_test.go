package cli_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestSandboxLifecycleFlags: create --on-timeout pause --auto-resume
// shows in the sandbox's info, E2B's refusals fail the create, and pause
// --keep-memory=false ends the processes but keeps the files.
func TestSandboxLifecycleFlags(t *testing.T) {
	r := sandpit(t, "", "sandbox", "create", "--json", "--timeout", "2m", "--on-timeout", "pause", "--auto-resume")
	var info struct {
		ID        string `json:"sandboxID"`
		Lifecycle struct {
			OnTimeout  string `json:"onTimeout"`
			AutoResume bool   `json:"autoResume"`
		} `json:"lifecycle"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &info) != nil || info.Lifecycle.OnTimeout != "pause" || !info.Lifecycle.AutoResume {
		t.Fatalf("create --on-timeout pause --auto-resume: %+v (%+v)", r, info)
	}
	t.Cleanup(func() { sandpit(t, "", "sandbox", "kill", info.ID) })
	if r := sandpit(t, "", "sandbox", "create", "--auto-resume"); r.code == 0 || !strings.Contains(r.stderr, "AutoResume") {
		t.Errorf("create --auto-resume without --on-timeout pause: %+v", r)
	}

	if r := sandpit(t, "", "exec", info.ID, "--", "sh", "-c", "echo kept > ~/f; sleep 300 >/dev/null 2>&1 &"); r.code != 0 {
		t.Fatalf("exec: %+v", r)
	}
	if r := sandpit(t, "", "sandbox", "pause", "--keep-memory=false", info.ID); r.code != 0 {
		t.Fatalf("sandbox pause --keep-memory=false: %+v", r)
	}
	if r := sandpit(t, "", "sandbox", "resume", info.ID); r.code != 0 {
		t.Fatalf("sandbox resume: %+v", r)
	}
	r = sandpit(t, "", "exec", info.ID, "--", "sh", "-c", "cat ~/f; grep -qx sleep /proc/[0-9]*/comm && echo alive || echo ended")
	if r.code != 0 || r.stdout != "kept\nended\n" {
		t.Errorf("after a filesystem-only pause: %+v", r)
	}
}
