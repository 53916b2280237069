package sandpit_test

import (
	"errors"
	"testing"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// TestLifecycle: WithLifecycle refuses what E2B refuses, GetInfo shows
// the lifecycle, a timeout pauses keeping the filesystem only when asked,
// and Pause(WithKeepMemory(false)) ends the processes but keeps the files.
func TestLifecycle(t *testing.T) {
	c := newClient(t)
	ctx := t.Context()
	for _, l := range []sandpit.Lifecycle{
		{AutoResume: true},
		{OnTimeout: sandpit.OnTimeoutKill, FilesystemOnly: true},
		{OnTimeout: sandpit.OnTimeoutPause, FilesystemOnly: true, AutoResume: true},
	} {
		if _, err := c.Create(ctx, sandpit.WithLifecycle(l)); !errors.Is(err, sandpit.ErrInvalidArgument) {
			t.Errorf("%+v: %v, want ErrInvalidArgument", l, err)
		}
	}
	auto := newSandbox(t, sandpit.WithLifecycle(sandpit.Lifecycle{OnTimeout: sandpit.OnTimeoutPause, AutoResume: true}))
	if info, err := c.GetInfo(ctx, auto.ID); err != nil || info.Lifecycle == nil ||
		*info.Lifecycle != (sandpit.SandboxLifecycle{OnTimeout: sandpit.OnTimeoutPause, AutoResume: true}) {
		t.Errorf("lifecycle of an autoResume sandbox: %+v %v", info.Lifecycle, err)
	}

	sb := newSandbox(t, sandpit.WithTimeout(2*time.Second),
		sandpit.WithLifecycle(sandpit.Lifecycle{OnTimeout: sandpit.OnTimeoutPause, FilesystemOnly: true}))
	if _, err := sb.Commands.Run(ctx, "echo kept > ~/file; sleep 300 & echo $! > ~/pid"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := c.GetInfo(ctx, sb.ID)
		if err == nil && info.State == sandpit.StatePaused {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not paused after its timeout: %+v %v", info, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	check := func(want string) {
		t.Helper()
		again, err := c.Connect(ctx, sb.ID, sandpit.WithTimeout(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		out, err := again.Commands.Run(ctx, "cat ~/file; grep -qx sleep /proc/[0-9]*/comm && echo alive || echo ended")
		if err != nil || out.Stdout != want {
			t.Fatalf("after resume: %q %v, want %q", out.Stdout, err, want)
		}
	}
	check("kept\nended\n")

	if _, err := sb.Commands.Run(ctx, "sleep 300 & echo $! > ~/pid"); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Pause(ctx, sb.ID, sandpit.WithKeepMemory(false)); !ok || err != nil {
		t.Fatalf("pause keeping the filesystem only: %v %v", ok, err)
	}
	check("kept\nended\n")
	if _, err := sb.Commands.Run(ctx, "sleep 300 & echo $! > ~/pid"); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Pause(ctx, sb.ID, sandpit.WithKeepMemory(true)); !ok || err != nil {
		t.Fatalf("pause keeping memory: %v %v", ok, err)
	}
	check("kept\nalive\n")
}
