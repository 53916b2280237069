package seccomp

import (
	"encoding/binary"
	"testing"

	bpf "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	xbpf "golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// seccompData is struct seccomp_data as x/net/bpf's VM reads it: its loads
// are big-endian, so each 32-bit word a filter loads is written big-endian
// at the offset the kernel would find it in the machine's order.
func seccompData(nr, auditArch uint32, args [6]uint64) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[nrOffset:], nr)
	binary.BigEndian.PutUint32(b[archOffset:], auditArch)
	for i, a := range args {
		binary.BigEndian.PutUint32(b[argOffset(uint32(i), true):], uint32(a>>32))
		binary.BigEndian.PutUint32(b[argOffset(uint32(i), false):], uint32(a))
	}
	return b
}

func vm(t *testing.T, prog []xbpf.Instruction) *xbpf.VM {
	t.Helper()
	v, err := xbpf.NewVM(prog)
	if err != nil {
		t.Fatalf("the program does not load: %v", err)
	}
	return v
}

// The tree program decides every call as go-seccomp-bpf's linear one does:
// every number up to past the last call, the x32 range, the edges of the
// number space, other architectures, and clone with each namespace flag.
func TestTreeMatchesLinear(t *testing.T) {
	info, err := arch.GetInfo("")
	if err != nil {
		t.Skipf("go-seccomp-bpf knows no system calls of this architecture: %v", err)
	}
	p := Policy()
	linear, err := p.Assemble()
	if err != nil {
		t.Fatal(err)
	}
	tree, err := treeAssemble(Policy(), info)
	if err != nil {
		t.Fatal(err)
	}
	lv, tv := vm(t, linear), vm(t, tree)

	var nrs []uint32
	for nr := uint32(0); nr < 1100; nr++ {
		nrs = append(nrs, nr)
	}
	for _, base := range []uint32{uint32(arch.X32.SeccompMask), 0x7fffffff, 0xffffffff - 600} {
		for d := uint32(0); d < 600; d++ {
			nrs = append(nrs, base+d)
		}
	}
	arches := []uint32{uint32(info.ID), uint32(arch.I386.ID), uint32(arch.AARCH64.ID), uint32(arch.ARM.ID), 0}
	argSets := [][6]uint64{{}, {1 << 40, ^uint64(0), 7}}
	for _, f := range []uint64{unix.CLONE_NEWNS, unix.CLONE_NEWUTS, unix.CLONE_NEWIPC, unix.CLONE_NEWUSER,
		unix.CLONE_NEWPID, unix.CLONE_NEWNET, unix.CLONE_NEWCGROUP, unix.CLONE_NEWTIME,
		unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD,
		uint64(unix.SIGCHLD), 1 << 32, 1<<32 | unix.CLONE_NEWUSER, ^uint64(0)} {
		argSets = append(argSets, [6]uint64{f})
	}
	checked := 0
	for _, a := range arches {
		for _, nr := range nrs {
			for _, args := range argSets {
				in := seccompData(nr, a, args)
				want, err := lv.Run(in)
				if err != nil {
					t.Fatal(err)
				}
				got, err := tv.Run(in)
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Fatalf("arch %#x nr %d (%s) args %#x: tree returns %#x, linear %#x",
						a, nr, info.SyscallNumbers[int(nr)], args, got, want)
				}
				checked++
			}
		}
	}
	t.Logf("%d inputs decided alike; %d instructions to the linear program's %d", checked, len(tree), len(linear))

	// And the decisions are the policy's: spot checks against the data.
	for name, want := range map[string]uint32{
		"read":   unix.SECCOMP_RET_ALLOW,
		"mount":  unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM),
		"clone3": unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS),
	} {
		got, _ := tv.Run(seccompData(uint32(info.SyscallNames[name]), uint32(info.ID), [6]uint64{}))
		if uint32(got) != want {
			t.Errorf("%s: %#x, want %#x", name, got, want)
		}
	}
	clone := uint32(info.SyscallNames["clone"])
	if got, _ := tv.Run(seccompData(clone, uint32(info.ID), [6]uint64{uint64(unix.SIGCHLD)})); uint32(got) != unix.SECCOMP_RET_ALLOW {
		t.Errorf("fork's clone: %#x", got)
	}
	if got, _ := tv.Run(seccompData(clone, uint32(info.ID), [6]uint64{unix.CLONE_NEWUSER})); uint32(got) == unix.SECCOMP_RET_ALLOW {
		t.Error("clone with CLONE_NEWUSER allowed")
	}
}

// treeAssemble refuses what it would not decide as go-seccomp-bpf does.
func TestTreeRefusesWhatItDoesNotSupport(t *testing.T) {
	info, err := arch.GetInfo("")
	if err != nil {
		t.Skip(err)
	}
	for name, p := range map[string]bpf.Policy{
		"two groups": {DefaultAction: bpf.ActionErrno, Syscalls: []bpf.SyscallGroup{
			{Action: bpf.ActionAllow, Names: []string{"read"}},
			{Action: bpf.ActionKillThread, Names: []string{"read"}}}},
		"other operation": {DefaultAction: bpf.ActionErrno, Syscalls: []bpf.SyscallGroup{
			{Action: bpf.ActionAllow, NamesWithCondtions: []bpf.NameWithConditions{{Name: "clone",
				Conditions: bpf.ArgumentConditions{{Argument: 0, Operation: bpf.Equal, Value: 1}}}}}}},
		"unknown call": {DefaultAction: bpf.ActionErrno, Syscalls: []bpf.SyscallGroup{
			{Action: bpf.ActionAllow, Names: []string{"no_such_call"}}}},
	} {
		if _, err := treeAssemble(p, info); err == nil {
			t.Errorf("%s: assembled", name)
		}
	}
}
