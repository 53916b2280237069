package sandpit_test

import (
	"errors"
	"testing"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// TestSnapshotAndFork: a named snapshot lists and starts sandboxes with the
// parent's files; forks see the parent's files and not each other's
// writes; a count of 0 is ErrInvalidArgument; deleting twice reports false.
func TestSnapshotAndFork(t *testing.T) {
	c := newClient(t)
	ctx := t.Context()
	parent := newSandbox(t, sandpit.WithTimeout(2*time.Minute))
	if _, err := parent.Files.Write(ctx, "/home/user/f", []byte("parent")); err != nil {
		t.Fatal(err)
	}
	name := "sdk-snap-" + fmtInt(int(time.Now().UnixNano()%1e9))
	snap, err := parent.CreateSnapshot(ctx, sandpit.WithSnapshotName(name))
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for s, err := range c.Snapshots(ctx, sandpit.WithSnapshotsOf(parent.ID), sandpit.WithSnapshotPageSize(1)) {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, s.ID)
	}
	if len(listed) != 1 || listed[0] != snap.ID {
		t.Errorf("snapshots of the parent: %v, want [%s]", listed, snap.ID)
	}
	child := newSandbox(t, sandpit.WithTemplate(snap.ID))
	if b, err := child.Files.Read(ctx, "/home/user/f"); err != nil || string(b) != "parent" {
		t.Errorf("the snapshot's file: %q %v", b, err)
	}

	forks, err := parent.Fork(ctx, sandpit.WithCount(2), sandpit.WithForkTimeout(time.Minute))
	if err != nil || len(forks) != 2 {
		t.Fatalf("fork: %v %v", forks, err)
	}
	for _, f := range forks {
		if f.Err != nil {
			t.Fatal(f.Err)
		}
		t.Cleanup(func() { f.Sandbox.Close() })
	}
	if _, err := forks[0].Sandbox.Files.Write(ctx, "/home/user/f", []byte("fork 0")); err != nil {
		t.Fatal(err)
	}
	for i, sb := range []*sandpit.Sandbox{parent, forks[1].Sandbox} {
		if b, err := sb.Files.Read(ctx, "/home/user/f"); err != nil || string(b) != "parent" {
			t.Errorf("sandbox %d sees %q %v after fork 0 wrote", i, b, err)
		}
	}
	if _, err := parent.Fork(ctx, sandpit.WithCount(0)); !errors.Is(err, sandpit.ErrInvalidArgument) {
		t.Errorf("fork of 0: %v, want ErrInvalidArgument", err)
	}
	if ok, err := c.DeleteSnapshot(ctx, snap.ID); !ok || err != nil {
		t.Errorf("delete: %v %v", ok, err)
	}
	if ok, err := c.DeleteSnapshot(ctx, snap.ID); ok || err != nil {
		t.Errorf("delete again: %v %v, want false", ok, err)
	}
}
