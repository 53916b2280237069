package linux

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Closing the disks removes the loop devices their binds added, once free
// again: the kernel would keep them for ever.
func TestDisksRemoveTheLoopDevicesTheyAdded(t *testing.T) {
	needLoopDevices(t)
	dir := t.TempDir()
	d, err := newDisks(dir)
	if err != nil {
		t.Fatal(err)
	}
	backing := func(n int) (string, bool) {
		b, err := os.ReadFile("/sys/block/loop" + strconv.Itoa(n) + "/loop/backing_file")
		return strings.TrimSpace(string(b)), err == nil
	}
	free := 0
	for n := range d.existing {
		if _, bound := backing(n); !bound {
			free++
		}
	}
	// More disks than free devices: the kernel adds the rest. Other
	// tests free devices meanwhile, which the kernel hands out first:
	// attach until it has added a few.
	var fds []int
	var made []int
	for i := 0; len(made) < 3 && i < free+64; i++ {
		fd, err := d.attach(filepath.Join(dir, fmt.Sprintf("d%d.img", i)), 16)
		if err != nil {
			t.Fatalf("disk %d: %v", i, err)
		}
		fds = append(fds, fd)
		d.mu.Lock()
		made = slices.Sorted(maps.Keys(d.made))
		d.mu.Unlock()
	}
	if len(made) == 0 {
		t.Fatalf("%d disks on a host with %d free loop devices, and no device was added", len(fds), free)
	}
	// Listed as they are added, so a run that crashes leaves them to the
	// next.
	if listed := readMade(filepath.Join(dir, madeLoopsFile)); !slices.Equal(slices.Sorted(slices.Values(listed)), made) {
		t.Errorf("%s lists %v while the devices added are %v", madeLoopsFile, listed, made)
	}
	// One added device stays bound through close, as the disk of a
	// sandbox that outlives the daemon: the next run removes it.
	held, heldFD := -1, -1
	for i, fd := range fds {
		n := deviceOf(t, filepath.Join(dir, fmt.Sprintf("d%d.img", i)))
		if held < 0 && slices.Contains(made, n) {
			held, heldFD = n, fd
			continue
		}
		unix.Close(fd)
	}
	if err := d.close(); err != nil {
		t.Fatal(err)
	}
	if back, bound := backing(held); !bound || !strings.HasPrefix(back, dir+"/") {
		t.Fatalf("loop%d, held open, was let go of (%q)", held, back)
	}
	// What the kernel said to each removal is what counts: once removed,
	// a number may be added again at once by anyone's LOOP_CTL_GET_FREE.
	d.mu.Lock()
	left := slices.Sorted(maps.Keys(d.made))
	d.mu.Unlock()
	if !slices.Equal(left, []int{held}) {
		t.Errorf("after close the disks still count %v as theirs to remove, want only the held loop%d", left, held)
	}
	d2, err := newDisks(dir)
	if err != nil {
		t.Fatal(err)
	}
	d2.mu.Lock()
	inherited := d2.made[held]
	d2.mu.Unlock()
	if !inherited {
		t.Errorf("the next run does not know loop%d, which the last one added and left bound", held)
	}
	unix.Close(heldFD)
	if err := d2.close(); err != nil {
		t.Fatal(err)
	}
	d2.mu.Lock()
	left = slices.Sorted(maps.Keys(d2.made))
	d2.mu.Unlock()
	if len(left) > 0 {
		t.Errorf("the next run's close left %v unremoved", left)
	}
	if _, err := os.Stat(filepath.Join(dir, madeLoopsFile)); err == nil {
		t.Errorf("%s is left with nothing to remove", madeLoopsFile)
	}
	for _, n := range made {
		if back, bound := backing(n); bound && strings.HasPrefix(back, dir+"/") {
			t.Errorf("loop%d still holds %s", n, back)
		}
	}
	t.Logf("%d free devices at the start, %d disks, %d devices added and removed", free, len(fds), len(made))
}

// deviceOf is the number of the loop device bound to img.
func deviceOf(t *testing.T, img string) int {
	t.Helper()
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == img {
			n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(filepath.Dir(filepath.Dir(f))), "loop"))
			if err == nil {
				return n
			}
		}
	}
	t.Fatalf("no loop device holds %s", img)
	return -1
}

// needLoopDevices skips a test unless it can bind loop devices: as root,
// on a kernel that has them.
func needLoopDevices(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the Linux runtime needs root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("sandbox disks need loop devices, which the kernel lacks: %v", err)
	}
}
