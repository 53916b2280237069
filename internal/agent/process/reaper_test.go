package process

import (
	"os"
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
