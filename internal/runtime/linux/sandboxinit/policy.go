package sandboxinit

import "github.com/moby/sys/capability"

// capabilities is the bounding set of every sandbox process: Docker's
// default set. Root inside a sandbox holds these over the sandbox's own user
// namespace only; anything else (SYS_ADMIN, NET_ADMIN, SYS_PTRACE, ...) is
// dropped before the agent starts.
var capabilities = []capability.Cap{
	capability.CAP_CHOWN,
	capability.CAP_DAC_OVERRIDE,
	capability.CAP_FSETID,
	capability.CAP_FOWNER,
	capability.CAP_MKNOD, // nodes made in a user namespace cannot be opened
	capability.CAP_NET_RAW,
	capability.CAP_SETGID,
	capability.CAP_SETUID,
	capability.CAP_SETFCAP,
	capability.CAP_SETPCAP,
	capability.CAP_NET_BIND_SERVICE,
	capability.CAP_SYS_CHROOT,
	capability.CAP_KILL,
	capability.CAP_AUDIT_WRITE,
}

// maskedPaths are hidden inside the sandbox (a /dev/null or an empty
// read-only tmpfs is mounted over them): they leak host kernel state.
var maskedPaths = []string{
	"/proc/acpi",
	"/proc/asound",
	"/proc/interrupts", // per-CPU counters of host devices
	"/proc/kcore",
	"/proc/keys",
	"/proc/latency_stats",
	"/proc/sched_debug",
	"/proc/scsi",
	"/proc/timer_list",
	"/proc/timer_stats",
	"/sys/firmware",
	"/sys/devices/virtual/powercap",
}

// readonlyPaths stay visible but cannot be written.
var readonlyPaths = []string{
	"/proc/bus",
	"/proc/fs",
	"/proc/irq",
	"/proc/sys",
	"/proc/sysrq-trigger",
}

// devices are bind-mounted from the host into the sandbox's /dev. Only
// these pseudo-devices: no disks, no consoles of the host.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}
