package filesystem

import (
	"context"
	"strconv"
	"time"

	"connectrpc.com/connect"

	pb "github.com/sandpit-dev/sandpit/gen/proto/filesystem"
)

// DefaultKeepalive is the keepalive interval when the client sends no
// Keepalive-Ping-Interval header.
const DefaultKeepalive = 50 * time.Second

// WatchDir streams the events of a directory: a start event first, then
// filesystem events (names relative to the directory) and a keepalive every
// Keepalive-Ping-Interval seconds. It lasts until the client goes away, the
// RPC deadline (Connect-Timeout-Ms) passes, or the directory is removed.
func (s *Service) WatchDir(ctx context.Context, req *connect.Request[pb.WatchDirRequest], stream *connect.ServerStream[pb.WatchDirResponse]) error {
	id, err := s.identify(req.Header())
	if err != nil {
		return s.rpcError("watch", err)
	}
	abs, err := id.resolve(req.Msg.GetPath())
	if err != nil {
		return s.rpcError("watch", err)
	}
	w, err := s.newWatch(id, abs, req.Msg.GetRecursive(), req.Msg.GetIncludeEntry())
	if err != nil {
		return s.rpcError("watch", err)
	}
	defer w.close()

	events := make(chan *pb.FilesystemEvent, 64)
	runErr := make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(events)
		runErr <- w.run(func(ev *pb.FilesystemEvent) bool {
			select {
			case events <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		})
	}()
	// Stop the reader before returning, so it never outlives the RPC.
	defer func() {
		cancel()
		w.close()
		for range events {
		}
	}()

	if err := stream.Send(&pb.WatchDirResponse{Event: &pb.WatchDirResponse_Start{Start: &pb.WatchDirResponse_StartEvent{}}}); err != nil {
		return err
	}
	ticker := time.NewTicker(keepaliveInterval(req.Header().Get("Keepalive-Ping-Interval")))
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				if err := <-runErr; err != nil {
					return s.rpcError("watch", err)
				}
				return nil
			}
			if err := stream.Send(&pb.WatchDirResponse{Event: &pb.WatchDirResponse_Filesystem{Filesystem: ev}}); err != nil {
				return err
			}
		case <-ticker.C:
			if err := stream.Send(&pb.WatchDirResponse{Event: &pb.WatchDirResponse_Keepalive{Keepalive: &pb.WatchDirResponse_KeepAlive{}}}); err != nil {
				return err
			}
		}
	}
}

// keepaliveInterval parses Keepalive-Ping-Interval (seconds).
func keepaliveInterval(h string) time.Duration {
	n, err := strconv.Atoi(h)
	if err != nil || n <= 0 {
		return DefaultKeepalive
	}
	return time.Duration(n) * time.Second
}
