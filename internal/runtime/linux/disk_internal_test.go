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
	// More disks than free devices: the kernel adds the rest.
	var fds []int
	for i := range free + 3 {
		fd, err := d.attach(filepath.Join(dir, fmt.Sprintf("d%d.img", i)), 16)
		if err != nil {
			t.Fatalf("disk %d: %v", i, err)
		}
		fds = append(fds, fd)
	}
	d.mu.Lock()
	made := slices.Sorted(maps.Keys(d.made))
	d.mu.Unlock()
	if len(made) == 0 {
		t.Fatalf("%d disks on a host with %d free loop devices, and no device was added", free+3, free)
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	if err := d.close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range made {
		back, bound := backing(n)
		switch _, err := os.Stat("/sys/block/loop" + strconv.Itoa(n)); {
		case bound && strings.HasPrefix(back, dir+"/"):
			t.Errorf("loop%d still holds %s", n, back)
		case err == nil && !bound:
			t.Errorf("loop%d, which the disks added, is left behind", n)
		}
	}
	t.Logf("%d free devices at the start, %d added and removed", free, len(made))
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
