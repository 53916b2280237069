package linux_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
)

// A sandbox left running keeps the host ids it was started with, counted
// from the uid base of its run: a runtime with another base (or too few
// slots for it) refuses to start over it rather than adopt it with ids it
// does not have.
func TestChangedUIDBaseWithLiveSandboxesIsRefused(t *testing.T) {
	e := newEnv(t, func(c *linux.Config) { c.UIDBase = 1<<20 + 100*65536 })
	sb := e.create(t, "range1")
	if err := e.rt.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := linux.Config{StateDir: e.stateDir, Exe: e.exe, Cgroups: e.cg}

	cfg.UIDBase = 1<<20 + 200*65536
	_, err := linux.New(cfg)
	var re *linux.RangeError
	if !errors.As(err, &re) || re.RecordedBase != 1<<20+100*65536 || re.Sandboxes != 1 ||
		!strings.Contains(err.Error(), "from uid base 7602176, not 14155776") {
		t.Fatalf("New with another uid base: %v, want a RangeError naming both bases", err)
	}
	cfg.UIDBase, cfg.MaxSandboxes = 1<<20+100*65536, 0 // the sandbox holds slot 0: any max holds it
	rt, err := linux.New(cfg)
	if err != nil {
		t.Fatalf("New with the run's uid base: %v", err)
	}
	e.rt = rt // the cleanups kill through it
	a, err := rt.Adopt(t.Context(), runtime.Adoption{ID: "range1"})
	if err != nil || a.Pid != sb.Pid {
		t.Fatalf("adopting with the run's uid base: %v (pid %d, want %d)", err, a.Pid, sb.Pid)
	}
	// Its processes run as the ids of that base.
	st, err := os.ReadFile("/proc/" + strconv.Itoa(sb.Pid) + "/uid_map")
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(st)); len(f) != 3 || f[1] != strconv.Itoa(1<<20+100*65536) {
		t.Fatalf("uid_map of the adopted init = %q", st)
	}
}

// The check reads only the state dir: a leftover's slot and the recorded
// base.
func TestUIDBaseRecordAndSlotsPastMax(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	exe, _ := os.Executable()
	cfg := linux.Config{StateDir: dir, Exe: exe, UIDBase: 1 << 24}
	open := func() error {
		rt, err := linux.New(cfg)
		if err == nil {
			_ = rt.Close()
		}
		return err
	}
	if err := open(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "uid-base")); err != nil || strings.TrimSpace(string(b)) != "16777216" {
		t.Fatalf("recorded uid base = %q, %v", b, err)
	}
	// Empty, the state dir takes any base.
	cfg.UIDBase = 1 << 25
	if err := open(); err != nil {
		t.Fatal(err)
	}
	// A sandbox dir the runtime cannot see running still holds its slot.
	if err := os.MkdirAll(filepath.Join(dir, "ileft"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ileft", "slot"), []byte("5"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.UIDBase = 1 << 24
	var re *linux.RangeError
	if err := open(); !errors.As(err, &re) || re.RecordedBase != 1<<25 {
		t.Fatalf("New with another base over a leftover: %v", err)
	}
	cfg.UIDBase, cfg.MaxSandboxes = 1<<25, 5
	if err := open(); !errors.As(err, &re) || !strings.Contains(err.Error(), "holds uid range 5, past the 5") {
		t.Fatalf("New with too few slots for a leftover: %v", err)
	}
	cfg.MaxSandboxes = 6
	if err := open(); err != nil {
		t.Fatal(err)
	}
}

// A runtime out of uid ranges is busy (503 with a Retry-After), not out of
// the client's quota.
func TestOutOfSlotsIsUnavailable(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "ileft"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ileft", "slot"), []byte("0"), 0o600); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	rt, err := linux.New(linux.Config{StateDir: dir, Exe: exe, MaxSandboxes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	_, err = rt.Create(t.Context(), runtime.Spec{ID: "inew", Mounts: []runtime.Mount{{Target: "/"}}})
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "maximum of 1 sandboxes") {
		t.Fatalf("Create past the last slot: %v, want unavailable", err)
	}
	if retry, after, ok := errdefs.Retry(err); !ok || !retry || after < time.Second {
		t.Fatalf("retry advice = %v %v %v", retry, after, ok)
	}
}

// TestCreateWaitsForAnEndingSandboxsSlot: a kill answers (End) before its
// sandbox's uid range is free; a create that finds every slot taken waits
// for that one rather than failing, and gets it once the release is done.
func TestCreateWaitsForAnEndingSandboxsSlot(t *testing.T) {
	e := newEnv(t, func(c *linux.Config) { c.MaxSandboxes = 1 })
	e.create(t, "slot-old")
	release, err := e.rt.End(t.Context(), "slot-old")
	if err != nil {
		t.Fatal(err)
	}
	created := make(chan error, 1)
	go func() {
		_, err := e.rt.Create(t.Context(), runtime.Spec{ID: "slot-new", Hostname: "slot-new", Mounts: e.tmpl.Mounts,
			Resources: runtime.Resources{CPUCount: 1, MemoryMB: 256, PidsMax: 256}})
		created <- err
	}()
	select {
	case err := <-created:
		t.Fatalf("Create returned (%v) while the only slot was still held", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-created; err != nil {
		t.Fatalf("Create after the release: %v", err)
	}
	if err := e.rt.Kill(t.Context(), "slot-new"); err != nil {
		t.Fatal(err)
	}
}
