package filesystem

import (
	"context"
	"crypto/rand"
	"sync"

	"connectrpc.com/connect"

	pb "github.com/sandpit-dev/sandpit/gen/proto/filesystem"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// pollWatcher is a watch whose events queue up until polled. It lives until
// RemoveWatcher or the Service's Close (the agent's end).
type pollWatcher struct {
	w    *watch
	done chan struct{} // closed when the reader goroutine has returned

	mu      sync.Mutex
	events  []*pb.FilesystemEvent
	dropped int
}

// stop closes the watch and waits for its reader.
func (p *pollWatcher) stop() {
	p.w.close()
	<-p.done
}

// CreateWatcher starts a polled watch and returns its id.
func (s *Service) CreateWatcher(ctx context.Context, req *connect.Request[pb.CreateWatcherRequest]) (*connect.Response[pb.CreateWatcherResponse], error) {
	id, err := s.identify(req.Header())
	if err != nil {
		return nil, s.rpcError("create watcher", err)
	}
	abs, err := id.resolve(req.Msg.GetPath())
	if err != nil {
		return nil, s.rpcError("create watcher", err)
	}
	s.mu.Lock()
	full, closed := len(s.watchers) >= s.maxWatchers, s.closed
	s.mu.Unlock()
	if closed {
		return nil, s.rpcError("create watcher", errdefs.New(errdefs.ErrUnavailable, "the agent is shutting down"))
	}
	if full {
		return nil, s.rpcError("create watcher", errdefs.New(errdefs.ErrResourceExhausted, "too many watchers; remove some first"))
	}
	w, err := s.newWatch(id, abs, req.Msg.GetRecursive(), req.Msg.GetIncludeEntry())
	if err != nil {
		return nil, s.rpcError("create watcher", err)
	}
	p := &pollWatcher{w: w, done: make(chan struct{})}
	wid := rand.Text()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		w.close()
		return nil, s.rpcError("create watcher", errdefs.New(errdefs.ErrUnavailable, "the agent is shutting down"))
	}
	s.watchers[wid] = p
	s.mu.Unlock()
	go func() {
		defer close(p.done)
		if err := w.run(func(ev *pb.FilesystemEvent) bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			if len(p.events) >= s.maxQueued {
				p.events = p.events[1:]
				if p.dropped == 0 {
					s.logger.Warn("watcher queue full; dropping oldest events", "watcher_id", wid, "limit", s.maxQueued)
				}
				p.dropped++
			}
			p.events = append(p.events, ev)
			return true
		}); err != nil {
			s.logger.Warn("watcher stopped", "watcher_id", wid, "err", err)
		}
	}()
	return connect.NewResponse(&pb.CreateWatcherResponse{WatcherId: wid}), nil
}

// GetWatcherEvents returns the events queued since the last poll.
func (s *Service) GetWatcherEvents(ctx context.Context, req *connect.Request[pb.GetWatcherEventsRequest]) (*connect.Response[pb.GetWatcherEventsResponse], error) {
	p, err := s.watcher(req.Msg.GetWatcherId())
	if err != nil {
		return nil, s.rpcError("get watcher events", err)
	}
	p.mu.Lock()
	events := p.events
	p.events = nil
	p.dropped = 0
	p.mu.Unlock()
	return connect.NewResponse(&pb.GetWatcherEventsResponse{Events: events}), nil
}

// RemoveWatcher stops a polled watch.
func (s *Service) RemoveWatcher(ctx context.Context, req *connect.Request[pb.RemoveWatcherRequest]) (*connect.Response[pb.RemoveWatcherResponse], error) {
	wid := req.Msg.GetWatcherId()
	s.mu.Lock()
	p, ok := s.watchers[wid]
	delete(s.watchers, wid)
	s.mu.Unlock()
	if !ok {
		return nil, s.rpcError("remove watcher", errdefs.New(errdefs.ErrNotFound, "watcher '"+wid+"' not found"))
	}
	p.stop()
	return connect.NewResponse(&pb.RemoveWatcherResponse{}), nil
}

func (s *Service) watcher(wid string) (*pollWatcher, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.watchers[wid]
	if !ok {
		return nil, errdefs.New(errdefs.ErrNotFound, "watcher '"+wid+"' not found")
	}
	return p, nil
}
