package seccomp

import (
	"encoding/binary"
	"fmt"
	"slices"

	bpf "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	xbpf "golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Offsets into struct seccomp_data.
const (
	nrOffset   = 0
	archOffset = 4
	argsOffset = 16
)

// treeAssemble assembles p into a program that finds a system call's
// action by binary search over ranges of system call numbers, where
// go-seccomp-bpf's Assemble compares the number with each listed call in
// turn. The kernel runs a new filter once per system call number when it
// is loaded, to cache the calls it always allows; on the linear program
// of ~300 comparisons that took a quarter of a millisecond of every
// sandbox's start, with the init's signal lock held. Here each number
// takes about ten instructions. The two programs decide alike
// (TestTreeMatchesLinear); p's names, actions and its arch come from
// go-seccomp-bpf, whose Assemble stays the reference.
//
// It supports what Policy uses: groups of calls allowed or refused
// unconditionally, and calls allowed only when every condition of one of
// their argument condition lists holds, each a BitsNotSet. The first
// group that names a call decides it, as in go-seccomp-bpf.
func treeAssemble(p bpf.Policy, info *arch.Info) ([]xbpf.Instruction, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	def := retValue(p.DefaultAction)
	leaves := map[uint32]leaf{}
	for gi, g := range p.Syscalls {
		act := retValue(g.Action)
		// A call named by two groups would, in go-seccomp-bpf, fall
		// from a failed condition in one to the next: not supported.
		number := func(name string) (uint32, error) {
			nr, ok := info.SyscallNames[name]
			if !ok {
				return 0, fmt.Errorf("system call %s is unknown on %s", name, info.Name)
			}
			if l, seen := leaves[uint32(nr)]; seen && l.group != gi {
				return 0, fmt.Errorf("system call %s is in two groups", name)
			}
			return uint32(nr), nil
		}
		for _, name := range g.Names {
			nr, err := number(name)
			if err != nil {
				return nil, err
			}
			if _, seen := leaves[nr]; seen {
				return nil, fmt.Errorf("system call %s is listed twice", name)
			}
			leaves[nr] = leaf{group: gi, action: act}
		}
		for _, nc := range g.NamesWithCondtions {
			nr, err := number(nc.Name)
			if err != nil {
				return nil, err
			}
			for _, c := range nc.Conditions {
				if c.Operation != bpf.BitsNotSet {
					return nil, fmt.Errorf("system call %s: only BitsNotSet conditions are supported", nc.Name)
				}
			}
			l, seen := leaves[nr]
			if seen && l.cond == nil {
				return nil, fmt.Errorf("system call %s is allowed both with and without conditions", nc.Name)
			}
			// Several condition lists of one call: any one that holds.
			leaves[nr] = leaf{group: gi, action: act, cond: append(l.cond, nc.Conditions)}
		}
	}

	// Ranges of numbers that decide alike, covering every number: a run
	// of consecutive unconditional calls with one action is one range,
	// the numbers between runs take the default.
	nrs := slices.Sorted(func(yield func(uint32) bool) {
		for nr := range leaves {
			if !yield(nr) {
				return
			}
		}
	})
	var ranges []span
	next := uint32(0)
	for _, nr := range nrs {
		l := leaves[nr]
		if nr > next {
			ranges = appendSpan(ranges, span{lo: next, leaf: leaf{action: def}})
		}
		ranges = appendSpan(ranges, span{lo: nr, leaf: l})
		next = nr + 1
	}
	if next != 0 || len(ranges) == 0 { // numbers past the last call (next wraps only past 2^32-1)
		ranges = appendSpan(ranges, span{lo: next, leaf: leaf{action: def}})
	}

	prog := []xbpf.Instruction{
		xbpf.LoadAbsolute{Off: archOffset, Size: 4},
		// Another architecture's calls take the default, numbers and all.
		xbpf.JumpIf{Cond: xbpf.JumpEqual, Val: uint32(info.ID), SkipTrue: 1},
		xbpf.RetConstant{Val: def},
		xbpf.LoadAbsolute{Off: nrOffset, Size: 4},
	}
	if info.ID == arch.X86_64.ID {
		// The x32 ABI's numbers would otherwise reach the same kernel
		// functions past the filter's checks: ENOSYS, as go-seccomp-bpf
		// does.
		prog = append(prog,
			xbpf.JumpIf{Cond: xbpf.JumpGreaterOrEqual, Val: uint32(arch.X32.SeccompMask), SkipFalse: 1},
			xbpf.RetConstant{Val: uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))},
		)
	}
	prog = append(prog, tree(ranges, def)...)
	if len(prog) > 4096 {
		return nil, fmt.Errorf("the seccomp program has %d instructions; the kernel allows 4096", len(prog))
	}
	return prog, nil
}

// leaf is what decides the calls of one number: action, or, with cond,
// action when one of its condition lists holds and the default otherwise.
// group is the policy's group that named it.
type leaf struct {
	group  int
	action uint32
	cond   []bpf.ArgumentConditions
}

// span is the numbers from lo up to the next span's lo.
type span struct {
	lo   uint32
	leaf leaf
}

// appendSpan appends s, merged into the last span when both decide alike
// without conditions.
func appendSpan(ss []span, s span) []span {
	if n := len(ss); n > 0 && ss[n-1].leaf.cond == nil && s.leaf.cond == nil && ss[n-1].leaf.action == s.leaf.action {
		return ss
	}
	return append(ss, s)
}

// tree is the decision tree over ranges, whose numbers are in the
// accumulator: each node halves the ranges with one comparison.
func tree(ranges []span, def uint32) []xbpf.Instruction {
	if len(ranges) == 1 {
		return leafCode(ranges[0].leaf, def)
	}
	mid := len(ranges) / 2
	left, right := tree(ranges[:mid], def), tree(ranges[mid:], def)
	if len(left) <= 255 {
		out := append([]xbpf.Instruction{xbpf.JumpIf{Cond: xbpf.JumpGreaterOrEqual, Val: ranges[mid].lo, SkipTrue: uint8(len(left))}}, left...)
		return append(out, right...)
	}
	// A conditional jump skips at most 255 instructions: past a longer
	// left branch through an unconditional one.
	out := []xbpf.Instruction{
		xbpf.JumpIf{Cond: xbpf.JumpGreaterOrEqual, Val: ranges[mid].lo, SkipFalse: 1},
		xbpf.Jump{Skip: uint32(len(left))},
	}
	out = append(out, left...)
	return append(out, right...)
}

// leafCode decides the calls of l: a return, or the argument checks of
// each condition list in turn and then the default. A BitsNotSet check
// fails when any of its bits is set, in either half of the argument.
func leafCode(l leaf, def uint32) []xbpf.Instruction {
	if l.cond == nil {
		return []xbpf.Instruction{xbpf.RetConstant{Val: l.action}}
	}
	var out []xbpf.Instruction
	for _, conds := range l.cond {
		// Each check jumps past the rest of this list (to the next list)
		// when it fails; the list's last instruction returns the action.
		var list []xbpf.Instruction
		for _, c := range conds {
			if hi := uint32(c.Value >> 32); hi != 0 {
				list = append(list,
					xbpf.LoadAbsolute{Off: argOffset(c.Argument, true), Size: 4},
					xbpf.JumpIf{Cond: xbpf.JumpBitsSet, Val: hi})
			}
			if lo := uint32(c.Value); lo != 0 {
				list = append(list,
					xbpf.LoadAbsolute{Off: argOffset(c.Argument, false), Size: 4},
					xbpf.JumpIf{Cond: xbpf.JumpBitsSet, Val: lo})
			}
		}
		list = append(list, xbpf.RetConstant{Val: l.action})
		for i, in := range list {
			if j, ok := in.(xbpf.JumpIf); ok {
				j.SkipTrue = uint8(len(list) - 1 - i)
				list[i] = j
			}
		}
		out = append(out, list...)
	}
	return append(out, xbpf.RetConstant{Val: def})
}

// argOffset is where the high or low half of argument n lies in struct
// seccomp_data, whose 64-bit args are in the machine's byte order.
func argOffset(n uint32, high bool) uint32 {
	off := argsOffset + 8*n
	if high == (binary.NativeEndian.Uint16([]byte{1, 0}) == 1) { // little-endian: the high half second
		off += 4
	}
	return off
}

// retValue is the return value of action, with go-seccomp-bpf's meaning of
// a bare ActionErrno: EPERM.
func retValue(a bpf.Action) uint32 {
	if a == bpf.ActionErrno {
		return uint32(a) | uint32(unix.EPERM)
	}
	return uint32(a)
}
