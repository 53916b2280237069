package linux_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
)

// A sandbox whose init runs from sandpit-init (not the agent's binary) is
// confined as before and ends up running the agent as pid 1; the spawner
// runs from sandpit-init too.
func TestSeparateInitBinary(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not on PATH to build cmd/sandpit-init")
	}
	initExe := filepath.Join(t.TempDir(), linux.InitName)
	build := exec.Command("go", "build", "-trimpath", "-o", initExe, "github.com/sandpit-dev/sandpit/cmd/sandpit-init")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building sandpit-init: %v\n%s", err, out)
	}
	e := newEnv(t, func(c *linux.Config) { c.InitExe = initExe })
	sb := e.create(t, "initbin1")
	for _, c := range []struct{ cmd, want string }{
		{"cat /proc/1/cmdline | tr '\\0' ' '", "/.sandpit/envd envd"},
		{"id -u", "0"},
		{"hostname", "initbin1"},
		{"mount -t tmpfs x /mnt 2>&1; echo rc=$?", "rc=32"},
		{"grep CapBnd /proc/self/status", "00000000a80425fb"},
		{"cat /proc/self/cgroup", "0::/"},
		{"ls /work /root/go 2>&1 | head -1", "No such file"},
	} {
		if got := strings.TrimSpace(run(t, sb, c.cmd, false)); !strings.Contains(got, c.want) {
			t.Errorf("%s: got %q, want it to contain %q", c.cmd, got, c.want)
		}
	}
	// The spawner is a child of this process running sandpit-init.
	found := false
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		b, _ := os.ReadFile("/proc/self/task/" + task.Name() + "/children")
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err == nil && exe == initExe {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("no spawner running %s among this process's children", initExe)
	}
}
