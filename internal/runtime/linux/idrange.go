package linux

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// uidBaseFile, in the state dir, records the UIDBase the sandboxes there
// count their uid ranges from: a sandbox records only its slot, and its
// host ids are UIDBase + slot*idsPerSandbox for as long as it lives, across
// daemon restarts.
const uidBaseFile = "uid-base"

// RangeError says the sandboxes an earlier run left in the state dir have
// uid ranges this runtime would not keep apart from those it hands out: its
// UIDBase differs from theirs, or MaxSandboxes is too small to hold their
// slots. Adopting them would give them other host ids than their files
// have, and new sandboxes could share their ids; New refuses instead.
type RangeError struct {
	StateDir string
	// Sandboxes counts those left; RecordedBase is their UIDBase.
	Sandboxes    int
	RecordedBase int
	Base         int
	// MaxSlot is the highest slot one of them holds; it must be below
	// MaxSandboxes.
	MaxSlot      int
	MaxSandboxes int
}

func (e *RangeError) Error() string {
	if e.RecordedBase != e.Base {
		return fmt.Sprintf("%d sandboxes left running in %s have uid ranges from uid base %d, not %d",
			e.Sandboxes, e.StateDir, e.RecordedBase, e.Base)
	}
	return fmt.Sprintf("a sandbox left running in %s holds uid range %d, past the %d this runtime has (max sandboxes)",
		e.StateDir, e.MaxSlot, e.MaxSandboxes)
}

// checkRanges refuses a configuration that would not keep the uid ranges of
// the sandboxes left (slots by id) apart from new ones, and records
// cfg.UIDBase for the next run. A state dir without a record (made before
// it was kept, when the base could not be changed) is taken to be of
// cfg.UIDBase.
func checkRanges(cfg Config, left map[string]int) error {
	path := filepath.Join(cfg.StateDir, uidBaseFile)
	recorded := cfg.UIDBase
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if recorded, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil || recorded < 0 {
			return fmt.Errorf("reading the uid base of the sandboxes in %s: malformed %q", cfg.StateDir, b)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("reading the uid base of the sandboxes in %s: %w", cfg.StateDir, err)
	}
	n, maxSlot := 0, -1
	for _, slot := range left {
		if slot >= 0 {
			n++
			maxSlot = max(maxSlot, slot)
		}
	}
	if n > 0 && (recorded != cfg.UIDBase || maxSlot >= cfg.MaxSandboxes) {
		return &RangeError{StateDir: cfg.StateDir, Sandboxes: n, RecordedBase: recorded, Base: cfg.UIDBase,
			MaxSlot: maxSlot, MaxSandboxes: cfg.MaxSandboxes}
	}
	if err == nil && recorded == cfg.UIDBase {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(cfg.UIDBase)+"\n"), 0o600); err != nil {
		return fmt.Errorf("recording the uid base of %s: %w", cfg.StateDir, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("recording the uid base of %s: %w", cfg.StateDir, err)
	}
	return nil
}
