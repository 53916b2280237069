package sandpit_test

import (
	"bytes"
	"errors"
	"image/png"
	"strings"
	"testing"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

func TestRunCode(t *testing.T) {
	sb := newSandbox(t)
	ctx := t.Context()

	exec, err := sb.RunCode(ctx, "x = 40\nx + 2")
	if err != nil {
		t.Fatal(err)
	}
	if exec.Text() != "42" || exec.Error != nil {
		t.Errorf("x + 2: text %q, error %v", exec.Text(), exec.Error)
	}
	// State survives between calls in the default context.
	if exec, err := sb.RunCode(ctx, "x * 2"); err != nil || exec.Text() != "80" {
		t.Errorf("state: %v, %v", exec, err)
	}

	// Streaming: stdout lines arrive through the callback before the end.
	var lines []string
	first := make(chan time.Time, 1)
	start := time.Now()
	exec, err = sb.RunCode(ctx, "import sys, time\nprint('one', flush=True)\ntime.sleep(1)\nprint('two')\nprint('err', file=sys.stderr)",
		sandpit.OnStdout(func(s string) {
			lines = append(lines, s)
			select {
			case first <- time.Now():
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	if d := (<-first).Sub(start); d > 900*time.Millisecond {
		t.Errorf("first line after %v", d)
	}
	if strings.Join(lines, "") != "one\ntwo\n" || strings.Join(exec.Logs.Stderr, "") != "err\n" {
		t.Errorf("stdout %q, stderr %q", lines, exec.Logs.Stderr)
	}

	// An error in the code: reported in Execution.Error, not as RunCode's.
	var cbErr *sandpit.ExecutionError
	exec, err = sb.RunCode(ctx, "1/0", sandpit.OnError(func(e *sandpit.ExecutionError) { cbErr = e }))
	if err != nil {
		t.Fatal(err)
	}
	if exec.Error == nil || exec.Error.Name != "ZeroDivisionError" || exec.Error.Value == "" || !strings.Contains(exec.Error.Traceback, "ZeroDivisionError") || cbErr != exec.Error {
		t.Errorf("1/0: %+v", exec.Error)
	}

	// Rich results: a matplotlib figure as PNG, a DataFrame as HTML.
	var results []sandpit.Result
	exec, err = sb.RunCode(ctx, "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()",
		sandpit.OnResult(func(r sandpit.Result) { results = append(results, r) }))
	if err != nil {
		t.Fatal(err)
	}
	if len(exec.Results) == 0 || len(exec.Results[0].PNG) == 0 || len(results) != len(exec.Results) {
		t.Fatalf("plot: results %+v, error %v", exec.Results, exec.Error)
	}
	if _, err := png.Decode(bytes.NewReader(exec.Results[0].PNG)); err != nil {
		t.Errorf("plot PNG does not decode: %v", err)
	}
	exec, err = sb.RunCode(ctx, "import pandas as pd\npd.DataFrame({'a': [1, 2]})")
	if err != nil || len(exec.Results) == 0 || !strings.Contains(exec.Results[0].HTML, "<table") {
		t.Errorf("DataFrame: %+v, %v", exec, err)
	}

	// Other languages, and env vars per execution.
	exec, err = sb.RunCode(ctx, "echo $GREETING", sandpit.WithLanguage("bash"), sandpit.WithEnvs(map[string]string{"GREETING": "hi"}))
	if err != nil || strings.Join(exec.Logs.Stdout, "") != "hi\n" {
		t.Errorf("bash: %+v, %v", exec, err)
	}
	exec, err = sb.RunCode(ctx, "[1, 2, 3].map(x => x * 2).join(',')", sandpit.WithLanguage("javascript"))
	if err != nil || !strings.Contains(exec.Text(), "2,4,6") {
		t.Errorf("javascript: %+v, %v", exec, err)
	}

	// Timeout.
	if _, err := sb.RunCode(ctx, "import time\ntime.sleep(30)", sandpit.WithTimeout(time.Second)); !errors.Is(err, sandpit.ErrTimeout) {
		t.Errorf("RunCode past its timeout = %v, want ErrTimeout", err)
	}
}

// TestKernelProcess: a kernel runs as root through and through (not with
// the agent's own real user id), and like every process the agent starts it
// is the OOM killer's first choice, never the agent (which the daemon
// shields with -1000, an adjustment children inherit).
func TestKernelProcess(t *testing.T) {
	sb := newSandbox(t)
	exec, err := sb.RunCode(t.Context(), "import os\n(os.getresuid(), int(open('/proc/self/oom_score_adj').read()))")
	if err != nil {
		t.Fatal(err)
	}
	if exec.Text() != "((0, 0, 0), 100)" {
		t.Errorf("the kernel's uids and oom_score_adj = %s (error %v), want ((0, 0, 0), 100)", exec.Text(), exec.Error)
	}
}

// TestKernelMemoryBomb: a kernel that takes more than the sandbox's memory
// is what the OOM killer ends, not the agent: the run says its kernel died,
// the next run gets a new kernel, and commands still run.
func TestKernelMemoryBomb(t *testing.T) {
	sb := newSandbox(t)
	ctx := t.Context()
	exec, err := sb.RunCode(ctx, "x = bytearray(3 * 1024**3)\nlen(x)")
	if err != nil {
		t.Fatal(err)
	}
	if exec.Error == nil || exec.Error.Name != "DeadKernelError" {
		t.Errorf("3 GiB in a sandbox of 512 MB: error %+v, text %q; want DeadKernelError", exec.Error, exec.Text())
	}
	if exec, err := sb.RunCode(ctx, "1 + 1"); err != nil || exec.Text() != "2" {
		t.Errorf("the run after: %v, %v", exec, err)
	}
	if res, err := sb.Commands.Run(ctx, "echo alive"); err != nil || res.Stdout != "alive\n" {
		t.Errorf("a command after: %v, %v", res, err)
	}
}

func TestCodeContexts(t *testing.T) {
	sb := newSandbox(t)
	ctx := t.Context()
	cc, err := sb.CreateCodeContext(ctx, sandpit.WithLanguage("python"), sandpit.WithCwd("/tmp"))
	if err != nil {
		t.Fatal(err)
	}
	if cc.ID == "" || cc.Language != "python" || cc.Cwd != "/tmp" {
		t.Errorf("CreateCodeContext = %+v", cc)
	}
	if _, err := sb.RunCode(ctx, "y = 'mine'", sandpit.WithCodeContext(cc)); err != nil {
		t.Fatal(err)
	}
	exec, err := sb.RunCode(ctx, "import os\n(y, os.getcwd())", sandpit.WithCodeContext(cc))
	if err != nil || exec.Text() != "('mine', '/tmp')" {
		t.Errorf("context state: %+v, %v", exec, err)
	}
	// The default context does not see it.
	exec, err = sb.RunCode(ctx, "y")
	if err != nil || exec.Error == nil || exec.Error.Name != "NameError" {
		t.Errorf("default context sees y: %+v, %v", exec, err)
	}
	list, err := sb.CodeContexts(ctx)
	if err != nil || !containsContext(list, cc.ID) {
		t.Errorf("CodeContexts = %+v, %v", list, err)
	}
	if err := sb.RestartCodeContext(ctx, cc); err != nil {
		t.Fatal(err)
	}
	exec, _ = sb.RunCode(ctx, "y", sandpit.WithCodeContext(cc))
	if exec == nil || exec.Error == nil {
		t.Errorf("state survived a restart: %+v", exec)
	}
	if err := sb.RemoveCodeContext(ctx, cc); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.RunCode(ctx, "1", sandpit.WithCodeContext(cc)); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("RunCode in a removed context = %v, want ErrNotFound", err)
	}
	if err := sb.RemoveCodeContext(ctx, cc); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("second RemoveCodeContext = %v, want ErrNotFound", err)
	}
	if _, err := sb.RunCode(ctx, "1", sandpit.WithCodeContext(cc), sandpit.WithLanguage("python")); !errors.Is(err, sandpit.ErrInvalidArgument) {
		t.Errorf("context and language = %v, want ErrInvalidArgument", err)
	}
}

func containsContext(list []sandpit.CodeContext, id string) bool {
	for _, c := range list {
		if c.ID == id {
			return true
		}
	}
	return false
}
