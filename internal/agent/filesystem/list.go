package filesystem

import (
	"context"
	"path"
	"slices"
	"strings"

	"connectrpc.com/connect"

	pb "github.com/sandpit-dev/sandpit/gen/proto/filesystem"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/safepath"
)

// ListDir lists a directory (following a symlink to reach it) down to
// depth levels (0 counts as 1), in lexical pre-order. The directory itself
// is not listed and symlinks below it are not followed. A subdirectory that
// cannot be read is listed but not entered. The temporary files of uploads
// in progress are not listed.
func (s *Service) ListDir(ctx context.Context, req *connect.Request[pb.ListDirRequest]) (*connect.Response[pb.ListDirResponse], error) {
	id, err := s.identify(req.Header())
	if err != nil {
		return nil, s.rpcError("list", err)
	}
	abs, err := id.resolve(req.Msg.GetPath())
	if err != nil {
		return nil, s.rpcError("list", err)
	}
	depth := int(req.Msg.GetDepth())
	if depth == 0 {
		depth = 1
	}
	var entries []*pb.EntryInfo
	err = id.do(func(id identity) error {
		fi, err := id.root.Stat(abs)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return errdefs.New(errdefs.ErrInvalidArgument, "path '"+abs+"' is not a directory")
		}
		return s.list(ctx, id, abs, depth, true, &entries)
	})
	if err != nil {
		return nil, s.rpcError("list", err)
	}
	return connect.NewResponse(&pb.ListDirResponse{Entries: entries}), nil
}

// list appends the entries of dir and, depth permitting, of its
// subdirectories. top errors are returned; below it, unreadable
// directories are skipped.
func (s *Service) list(ctx context.Context, id identity, dir string, depth int, top bool, out *[]*pb.EntryInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	infos, err := id.root.ReadDir(dir)
	if err != nil {
		if top {
			return err
		}
		s.logger.Debug("listing subdirectory", "path", dir, "err", err)
		return nil
	}
	slices.SortFunc(infos, func(a, b *safepath.FileInfo) int { return strings.Compare(a.Name(), b.Name()) })
	for _, fi := range infos {
		if pending, _ := safepath.IsPendingName(fi.Name()); pending {
			continue // an upload in progress: not a file yet
		}
		child := path.Join(dir, fi.Name())
		*out = append(*out, s.entryFrom(id, child, fi))
		if depth > 1 && fi.IsDir() {
			if err := s.list(ctx, id, child, depth-1, false, out); err != nil {
				return err
			}
		}
	}
	return nil
}
