package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/sdk/sandpittest"
)

// The CLI is driven as a user drives it: the real binary (which also serves)
// against a real server.
var (
	server     *sandpittest.Server
	skipReason string
)

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	// The binary under test must hold this tree's CLI, so it is built
	// here, not taken from SANDPIT_BIN.
	var bin string
	err := sandpittest.ErrNotRoot
	if os.Geteuid() == 0 {
		bin, err = sandpittest.Build(ctx, "")
	}
	if err == nil {
		server, err = sandpittest.Start(ctx, sandpittest.Options{Bin: bin})
	}
	cancel()
	switch {
	case errors.Is(err, sandpittest.ErrNotRoot):
		skipReason = "CLI tests need root to run sandpit serve (run as root, as CI does)"
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

// env is the environment of a CLI run: the test's, without any server
// settings of its own, plus extra.
func env(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SANDPIT_") || strings.HasPrefix(kv, "E2B_") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, extra...)
}

type result struct {
	stdout, stderr string
	code           int
}

// sandpit runs the CLI with the server's environment.
func sandpit(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	if server == nil {
		t.Skip(skipReason)
	}
	return sandpitEnv(t, server.Env(), stdin, args...)
}

func sandpitEnv(t *testing.T, extraEnv []string, stdin string, args ...string) result {
	t.Helper()
	if server == nil {
		t.Skip(skipReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, server.Bin, args...)
	cmd.Env = env(extraEnv...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("sandpit %v: %v", args, err)
	}
	return result{out.String(), errb.String(), cmd.ProcessState.ExitCode()}
}

// createSandbox makes a sandbox with the CLI and kills it at the end.
func createSandbox(t *testing.T) string {
	t.Helper()
	r := sandpit(t, "", "sandbox", "create", "--timeout", "3m")
	id := strings.TrimSpace(r.stdout)
	if r.code != 0 || id == "" || strings.Contains(id, "\n") {
		t.Fatalf("sandbox create: %+v", r)
	}
	t.Cleanup(func() { sandpit(t, "", "sandbox", "kill", id) })
	return id
}

func TestSandboxVerbs(t *testing.T) {
	r := sandpit(t, "", "sandbox", "create", "--json", "--metadata", "owner=cli-test", "--timeout", "2m")
	var info struct {
		ID       string            `json:"sandboxID"`
		State    string            `json:"state"`
		Metadata map[string]string `json:"metadata"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &info) != nil || info.ID == "" || info.Metadata["owner"] != "cli-test" {
		t.Fatalf("sandbox create --json: %+v (%+v)", r, info)
	}
	r = sandpit(t, "", "sandbox", "list", "--json")
	var list []struct {
		ID string `json:"sandboxID"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil {
		t.Fatalf("sandbox list --json: %+v", r)
	}
	found := false
	for _, s := range list {
		found = found || s.ID == info.ID
	}
	if !found {
		t.Errorf("list --json lacks %s: %s", info.ID, r.stdout)
	}
	if r := sandpit(t, "", "sandbox", "list"); r.code != 0 || !strings.Contains(r.stdout, info.ID) || !strings.HasPrefix(r.stdout, "ID") {
		t.Errorf("sandbox list: %+v", r)
	}
	if r := sandpit(t, "", "sandbox", "pause", info.ID); r.code != 0 {
		t.Errorf("sandbox pause: %+v", r)
	}
	if r := sandpit(t, "", "sandbox", "pause", info.ID); r.code != 1 || !strings.Contains(r.stderr, "already paused") {
		t.Errorf("pause twice: %+v", r)
	}
	if r := sandpit(t, "", "sandbox", "list"); !strings.Contains(r.stdout, "paused") {
		t.Errorf("list after pause: %+v", r)
	}
	if r := sandpit(t, "", "sandbox", "resume", info.ID); r.code != 0 {
		t.Errorf("sandbox resume: %+v", r)
	}
	if r := sandpit(t, "", "exec", info.ID, "--", "echo", "back"); r.code != 0 || r.stdout != "back\n" {
		t.Errorf("exec after resume: %+v", r)
	}
	if r := sandpit(t, "", "sandbox", "kill", info.ID); r.code != 0 {
		t.Errorf("sandbox kill: %+v", r)
	}
	r = sandpit(t, "", "sandbox", "kill", info.ID)
	if r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("kill twice: %+v", r)
	}
	if r := sandpit(t, "", "sandbox", "frobnicate"); r.code != 2 || !strings.Contains(r.stderr, "Usage") {
		t.Errorf("unknown subcommand: %+v", r)
	}
}

func TestExec(t *testing.T) {
	id := createSandbox(t)
	r := sandpit(t, "", "exec", id, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
	if r.code != 3 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("exec exit 3: %+v", r)
	}
	r = sandpit(t, "", "exec", "--env", "X=1", "--cwd", "/tmp", "--user", "root", id, "--", "echo $X $(pwd) $(whoami)")
	if r.code != 0 || r.stdout != "1 /tmp root\n" {
		t.Errorf("exec with flags: %+v", r)
	}
	r = sandpit(t, "piped input\n", "exec", id, "--", "cat")
	if r.code != 0 || r.stdout != "piped input\n" {
		t.Errorf("exec with stdin: %+v", r)
	}
	r = sandpit(t, "", "exec", "no-such-sandbox", "--", "true")
	if r.code != 1 || !strings.Contains(r.stderr, "sandbox no-such-sandbox not found") {
		t.Errorf("exec in a missing sandbox: %+v", r)
	}
}

func TestFilesVerbs(t *testing.T) {
	id := createSandbox(t)
	dir := t.TempDir()
	local := filepath.Join(dir, "data.bin")
	data := bytes.Repeat([]byte("sandpit files\n"), 100000)
	if err := os.WriteFile(local, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := sandpit(t, "", "files", "put", id, local, "up/data.bin"); r.code != 0 || !strings.Contains(r.stderr, "/home/user/up/data.bin") {
		t.Fatalf("files put: %+v", r)
	}
	if r := sandpit(t, "from stdin", "files", "put", id, "-", "up/stdin.txt"); r.code != 0 {
		t.Fatalf("files put -: %+v", r)
	}
	r := sandpit(t, "", "files", "ls", id, "up", "--json")
	var entries []struct {
		Name string `json:"name"`
		Size int64  `json:"size"`
		Type string `json:"type"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &entries) != nil || len(entries) != 2 || entries[0].Name != "data.bin" || entries[0].Size != int64(len(data)) {
		t.Errorf("files ls --json: %+v", r)
	}
	if r := sandpit(t, "", "files", "ls", id, "up"); r.code != 0 || !strings.Contains(r.stdout, "/home/user/up/stdin.txt") {
		t.Errorf("files ls: %+v", r)
	}
	if r := sandpit(t, "", "files", "cat", id, "up/stdin.txt"); r.code != 0 || r.stdout != "from stdin" {
		t.Errorf("files cat: %+v", r)
	}
	back := filepath.Join(dir, "back.bin")
	if r := sandpit(t, "", "files", "get", id, "up/data.bin", back); r.code != 0 {
		t.Fatalf("files get: %+v", r)
	}
	if got, _ := os.ReadFile(back); !bytes.Equal(got, data) {
		t.Errorf("files get: %d bytes back, want %d", len(got), len(data))
	}
	if r := sandpit(t, "", "files", "cat", id, "no/such/file"); r.code != 1 || !strings.Contains(r.stderr, "not found") && !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("files cat missing: %+v", r)
	}
}

func TestHelpfulErrors(t *testing.T) {
	if server == nil {
		t.Skip(skipReason)
	}
	// Nothing listening.
	r := sandpitEnv(t, []string{"SANDPIT_URL=http://127.0.0.1:1", "SANDPIT_API_KEY=e2b_00"}, "", "sandbox", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "no sandpit server at http://127.0.0.1:1; start one with `sandpit serve`") {
		t.Errorf("no server: %+v", r)
	}
	// A refused key.
	r = sandpitEnv(t, []string{"SANDPIT_URL=" + server.URL, "SANDPIT_API_KEY=" + sandpittest.NewAPIKey()}, "", "sandbox", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "the API key was refused; create one with `sandpit keys create`") {
		t.Errorf("bad key: %+v", r)
	}
	// No key at all.
	r = sandpitEnv(t, []string{"SANDPIT_URL=" + server.URL}, "", "sandbox", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "SANDPIT_API_KEY") {
		t.Errorf("no key: %+v", r)
	}
	// The E2B variables work too.
	r = sandpitEnv(t, []string{"E2B_API_URL=" + server.URL, "E2B_SANDBOX_URL=" + server.URL, "E2B_API_KEY=" + server.APIKey}, "", "sandbox", "list", "--json")
	if r.code != 0 {
		t.Errorf("E2B variables: %+v", r)
	}
}

func TestRunPlot(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "plot.py")
	code := "import matplotlib.pyplot as plt\nprint('plotting')\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title('squares')\nplt.show()\n"
	if err := os.WriteFile(script, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	r := sandpit(t, "", "run", script, "--out", out)
	if r.code != 0 || !strings.Contains(r.stdout, "plotting") {
		t.Fatalf("run plot.py: %+v", r)
	}
	f, err := os.Open(filepath.Join(out, "plot-1.png"))
	if err != nil {
		t.Fatalf("no PNG: %v (%+v)", err, r)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("plot-1.png is not a valid PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		t.Errorf("plot is %v", b)
	}

	// A script that raises exits 1 with the error.
	bad := filepath.Join(dir, "bad.py")
	os.WriteFile(bad, []byte("print('before')\nraise ValueError('nope')\n"), 0o644)
	r = sandpit(t, "", "run", bad)
	if r.code != 1 || !strings.Contains(r.stderr, "ValueError: nope") || !strings.Contains(r.stdout, "before") {
		t.Errorf("run bad.py: %+v", r)
	}
	// Other languages by extension.
	sh := filepath.Join(dir, "hello.sh")
	os.WriteFile(sh, []byte("echo hello from bash\n"), 0o644)
	if r := sandpit(t, "", "run", sh); r.code != 0 || r.stdout != "hello from bash\n" {
		t.Errorf("run hello.sh: %+v", r)
	}
}
