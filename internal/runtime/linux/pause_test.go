package linux_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPauseStatsKill: a paused sandbox's processes stop where they are
// and go on after resume; a paused sandbox can be killed; Stats reads CPU,
// memory and disk.
func TestPauseStatsKill(t *testing.T) {
	e := newEnv(t)
	if e.cg.Kind() == "none" {
		t.Skip("pausing needs cgroups")
	}
	sb := e.create(t, "pause1")
	run(t, sb, "setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/c; sleep 0.02; done' >/dev/null 2>&1 &", false)
	counter := func() int {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(sb.Pid) + "/root/tmp/c")
		if err != nil {
			return -1
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	waitFor(t, func() bool { return counter() > 3 }, "the counter to run")

	st, err := e.rt.Stats(t.Context(), "pause1")
	if err != nil || st.CPU <= 0 || st.MemUsed == 0 || st.DiskTotal == 0 || st.DiskUsed > st.DiskTotal {
		t.Fatalf("stats %+v %v", st, err)
	}

	if err := e.rt.Pause(t.Context(), "pause1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // any write in flight lands
	a := counter()
	time.Sleep(400 * time.Millisecond)
	if b := counter(); b != a {
		t.Fatalf("the counter went on while paused: %d then %d", a, b)
	}
	if err := e.rt.Resume(t.Context(), "pause1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return counter() > a+3 }, "the counter to go on after resume")

	if err := e.rt.Pause(t.Context(), "pause1"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.rt.Kill(ctx, "pause1") }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("killing a paused sandbox: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("killing a paused sandbox hangs")
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(sb.Pid)); err == nil {
		t.Error("the paused sandbox's init outlived Kill")
	}
}
