// Package settings holds the per-sandbox state the agent's services share and
// that POST /init may change while the agent runs: the sandbox-global
// environment, the access token, the default user and the default workdir.
package settings

import (
	"crypto/subtle"
	"maps"
	"sync"
)

// DefaultUser is the user processes run as when neither the request nor
// /init names one (E2B templates have a "user" account).
const DefaultUser = "user"

// Values is a snapshot of the settings. Env is a copy the caller may keep.
type Values struct {
	Env            map[string]string
	AccessToken    string
	DefaultUser    string
	DefaultWorkdir string
}

// WorkdirOf returns the directory that the relative paths of user's
// filesystem requests start from ("" for the user's home): the default
// workdir belongs to the default user, and another user's relative paths
// start from that user's home, as on E2B (uploadUrl('x', {user: 'root'})
// writes /root/x).
func (v Values) WorkdirOf(user string) string {
	if user != v.DefaultUser {
		return ""
	}
	return v.DefaultWorkdir
}

// Update changes some settings; nil pointers leave a value as it is. Env is
// merged into the current environment (later wins).
type Update struct {
	Env            map[string]string
	AccessToken    *string
	DefaultUser    *string
	DefaultWorkdir *string
}

// Settings is safe for concurrent use. The zero value is not usable; call New.
type Settings struct {
	mu sync.RWMutex
	v  Values
}

// New returns settings starting from v (Env is copied; an empty DefaultUser
// means DefaultUser).
func New(v Values) *Settings {
	v.Env = maps.Clone(v.Env)
	if v.Env == nil {
		v.Env = map[string]string{}
	}
	if v.DefaultUser == "" {
		v.DefaultUser = DefaultUser
	}
	return &Settings{v: v}
}

// Get returns a snapshot.
func (s *Settings) Get() Values {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v := s.v
	v.Env = maps.Clone(s.v.Env)
	return v
}

// Apply applies u.
func (s *Settings) Apply(u Update) {
	s.mu.Lock()
	defer s.mu.Unlock()
	maps.Copy(s.v.Env, u.Env)
	if u.AccessToken != nil {
		s.v.AccessToken = *u.AccessToken
	}
	if u.DefaultUser != nil && *u.DefaultUser != "" {
		s.v.DefaultUser = *u.DefaultUser
	}
	if u.DefaultWorkdir != nil {
		s.v.DefaultWorkdir = *u.DefaultWorkdir
	}
}

// HasToken reports whether an access token is set.
func (s *Settings) HasToken() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.v.AccessToken != ""
}

// CheckToken reports whether got is acceptable: true when no token is set,
// else a constant-time comparison with the token.
func (s *Settings) CheckToken(got string) bool {
	s.mu.RLock()
	want := s.v.AccessToken
	s.mu.RUnlock()
	if want == "" {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
