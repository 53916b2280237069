package linux

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/cgroup"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// A sandbox whose disk mount the runtime does not hold (one a restarted
// daemon adopts) is snapshotted through a second mount of its disk, found
// by its loop device.
func TestSnapshotDiskByLoopDevice(t *testing.T) {
	needLoopDevices(t)
	dir := t.TempDir()
	tmpl, err := template.BuildBase(t.Context(), dir+"/templates")
	if err != nil {
		t.Fatal(err)
	}
	cg, err := cgroup.New("sandpit-test/" + filepath.Base(filepath.Dir(dir)))
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	r, err := New(Config{StateDir: dir + "/sandboxes", Exe: exe, Cgroups: cg, DiskQuota: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	sb, err := r.Create(ctx, runtime.Spec{ID: "snap-loop", Hostname: "x", Mounts: tmpl.Mounts, Resources: runtime.Resources{CPUCount: 1, MemoryMB: 256, DiskMB: 64}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Kill(context.Background(), sb.ID) })
	// Written through the sandbox's root as the host sees it: into its
	// writable layer on its disk.
	if err := os.WriteFile("/proc/"+strconv.Itoa(sb.Pid)+"/root/mine", []byte("on disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := r.box(sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	held := b.disk
	b.disk = -1
	defer func() { b.disk = held }()
	out := filepath.Join(dir, "snap")
	if _, err := r.Snapshot(t.Context(), sb.ID, out, runtime.SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(out, "0", "mine")); err != nil || string(got) != "on disk" {
		t.Errorf("the snapshot's copy: %q %v", got, err)
	}
}
