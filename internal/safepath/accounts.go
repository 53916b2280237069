package safepath

import (
	"bufio"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Account is a user from the root's /etc/passwd.
type Account struct {
	Name   string
	UID    uint32
	GID    uint32
	Home   string
	Groups []uint32 // supplementary groups from /etc/group, the primary one included
}

// Owner returns the uid and gid files created for a are given.
func (a Account) Owner() Owner { return Owner{UID: a.UID, GID: a.GID} }

// Accounts is a parsed snapshot of the root's /etc/passwd and /etc/group.
// The zero value knows nobody.
type Accounts struct {
	byName map[string]Account
	byUID  map[uint32]string
	byGID  map[uint32]string
}

// User returns the account called name.
func (a *Accounts) User(name string) (Account, bool) {
	u, ok := a.byName[name]
	return u, ok
}

// UserName returns the name of uid, or the number when /etc/passwd has no
// such user (as ls does).
func (a *Accounts) UserName(uid uint32) string {
	if n, ok := a.byUID[uid]; ok {
		return n
	}
	return strconv.FormatUint(uint64(uid), 10)
}

// GroupName returns the name of gid, or the number.
func (a *Accounts) GroupName(gid uint32) string {
	if n, ok := a.byGID[gid]; ok {
		return n
	}
	return strconv.FormatUint(uint64(gid), 10)
}

// accountCache holds the last parsed Accounts and the identity of the files
// it came from, so that a request re-reads them only after they change.
type accountCache struct {
	mu    sync.Mutex
	stamp [2]fileStamp
	cur   *Accounts
}

type fileStamp struct {
	ino, size  int64
	mtimeNanos int64
	ctimeNanos int64
	exists     bool
}

// maxAccountFile bounds how much of /etc/passwd or /etc/group is read.
const maxAccountFile = 16 << 20

// Accounts returns the users and groups of the root's /etc/passwd and
// /etc/group (read through the root, so symlinks in the sandbox cannot
// point them at host files). Missing files yield no entries.
func (r *Root) Accounts() (*Accounts, error) {
	stamps := [2]fileStamp{r.stamp("/etc/passwd"), r.stamp("/etc/group")}
	r.accounts.mu.Lock()
	defer r.accounts.mu.Unlock()
	if r.accounts.cur != nil && r.accounts.stamp == stamps {
		return r.accounts.cur, nil
	}
	a := &Accounts{byName: map[string]Account{}, byUID: map[uint32]string{}, byGID: map[uint32]string{}}
	if err := r.readColon("/etc/passwd", func(f []string) {
		if len(f) < 7 {
			return
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil || f[0] == "" {
			return
		}
		if _, dup := a.byName[f[0]]; !dup {
			a.byName[f[0]] = Account{Name: f[0], UID: uint32(uid), GID: uint32(gid), Home: f[5]}
		}
		if _, dup := a.byUID[uint32(uid)]; !dup {
			a.byUID[uint32(uid)] = f[0]
		}
	}); err != nil {
		return nil, err
	}
	members := map[string][]uint32{}
	if err := r.readColon("/etc/group", func(f []string) {
		if len(f) < 3 || f[0] == "" {
			return
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			return
		}
		if _, dup := a.byGID[uint32(gid)]; !dup {
			a.byGID[uint32(gid)] = f[0]
		}
		if len(f) > 3 && f[3] != "" {
			for m := range strings.SplitSeq(f[3], ",") {
				members[m] = append(members[m], uint32(gid))
			}
		}
	}); err != nil {
		return nil, err
	}
	for name, acct := range a.byName {
		acct.Groups = append([]uint32{acct.GID}, members[name]...)
		slices.Sort(acct.Groups)
		acct.Groups = slices.Compact(acct.Groups)
		a.byName[name] = acct
	}
	r.accounts.cur, r.accounts.stamp = a, stamps
	return a, nil
}

func (r *Root) stamp(abs string) fileStamp {
	fi, err := r.stat(abs)
	if err != nil {
		return fileStamp{}
	}
	st := fi.Sys().(*unix.Stat_t)
	return fileStamp{
		ino: int64(st.Ino), size: st.Size, exists: true,
		mtimeNanos: st.Mtim.Nano(), ctimeNanos: st.Ctim.Nano(),
	}
}

// readColon calls fn with the fields of every non-comment line of the
// colon-separated file abs; a missing file has no lines.
func (r *Root) readColon(abs string, fn func([]string)) error {
	f, _, err := r.openRegular(abs)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxAccountFile))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fn(strings.Split(line, ":"))
	}
	if err := sc.Err(); err != nil {
		return pathErr("read", abs, err)
	}
	return nil
}
