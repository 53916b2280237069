package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/internal/config"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// The admin commands (teams, keys, audit) work on the daemon's database
// directly, also while the daemon runs: SQLite in WAL mode lets both write,
// and the daemon reads a key's team and limits on every request, so a
// change applies to its next one.

// adminCmd parses the flags and arguments of an admin command group
// (sandpit teams|keys ...). Flags may come before or after the verb and its
// arguments; each verb says which of the group's flags it takes.
type adminCmd struct {
	fs      *flag.FlagSet
	dataDir *string
	usage   string
	// verbs maps each verb to the flags it takes besides --data-dir.
	verbs map[string][]string
}

func newAdminCmd(name, usage string, verbs map[string][]string) *adminCmd {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, with the usage
	return &adminCmd{
		fs:      fs,
		dataDir: fs.String("data-dir", config.DefaultDataDir(), "the daemon's data directory"),
		usage:   usage,
		verbs:   verbs,
	}
}

// errHelp says the user asked for the usage, which was printed.
var errHelp = errors.New("help requested")

// parse returns the verb and its arguments. With --help it prints the
// usage to stdout and returns errHelp.
func (c *adminCmd) parse(args []string, stdout io.Writer) (string, []string, error) {
	if err := c.fs.Parse(interleaveFS(c.fs, args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, c.usage)
			return "", nil, errHelp
		}
		return "", nil, fmt.Errorf("%w\n%s", err, c.usage)
	}
	rest := c.fs.Args()
	if len(rest) == 0 {
		return "", nil, fmt.Errorf("missing command\n%s", c.usage)
	}
	verb := rest[0]
	allowed, ok := c.verbs[verb]
	if !ok {
		return "", nil, fmt.Errorf("unknown %s command %q\n%s", c.fs.Name(), verb, c.usage)
	}
	var bad error
	c.fs.Visit(func(f *flag.Flag) {
		if bad == nil && f.Name != "data-dir" && !slices.Contains(allowed, f.Name) {
			bad = fmt.Errorf("--%s does not apply to sandpit %s %s\n%s", f.Name, c.fs.Name(), verb, c.usage)
		}
	})
	return verb, rest[1:], bad
}

// set reports whether flag name was given.
func (c *adminCmd) set(name string) bool {
	found := false
	c.fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// openStore opens the daemon's database in dataDir. The daemon makes
// the directory, with the modes it needs; the CLI only uses it.
func openStore(ctx context.Context, dataDir string) (*store.SQLite, error) {
	if _, err := os.Stat(dataDir); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no data directory %s: pass the daemon's with --data-dir, or start `sandpit serve` once", dataDir)
	}
	return store.OpenSQLite(ctx, filepath.Join(dataDir, "sandpit.db"))
}

// recordCLI appends what an admin command changed to the audit log, as
// done by "cli" from "local". The change is made by then: a failure to
// record it says so.
func recordCLI(ctx context.Context, st store.Audit, start time.Time, e store.AuditEntry) error {
	e.Time = start
	e.KeyName = "cli"
	e.Client = "local"
	e.Result = "ok"
	e.Duration = time.Since(start)
	if err := st.AppendAudit(ctx, []store.AuditEntry{e}); err != nil {
		return fmt.Errorf("%s %s is done, but recording it in the audit log failed: %w", e.Action, e.Target, err)
	}
	return nil
}

// humanDuration writes d without zero units: 24h, 1h30m, 90s.
func humanDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// orDash writes a limit, or "-" when it is 0 (no limit).
func orDash[T int | int64 | float64](v T, unit string) string {
	if v == 0 {
		return "-"
	}
	if f, ok := any(v).(float64); ok {
		return strconv.FormatFloat(f, 'f', -1, 64) + unit
	}
	return fmt.Sprint(v) + unit
}

// timeOrDash writes t in UTC, or "-" for the zero time.
func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// jsonTime is t for a JSON field: RFC 3339 in UTC, null for the zero time.
func jsonTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339Nano)
	return &s
}
