package filesystem

import (
	"context"

	"connectrpc.com/connect"

	pb "github.com/sandpit-dev/sandpit/gen/proto/filesystem"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// MakeDir creates a directory and its missing parents, owned by the
// request's user. An existing directory is already_exists (the SDK's
// makeDir then returns false); an existing non-directory is
// invalid_argument.
func (s *Service) MakeDir(ctx context.Context, req *connect.Request[pb.MakeDirRequest]) (*connect.Response[pb.MakeDirResponse], error) {
	id, err := s.identify(req.Header())
	if err != nil {
		return nil, s.rpcError("mkdir", err)
	}
	abs, err := id.resolve(req.Msg.GetPath())
	if err != nil {
		return nil, s.rpcError("mkdir", err)
	}
	var e *pb.EntryInfo
	err = id.do(func(id identity) error {
		created, err := id.root.MkdirAll(abs, id.account.Owner())
		if err != nil {
			return err
		}
		if !created {
			return errdefs.New(errdefs.ErrAlreadyExists, "directory at '"+abs+"' already exists")
		}
		e, err = s.entry(id, abs)
		return err
	})
	if err != nil {
		return nil, s.rpcError("mkdir", err)
	}
	return connect.NewResponse(&pb.MakeDirResponse{Entry: e}), nil
}
