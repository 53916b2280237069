package safepath

import (
	"path"
	"strings"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// Resolve turns a path sent by a client into a clean absolute path in the
// sandbox's namespace, lexically: "~" and "~/x" expand to home; a relative
// path is joined to workdir, or to home when workdir is empty (E2B envd's
// rule); "." and ".." are resolved by path.Clean, so the result never
// climbs above "/". "~name" (another user's home) and paths holding a NUL
// byte are errdefs.ErrInvalidArgument.
//
// The result is only a name: symlinks in it are resolved later, by the
// Root's methods, inside the root.
func Resolve(p, home, workdir string) (string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "path contains a NUL byte")
	}
	if strings.HasPrefix(p, "~") {
		if len(p) > 1 && p[1] != '/' {
			return "", errdefs.New(errdefs.ErrInvalidArgument, "cannot expand user-specific home dir in path '"+p+"'")
		}
		p = path.Join("/", home, p[1:])
	}
	if !path.IsAbs(p) {
		base := workdir
		if base == "" {
			base = home
		}
		p = path.Join("/", base, p)
	}
	p = path.Clean(p)
	if strings.IndexByte(p, 0) >= 0 { // from home or workdir
		return "", errdefs.New(errdefs.ErrInvalidArgument, "path contains a NUL byte")
	}
	return p, nil
}

// rel returns the root-relative form of the clean absolute path abs, as
// openat2 wants it, or an error when abs is not absolute and clean (every
// Root method takes what Resolve returns).
func rel(abs string) (string, error) {
	if !path.IsAbs(abs) || path.Clean(abs) != abs || strings.IndexByte(abs, 0) >= 0 {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "path '"+abs+"' is not a clean absolute path")
	}
	if abs == "/" {
		return ".", nil
	}
	return abs[1:], nil
}

// split returns the parent directory and final name of the clean absolute
// path abs. The root itself has no parent: ok is false.
func split(abs string) (dir, name string, ok bool) {
	if abs == "/" {
		return "", "", false
	}
	i := strings.LastIndexByte(abs, '/')
	dir = abs[:i]
	if dir == "" {
		dir = "/"
	}
	return dir, abs[i+1:], true
}
