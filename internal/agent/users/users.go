// Package users resolves the Linux user an envd request acts as: the user
// named by the request (Basic auth on RPCs, a query parameter on /files), else
// the sandbox's default user, looked up in the sandbox's /etc/passwd and
// /etc/group (os/user, which needs no cgo for these files).
package users

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os/user"
	"strconv"
	"strings"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// User is a resolved account.
type User struct {
	Name   string
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups, the primary one included
	Home   string
}

// Lookup finds name. An unknown user is errdefs.ErrUnauthenticated, with the
// message E2B's envd sends ("error looking up user 'x'").
func Lookup(name string) (*User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, errdefs.New(errdefs.ErrUnauthenticated, fmt.Sprintf("error looking up user '%s'", name))
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parsing uid of %q: %w", name, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parsing gid of %q: %w", name, err)
	}
	out := &User{Name: u.Username, UID: uint32(uid), GID: uint32(gid), Home: u.HomeDir}
	gids, err := u.GroupIds()
	if err != nil {
		// A user without readable group data still runs, with its
		// primary group only.
		gids = []string{u.Gid}
	}
	for _, g := range gids {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			continue
		}
		out.Groups = append(out.Groups, uint32(n))
	}
	return out, nil
}

// FromHeader returns the user named by an "Authorization: Basic
// base64(user:)" header, or "" when there is none. A malformed header is
// errdefs.ErrUnauthenticated.
func FromHeader(h http.Header) (string, error) {
	auth := h.Get("Authorization")
	if auth == "" {
		return "", nil
	}
	enc, ok := strings.CutPrefix(auth, "Basic ")
	if !ok {
		return "", errdefs.New(errdefs.ErrUnauthenticated, "authorization header is not Basic")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil {
		return "", errdefs.New(errdefs.ErrUnauthenticated, "invalid Basic authorization header")
	}
	name, _, _ := strings.Cut(string(raw), ":")
	return name, nil
}

// Resolve looks up the user named by h's Basic auth, else def.
func Resolve(h http.Header, def string) (*User, error) {
	name, err := FromHeader(h)
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = def
	}
	return Lookup(name)
}
