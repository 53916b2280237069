package process

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestReaperDeliversExitStatus(t *testing.T) {
	r := NewReaper(nil)
	defer r.Close()
	got := make(chan unix.WaitStatus, 1)
	_, err := r.Start(func() (int, error) {
		return syscall.ForkExec("/bin/sh", []string{"sh", "-c", "exit 7"}, &syscall.ProcAttr{})
	}, func(ws unix.WaitStatus) { got <- ws })
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ws := <-got:
		if !ws.Exited() || ws.ExitStatus() != 7 {
			t.Errorf("status %v, want exit 7", ws)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit status")
	}
}

func TestReaperReapsOrphans(t *testing.T) {
	r := NewReaper(nil)
	defer r.Close()
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	got := make(chan unix.WaitStatus, 1)
	// The shell leaves a grandchild behind and exits: the orphan is
	// re-parented to this process (PID 1 or a child subreaper).
	_, err = r.Start(func() (int, error) {
		return syscall.ForkExec("/bin/sh", []string{"sh", "-c", "sleep 0.3 >/dev/null & echo $!"}, &syscall.ProcAttr{Files: []uintptr{0, wr.Fd(), 2}})
	}, func(ws unix.WaitStatus) { got <- ws })
	wr.Close()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := rd.Read(buf)
	orphan, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		t.Fatalf("orphan pid %q: %v", buf[:n], err)
	}
	<-got
	ppid := func() string {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(orphan) + "/stat")
		if err != nil {
			return ""
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		return f[1]
	}
	if p := ppid(); p != "" && p != strconv.Itoa(os.Getpid()) {
		t.Fatalf("orphan's parent is %s, not this process", p)
	}
	eventually(t, "the orphan to be reaped", func() bool {
		_, err := os.Stat("/proc/" + strconv.Itoa(orphan))
		return err != nil
	})
}

func TestReaperCloseIsIdempotent(t *testing.T) {
	before := runtimeGoroutines()
	r := NewReaper(nil)
	r.Close()
	r.Close()
	checkGoroutines(t, before)
}

// TestReaperLeavesExecCmdChildren checks that exec.Cmd users in the same
// process (StartCmd) still get their status from cmd.Wait while the reaper
// runs and reaps others.
func TestReaperLeavesExecCmdChildren(t *testing.T) {
	r := NewReaper(nil)
	defer r.Close()
	for range 5 {
		cmd := exec.Command("/bin/sh", "-c", "sleep 0.05 & exit 3")
		if err := r.StartCmd(cmd); err != nil {
			t.Fatal(err)
		}
		// Meanwhile the reaper handles SIGCHLDs of its own children.
		got := make(chan unix.WaitStatus, 1)
		if _, err := r.Start(func() (int, error) {
			return syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{})
		}, func(ws unix.WaitStatus) { got <- ws }); err != nil {
			t.Fatal(err)
		}
		<-got
		// Not a wait for a condition: give the reaper the chance to see
		// cmd's exit before cmd.Wait does, the race this test is about.
		time.Sleep(20 * time.Millisecond)
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Fatalf("cmd.Wait = %v, want exit status 3", err)
		}
	}
	eventually(t, "external children to be forgotten", func() bool {
		_ = syscall.Kill(os.Getpid(), syscall.SIGCHLD) // prompt a round
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.external) == 0
	})
}

// exitedChild names an exited child without reaping it, and
// reapExitedLocked then reaps it as an orphan: the path a SIGCHLD takes
// while no exec.Cmd user has children.
func TestReapExitedWithoutListing(t *testing.T) {
	r := &Reaper{logger: slog.New(slog.DiscardHandler), waiters: map[int]func(unix.WaitStatus){}, external: map[int]struct{}{}}
	pid, err := syscall.ForkExec("/bin/sh", []string{"sh", "-c", "exit 5"}, &syscall.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	var got int
	eventually(t, "the child to exit", func() bool {
		p, ok := exitedChild()
		if !ok {
			t.Fatal("waitid's answer could not be read")
		}
		if p > 0 && p != pid {
			// A stray zombie of an earlier test (this process may be a
			// subreaper): out of the way.
			var ws unix.WaitStatus
			_, _ = unix.Wait4(p, &ws, unix.WNOHANG, nil)
		}
		got = p
		return p == pid
	})
	if _, err := os.Stat("/proc/" + strconv.Itoa(got)); err != nil {
		t.Fatalf("exitedChild reaped %d: %v", got, err)
	}
	var status unix.WaitStatus
	r.waiters[pid] = func(ws unix.WaitStatus) { status = ws }
	r.mu.Lock()
	calls, scan := r.reapExitedLocked()
	r.mu.Unlock()
	if scan || len(calls) != 1 {
		t.Fatalf("reapExitedLocked: %d calls, scan %v; want 1 call, no scan", len(calls), scan)
	}
	calls[0].fn(calls[0].ws)
	if !status.Exited() || status.ExitStatus() != 5 {
		t.Errorf("status %v, want exit 5", status)
	}
	if p, ok := exitedChild(); !ok || p == pid {
		t.Errorf("after the reap exitedChild says %d (%v)", p, ok)
	}
}
