package filesystem

import (
	"context"

	"connectrpc.com/connect"

	pb "github.com/sandpit-dev/sandpit/gen/proto/filesystem"
)

// Move renames source to destination, creating the destination's missing
// parents (owned by the request's user). A missing source is not_found.
func (s *Service) Move(ctx context.Context, req *connect.Request[pb.MoveRequest]) (*connect.Response[pb.MoveResponse], error) {
	id, err := s.identify(req.Header())
	if err != nil {
		return nil, s.rpcError("move", err)
	}
	src, err := id.resolve(req.Msg.GetSource())
	if err != nil {
		return nil, s.rpcError("move", err)
	}
	dst, err := id.resolve(req.Msg.GetDestination())
	if err != nil {
		return nil, s.rpcError("move", err)
	}
	var e *pb.EntryInfo
	err = id.do(func(id identity) error {
		if err := id.root.Rename(src, dst, id.account.Owner()); err != nil {
			return err
		}
		e, err = s.entry(id, dst)
		return err
	})
	if err != nil {
		return nil, s.rpcError("move", err)
	}
	return connect.NewResponse(&pb.MoveResponse{Entry: e}), nil
}
