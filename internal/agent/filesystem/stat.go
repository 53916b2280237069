package filesystem

import (
	"context"

	"connectrpc.com/connect"

	pb "github.com/sandpit-dev/sandpit/gen/proto/filesystem"
)

// Stat describes a path without following a final symlink.
func (s *Service) Stat(ctx context.Context, req *connect.Request[pb.StatRequest]) (*connect.Response[pb.StatResponse], error) {
	id, err := s.identify(req.Header())
	if err != nil {
		return nil, s.rpcError("stat", err)
	}
	abs, err := id.resolve(req.Msg.GetPath())
	if err != nil {
		return nil, s.rpcError("stat", err)
	}
	var e *pb.EntryInfo
	err = id.do(func(id identity) error {
		e, err = s.entry(id, abs)
		return err
	})
	if err != nil {
		return nil, s.rpcError("stat", err)
	}
	return connect.NewResponse(&pb.StatResponse{Entry: e}), nil
}
