package filesystem

import (
	"io/fs"
	"path"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/sandpit-dev/sandpit/gen/proto/filesystem"
	"github.com/sandpit-dev/sandpit/internal/safepath"
)

// entry describes abs without following a final symlink.
func (s *Service) entry(id identity, abs string) (*pb.EntryInfo, error) {
	fi, err := id.root.Lstat(abs)
	if err != nil {
		return nil, err
	}
	return s.entryFrom(id, abs, fi), nil
}

// entryFrom builds the EntryInfo of abs from its lstat information: size,
// mode, owner and time are the entry's own; for a symlink, type is the
// target's (symlink when it dangles) and symlinkTarget is the target as an
// absolute path in the sandbox.
func (s *Service) entryFrom(id identity, abs string, fi *safepath.FileInfo) *pb.EntryInfo {
	mode := fi.Mode()
	name := path.Base(abs)
	e := &pb.EntryInfo{
		Name:         name,
		Type:         fileType(mode),
		Path:         abs,
		Size:         fi.Size(),
		Mode:         uint32(mode.Perm()),
		Permissions:  mode.String(),
		Owner:        id.accounts.UserName(fi.UID()),
		Group:        id.accounts.GroupName(fi.GID()),
		ModifiedTime: timestamppb.New(fi.ModTime()),
	}
	switch {
	case mode&fs.ModeSymlink != 0:
		if target, err := id.root.Readlink(abs); err == nil {
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(abs), target)
			}
			target = path.Clean(target)
			e.SymlinkTarget = &target
		}
		if tfi, err := id.root.Stat(abs); err == nil {
			e.Type = fileType(tfi.Mode())
		}
	case mode.IsRegular():
		if md, err := id.root.Metadata(abs); err == nil && len(md) > 0 {
			e.Metadata = md
		}
	}
	return e
}

// fileType maps a mode to the wire's FileType. Special files (FIFOs,
// sockets, devices) are reported as files, as upstream envd does, so that
// clients that drop unknown types still list them.
func fileType(m fs.FileMode) pb.FileType {
	switch {
	case m.IsDir():
		return pb.FileType_FILE_TYPE_DIRECTORY
	case m&fs.ModeSymlink != 0:
		return pb.FileType_FILE_TYPE_SYMLINK
	default:
		return pb.FileType_FILE_TYPE_FILE
	}
}
