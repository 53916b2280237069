package template

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// Step types, as E2B's Template SDK sends them.
const (
	StepRun     = "RUN"
	StepCopy    = "COPY"
	StepEnv     = "ENV"
	StepWorkdir = "WORKDIR"
	StepUser    = "USER"
)

// Step is one builder step. Args follow E2B's wire format:
//
//	RUN     [script] or [script, user]
//	COPY    [src, dest, user or "", mode as octal or ""], FilesHash names the upload
//	ENV     [k1, v1, k2, v2, ...]
//	WORKDIR [dir]
//	USER    [user]
type Step struct {
	Type      string   `json:"type"`
	Args      []string `json:"args"`
	Force     bool     `json:"force,omitempty"`
	FilesHash string   `json:"filesHash,omitempty"`
	// Digest is the SHA-256 of the archive uploaded under FilesHash,
	// set by the Registry when the build starts: what the step copies
	// and its cache key, whatever the client's hash says.
	Digest string `json:"digest,omitempty"`
}

// files names a COPY step's archive: its digest once known.
func (s Step) files() string {
	if s.Digest != "" {
		return s.Digest
	}
	return s.FilesHash
}

// String shows a step the way a Dockerfile would.
func (s Step) String() string {
	switch s.Type {
	case StepRun:
		if len(s.Args) > 1 && s.Args[1] != "" {
			return fmt.Sprintf("RUN (as %s) %s", s.Args[1], s.Args[0])
		}
	case StepCopy:
		if len(s.Args) >= 2 {
			return "COPY " + s.Args[0] + " " + s.Args[1]
		}
	case StepEnv:
		var kv []string
		for i := 0; i+1 < len(s.Args); i += 2 {
			kv = append(kv, s.Args[i]+"="+s.Args[i+1])
		}
		return "ENV " + strings.Join(kv, " ")
	}
	return strings.TrimSpace(s.Type + " " + strings.Join(s.Args, " "))
}

var (
	envName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	userName = regexp.MustCompile(`^[a-z_][a-z0-9_.-]*[$]?$`)
	hexHash  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	octal    = regexp.MustCompile(`^[0-7]{3,4}$`)
)

// Validate checks a step's type and arguments; the error names the step
// by its 1-based position n.
func (s Step) Validate(n int) error {
	bad := func(msg string) error {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("step %d (%s): %s", n, s.Type, msg))
	}
	switch s.Type {
	case StepRun:
		if len(s.Args) < 1 || len(s.Args) > 2 || strings.TrimSpace(s.Args[0]) == "" {
			return bad("needs a command and optionally a user")
		}
		if len(s.Args) == 2 && s.Args[1] != "" && !userName.MatchString(s.Args[1]) {
			return bad(fmt.Sprintf("invalid user %q", s.Args[1]))
		}
	case StepCopy:
		if len(s.Args) < 2 || s.Args[0] == "" || s.Args[1] == "" {
			return bad("needs a source and a destination")
		}
		if !hexHash.MatchString(s.FilesHash) {
			return bad("needs filesHash, the hex SHA-256 of the uploaded files")
		}
		if s.Digest != "" && !hexHash.MatchString(s.Digest) {
			return bad("invalid digest")
		}
		if len(s.Args) > 2 && s.Args[2] != "" && !userName.MatchString(s.Args[2]) {
			return bad(fmt.Sprintf("invalid user %q", s.Args[2]))
		}
		if len(s.Args) > 3 && s.Args[3] != "" && !octal.MatchString(s.Args[3]) {
			return bad(fmt.Sprintf("invalid mode %q: want octal such as 0755", s.Args[3]))
		}
		if strings.HasPrefix(s.Args[0], "/") || hasDotDot(s.Args[0]) {
			return bad("the source must be relative to the build context")
		}
	case StepEnv:
		if len(s.Args) == 0 || len(s.Args)%2 != 0 {
			return bad("needs name/value pairs")
		}
		for i := 0; i < len(s.Args); i += 2 {
			if !envName.MatchString(s.Args[i]) {
				return bad(fmt.Sprintf("invalid variable name %q", s.Args[i]))
			}
		}
	case StepWorkdir:
		if len(s.Args) != 1 || s.Args[0] == "" {
			return bad("needs one directory")
		}
	case StepUser:
		if len(s.Args) != 1 || !userName.MatchString(s.Args[0]) {
			return bad("needs one valid user name")
		}
	default:
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("step %d: unknown step type %q (want RUN, COPY, ENV, WORKDIR or USER)", n, s.Type))
	}
	return nil
}

func hasDotDot(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

// chainKey is the cache key of a step: its parent's key and everything
// that decides what the step produces.
func chainKey(parent string, s Step, salt string) string {
	h := sha256.New()
	b, _ := json.Marshal(struct {
		Parent string   `json:"p"`
		Type   string   `json:"t"`
		Args   []string `json:"a"`
		Files  string   `json:"f,omitempty"`
		Salt   string   `json:"s,omitempty"`
	}{parent, s.Type, s.Args, s.files(), salt})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// digest is the content key of a template: what a step built on it sees.
func (t *Template) digest() string {
	b, _ := json.Marshal(struct {
		Mounts  any               `json:"m"`
		Env     map[string]string `json:"e"`
		User    string            `json:"u"`
		Workdir string            `json:"w"`
	}{t.Mounts, t.Env, t.User, t.Workdir})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
