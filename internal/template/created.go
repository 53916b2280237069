package template

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// createdFile, in the registry's dir, holds when the data dir first
// served templates: the builtin templates' creation time. They are made
// from the host's userland at every start, so nothing else dates them,
// and E2B's template list shows every template's creation date.
const createdFile = "builtin-created"

// builtinCreated reads dir's creation time, writing now there first when
// it has none.
func builtinCreated(dir string, now time.Time) (time.Time, error) {
	p := filepath.Join(dir, createdFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		stamp := now.UTC().Format(time.RFC3339Nano)
		tmp, err := os.CreateTemp(dir, createdFile+".*")
		if err != nil {
			return time.Time{}, fmt.Errorf("recording the builtin templates' creation: %w", err)
		}
		_, werr := tmp.WriteString(stamp + "\n")
		cerr := tmp.Close()
		if err := errors.Join(werr, cerr); err != nil {
			os.Remove(tmp.Name())
			return time.Time{}, fmt.Errorf("recording the builtin templates' creation: %w", err)
		}
		// Link, not rename: a concurrent first start keeps the first
		// stamp rather than replacing it.
		err = os.Link(tmp.Name(), p)
		os.Remove(tmp.Name())
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return time.Time{}, fmt.Errorf("recording the builtin templates' creation: %w", err)
		}
		b, err = os.ReadFile(p)
		if err != nil {
			return time.Time{}, fmt.Errorf("reading the builtin templates' creation: %w", err)
		}
	} else if err != nil {
		return time.Time{}, fmt.Errorf("reading the builtin templates' creation: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	if err != nil {
		return time.Time{}, fmt.Errorf("decoding %s: %w", p, err)
	}
	return t, nil
}
