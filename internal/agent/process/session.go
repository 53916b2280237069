package process

import (
	"bytes"
	"os"
	"strconv"
)

// sessionGroups returns the process groups of the processes in session sid,
// read from /proc. Errors (a process gone mid-scan) skip that process.
func sessionGroups(sid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	seen := map[int]bool{}
	var out []int
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		pgrp, session, ok := parseStat(stat)
		if ok && session == sid && !seen[pgrp] {
			seen[pgrp] = true
			out = append(out, pgrp)
		}
	}
	return out
}

// parseStat extracts pgrp and session from /proc/PID/stat. The command name
// is in parentheses and may hold spaces or ')', so fields are counted from
// the last ')'.
func parseStat(b []byte) (pgrp, session int, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	// After ") ": state ppid pgrp session ...
	f := bytes.Fields(b[i+1:])
	if len(f) < 4 {
		return 0, 0, false
	}
	pg, err1 := strconv.Atoi(string(f[2]))
	se, err2 := strconv.Atoi(string(f[3]))
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return pg, se, true
}
