package linux_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
	"golang.org/x/sys/unix"
)

// TestDiskQuota: a sandbox that fills its disk fills only its own, says
// so with ENOSPC, and gets the space back when it deletes; its loop
// device goes with it.
func TestDiskQuota(t *testing.T) {
	// Only what the kernel lacks skips: loop devices (ext4 loads on
	// demand). Anything else that leaves disks uncapped is a failure.
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("sandbox disks need loop devices, which the kernel lacks: %v", err)
	}
	e := newEnv(t, func(c *linux.Config) { c.DiskQuota = true })
	for _, w := range e.rt.Warnings() {
		if strings.Contains(w, "disks are not capped") {
			t.Fatalf("disk quotas are off although the kernel has loop devices: %s", w)
		}
	}
	full := e.createSpec(t, runtime.Spec{ID: "disk-full", Resources: runtime.Resources{DiskMB: 64}})
	other := e.createSpec(t, runtime.Spec{ID: "disk-other", Resources: runtime.Resources{DiskMB: 64}})

	if got := strings.TrimSpace(run(t, full, "df -m / | awk 'NR==2 {print $2}'", false)); got == "" || mustAtoi(t, got) > 64 {
		t.Errorf("df says the root holds %s MB, want at most 64", got)
	}
	out := run(t, full, "dd if=/dev/zero of=/home/user/big bs=1M count=100 2>&1; echo rc=$?", false)
	if !strings.Contains(out, "No space left on device") || strings.HasSuffix(strings.TrimSpace(out), "rc=0") {
		t.Fatalf("writing 100 MB to a 64 MB disk: %q", out)
	}
	// The full sandbox's /tmp (memory) and the other sandbox's disk are
	// untouched by it.
	if out := run(t, full, "dd if=/dev/zero of=/tmp/t bs=1M count=20 2>&1 >/dev/null; echo rc=$?", false); !strings.HasSuffix(strings.TrimSpace(out), "rc=0") {
		t.Errorf("/tmp of the full sandbox: %q", out)
	}
	if out := run(t, other, "dd if=/dev/zero of=/home/user/f bs=1M count=40 2>&1 >/dev/null; echo rc=$?", false); !strings.HasSuffix(strings.TrimSpace(out), "rc=0") {
		t.Errorf("the other sandbox cannot write: %q", out)
	}
	// Deleting gives the space back.
	if out := run(t, full, "rm /home/user/big && dd if=/dev/zero of=/home/user/again bs=1M count=40 2>&1 >/dev/null; echo rc=$?", false); !strings.HasSuffix(strings.TrimSpace(out), "rc=0") {
		t.Errorf("writing after deleting: %q", out)
	}

	dir := filepath.Join(e.stateDir, "disk-full")
	if loopsBacking(t, dir) != 1 {
		t.Fatalf("want one loop device backed by %s", dir)
	}
	if err := e.rt.Kill(t.Context(), "disk-full"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for loopsBacking(t, dir) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a loop device still holds the disk of a killed sandbox (%s)", dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// loopsBacking counts loop devices whose backing file is under dir.
func loopsBacking(t *testing.T, dir string) int {
	t.Helper()
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), dir) {
			n++
		}
	}
	return n
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q is not a number", s)
	}
	return n
}

// TestDiskRecycled: a killed sandbox's disk serves the next sandbox of
// its size (the same loop device, no copy or mount), emptied: the next
// sandbox sees none of the old files and has all the space.
func TestDiskRecycled(t *testing.T) {
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("sandbox disks need loop devices, which the kernel lacks: %v", err)
	}
	e := newEnv(t, func(c *linux.Config) { c.DiskQuota = true })
	old := e.createSpec(t, runtime.Spec{ID: "disk-old", Resources: runtime.Resources{DiskMB: 96}})
	if out := run(t, old, "echo secret >/home/user/secret && dd if=/dev/zero of=/home/user/big bs=1M count=60 2>&1 >/dev/null; echo rc=$?", false); !strings.HasSuffix(strings.TrimSpace(out), "rc=0") {
		t.Fatalf("filling the old sandbox's disk: %q", out)
	}
	// Many files (not too many to be recycled), whose inodes the
	// recycling frees.
	if out := run(t, old, "mkdir /home/user/many && cd /home/user/many && for i in $(seq 900); do : > f$i; done; ls | wc -l", false); strings.TrimSpace(out) != "900" {
		t.Fatalf("making files in the old sandbox: %q", out)
	}
	devs := loopDevsBacking(t, filepath.Join(e.stateDir, "disk-old"))
	if len(devs) != 1 {
		t.Fatalf("want one loop device backed by the old sandbox's dir, got %v", devs)
	}
	if err := e.rt.Kill(t.Context(), "disk-old"); err != nil {
		t.Fatal(err)
	}
	next := e.createSpec(t, runtime.Spec{ID: "disk-next", Resources: runtime.Resources{DiskMB: 96}})
	if got := loopDevsBacking(t, filepath.Join(e.stateDir, "disk-next")); len(got) != 1 || got[0] != devs[0] {
		t.Errorf("the next sandbox's disk is on %v, want the killed one's %s", got, devs[0])
	}
	// The old files' blocks went back to the host (trimmed) before the
	// disk was handed on.
	if held := imageBlocks(t, filepath.Join(e.stateDir, "disk-next", "disk.img")) * 512; held > 16<<20 {
		t.Errorf("the recycled image holds %d MiB on the host, want the old sandbox's 60 MiB given back", held>>20)
	}
	if out := run(t, next, "ls -A /home/user; cat /home/user/secret 2>&1", false); !strings.Contains(out, "No such file") || strings.Contains(out, "big") {
		t.Errorf("the next sandbox sees the old one's files: %q", out)
	}
	if out := run(t, next, "dd if=/dev/zero of=/home/user/f bs=1M count=80 2>&1 >/dev/null; echo rc=$?", false); !strings.HasSuffix(strings.TrimSpace(out), "rc=0") {
		t.Errorf("the next sandbox cannot use the whole disk: %q", out)
	}
	// New files take the freed inodes. ext4 without a journal passes over
	// an inode freed in the last minutes while its inode table block is
	// cached, reading that block for each, at every new file: a sandbox
	// handed a disk that held many files made its own ten times slower.
	// (An inode freed in the current second is not passed over: wait.)
	out := strings.Fields(run(t, next, "sleep 1.1; mkdir /home/user/many && cd /home/user/many && for i in 1 2 3; do : > g$i; done; stat -c %i g3", false))
	if len(out) != 1 {
		t.Fatalf("making files in the next sandbox: %q", out)
	}
	if ino, err := strconv.Atoi(out[0]); err != nil || ino > 400 {
		t.Errorf("a new file on the recycled disk is inode %s, past most of the 900 the old sandbox's files freed: they were passed over", out[0])
	}
}

// TestDiskWithManyFilesNotRecycled: a disk that held more files than a
// recycled one may free goes with its sandbox; the next gets a fresh one.
func TestDiskWithManyFilesNotRecycled(t *testing.T) {
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("sandbox disks need loop devices, which the kernel lacks: %v", err)
	}
	e := newEnv(t, func(c *linux.Config) { c.DiskQuota = true })
	image := func(id string) uint64 {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(e.stateDir, id, "disk.img"), &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	// A disk with few files is recycled: the next sandbox has its image.
	few := e.createSpec(t, runtime.Spec{ID: "disk-few", Resources: runtime.Resources{DiskMB: 96}})
	run(t, few, "mkdir /home/user/d && cd /home/user/d && for i in $(seq 100); do : > f$i; done", false)
	fewImage := image("disk-few")
	if err := e.rt.Kill(t.Context(), "disk-few"); err != nil {
		t.Fatal(err)
	}
	e.createSpec(t, runtime.Spec{ID: "disk-after-few", Resources: runtime.Resources{DiskMB: 96}})
	if image("disk-after-few") != fewImage {
		t.Fatal("a disk that held 100 files was not recycled")
	}
	many := e.createSpec(t, runtime.Spec{ID: "disk-many", Resources: runtime.Resources{DiskMB: 96}})
	if out := run(t, many, "mkdir /home/user/d && cd /home/user/d && for i in $(seq 2000); do : > f$i; done; ls | wc -l", false); strings.TrimSpace(out) != "2000" {
		t.Fatalf("making 2000 files: %q", out)
	}
	manyImage := image("disk-many")
	if err := e.rt.Kill(t.Context(), "disk-many"); err != nil {
		t.Fatal(err)
	}
	e.createSpec(t, runtime.Spec{ID: "disk-after-many", Resources: runtime.Resources{DiskMB: 96}})
	if image("disk-after-many") == manyImage {
		t.Error("a disk that held 2000 files was recycled")
	}
}

// loopDevsBacking names the loop devices whose backing file is under dir.
func loopDevsBacking(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), dir) {
			out = append(out, filepath.Base(filepath.Dir(filepath.Dir(f))))
		}
	}
	return out
}

// imageBlocks is the disk space (in 512-byte blocks) the image at path
// holds on the host.
func imageBlocks(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks
}
