package linux

import (
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// idmappedTree clones the directory tree at dir into a detached mount whose
// ownership is shifted through the user namespace usernsFd: host uid 0 shows
// as the sandbox's root. Template layers stay owned by the host and are
// never copied or chowned.
func idmappedTree(dir string, usernsFd int) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("open_tree %s: %w", dir, err)
	}
	attr := &unix.MountAttr{
		Attr_set:  unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NODEV,
		Userns_fd: uint64(usernsFd),
	}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, attr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("idmapping %s: %w", dir, err)
	}
	return fd, nil
}

// overlayMount builds a detached overlayfs mount from idmapped copies of
// layers (top-most first) over a writable upper dir. The returned mount
// belongs to no mount namespace until the sandbox's init moves it into its
// own, so nothing of it is ever visible on the host, and it vanishes with
// the sandbox's mount namespace.
func overlayMount(layers []string, upper, work string, usernsFd int) (int, error) {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)

	var trees []int
	defer func() {
		for _, fd := range trees {
			unix.Close(fd)
		}
	}()
	for _, l := range layers {
		fd, err := idmappedTree(l, usernsFd)
		if err != nil {
			return -1, err
		}
		trees = append(trees, fd)
		// Layers are handed over as the detached idmapped trees
		// themselves; a path would name the un-shifted host directory.
		if err := unix.FsconfigSetString(fsfd, "lowerdir+", "/proc/self/fd/"+strconv.Itoa(fd)); err != nil {
			return -1, fmt.Errorf("overlay lower layer %s: %w", l, err)
		}
	}
	opts := [][2]string{{"upperdir", upper}, {"workdir", work}}
	for _, kv := range opts {
		if err := unix.FsconfigSetString(fsfd, kv[0], kv[1]); err != nil {
			return -1, fmt.Errorf("overlay %s=%s: %w", kv[0], kv[1], err)
		}
	}
	// A sandbox's writable layer never outlives the host's uptime, so
	// overlayfs may skip syncing it.
	if err := unix.FsconfigSetFlag(fsfd, "volatile"); err != nil {
		return -1, fmt.Errorf("overlay volatile: %w", err)
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, fmt.Errorf("creating overlay over %v: %w", layers, err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return -1, fmt.Errorf("fsmount overlay: %w", err)
	}
	return mfd, nil
}

// fileMount clones a read-only mount of one file (the agent binary) that the
// sandbox's init can attach inside its own mount namespace; a plain bind
// mount cannot reach across namespaces.
func fileMount(f int) (int, error) {
	fd, err := unix.OpenTree(f, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return -1, fmt.Errorf("open_tree of the agent binary: %w", err)
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, attr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("making the agent binary read-only: %w", err)
	}
	return fd, nil
}
