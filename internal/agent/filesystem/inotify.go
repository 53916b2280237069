package filesystem

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	pb "github.com/sandpit-dev/sandpit/gen/proto/filesystem"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/safepath"
)

// watchMask is what a watch listens to. The mapping to event types follows
// fsnotify's (which upstream envd uses): create and moved-to are create,
// modify is write, delete is remove, moved-from is rename, attrib is chmod.
const watchMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MODIFY | unix.IN_DELETE |
	unix.IN_MOVED_FROM | unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF |
	unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK

// watch is an inotify instance watching one directory, and with recursive
// every directory below it. It is driven by run on one goroutine; close
// (from any goroutine) makes run return.
// maxPendingCommits bounds the temporary-file renames a watch remembers
// between the two halves of each (which inotify queues back to back).
const maxPendingCommits = 1024

type watch struct {
	s            *Service
	id           identity
	dir          string // clean absolute path of the watched directory
	recursive    bool
	includeEntry bool

	file *os.File         // the inotify descriptor, non-blocking (pollable)
	wds  map[int32]string // watch descriptor → directory relative to dir ("" for dir)
	last *pb.FilesystemEvent
	// commits maps the rename cookie of a write's temporary file moving
	// into place to whether it replaces an existing file.
	commits map[uint32]bool
}

// newWatch starts watching the directory abs. A missing directory is
// not_found; a non-directory is invalid_argument.
func (s *Service) newWatch(id identity, abs string, recursive, includeEntry bool) (*watch, error) {
	fi, err := id.root.Stat(abs)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "path '"+abs+"' is not a directory")
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("creating inotify instance: %w", errnoCategory(err))
	}
	w := &watch{
		s: s, id: id, dir: abs, recursive: recursive, includeEntry: includeEntry,
		file: os.NewFile(uintptr(fd), "inotify"),
		wds:  map[int32]string{}, commits: map[uint32]bool{},
	}
	if err := id.do(func(id identity) error {
		w.id = id // for setup only: one switch for the whole tree
		return w.add("", nil)
	}); err != nil {
		w.close()
		return nil, err
	}
	w.id = id
	return w, nil
}

// errnoCategory gives inotify's resource errors their category.
func errnoCategory(err error) error {
	if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.ENOMEM) {
		return fmt.Errorf("%w: %w", errdefs.ErrResourceExhausted, err)
	}
	return err
}

// add watches the directory rel (relative to w.dir) and, when recursive,
// the directories below it. Errors below the top are logged and skipped.
// found, when not nil, is called with every entry below rel: for a
// directory that appeared while watching, these may have been created
// before its watch existed, and would be missed otherwise.
func (w *watch) add(rel string, found func(rel string)) error {
	if len(w.wds) >= w.s.maxWatchesPer {
		w.s.logger.Warn("watch has too many directories; not following more", "path", w.dir, "limit", w.s.maxWatchesPer)
		return nil
	}
	abs := path.Join(w.dir, rel)
	// Open as the user (who must be allowed to read the directory), then
	// hand inotify the open directory through its /proc/self/fd link: the
	// path is never looked up again, so a symlink swapped in meanwhile
	// cannot redirect it.
	d, err := w.id.root.OpenFile(abs, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	// Not w.file.Fd(): that would switch the descriptor to blocking mode
	// and close could no longer interrupt run's read.
	var wd int
	rc, err := w.file.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) {
			wd, err = unix.InotifyAddWatch(int(fd), "/proc/self/fd/"+strconv.Itoa(int(d.Fd())), watchMask)
		})
		if err == nil {
			err = cerr
		}
	}
	d.Close()
	if err != nil {
		return fmt.Errorf("watching %s: %w", abs, errnoCategory(err))
	}
	w.wds[int32(wd)] = rel
	if !w.recursive {
		return nil
	}
	infos, err := w.id.root.ReadDir(abs)
	if err != nil {
		w.s.logger.Debug("listing directory to watch", "path", abs, "err", err)
		return nil
	}
	for _, fi := range infos {
		if pending, _ := safepath.IsPendingName(fi.Name()); pending {
			continue
		}
		if found != nil {
			found(path.Join(rel, fi.Name()))
		}
		if fi.IsDir() {
			if err := w.add(path.Join(rel, fi.Name()), found); err != nil {
				w.s.logger.Debug("watching subdirectory", "path", path.Join(abs, fi.Name()), "err", err)
			}
		}
	}
	return nil
}

// close stops the watch; run returns. Closing twice is fine.
func (w *watch) close() {
	_ = w.file.Close()
}

// run reads events and hands each to emit until close is called, emit
// returns false, or the watched directory goes away (then it returns nil).
// It returns the read error otherwise.
func (w *watch) run(emit func(*pb.FilesystemEvent) bool) error {
	buf := make([]byte, 64*1024)
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, fs.ErrClosed) {
				return nil
			}
			return fmt.Errorf("reading inotify events: %w", err)
		}
		w.last = nil // coalesce only within one read
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(raw.Len)]
			off += unix.SizeofInotifyEvent + int(raw.Len)
			name, _, _ := strings.Cut(string(nameBytes), "\x00")
			if cont, done := w.handle(raw.Wd, raw.Mask, raw.Cookie, name, emit); !cont || done {
				return nil
			}
		}
	}
}

// handle turns one inotify event into FilesystemEvents (usually one). cont
// is false when emit asked to stop; done is true when the watched directory
// itself is gone.
//
// A write through /files goes to a temporary file renamed into place
// (safepath.Create): its events are hidden, and the rename is reported as
// the write in place E2B's envd does would be: create (for a new file)
// and write.
func (w *watch) handle(wd int32, mask uint32, cookie uint32, name string, emit func(*pb.FilesystemEvent) bool) (cont, done bool) {
	if mask&unix.IN_Q_OVERFLOW != 0 {
		w.s.logger.Warn("inotify queue overflowed; events were lost", "path", w.dir)
		return true, false
	}
	rel, ok := w.wds[wd]
	if !ok {
		return true, false
	}
	if mask&unix.IN_IGNORED != 0 {
		delete(w.wds, wd)
		return true, rel == ""
	}
	if mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 {
		// Reported by the parent's watch already (or, for the
		// watched directory, the end of the watch follows).
		return true, false
	}
	if pending, replaces := safepath.IsPendingName(name); pending {
		if mask&unix.IN_MOVED_FROM != 0 {
			if len(w.commits) > maxPendingCommits {
				clear(w.commits)
			}
			w.commits[cookie] = replaces
		}
		return true, false
	}
	if replaces, ok := w.commits[cookie]; ok && mask&unix.IN_MOVED_TO != 0 {
		delete(w.commits, cookie)
		relName := path.Join(rel, name)
		if !replaces && !w.send(relName, pb.EventType_EVENT_TYPE_CREATE, emit) {
			return false, false
		}
		return w.send(relName, pb.EventType_EVENT_TYPE_WRITE, emit), false
	}
	var typ pb.EventType
	switch {
	case mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
		typ = pb.EventType_EVENT_TYPE_CREATE
	case mask&unix.IN_MODIFY != 0:
		typ = pb.EventType_EVENT_TYPE_WRITE
	case mask&unix.IN_DELETE != 0:
		typ = pb.EventType_EVENT_TYPE_REMOVE
	case mask&unix.IN_MOVED_FROM != 0:
		typ = pb.EventType_EVENT_TYPE_RENAME
	case mask&unix.IN_ATTRIB != 0:
		typ = pb.EventType_EVENT_TYPE_CHMOD
	default:
		return true, false
	}
	relName := path.Join(rel, name)
	if !w.send(relName, typ, emit) {
		return false, false
	}
	if w.recursive && mask&unix.IN_ISDIR != 0 && typ == pb.EventType_EVENT_TYPE_CREATE {
		cont = true
		err := w.add(relName, func(child string) {
			cont = cont && w.send(child, pb.EventType_EVENT_TYPE_CREATE, emit)
		})
		if err != nil {
			w.s.logger.Debug("watching new subdirectory", "path", path.Join(w.dir, relName), "err", err)
		}
		return cont, false
	}
	return true, false
}

// send emits one event unless it repeats the previous one of the same
// read (inotify splits one large write into many); false means stop.
func (w *watch) send(relName string, typ pb.EventType, emit func(*pb.FilesystemEvent) bool) bool {
	ev := &pb.FilesystemEvent{Name: relName, Type: typ}
	if w.last != nil && w.last.Name == ev.Name && w.last.Type == ev.Type {
		return true
	}
	w.last = ev
	if w.includeEntry && typ != pb.EventType_EVENT_TYPE_REMOVE && typ != pb.EventType_EVENT_TYPE_RENAME {
		if e, err := w.s.entry(w.id, path.Join(w.dir, relName)); err == nil {
			ev.Entry = e
		}
	}
	return emit(ev)
}
