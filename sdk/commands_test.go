package sandpit_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

func TestCommandsRun(t *testing.T) {
	sb := newSandbox(t)
	ctx := t.Context()

	res, err := sb.Commands.Run(ctx, "echo out; echo err >&2")
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 || res.Stdout != "out\n" || res.Stderr != "err\n" {
		t.Errorf("Run = %+v", res)
	}

	res, err = sb.Commands.Run(ctx, "echo $A-$B; pwd; whoami",
		sandpit.WithEnvs(map[string]string{"A": "1", "B": "2"}), sandpit.WithCwd("/tmp"), sandpit.WithUser("root"))
	if err != nil || res.Stdout != "1-2\n/tmp\nroot\n" {
		t.Errorf("envs, cwd, user: %+v, %v", res, err)
	}
	if res, err := sb.Commands.Run(ctx, "whoami; pwd"); err != nil || res.Stdout != "user\n/home/user\n" {
		t.Errorf("default user and cwd: %+v, %v", res, err)
	}

	// A non-zero exit: the result and a *CommandExitError.
	res, err = sb.Commands.Run(ctx, "echo partial; echo oops >&2; exit 3")
	var exit *sandpit.CommandExitError
	if !errors.As(err, &exit) || exit.ExitCode != 3 || exit.Stdout != "partial\n" || exit.Stderr != "oops\n" {
		t.Errorf("exit 3: %v (%+v)", err, exit)
	}
	if res == nil || res.ExitCode != 3 {
		t.Errorf("exit 3 result = %+v", res)
	}

	// A cwd that does not exist.
	if _, err := sb.Commands.Run(ctx, "true", sandpit.WithCwd("/no/such/dir")); !errors.Is(err, sandpit.ErrInvalidArgument) {
		t.Errorf("missing cwd: %v, want ErrInvalidArgument", err)
	}
}

func TestCommandsStreaming(t *testing.T) {
	sb := newSandbox(t)
	ctx := t.Context()

	// Callbacks see output while the command still runs.
	var mu sync.Mutex
	var chunks []string
	first := make(chan time.Time, 1)
	start := time.Now()
	var stdout, stderr bytes.Buffer
	res, err := sb.Commands.Run(ctx, "echo one; sleep 1; echo two; echo e >&2",
		sandpit.OnStdout(func(s string) {
			mu.Lock()
			chunks = append(chunks, s)
			mu.Unlock()
			select {
			case first <- time.Now():
			default:
			}
		}),
		sandpit.WithStdout(&stdout), sandpit.WithStderr(&stderr))
	if err != nil {
		t.Fatal(err)
	}
	if got := (<-first).Sub(start); got > 900*time.Millisecond {
		t.Errorf("first output arrived after %v, not before the sleep ended", got)
	}
	if strings.Join(chunks, "") != "one\ntwo\n" || stdout.String() != "one\ntwo\n" || stderr.String() != "e\n" || res.Stdout != "one\ntwo\n" {
		t.Errorf("chunks %q, writer %q/%q, result %+v", chunks, stdout.String(), stderr.String(), res)
	}

	// Multi-byte characters are never split across callbacks.
	var got strings.Builder
	_, err = sb.Commands.Run(ctx, `for i in $(seq 200); do printf 'héllo wörld ✓ '; done`,
		sandpit.OnStdout(func(s string) {
			if !utf8.ValidString(s) {
				t.Errorf("chunk splits a UTF-8 sequence: %q", s)
			}
			got.WriteString(s)
		}))
	if err != nil || got.String() != strings.Repeat("héllo wörld ✓ ", 200) {
		t.Errorf("UTF-8 output mangled (err %v)", err)
	}
}

func TestCommandsBackground(t *testing.T) {
	sb := newSandbox(t)
	ctx := t.Context()

	// stdin: cat echoes what it is sent and ends at CloseStdin.
	h, err := sb.Commands.Start(ctx, "cat", sandpit.WithStdin())
	if err != nil {
		t.Fatal(err)
	}
	procs, err := sb.Commands.List(ctx)
	if err != nil || !slices.ContainsFunc(procs, func(p sandpit.ProcessInfo) bool { return p.PID == h.PID }) {
		t.Errorf("List = %+v, %v; want pid %d", procs, err, h.PID)
	}
	if err := h.SendStdin(ctx, []byte("hello stdin\n")); err != nil {
		t.Fatal(err)
	}
	if err := h.CloseStdin(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := h.Wait(ctx)
	if err != nil || res.Stdout != "hello stdin\n" {
		t.Errorf("cat: %+v, %v", res, err)
	}

	// Connect to a running process, then kill it.
	h, err = sb.Commands.Start(ctx, "echo started; sleep 60")
	if err != nil {
		t.Fatal(err)
	}
	var seen bytes.Buffer
	var mu sync.Mutex
	h2, err := sb.Commands.Connect(ctx, h.PID, sandpit.WithStdout(lockedWriter{&mu, &seen}))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(h.Stdout(), "started"); {
		if time.Now().After(deadline) {
			t.Fatalf("no output within 10s; Stdout() = %q", h.Stdout())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := h.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	for _, hh := range []*sandpit.CommandHandle{h, h2} {
		_, err := hh.Wait(ctx)
		var exit *sandpit.CommandExitError
		if !errors.As(err, &exit) || exit.ExitCode == 0 {
			t.Errorf("Wait after Kill = %v, want a CommandExitError", err)
		}
	}
	if err := h.Kill(ctx); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("Kill of an ended process = %v, want ErrNotFound", err)
	}
	if err := sb.Commands.Kill(ctx, 999999); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("Kill unknown pid = %v, want ErrNotFound", err)
	}
	if _, err := sb.Commands.Connect(ctx, 999999); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("Connect unknown pid = %v, want ErrNotFound", err)
	}
	if err := sb.Commands.SendStdin(ctx, 999999, []byte("x")); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("SendStdin unknown pid = %v, want ErrNotFound", err)
	}

	// Disconnect leaves the process running.
	h, err = sb.Commands.Start(ctx, "sleep 60")
	if err != nil {
		t.Fatal(err)
	}
	h.Disconnect()
	if _, err := h.Wait(ctx); err == nil {
		t.Error("Wait after Disconnect succeeded")
	}
	procs, _ = sb.Commands.List(ctx)
	if !slices.ContainsFunc(procs, func(p sandpit.ProcessInfo) bool { return p.PID == h.PID }) {
		t.Errorf("process %d gone after Disconnect", h.PID)
	}
	_ = sb.Commands.Kill(ctx, h.PID)
}

func TestCommandTimeout(t *testing.T) {
	sb := newSandbox(t)
	start := time.Now()
	_, err := sb.Commands.Run(t.Context(), "sleep 30", sandpit.WithTimeout(time.Second))
	if !errors.Is(err, sandpit.ErrTimeout) {
		t.Errorf("Run past its timeout = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout took %v", d)
	}
	// No limit: WithTimeout(0) lets a command outlive nothing in particular.
	if res, err := sb.Commands.Run(t.Context(), "echo ok", sandpit.WithTimeout(0)); err != nil || res.Stdout != "ok\n" {
		t.Errorf("WithTimeout(0): %+v, %v", res, err)
	}
}

// TestRunCancel: a cancelled context ends a streaming command's call at
// once, and the command with it.
func TestRunCancel(t *testing.T) {
	sb := newSandbox(t)
	ctx, cancel := context.WithCancel(t.Context())
	started := make(chan struct{})
	var once sync.Once
	errc := make(chan error, 1)
	go func() {
		_, err := sb.Commands.Run(ctx, "echo go; sleep 60", sandpit.OnStdout(func(string) { once.Do(func() { close(started) }) }))
		errc <- err
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("no output within 10s")
	}
	procs, _ := sb.Commands.List(t.Context())
	if len(procs) != 1 {
		t.Fatalf("processes before cancel: %+v", procs)
	}
	cancel()
	start := time.Now()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run after cancel = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Run returned %v after cancel", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancel")
	}
	// The command is killed too.
	deadline := time.Now().Add(5 * time.Second)
	for {
		procs, err := sb.Commands.List(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(procs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("process still running 5s after cancel: %+v", procs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
