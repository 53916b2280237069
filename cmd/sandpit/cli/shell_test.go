package cli_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tmux drives a tmux server of the test's own (its own socket).
type tmux struct {
	t      *testing.T
	socket string
}

func (x tmux) run(args ...string) string {
	x.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "tmux", append([]string{"-S", x.socket}, args...)...).CombinedOutput()
	if err != nil {
		x.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// waitScreen polls the pane until it contains want.
func (x tmux) waitScreen(want string) string {
	x.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		screen := x.run("capture-pane", "-p", "-t", "cli")
		if strings.Contains(screen, want) {
			return screen
		}
		if time.Now().After(deadline) {
			x.t.Fatalf("no %q on the screen within 15s; screen:\n%s", want, screen)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestShellUnderTmux: `sandpit shell` in a real terminal: typing, the
// terminal's size and its changes, Ctrl-C reaching the remote shell, and the
// exit code.
func TestShellUnderTmux(t *testing.T) {
	if server == nil {
		t.Skip(skipReason)
	}
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed")
	}
	id := createSandbox(t)
	dir := t.TempDir()
	x := tmux{t: t, socket: filepath.Join(dir, "tmux.sock")}
	exitFile := filepath.Join(dir, "exit")
	script := filepath.Join(dir, "run.sh")
	var envs strings.Builder
	for _, kv := range server.Env() {
		fmt.Fprintf(&envs, "export %q\n", kv)
	}
	os.WriteFile(script, []byte(fmt.Sprintf("%s%s shell %s\necho $? > %s\nsleep 60\n", envs.String(), server.Bin, id, exitFile)), 0o755)
	x.run("new-session", "-d", "-s", "cli", "-x", "100", "-y", "30", "bash", script)
	t.Cleanup(func() { exec.Command("tmux", "-S", x.socket, "kill-server").Run() })

	x.run("send-keys", "-t", "cli", "echo $((6 * 7))-answer", "Enter")
	x.waitScreen("42-answer")
	x.run("send-keys", "-t", "cli", "stty size", "Enter")
	x.waitScreen("30 100")

	x.run("resize-window", "-t", "cli", "-x", "120", "-y", "40")
	deadline := time.Now().Add(15 * time.Second)
	for {
		x.run("send-keys", "-t", "cli", "clear; stty size", "Enter")
		screen := x.run("capture-pane", "-p", "-t", "cli")
		if strings.Contains(screen, "40 120") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the remote terminal did not follow the resize; screen:\n%s", screen)
		}
		time.Sleep(300 * time.Millisecond)
	}

	// Ctrl-C goes to the remote shell (raw mode), not to the CLI.
	x.run("send-keys", "-t", "cli", "sleep 100; echo not-interrupted", "Enter")
	time.Sleep(300 * time.Millisecond)
	x.run("send-keys", "-t", "cli", "C-c", "")
	x.run("send-keys", "-t", "cli", "echo still-$((1 + 1))", "Enter")
	x.waitScreen("still-2")

	x.run("send-keys", "-t", "cli", "exit 5", "Enter")
	deadline = time.Now().Add(15 * time.Second)
	for {
		b, err := os.ReadFile(exitFile)
		if err == nil && strings.TrimSpace(string(b)) != "" {
			if got := strings.TrimSpace(string(b)); got != "5" {
				t.Errorf("sandpit shell exited %s, want 5", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandpit shell did not exit after `exit 5`; screen:\n%s", x.run("capture-pane", "-p", "-t", "cli"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
