package config

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// Sandbox uid ranges. Each sandbox maps its ids 0..65535 onto a range of
// host ids of its own (runtime/linux's idsPerSandbox); the API's sandboxes
// take MaxSandboxes ranges from UIDBase, template builds BuildSandboxes
// more right above them. The same numbers serve as gids.
const (
	IDsPerSandbox  = 65536
	BuildSandboxes = 64
	// MinUIDBase keeps sandbox ids above the host's own users and groups:
	// 0..65535 are where distributions put system and login accounts
	// (nobody is 65534; 65535 is invalid), and the kernel's overflow id.
	MinUIDBase = 65536
	// maxID is the highest usable id: uid_t is 32 bits and (uid_t)-1 means
	// "no id" to the kernel.
	maxID = 1<<32 - 2
)

// IDFiles name the host's id databases the sandbox uid range must stay
// clear of. Tests point them at files of their own.
type IDFiles struct {
	// SubUID and SubGID hold the ranges delegated to users for their own
	// user namespaces (rootless podman and docker): "name:first:count".
	SubUID, SubGID string
	// Passwd and Group hold the host's users and groups.
	Passwd, Group string
}

// DefaultIDFiles are the host's own.
func DefaultIDFiles() IDFiles {
	return IDFiles{SubUID: "/etc/subuid", SubGID: "/etc/subgid", Passwd: "/etc/passwd", Group: "/etc/group"}
}

// UIDRange is the host ids the daemon's sandboxes use, first..last
// inclusive: MaxSandboxes ranges for the API's sandboxes and
// BuildSandboxes for template builds, from UIDBase on.
func (c Daemon) UIDRange() (first, last uint64) {
	first = uint64(max(c.UIDBase, 0))
	n := uint64(max(c.MaxSandboxes, 0)) + BuildSandboxes
	return first, first + n*IDsPerSandbox - 1
}

// validateIDs checks the uid range's arithmetic: it must clear the host's
// own ids and fit in uid_t.
func (c Daemon) validateIDs() []error {
	var errs []error
	if c.MaxSandboxes < 1 {
		errs = append(errs, fmt.Errorf("max sandboxes %d: want at least 1", c.MaxSandboxes))
	}
	if c.UIDBase < MinUIDBase {
		errs = append(errs, fmt.Errorf("uid base %d is below %d, among the host's own users and groups", c.UIDBase, MinUIDBase))
	}
	if first, last := c.UIDRange(); c.MaxSandboxes >= 1 && last > maxID {
		errs = append(errs, fmt.Errorf("uid range %d..%d (uid base %d, %d sandboxes and %d for template builds, %d ids each) passes %d, the last 32-bit id; lower --uid-base or --max-sandboxes (at most %d with this base)",
			first, last, c.UIDBase, c.MaxSandboxes, BuildSandboxes, IDsPerSandbox, maxID,
			max(0, (maxID+1-int64(first))/IDsPerSandbox-BuildSandboxes)))
	}
	return errs
}

// CheckHostIDs reads the host's id databases (IDFiles) and reports every
// range delegated to a user, and every user or group, whose ids fall in the
// daemon's uid range: a sandbox would share ids with it, and so files and
// processes. A missing file holds nothing.
func (c Daemon) CheckHostIDs() error {
	first, last := c.UIDRange()
	what := fmt.Sprintf("the sandboxes' uid range %d..%d (--uid-base %d, --max-sandboxes %d and %d for template builds)",
		first, last, c.UIDBase, c.MaxSandboxes, BuildSandboxes)
	var errs []error
	for _, f := range []struct {
		path string
		sub  bool // name:first:count, else name:x:id:...
		kind string
	}{
		{c.IDFiles.SubUID, true, "uid"}, {c.IDFiles.SubGID, true, "gid"},
		{c.IDFiles.Passwd, false, "user"}, {c.IDFiles.Group, false, "group"},
	} {
		if f.path == "" {
			continue
		}
		err := eachIDLine(f.path, func(n int, line string) {
			fields := strings.Split(line, ":")
			if f.sub {
				if len(fields) != 3 {
					return
				}
				start, err1 := strconv.ParseUint(fields[1], 10, 32)
				count, err2 := strconv.ParseUint(fields[2], 10, 32)
				if err1 != nil || err2 != nil || count == 0 {
					return
				}
				end := start + count - 1
				if start <= last && end >= first {
					errs = append(errs, fmt.Errorf("%s overlaps %s line %d (%s, %ss %d..%d delegated to %s); choose a --uid-base past %d or below %d",
						what, f.path, n, line, f.kind, start, end, fields[0], end, start))
				}
				return
			}
			if len(fields) < 3 {
				return
			}
			id, err := strconv.ParseUint(fields[2], 10, 32)
			if err != nil {
				return
			}
			if id >= first && id <= last {
				errs = append(errs, fmt.Errorf("%s holds the host %s %s (id %d, %s line %d); choose a --uid-base past it",
					what, f.kind, fields[0], id, f.path, n))
			}
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// eachIDLine calls fn with each line of path that is neither blank nor a
// comment, numbered from 1.
func eachIDLine(path string, fn func(n int, line string)) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading host ids: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fn(n, line)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading host ids from %s: %w", path, err)
	}
	return nil
}
