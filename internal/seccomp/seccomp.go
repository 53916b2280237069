// Package seccomp holds the system-call policy of a sandbox as reviewable
// data, and assembles it into the BPF program a sandbox's init loads. The
// policy is an allow-list in the spirit of Docker's default profile:
// everything not listed fails with EPERM. The daemon assembles it once, so
// the init (and the agent binary it shares) neither link the assembler nor
// pay for it at every start.
package seccomp

import (
	"fmt"

	bpf "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	xbpf "golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// allowed are the system calls a sandbox may make with any arguments.
// Grouped as Docker's profile groups them; the calls Docker leaves out on
// purpose (mount, module loading, kexec, bpf, keyrings, clock setting,
// swapon, reboot, ...) are simply absent.
var allowed = []string{
	// files and directories
	"access", "chdir", "chmod", "chown", "close", "close_range", "creat", "dup", "dup2", "dup3",
	"faccessat", "faccessat2", "fadvise64", "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2",
	"fchown", "fchownat", "fcntl", "fdatasync", "fgetxattr", "flistxattr", "flock", "fremovexattr",
	"fsetxattr", "fstat", "fstatfs", "fsync", "ftruncate", "getcwd", "getdents", "getdents64",
	"getxattr", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "lchown",
	"lgetxattr", "link", "linkat", "listxattr", "llistxattr", "lremovexattr", "lseek", "lsetxattr",
	"lstat", "mkdir", "mkdirat", "mknod", "mknodat", "newfstatat", "open", "openat", "openat2",
	"pread64", "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readahead",
	"readlink", "readlinkat", "readv", "removexattr", "rename", "renameat", "renameat2", "rmdir",
	"sendfile", "setxattr", "splice", "stat", "statfs", "statx", "symlink", "symlinkat", "sync",
	"sync_file_range", "syncfs", "tee", "truncate", "umask", "unlink", "unlinkat", "utime",
	"utimensat", "utimes", "vmsplice", "write", "writev", "copy_file_range", "fanotify_mark",
	"name_to_handle_at", "memfd_create",
	// io
	"epoll_create", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait",
	"eventfd", "eventfd2", "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_setup",
	"io_submit", "ioctl", "pipe", "pipe2", "poll", "ppoll", "pselect6", "select", "signalfd",
	"signalfd4", "timerfd_create", "timerfd_gettime", "timerfd_settime",
	// io_uring is left out: Docker removed it, it has been a rich source of
	// kernel bugs.
	// memory
	"brk", "madvise", "membarrier", "mincore", "mlock", "mlock2", "mlockall", "mmap", "mprotect",
	"mremap", "msync", "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect",
	"get_mempolicy", "set_mempolicy", "mbind", "remap_file_pages", "cachestat", "map_shadow_stack",
	"set_mempolicy_home_node",
	// processes and threads
	"arch_prctl", "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork",
	"futex", "futex_waitv", "get_robust_list", "getcpu", "getegid", "geteuid", "getgid", "getgroups", "getuid",
	"getitimer", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getresgid", "getresuid",
	"getrlimit", "getrusage", "getsid", "gettid", "ioprio_get", "ioprio_set", "kill", "pidfd_getfd",
	"pidfd_open", "pidfd_send_signal", "prctl", "prlimit64", "ptrace", "rseq", "rt_sigaction",
	"rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
	"rt_sigtimedwait", "rt_tgsigqueueinfo", "sched_get_priority_max", "sched_get_priority_min",
	"sched_getaffinity", "sched_getattr", "sched_getparam", "sched_getscheduler",
	"sched_rr_get_interval", "sched_setaffinity", "sched_setattr", "sched_setparam",
	"sched_setscheduler", "sched_yield", "set_robust_list", "set_tid_address", "setfsgid",
	"setfsuid", "setgid", "setgroups", "setitimer", "setpgid", "setpriority", "setregid",
	"setresgid", "setresuid", "setreuid", "setrlimit", "setsid", "setuid", "sigaltstack", "tgkill",
	"tkill", "vfork", "wait4", "waitid", "process_vm_readv", "process_vm_writev", "personality",
	"uname", "sethostname", "restart_syscall", "chroot", "kcmp", "process_mrelease", "setdomainname", "sysinfo", "times",
	// time
	"alarm", "clock_getres", "clock_gettime", "clock_nanosleep", "gettimeofday", "nanosleep",
	"pause", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
	"timer_settime",
	// sockets
	"accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen",
	"recvfrom", "recvmmsg", "recvmsg", "sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown",
	"socket", "socketpair",
	// System V IPC and POSIX message queues live in the sandbox's own IPC
	// namespace.
	"msgctl", "msgget", "msgrcv", "msgsnd", "semctl", "semget", "semop", "semtimedop", "shmat",
	"shmctl", "shmdt", "shmget", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
	"mq_timedsend", "mq_unlink",
	// landlock lets programs confine themselves further.
	"landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
	"getrandom",
}

// namespaceFlags are the clone flags that create namespaces. A sandbox may
// not nest namespaces: a new user namespace would hand its processes a full
// capability set over new kernel attack surface (Docker blocks them too).
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP |
	unix.CLONE_NEWTIME

// Policy returns the sandbox's system-call policy.
func Policy() bpf.Policy {
	return bpf.Policy{
		DefaultAction: bpf.ActionErrno, // EPERM
		Syscalls: []bpf.SyscallGroup{
			{Action: bpf.ActionAllow, Names: allowed},
			{
				// clone only without namespace flags; fork/vfork/threads
				// all come through here.
				Action: bpf.ActionAllow,
				NamesWithCondtions: []bpf.NameWithConditions{{
					Name:       "clone",
					Conditions: bpf.ArgumentConditions{{Argument: 0, Operation: bpf.BitsNotSet, Value: namespaceFlags}},
				}},
			},
			{
				// clone3 passes its flags in memory that seccomp cannot
				// read; ENOSYS makes libc fall back to clone, which the
				// group above checks.
				Action: bpf.Action(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)),
				Names:  []string{"clone3"},
			},
		},
	}
}

// Program assembles the policy into the BPF program the kernel runs: a
// binary search over system call numbers (treeAssemble).
func Program() ([]unix.SockFilter, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, fmt.Errorf("assembling the seccomp policy: %w", err)
	}
	insts, err := treeAssemble(Policy(), info)
	if err != nil {
		return nil, fmt.Errorf("assembling the seccomp policy: %w", err)
	}
	raw, err := xbpf.Assemble(insts)
	if err != nil {
		return nil, fmt.Errorf("assembling the seccomp program: %w", err)
	}
	prog := make([]unix.SockFilter, len(raw))
	for i, in := range raw {
		prog[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	return prog, nil
}
