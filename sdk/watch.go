package sandpit

import (
	"context"
	"iter"
	"sync"

	"connectrpc.com/connect"

	"github.com/sandpit-dev/sandpit/gen/proto/filesystem"
)

// EventType is what happened to a watched entry.
type EventType string

// Filesystem event types.
const (
	EventCreate EventType = "create"
	EventWrite  EventType = "write"
	EventRemove EventType = "remove"
	EventRename EventType = "rename"
	EventChmod  EventType = "chmod"
)

// FilesystemEvent is one change in a watched directory.
type FilesystemEvent struct {
	// Name is the entry's path relative to the watched directory.
	Name string
	// Type is what happened.
	Type EventType
}

var eventTypes = map[filesystem.EventType]EventType{
	filesystem.EventType_EVENT_TYPE_CREATE: EventCreate,
	filesystem.EventType_EVENT_TYPE_WRITE:  EventWrite,
	filesystem.EventType_EVENT_TYPE_REMOVE: EventRemove,
	filesystem.EventType_EVENT_TYPE_RENAME: EventRename,
	filesystem.EventType_EVENT_TYPE_CHMOD:  EventChmod,
}

// Watcher delivers the changes in a directory until it is stopped, its
// context is cancelled, or its timeout passes.
type Watcher struct {
	events chan FilesystemEvent
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	err error
}

// Watch starts watching a directory (WithRecursive for its subdirectories
// too) and returns once the watch is in place. Read the changes from
// Events or range over All. The watch lives for its timeout (WithTimeout,
// default 60s; 0 for no limit), until ctx is cancelled, or until Stop.
func (f *Files) Watch(ctx context.Context, path string, opts ...WatchOption) (*Watcher, error) {
	cfg := watchConfig{timeout: defaultStreamTimeout}
	for _, o := range opts {
		o.applyWatch(&cfg)
	}
	op := "watch " + path
	req := connect.NewRequest(&filesystem.WatchDirRequest{Path: path, Recursive: cfg.recursive})
	setUser(req.Header(), cfg.user)
	req.Header().Set("Keepalive-Ping-Interval", keepaliveInterval)
	sctx, cancel := context.WithCancel(ctx)
	if cfg.timeout > 0 {
		sctx, cancel = context.WithTimeout(ctx, cfg.timeout)
	}
	s, err := f.rpc.WatchDir(sctx, req)
	if err != nil {
		cancel()
		return nil, rpcError(op, err)
	}
	// The first message says the watch is in place.
	for {
		if !s.Receive() {
			err := s.Err()
			s.Close()
			cancel()
			if err == nil {
				return nil, &Error{Op: op, Message: "the watch ended before it started"}
			}
			return nil, rpcError(op, err)
		}
		if s.Msg().GetStart() != nil {
			break
		}
	}
	w := &Watcher{events: make(chan FilesystemEvent, 64), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer close(w.events)
		defer s.Close()
		defer cancel()
		for s.Receive() {
			ev := s.Msg().GetFilesystem()
			if ev == nil {
				continue
			}
			t, ok := eventTypes[ev.GetType()]
			if !ok {
				continue
			}
			select {
			case w.events <- FilesystemEvent{Name: ev.GetName(), Type: t}:
			case <-sctx.Done():
				return
			}
		}
		if err := s.Err(); err != nil && sctx.Err() == nil {
			w.mu.Lock()
			w.err = rpcError(op, err)
			w.mu.Unlock()
		}
	}()
	return w, nil
}

// Events returns the channel of changes. It is closed when the watch ends;
// Err then says why, if not because it was stopped or timed out.
func (w *Watcher) Events() <-chan FilesystemEvent { return w.events }

// All yields the changes until the watch ends, then the error that ended
// it, if any. Breaking out of the loop does not stop the watch; Stop does.
func (w *Watcher) All() iter.Seq2[FilesystemEvent, error] {
	return func(yield func(FilesystemEvent, error) bool) {
		for ev := range w.events {
			if !yield(ev, nil) {
				return
			}
		}
		if err := w.Err(); err != nil {
			yield(FilesystemEvent{}, err)
		}
	}
}

// Err returns what ended the watch, once Events is closed; nil when it was
// stopped, cancelled or timed out.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Stop ends the watch and waits for its goroutine. Safe to call twice.
func (w *Watcher) Stop() {
	w.cancel()
	<-w.done
}
