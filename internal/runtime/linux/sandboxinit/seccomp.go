package sandboxinit

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// loadSeccomp installs prog, the daemon's assembled system-call policy
// (see internal/seccomp), on every thread of the process. It must run while
// the process still holds CAP_SYS_ADMIN in its user namespace: sandboxes do
// not set no_new_privs, so that sudo keeps working.
func loadSeccomp(prog []unix.SockFilter) error {
	if len(prog) == 0 {
		// Never run a sandbox unconfined because a config lost its filter.
		return errors.New("loading seccomp filter: the config has none")
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return fmt.Errorf("loading seccomp filter: %w", errno)
	}
	if r != 0 {
		// With TSYNC a positive result names a thread that could not be
		// synchronised.
		return fmt.Errorf("loading seccomp filter: thread %d could not take it", r)
	}
	return nil
}
