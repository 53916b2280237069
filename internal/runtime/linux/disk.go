package linux

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel here has no quota support (CONFIG_QUOTA), so project quotas
// cannot cap a directory. Instead each sandbox's writable layers live on a
// filesystem of their own: a sparse ext4 image of the sandbox's disk size,
// copied from a pre-made empty one, on a loop device, mounted detached
// like the overlays. A full disk is ENOSPC inside that sandbox and nowhere
// else. The loop device clears itself once the sandbox's mount namespace,
// the image's last user, is gone.

// disks makes and attaches sandbox disk images. It keeps a few disks of
// each size asked for attached ahead of demand (spares), so a create
// mostly takes one instead of paying for the copy, the loop device and the
// mount.
type disks struct {
	dir     string   // where the empty images and the spares are kept
	loopCtl *os.File // /dev/loop-control
	// existing are the loop devices there were when the runtime started;
	// made (guarded by mu) those its binds added since (close removes
	// them).
	existing map[int]bool
	made     map[int]bool

	mu      sync.Mutex
	goldens map[int]string  // size in MB → empty formatted image
	spares  map[int][]spare // size in MB → disks ready to take
	filling map[int]bool    // a filler is topping up this size
	closed  bool
	seq     int
}

// spare is an attached disk nobody has taken yet.
type spare struct {
	img string
	fd  int
}

// sparesPerSize is how many disks of a size wait ready: enough for a
// burst of creates at a few at a time, while the filler makes more.
// Recycled disks (recycle) may make up to maxSpares: under a steady
// stream of creates and kills, the kills then refill the spares and the
// filler's copies and mounts are rarely needed.
const (
	sparesPerSize = 4
	maxSpares     = 2 * sparesPerSize
)

// recycleMaxFiles is the most inodes a disk may have had in use to be
// recycled. The ones its sandbox freed slow the next sandbox's new files
// for a minute (see forgetDeleted), the more the slower: a disk that held
// more gives its place to a fresh one, which costs its kill the unmount and
// the next create a copy, small beside making that many files.
const recycleMaxFiles = 1024

const sparePrefix = "spare-"

func newDisks(dir string) (*disks, error) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		return nil, errors.New("mkfs.ext4 is not installed (e2fsprogs)")
	}
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/loop-control: %w", err)
	}
	// Spares of an earlier run: their loop devices went with that
	// process's mounts; only the files are left.
	if old, _ := filepath.Glob(filepath.Join(dir, sparePrefix+"*.img")); len(old) > 0 {
		for _, p := range old {
			_ = os.Remove(p)
		}
	}
	d := &disks{dir: dir, loopCtl: ctl, existing: loopDevices(), made: map[int]bool{},
		goldens: map[int]string{}, spares: map[int][]spare{}, filling: map[int]bool{}}
	// Devices an earlier run added and could not remove (their sandboxes
	// outlived it) are this run's to remove once free.
	for _, n := range readMade(filepath.Join(dir, madeLoopsFile)) {
		if d.existing[n] {
			d.made[n] = true
		}
	}
	return d, nil
}

// madeLoopsFile lists, one number a line, the loop devices a run added:
// each as it is added (a run that crashes leaves them to the next), and
// at close those it could not remove.
const madeLoopsFile = "loops-added"

// noteMade appends n to madeLoopsFile. Best effort: at worst a device
// outlives the runs that could have removed it.
func (d *disks) noteMade(n int) {
	f, err := os.OpenFile(filepath.Join(d.dir, madeLoopsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	_, _ = fmt.Fprintln(f, n)
	_ = f.Close()
}

func readMade(path string) []int {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil && n >= 0 {
			out = append(out, n)
		}
	}
	return out
}

// loopDevices returns the numbers of the host's loop devices.
func loopDevices() map[int]bool {
	ents, _ := os.ReadDir("/sys/block")
	out := map[int]bool{}
	for _, e := range ents {
		if n, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "loop")); err == nil && strings.HasPrefix(e.Name(), "loop") {
			out[n] = true
		}
	}
	return out
}

func (d *disks) close() error {
	d.mu.Lock()
	d.closed = true
	all := d.spares
	d.spares = map[int][]spare{}
	d.mu.Unlock()
	for _, ss := range all {
		for _, s := range ss {
			unix.Close(s.fd)
			_ = os.Remove(s.img)
		}
	}
	d.removeMade(loopRemoveWithin)
	d.mu.Lock()
	left := slices.Sorted(maps.Keys(d.made))
	d.mu.Unlock()
	path := filepath.Join(d.dir, madeLoopsFile)
	if len(left) == 0 {
		_ = os.Remove(path)
	} else {
		var b strings.Builder
		for _, n := range left {
			fmt.Fprintln(&b, n)
		}
		_ = os.WriteFile(path, []byte(b.String()), 0o600) // best effort: at worst a device stays
	}
	return d.loopCtl.Close()
}

// loopRemoveWithin bounds how long close removes loop devices.
const loopRemoveWithin = 5 * time.Second

// removeMade removes the loop devices this run's binds added that are
// free again, for at most within. LOOP_CTL_GET_FREE adds a device when
// none is free and the kernel keeps it for ever: after a run of 2000
// sandboxes, 2000 devices that every sysinfo(2) and /proc/meminfo read
// walks (bash calls sysinfo at every start: 1 % of the host's CPU under
// load). A removal waits out an RCU grace period (~45 ms on the
// development machine; concurrent ones share grace periods: 400 in
// 0.3 s 64 at a time), so they run in parallel. A device still bound
// (its sandbox outlives the daemon, or its disk is being let go of) is
// tried again while others go, and listed for the next run; the kernel
// refuses (EBUSY) one that anyone holds open.
func (d *disks) removeMade(within time.Duration) {
	d.mu.Lock()
	pending := slices.Sorted(maps.Keys(d.made))
	d.mu.Unlock()
	deadline := time.Now().Add(within)
	lastGone := time.Now()
	for len(pending) > 0 && time.Now().Before(deadline) {
		var mu sync.Mutex
		var left []int
		var wg sync.WaitGroup
		work := make(chan int)
		for range min(64, len(pending)) {
			wg.Go(func() {
				for n := range work {
					if !d.removeLoop(n) {
						mu.Lock()
						left = append(left, n)
						mu.Unlock()
					}
				}
			})
		}
		for _, n := range pending {
			work <- n
		}
		close(work)
		wg.Wait()
		if len(left) < len(pending) {
			lastGone = time.Now()
		}
		pending = left
		// Devices bound for good (sandboxes that outlive the daemon)
		// stop the waiting once nothing has gone for a while; one whose
		// disk is being let go of clears within ms (longer on a loaded
		// host), and what is still bound then is the next run's.
		if time.Since(lastGone) > time.Second {
			break
		}
		if len(pending) > 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// removeLoop removes loop device n unless it is bound or held, and
// reports whether it is gone.
func (d *disks) removeLoop(n int) bool {
	if _, err := os.Stat("/sys/block/loop" + strconv.Itoa(n) + "/loop/backing_file"); err == nil {
		return false // bound
	}
	err := unix.IoctlSetInt(int(d.loopCtl.Fd()), unix.LOOP_CTL_REMOVE, n)
	if err == nil || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO) {
		d.mu.Lock()
		delete(d.made, n)
		d.mu.Unlock()
		return true
	}
	return false // EBUSY: someone holds it open
}

// take gives a sandbox a disk of sizeMB at img: a spare when one is
// ready (moved to img; its loop device follows the file, not the name),
// else a new one. Either way the spares of that size are topped up behind.
func (d *disks) take(img string, sizeMB int) (int, error) {
	d.mu.Lock()
	var s spare
	ok := false
	if ss := d.spares[sizeMB]; len(ss) > 0 {
		s, ok = ss[len(ss)-1], true
		d.spares[sizeMB] = ss[:len(ss)-1]
	}
	d.fillLocked(sizeMB)
	d.mu.Unlock()
	if ok {
		if err := os.Rename(s.img, img); err != nil {
			unix.Close(s.fd)
			_ = os.Remove(s.img)
			return -1, fmt.Errorf("taking a spare disk: %w", err)
		}
		return s.fd, nil
	}
	return d.attach(img, sizeMB)
}

// recycle takes back the disk of a sandbox whose processes have all
// ended, mounted at fd with its image at img: its files go and it waits as
// a spare for the next sandbox of its size. That spares the next create
// the copy, the loop device and the mount, and this sandbox's end the
// unmount with its flushes, which under load cost more CPU than anything
// else in a sandbox's disk. Nothing of the old sandbox is left for the
// next to see: its files live only under the per-mount dirs removed here
// (it never sees the disk's root), and the trim punches every free block
// out of the image, so no block the next sandbox is given holds old data,
// not even after a crash that left a new file's blocks unwritten. A disk
// that cannot be trimmed, or that held more than recycleMaxFiles files, is
// not recycled. It reports whether it kept the disk; if not, the disk is
// the caller's still.
func (d *disks) recycle(fd int, img string) bool {
	st, err := os.Stat(img)
	if err != nil {
		return false
	}
	sizeMB := int(st.Size() >> 20)
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil || fs.Flags&unix.ST_RDONLY != 0 {
		return false // an error made ext4 read-only: not for another sandbox
	}
	if fs.Files-fs.Ffree > recycleMaxFiles {
		return false
	}
	d.mu.Lock()
	full := d.closed || len(d.spares[sizeMB]) >= maxSpares
	d.mu.Unlock()
	if full {
		return false
	}
	root := "/proc/self/fd/" + strconv.Itoa(fd)
	entries, err := os.ReadDir(root)
	if err != nil {
		return false
	}
	for _, e := range entries {
		name := e.Name()
		if name == "lost+found" {
			continue
		}
		// Only the daemon writes at the disk's root: one dir per mount,
		// named by its index (prepareDir). Anything else means the disk
		// is not what it should be, and it is not handed on. What the
		// sandbox wrote is below those dirs, and RemoveAll removes it
		// through directory handles without following its symlinks.
		if _, err := strconv.Atoi(name); err != nil {
			return false
		}
		if err := os.RemoveAll(filepath.Join(root, name)); err != nil {
			return false
		}
	}
	if err := trim(fd); err != nil {
		return false
	}
	if err := forgetDeleted(fd); err != nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || len(d.spares[sizeMB]) >= maxSpares {
		return false
	}
	d.seq++
	spareImg := filepath.Join(d.dir, fmt.Sprintf("%s%d-%dm.img", sparePrefix, d.seq, sizeMB))
	if err := os.Rename(img, spareImg); err != nil {
		return false
	}
	d.spares[sizeMB] = append(d.spares[sizeMB], spare{img: spareImg, fd: fd})
	return true
}

// trim gives the free blocks of the filesystem mounted at fd back to the
// host (FITRIM: the loop device punches holes in the image), so a
// recycled disk holds on the host no more than its files.
func trim(fd int) error {
	dir, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening the disk to trim: %w", err)
	}
	defer unix.Close(dir)
	// struct fstrim_range of linux/fs.h; x/sys has no FITRIM.
	r := struct{ start, len, minLen uint64 }{len: math.MaxUint64}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(dir), fitrim, uintptr(unsafe.Pointer(&r))); errno != 0 {
		return fmt.Errorf("trimming the disk: %w", errno)
	}
	return nil
}

// forgetDeleted writes out the metadata of the filesystem mounted at fd and
// drops its cached blocks (BLKFLSBUF on its device). ext4 without a journal
// passes over every inode freed in the last minutes whose inode table block
// is still cached, and looks that block up again for each, whenever it
// allocates an inode: a sandbox given a disk on which thousands of files
// were just removed made each of its own files ten times slower (4000 empty
// files: 0.86–1.24 s instead of 0.08 s). A block no longer cached counts as
// written out, and its inodes are free to reuse; but new files cache their
// blocks again, with the freed inodes beside them, so the flush takes only
// most of the cost away (0.17–0.27 s), and recycleMaxFiles the rest.
func forgetDeleted(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("finding the disk's device: %w", err)
	}
	uevent, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		return fmt.Errorf("finding the disk's device: %w", err)
	}
	var name string
	for line := range strings.Lines(string(uevent)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "DEVNAME="); ok {
			name = v
		}
	}
	if !strings.HasPrefix(name, "loop") || strings.Contains(name, "/") {
		return fmt.Errorf("the disk's device %d:%d is %q, not a loop device", unix.Major(st.Dev), unix.Minor(st.Dev), name)
	}
	dev, err := os.Open("/dev/" + name)
	if err != nil {
		return fmt.Errorf("opening the disk's device: %w", err)
	}
	defer dev.Close()
	if err := unix.IoctlSetInt(int(dev.Fd()), unix.BLKFLSBUF, 0); err != nil {
		return fmt.Errorf("flushing %s: %w", dev.Name(), err)
	}
	return nil
}

// fitrim is FITRIM, _IOWR('X', 121, struct fstrim_range).
const fitrim = 0xc0185879

// fillLocked starts topping up the spares of sizeMB unless that is under
// way. Precondition: d.mu is held.
func (d *disks) fillLocked(sizeMB int) {
	if d.filling[sizeMB] || d.closed {
		return
	}
	d.filling[sizeMB] = true
	go func() {
		for {
			d.mu.Lock()
			if d.closed || len(d.spares[sizeMB]) >= sparesPerSize {
				d.filling[sizeMB] = false
				d.mu.Unlock()
				return
			}
			d.seq++
			img := filepath.Join(d.dir, fmt.Sprintf("%s%d-%dm.img", sparePrefix, d.seq, sizeMB))
			d.mu.Unlock()
			fd, err := d.attach(img, sizeMB)
			d.mu.Lock()
			if err != nil || d.closed {
				d.filling[sizeMB] = false
				d.mu.Unlock()
				if err == nil {
					unix.Close(fd)
				}
				_ = os.Remove(img)
				return // the next take tries again
			}
			d.spares[sizeMB] = append(d.spares[sizeMB], spare{img: img, fd: fd})
			d.mu.Unlock()
		}
	}()
}

// golden returns the empty image of sizeMB, formatting it the first time
// (the one time this shells out: mkfs is not a hot path).
func (d *disks) golden(sizeMB int) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p, ok := d.goldens[sizeMB]; ok {
		return p, nil
	}
	p := filepath.Join(d.dir, "ext4-"+strconv.Itoa(sizeMB)+"m.img")
	if _, err := os.Stat(p); err != nil {
		tmp := p + ".tmp"
		_ = os.Remove(tmp)
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return "", fmt.Errorf("creating disk image: %w", err)
		}
		err = f.Truncate(int64(sizeMB) << 20)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", fmt.Errorf("sizing disk image: %w", err)
		}
		// No journal (the layer is volatile anyway), no reserved blocks,
		// inode tables initialised lazily: the image stays a few
		// hundred KiB of data however large it is.
		out, err := exec.Command("mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-m", "0",
			"-E", "lazy_itable_init=1,nodiscard,root_owner=0:0", tmp).CombinedOutput()
		if err != nil {
			_ = os.Remove(tmp)
			return "", fmt.Errorf("formatting a %d MB disk image: %v: %s", sizeMB, err, out)
		}
		if err := os.Rename(tmp, p); err != nil {
			return "", fmt.Errorf("publishing disk image: %w", err)
		}
	}
	d.goldens[sizeMB] = p
	return p, nil
}

// attach gives a sandbox a disk of sizeMB at img and returns the detached
// mount of its filesystem.
func (d *disks) attach(img string, sizeMB int) (int, error) {
	golden, err := d.golden(sizeMB)
	if err != nil {
		return -1, err
	}
	if err := sparseCopy(golden, img); err != nil {
		return -1, fmt.Errorf("copying disk image: %w", err)
	}
	dev, loopFile, err := d.loop(img)
	if err != nil {
		return -1, err
	}
	// Auto-clear fires on the device's last close: hold it open until
	// the filesystem holds it.
	defer loopFile.Close()
	return mountDisk(dev)
}

// mountDisk mounts the ext4 on block device dev, detached, and returns
// the mount's handle. Mounting a device that is mounted already gives the
// same superblock: a sandbox of an earlier run keeps writing to it.
func mountDisk(dev string) (int, error) {
	fsfd, err := unix.Fsopen("ext4", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen ext4: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigSetString(fsfd, "source", dev); err != nil {
		return -1, fmt.Errorf("disk source %s: %w", dev, err)
	}
	// The inode tables are never zeroed in the background: in a sparse
	// image they read as zeros already, and zeroing would fill the image.
	// No "discard": ext4 without a journal sends a file's freed blocks to
	// the loop device as it deletes the file and waits for them, so every
	// rm inside a sandbox waited on the host's disk. The freed blocks go
	// back to the host in one batch when the disk is recycled (trim), or
	// with the image when it is not.
	for _, flag := range []string{"noinit_itable"} {
		if err := unix.FsconfigSetFlag(fsfd, flag); err != nil {
			return -1, fmt.Errorf("disk option %s: %w", flag, err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, fmt.Errorf("mounting disk %s: %w", dev, err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOSUID)
	if err != nil {
		return -1, fmt.Errorf("fsmount disk: %w", err)
	}
	return mfd, nil
}

// loop binds img to a free loop device that lets go of it by itself when
// its last user (the caller's open file, then the filesystem) is gone. The
// device reads and writes the image with direct I/O: the sandbox's ext4
// caches its pages already, and a second copy in the host's page cache
// would cost memory and an extra copy of every byte.
func (d *disks) loop(img string) (string, *os.File, error) {
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return "", nil, fmt.Errorf("opening disk image: %w", err)
	}
	defer f.Close()
	// Another process may take the free device between asking and
	// binding: ask again.
	for range 16 {
		n, err := unix.IoctlRetInt(int(d.loopCtl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", nil, fmt.Errorf("finding a free loop device: %w", err)
		}
		dev := "/dev/loop" + strconv.Itoa(n)
		l, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			return "", nil, fmt.Errorf("opening %s: %w", dev, err)
		}
		cfg := unix.LoopConfig{Fd: uint32(f.Fd()), Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR | unix.LO_FLAGS_DIRECT_IO}}
		err = unix.IoctlLoopConfigure(int(l.Fd()), &cfg)
		if errors.Is(err, unix.EBUSY) {
			l.Close()
			continue
		}
		if err != nil {
			l.Close()
			return "", nil, fmt.Errorf("binding %s to %s: %w", img, dev, err)
		}
		if !d.existing[n] {
			d.mu.Lock()
			added := !d.made[n]
			d.made[n] = true
			d.mu.Unlock()
			if added {
				d.noteMade(n)
			}
		}
		return dev, l, nil
	}
	return "", nil, errors.New("no loop device stayed free long enough to bind")
}

// sparseCopy copies src's data extents into a new file dst of the same
// size; holes stay holes.
func sparseCopy(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := out.Truncate(st.Size()); err != nil {
		return err
	}
	for off := int64(0); off < st.Size(); {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // no data after off
		}
		if err != nil {
			return err
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		if _, err := io.Copy(io.NewOffsetWriter(out, data), io.NewSectionReader(in, data, hole-data)); err != nil {
			return err
		}
		off = hole
	}
	return out.Close()
}
