package safepath

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// xattrPrefix names the extended attributes that hold a file's metadata
// (E2B's X-Metadata-* upload headers): user.e2b.<key>.
const xattrPrefix = "user.e2b."

// sidecar keeps metadata in memory for files on filesystems without user
// extended attributes. It lives as long as the Root (the agent): a sandbox
// restart loses it.
type sidecar struct {
	mu sync.Mutex
	m  map[fileKey]map[string]string
}

type fileKey struct{ dev, ino uint64 }

func noXattrs(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP)
}

// SetMetadata replaces the metadata of the open file f with md (nil or
// empty clears it). It uses user extended attributes where the filesystem
// has them and the in-memory sidecar otherwise.
func (r *Root) SetMetadata(f *os.File, md map[string]string) error {
	fd := int(f.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return pathErr("set metadata", f.Name(), err)
	}
	key := fileKey{dev: st.Dev, ino: st.Ino}
	old, err := listMetadataKeys(fd)
	if noXattrs(err) {
		r.meta.set(key, md)
		return nil
	}
	if err != nil {
		return pathErr("set metadata", f.Name(), err)
	}
	for _, k := range old {
		if _, keep := md[k]; keep {
			continue
		}
		if err := unix.Fremovexattr(fd, xattrPrefix+k); err != nil && !errors.Is(err, unix.ENODATA) {
			return pathErr("set metadata", f.Name(), err)
		}
	}
	for k, v := range md {
		if err := unix.Fsetxattr(fd, xattrPrefix+k, []byte(v), 0); err != nil {
			if noXattrs(err) {
				r.meta.set(key, md)
				return nil
			}
			return pathErr("set metadata", f.Name(), err)
		}
	}
	r.meta.set(key, nil)
	return nil
}

// metadata is Metadata without a change of identity.
func (r *Root) metadata(abs string) (map[string]string, error) {
	fd, err := r.openFD(abs, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, nil
	}
	if err != nil {
		return nil, pathErr("get metadata", abs, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, pathErr("get metadata", abs, err)
	}
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFREG && t != unix.S_IFDIR {
		return nil, nil
	}
	keys, err := listMetadataKeys(fd)
	if noXattrs(err) || (err == nil && len(keys) == 0) {
		return r.meta.get(fileKey{dev: st.Dev, ino: st.Ino}), nil
	}
	if err != nil {
		return nil, pathErr("get metadata", abs, err)
	}
	md := make(map[string]string, len(keys))
	for _, k := range keys {
		v, err := getxattr(fd, xattrPrefix+k)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, pathErr("get metadata", abs, err)
		}
		md[k] = v
	}
	return md, nil
}

// listMetadataKeys returns the metadata keys (without the prefix) set on fd.
func listMetadataKeys(fd int) ([]string, error) {
	size := 1024
	for {
		buf := make([]byte, size)
		n, err := unix.Flistxattr(fd, buf)
		if errors.Is(err, unix.ERANGE) && size < 1<<20 {
			size *= 4
			continue
		}
		if err != nil {
			return nil, err
		}
		var keys []string
		for name := range bytes.SplitSeq(buf[:n], []byte{0}) {
			if k, ok := strings.CutPrefix(string(name), xattrPrefix); ok && k != "" {
				keys = append(keys, k)
			}
		}
		return keys, nil
	}
}

func getxattr(fd int, name string) (string, error) {
	size := 256
	for {
		buf := make([]byte, size)
		n, err := unix.Fgetxattr(fd, name, buf)
		if errors.Is(err, unix.ERANGE) && size < 1<<20 {
			size *= 4
			continue
		}
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
}

func (s *sidecar) set(k fileKey, md map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(md) == 0 {
		delete(s.m, k)
		return
	}
	if s.m == nil {
		s.m = make(map[fileKey]map[string]string)
	}
	c := make(map[string]string, len(md))
	for k, v := range md {
		c[k] = v
	}
	s.m[k] = c
}

func (s *sidecar) get(k fileKey) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	md := s.m[k]
	if md == nil {
		return nil
	}
	c := make(map[string]string, len(md))
	for k, v := range md {
		c[k] = v
	}
	return c
}
