package linux

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// stateFile is the one file of a sandbox's dir that records what a later
// run of the daemon needs to adopt or reap the sandbox: its uid range
// ("slot N"), its init ("init PID IDENT", or "init -" once there is none)
// and its network link ("link INDEX", or "link -"). Lines are appended as
// each is learnt and the last line of a key wins; a line a crash cut short
// (no newline) is ignored.
//
// One file appended to, not a file per fact: on an ext4 without a journal
// (the development machines' root) every new inode costs a scan past the
// inodes deleted in the last minutes, which under create/kill churn made
// the per-sandbox files a sixth of the daemon's CPU.
const stateFile = "state"

// boxState is what a sandbox dir records; a dir of an older version keeps
// it in files of their own (legacy* below), which readState still reads.
type boxState struct {
	slot  int    // -1 when not recorded
	pid   int    // 0 when there is no init
	ident string // the init's identity (procIdent.String()); "" when none
	link  int    // -1 when there is no link
}

// The files a sandbox dir of an older version records its state in.
const (
	legacySlotFile  = "slot"
	legacyPidFile   = "pid"
	legacyIdentFile = "ident"
	legacyLinkFile  = "link"
)

// appendState appends lines ("key value") to dir's state file in one
// write, creating it.
func appendState(dir string, lines ...string) error {
	f, err := os.OpenFile(filepath.Join(dir, stateFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, l := range lines {
		buf.WriteString(l)
		buf.WriteByte('\n')
	}
	_, err = f.Write(buf.Bytes())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func slotLine(slot int) string { return "slot " + strconv.Itoa(slot) }

func initLine(pid int, id procIdent) string {
	return "init " + strconv.Itoa(pid) + " " + id.String()
}

func linkLine(index int) string { return "link " + strconv.Itoa(index) }

// Lines that record the init and the link are gone (a Stop).
const (
	noInitLine = "init -"
	noLinkLine = "link -"
)

// readState returns what dir records: an older version's files first,
// then the state file's lines over them.
func readState(dir string) (boxState, error) {
	st := boxState{slot: -1, link: -1}
	if n, err := readInt(filepath.Join(dir, legacySlotFile)); err == nil {
		st.slot = n
	}
	if n, err := readInt(filepath.Join(dir, legacyPidFile)); err == nil {
		st.pid = n
		if raw, err := os.ReadFile(filepath.Join(dir, legacyIdentFile)); err == nil {
			st.ident = strings.TrimSpace(string(raw))
		}
	}
	if n, err := readInt(filepath.Join(dir, legacyLinkFile)); err == nil {
		st.link = n
	}
	raw, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if i := bytes.LastIndexByte(raw, '\n'); i < len(raw)-1 {
		raw = raw[:i+1] // a line cut short by a crash
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), " ")
		var err error
		switch key {
		case "slot":
			st.slot, err = strconv.Atoi(val)
		case "link":
			st.link = -1
			if val != "-" {
				st.link, err = strconv.Atoi(val)
			}
		case "init":
			st.pid, st.ident = 0, ""
			if val != "-" {
				p, id, _ := strings.Cut(val, " ")
				st.pid, err = strconv.Atoi(p)
				st.ident = id
			}
		}
		if err != nil {
			return st, fmt.Errorf("%s in %s: line %q: %w", stateFile, dir, sc.Text(), err)
		}
	}
	return st, sc.Err()
}
