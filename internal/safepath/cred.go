package safepath

import (
	"fmt"
	"runtime"
	"slices"

	"golang.org/x/sys/unix"
)

// Cred is an identity whose permissions file operations are checked
// against: the agent runs as root, but a request acting as "user" must not
// read /root or write where only root may, as a process of that user could
// not. Files and directories created as a Cred are owned by it.
type Cred struct {
	UID, GID uint32
	Groups   []uint32 // supplementary groups
}

// As returns a view of r whose operations run as c. The view shares r's
// handle and caches; closing r closes it.
//
// The switch is per thread: each operation locks its goroutine to its OS
// thread and sets the thread's filesystem uid and gid (setfsuid/setfsgid,
// which also drops the thread's CAP_DAC_OVERRIDE and friends) and
// supplementary groups (the raw per-thread setgroups), does its system
// calls, and restores the agent's identity. Reads and writes on a file it
// returned are checked at open, as for any process.
func (r *Root) As(c Cred) *Root {
	c.Groups = slices.Clone(c.Groups)
	return &Root{state: r.state, cred: &c}
}

// Cred returns the identity of the user's files and processes.
func (a Account) Cred() Cred {
	return Cred{UID: a.UID, GID: a.GID, Groups: slices.Clone(a.Groups)}
}

// Do runs fn with a view of r on which every operation runs as r's Cred
// while switching identity only once, for a sequence of operations (a
// directory listing stats and reads every entry). The view is valid only
// inside fn and only on fn's goroutine: fn must not hand it to another.
func (r *Root) Do(fn func(r *Root) error) error {
	return r.do(func() error {
		return fn(&Root{state: r.state, cred: r.cred, active: true})
	})
}

// do runs fn as r's Cred (see As); without one, as the agent.
func (r *Root) do(fn func() error) (err error) {
	c := r.cred
	if r.active || c == nil || (int(c.UID) == r.uid && int(c.GID) == r.gid && c.UID == 0) {
		return fn()
	}
	runtime.LockOSThread()
	restored := false
	defer func() {
		// A thread whose identity could not be restored stays locked,
		// so it ends with this goroutine instead of serving others.
		if restored {
			runtime.UnlockOSThread()
		}
	}()
	if err := r.become(c); err != nil {
		restored = r.restore() == nil
		return err
	}
	defer func() {
		rerr := r.restore()
		restored = rerr == nil
		if rerr != nil && err == nil {
			err = rerr
		}
	}()
	return fn()
}

// become switches the calling (locked) thread to c.
func (r *Root) become(c *Cred) error {
	groups := make([]int, len(c.Groups))
	for i, g := range c.Groups {
		groups[i] = int(g)
	}
	if err := unix.Setgroups(groups); err != nil {
		return fmt.Errorf("setting groups for uid %d: %w", c.UID, err)
	}
	// setfsuid/setfsgid report failure only by not changing the value:
	// read it back (an invalid id changes nothing and returns the
	// current one).
	unix.SetfsgidRetGid(int(c.GID))
	if got, _ := unix.SetfsgidRetGid(-1); got != int(c.GID) {
		return fmt.Errorf("switching to gid %d: %w", c.GID, unix.EPERM)
	}
	unix.SetfsuidRetUid(int(c.UID))
	if got, _ := unix.SetfsuidRetUid(-1); got != int(c.UID) {
		return fmt.Errorf("switching to uid %d: %w", c.UID, unix.EPERM)
	}
	return nil
}

// restore switches the calling thread back to the agent's identity.
func (r *Root) restore() error {
	unix.SetfsuidRetUid(r.uid)
	unix.SetfsgidRetGid(r.gid)
	if got, _ := unix.SetfsuidRetUid(-1); got != r.uid {
		return fmt.Errorf("restoring fsuid %d: %w", r.uid, unix.EPERM)
	}
	if got, _ := unix.SetfsgidRetGid(-1); got != r.gid {
		return fmt.Errorf("restoring fsgid %d: %w", r.gid, unix.EPERM)
	}
	if err := unix.Setgroups(r.groups); err != nil {
		return fmt.Errorf("restoring groups: %w", err)
	}
	return nil
}
