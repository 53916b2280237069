package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/safepath"
)

var _ runtime.Snapshotter = (*Runtime)(nil)

// Snapshot implements runtime.Snapshotter. A running overlay's upper dir
// cannot be handed over (its processes keep writing to it) nor swapped
// (their root is that overlay), so the sandbox is frozen and what it wrote
// is copied: the cost is the bytes written, not the template's. The copy
// is made through directory handles, shifting owners from the sandbox's
// host range as it goes, so no second pass over the tree is needed; the
// sandbox runs again before the copy is made durable.
func (r *Runtime) Snapshot(ctx context.Context, id, dir string, opts runtime.SnapshotOptions) (st runtime.SnapshotStats, err error) {
	start := time.Now()
	defer func() { st.Total = time.Since(start) }()
	b, err := r.box(id)
	if err != nil {
		return st, err
	}
	// A Stop, Start or Kill of it waits for the copy.
	b.op.Lock()
	defer b.op.Unlock()
	r.mu.Lock()
	gone := r.boxes[id] != b
	r.mu.Unlock()
	if gone {
		return st, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("sandbox %s not found", id))
	}
	base := r.cfg.UIDBase + b.slot*idsPerSandbox
	src, closeSrc, err := r.writableLayers(b)
	if err != nil {
		return st, fmt.Errorf("snapshotting %s: %w", id, err)
	}
	defer closeSrc()
	if err := os.Mkdir(dir, 0o755); err != nil {
		return st, fmt.Errorf("snapshotting %s: %w", id, err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	dst, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return st, fmt.Errorf("snapshotting %s: %w", id, err)
	}
	defer unix.Close(dst)

	thaw, err := r.freezeFor(b)
	if err != nil {
		return st, fmt.Errorf("snapshotting %s: %w", id, err)
	}
	frozen := time.Now()
	c := &treeCopy{ctx: ctx, base: base, links: map[fileID]string{}}
	err = c.mounts(src, dst)
	st.Frozen = time.Since(frozen)
	thaw()
	if err != nil {
		return st, fmt.Errorf("snapshotting %s: %w", id, err)
	}
	st.Bytes, st.Files = c.bytes, c.files
	if opts.Durable {
		if err := unix.Syncfs(dst); err != nil {
			return st, fmt.Errorf("snapshotting %s: syncing the layer: %w", id, err)
		}
	}
	return st, nil
}

// freezeFor stops the sandbox's processes unless it is paused already, and
// returns what lets them go on. Without a cgroup there is nothing to
// freeze: the copy is then of a sandbox that may still be writing.
func (r *Runtime) freezeFor(b *box) (func(), error) {
	r.mu.Lock()
	paused, group := b.paused, b.group
	r.mu.Unlock()
	if paused || group == nil || r.cfg.Cgroups.Kind() == "none" {
		return func() {}, nil // paused, stopped, or nothing to freeze
	}
	// Freeze returns once every task has stopped, so no write lands
	// half-way through the copy.
	if err := group.Freeze(); err != nil {
		return nil, fmt.Errorf("freezing: %w", err)
	}
	return func() {
		r.mu.Lock()
		paused := b.paused // a Pause meanwhile keeps it frozen
		r.mu.Unlock()
		if !paused {
			if err := group.Thaw(); err != nil {
				r.log.Error("thawing a sandbox after its snapshot", "sandbox_id", b.id, "err", err)
			}
		}
	}, nil
}

// writableLayers opens the directory that holds the sandbox's writable
// layers as <i>/upper. A sandbox with a disk of its own keeps them on that
// disk, whose detached mount the runtime holds; one it does not hold (a
// sandbox of an earlier run) is mounted once more, detached and
// read-only, from its loop device (the kernel hands back the superblock
// the sandbox writes to, so nothing needs flushing first).
func (r *Runtime) writableLayers(b *box) (int, func(), error) {
	if b.disk >= 0 {
		// The disk's mount this runtime keeps for the sandbox's life.
		// Precondition: b.op is held, so Kill cannot close it meanwhile.
		fd, err := unix.Openat(b.disk, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, nil, fmt.Errorf("opening its disk: %w", err)
		}
		return fd, func() { unix.Close(fd) }, nil
	}
	img := filepath.Join(b.dir, "disk.img")
	if _, err := os.Lstat(img); err != nil {
		fd, err := unix.Open(filepath.Join(b.dir, "layers"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, nil, fmt.Errorf("opening its writable layers: %w", err)
		}
		return fd, func() { unix.Close(fd) }, nil
	}
	dev, err := loopOf(img)
	if err != nil {
		return -1, nil, err
	}
	fsfd, err := unix.Fsopen("ext4", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, nil, fmt.Errorf("fsopen ext4: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigSetString(fsfd, "source", dev); err != nil {
		return -1, nil, fmt.Errorf("disk source %s: %w", dev, err)
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, nil, fmt.Errorf("mounting disk %s: %w", dev, err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return -1, nil, fmt.Errorf("fsmount disk %s: %w", dev, err)
	}
	defer unix.Close(mfd)
	// The mount's handle is a path handle: open its root to read it. The
	// detached mount lives as long as something holds it open.
	root, err := unix.Openat(mfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("opening disk %s: %w", dev, err)
	}
	return root, func() { unix.Close(root) }, nil
}

// loopOf finds the loop device that backs img, by the image's inode (a
// spare disk's image was renamed after it was bound).
func loopOf(img string) (string, error) {
	return scanLoops(img, nil)
}

// loopOf is loopOf through the runtime's map of bound loop devices, which
// is scanned again only when img is not in it.
func (r *Runtime) loopOf(img string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(img, &st); err != nil {
		return "", fmt.Errorf("disk image: %w", err)
	}
	key := fileID{dev: uint64(st.Dev), ino: st.Ino}
	r.loopsMu.Lock()
	defer r.loopsMu.Unlock()
	if dev, ok := r.loops[key]; ok {
		if cur, err := loopBacking(dev); err == nil && cur == key {
			return dev, nil
		}
	}
	r.loops = map[fileID]string{}
	return scanLoops(img, r.loops)
}

// scanLoops finds img's loop device among those bound, recording every
// bound device in seen when it is not nil.
func scanLoops(img string, seen map[fileID]string) (string, error) {
	var want unix.Stat_t
	if err := unix.Stat(img, &want); err != nil {
		return "", fmt.Errorf("disk image: %w", err)
	}
	key := fileID{dev: uint64(want.Dev), ino: want.Ino}
	found := ""
	bound, _ := filepath.Glob("/sys/block/loop*/loop")
	for _, p := range bound {
		dev := "/dev/" + filepath.Base(filepath.Dir(p))
		backing, err := loopBacking(dev)
		if err != nil {
			continue
		}
		if seen != nil {
			seen[backing] = dev
		}
		if backing == key && found == "" {
			found = dev
			if seen == nil {
				break
			}
		}
	}
	if found == "" {
		return "", errdefs.New(errdefs.ErrUnavailable, "the sandbox's disk is attached to no loop device")
	}
	return found, nil
}

// loopBacking is the file (device and inode) loop device dev is bound to.
func loopBacking(dev string) (fileID, error) {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fileID{}, err
	}
	defer unix.Close(fd)
	info, err := unix.IoctlLoopGetStatus64(fd)
	if err != nil {
		return fileID{}, err
	}
	return fileID{dev: info.Device, ino: info.Inode}, nil
}

// fileID names an inode, to keep hard links linked in the copy.
type fileID struct{ dev, ino uint64 }

// treeCopy copies writable layers. The trees were written by the sandbox,
// so every name in them is hostile: they are walked by directory handles,
// never by path, and no call follows a symlink.
type treeCopy struct {
	ctx   context.Context
	base  int               // first host id of the sandbox's range
	links map[fileID]string // first copy of a hard-linked inode, relative to the layer
	layer int               // handle of the layer being written (dst/<i>)
	bytes int64
	files int
	buf   []byte
}

// mounts copies src/<i>/upper to dst/<i> for every mount i that has one
// with something in it.
func (c *treeCopy) mounts(src, dst int) error {
	names, err := listDir(src)
	if err != nil {
		return fmt.Errorf("listing writable layers: %w", err)
	}
	for _, n := range names {
		if _, err := strconv.Atoi(n); err != nil {
			continue
		}
		upper, err := unix.Openat(src, n+"/upper", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening writable layer %s: %w", n, err)
		}
		err = c.layerCopy(upper, dst, n)
		unix.Close(upper)
		if err != nil {
			return fmt.Errorf("copying writable layer %s: %w", n, err)
		}
	}
	return nil
}

func (c *treeCopy) layerCopy(upper, dst int, name string) error {
	ents, err := listDir(upper)
	if err != nil || len(ents) == 0 {
		return err // nothing written: no layer
	}
	var st unix.Stat_t
	if err := unix.Fstat(upper, &st); err != nil {
		return err
	}
	if err := unix.Mkdirat(dst, name, 0o700); err != nil {
		return err
	}
	out, err := unix.Openat(dst, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(out)
	c.layer, c.links = out, map[fileID]string{}
	if err := c.dir(upper, out, ""); err != nil {
		return err
	}
	return c.finishDir(upper, out, &st)
}

// shift maps an id of the sandbox's host range to the one it saw.
func (c *treeCopy) shift(v uint32) int {
	if int(v) >= c.base && int(v) < c.base+idsPerSandbox {
		return int(v) - c.base
	}
	return int(v)
}

// dir copies the entries of the directory open at in into the one open
// at out; rel is its path in the layer, for hard links.
func (c *treeCopy) dir(in, out int, rel string) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	names, err := listDir(in)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := c.entry(in, out, name, path(rel, name)); err != nil {
			return fmt.Errorf("%s: %w", path(rel, name), err)
		}
	}
	return nil
}

func path(rel, name string) string {
	if rel == "" {
		return name
	}
	return rel + "/" + name
}

func (c *treeCopy) entry(in, out int, name, rel string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(in, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	c.files++
	typ := st.Mode & unix.S_IFMT
	if typ != unix.S_IFDIR && st.Nlink > 1 {
		id := fileID{uint64(st.Dev), st.Ino}
		if first, ok := c.links[id]; ok {
			return unix.Linkat(c.layer, first, out, name, 0)
		}
		c.links[id] = rel
	}
	switch typ {
	case unix.S_IFDIR:
		if err := unix.Mkdirat(out, name, 0o700); err != nil {
			return err
		}
		sin, err := unix.Openat(in, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(sin)
		sout, err := unix.Openat(out, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(sout)
		if err := c.dir(sin, sout, rel); err != nil {
			return err
		}
		return c.finishDir(sin, sout, &st)
	case unix.S_IFREG:
		return c.file(in, out, name, &st)
	case unix.S_IFLNK:
		target, err := safepath.ReadlinkAt(in, name)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(target, out, name); err != nil {
			return err
		}
	default: // devices (overlay whiteouts are 0:0 character devices), fifos, sockets
		if err := unix.Mknodat(out, name, st.Mode, int(st.Rdev)); err != nil {
			return err
		}
	}
	if err := unix.Fchownat(out, name, c.shift(st.Uid), c.shift(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	return unix.UtimesNanoAt(out, name, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
}

// file copies a regular file's data extents (holes stay holes), owner,
// mode, extended attributes and times.
func (c *treeCopy) file(in, out int, name string, st *unix.Stat_t) error {
	sf, err := unix.Openat(in, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(sf)
	df, err := unix.Openat(out, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer unix.Close(df)
	if err := c.data(sf, df, st.Size); err != nil {
		return err
	}
	return c.finish(sf, df, st)
}

// data copies the extents of sf to the same offsets of df, in the kernel.
func (c *treeCopy) data(sf, df int, size int64) error {
	if size == 0 {
		return nil
	}
	for off := int64(0); off < size; {
		start, err := unix.Seek(sf, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return err
		}
		end, err := unix.Seek(sf, start, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		if _, err := unix.Seek(df, start, unix.SEEK_SET); err != nil {
			return err
		}
		for pos := start; pos < end; {
			n, err := unix.Sendfile(df, sf, &pos, int(min(end-pos, 1<<30)))
			if err != nil {
				return err
			}
			if n == 0 {
				break // the file shrank under us
			}
			c.bytes += int64(n)
		}
		off = end
	}
	return unix.Ftruncate(df, size)
}

// finish gives the copy open at df the owner, mode, extended attributes
// and times of the original open at sf. chown clears set-id bits, so the
// mode comes after it.
func (c *treeCopy) finish(sf, df int, st *unix.Stat_t) error {
	if err := unix.Fchown(df, c.shift(st.Uid), c.shift(st.Gid)); err != nil {
		return err
	}
	if err := unix.Fchmod(df, st.Mode&0o7777); err != nil {
		return err
	}
	if err := c.xattrs(sf, df); err != nil {
		return err
	}
	return unix.UtimesNano("/proc/self/fd/"+strconv.Itoa(df), []unix.Timespec{st.Atim, st.Mtim})
}

func (c *treeCopy) finishDir(sin, sout int, st *unix.Stat_t) error {
	return c.finish(sin, sout, st)
}

// xattrs copies extended attributes, overlay's own (trusted.overlay.*,
// which mark opaque directories) included. File capabilities are left
// behind: they name the sandbox's root by its host uid, which means
// nothing to another sandbox, and chown would have cleared them anyway.
func (c *treeCopy) xattrs(sf, df int) error {
	sz, err := unix.Flistxattr(sf, nil)
	if err != nil || sz == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return err
	}
	list := make([]byte, sz)
	sz, err = unix.Flistxattr(sf, list)
	if err != nil {
		return err
	}
	for _, name := range strings.Split(strings.TrimRight(string(list[:sz]), "\x00"), "\x00") {
		if name == "" || name == "security.capability" {
			continue
		}
		n, err := unix.Fgetxattr(sf, name, nil)
		if err != nil {
			return fmt.Errorf("reading xattr %s: %w", name, err)
		}
		if cap(c.buf) < n {
			c.buf = make([]byte, n)
		}
		n, err = unix.Fgetxattr(sf, name, c.buf[:n])
		if err != nil {
			return fmt.Errorf("reading xattr %s: %w", name, err)
		}
		if err := unix.Fsetxattr(df, name, c.buf[:n], 0); err != nil {
			return fmt.Errorf("writing xattr %s: %w", name, err)
		}
	}
	return nil
}

// listDir lists the directory open at fd from its start, whoever read it
// before.
func listDir(fd int) ([]string, error) {
	if _, err := unix.Seek(fd, 0, unix.SEEK_SET); err != nil {
		return nil, err
	}
	return dirNames(fd)
}
