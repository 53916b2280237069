package filesystem

import (
	"context"

	"connectrpc.com/connect"

	pb "github.com/sandpit-dev/sandpit/gen/proto/filesystem"
)

// Remove deletes a path, recursively for a directory. A missing path is not
// an error (upstream envd uses os.RemoveAll); a final symlink is removed,
// not its target.
func (s *Service) Remove(ctx context.Context, req *connect.Request[pb.RemoveRequest]) (*connect.Response[pb.RemoveResponse], error) {
	id, err := s.identify(req.Header())
	if err != nil {
		return nil, s.rpcError("remove", err)
	}
	abs, err := id.resolve(req.Msg.GetPath())
	if err != nil {
		return nil, s.rpcError("remove", err)
	}
	if err := id.root.RemoveAll(abs); err != nil {
		return nil, s.rpcError("remove", err)
	}
	return connect.NewResponse(&pb.RemoveResponse{}), nil
}
