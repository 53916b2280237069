package cli_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestSnapshotVerbs: sandbox snapshot prints an ID sandbox create takes,
// snapshot list shows it, snapshot rm removes it (twice is an error);
// sandbox fork prints one ID per fork, each with the parent's files.
func TestSnapshotVerbs(t *testing.T) {
	id := createSandbox(t)
	if r := sandpit(t, "", "exec", id, "--", "sh", "-c", "echo kept > /home/user/f"); r.code != 0 {
		t.Fatalf("exec: %+v", r)
	}
	r := sandpit(t, "", "sandbox", "snapshot", id, "--name", "cli-snap")
	snap := strings.TrimSpace(r.stdout)
	if r.code != 0 || !strings.HasSuffix(snap, "cli-snap:default") {
		t.Fatalf("sandbox snapshot: %+v", r)
	}
	r = sandpit(t, "", "snapshot", "list", "--sandbox", id, "--json")
	var list []struct{ ID string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil || len(list) != 1 || list[0].ID != snap {
		t.Errorf("snapshot list --json: %+v", r)
	}
	if r := sandpit(t, "", "snapshot", "list"); r.code != 0 || !strings.Contains(r.stdout, snap) {
		t.Errorf("snapshot list: %+v", r)
	}
	r = sandpit(t, "", "sandbox", "create", "--template", snap, "--timeout", "1m")
	child := strings.TrimSpace(r.stdout)
	if r.code != 0 || child == "" {
		t.Fatalf("create from the snapshot: %+v", r)
	}
	t.Cleanup(func() { sandpit(t, "", "sandbox", "kill", child) })
	if r := sandpit(t, "", "exec", child, "--", "cat", "/home/user/f"); r.stdout != "kept\n" {
		t.Errorf("the snapshot's file: %+v", r)
	}

	r = sandpit(t, "", "sandbox", "fork", id, "--count", "2", "--timeout", "1m")
	forks := strings.Fields(r.stdout)
	if r.code != 0 || len(forks) != 2 {
		t.Fatalf("sandbox fork: %+v", r)
	}
	for _, f := range forks {
		t.Cleanup(func() { sandpit(t, "", "sandbox", "kill", f) })
		if r := sandpit(t, "", "exec", f, "--", "cat", "/home/user/f"); r.stdout != "kept\n" {
			t.Errorf("fork %s: %+v", f, r)
		}
	}
	if r := sandpit(t, "", "sandbox", "fork", id, "--count", "0"); r.code != 1 || !strings.Contains(r.stderr, "count") {
		t.Errorf("fork --count 0: %+v", r)
	}

	if r := sandpit(t, "", "snapshot", "rm", snap); r.code != 0 {
		t.Errorf("snapshot rm: %+v", r)
	}
	if r := sandpit(t, "", "snapshot", "rm", snap); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("snapshot rm twice: %+v", r)
	}
}
