package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	auditlog "github.com/sandpit-dev/sandpit/internal/audit"
	"github.com/sandpit-dev/sandpit/internal/store"
)

const auditUsage = `Usage:
  sandpit audit [--team TEAM] [--since 1h] [--action A] [--limit N] [--json]

Prints the audit log, oldest first: the newest --limit entries (default
1000) that match. --since takes a duration back from now (90m, 24h) or an
RFC 3339 time; --action an exact action (sandbox.kill) or a prefix ending
in "." (sandbox.). --team also finds a removed team's entries by name.
--data-dir DIR is the daemon's; it may be running.
--json prints one JSON object a line with the fields id, time (RFC 3339),
team_id, team, key_id, key_name, action, target, result, client,
duration_ms, detail.
`

// audit prints the audit log from the daemon's database.
func audit(args []string, stdout io.Writer) error {
	c := newAdminCmd("audit", auditUsage, nil)
	team := c.fs.String("team", "", "")
	since := c.fs.String("since", "", "")
	action := c.fs.String("action", "", "")
	limit := c.fs.Int("limit", 0, "")
	asJSON := c.fs.Bool("json", false, "")
	if err := c.fs.Parse(interleaveFS(c.fs, args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, auditUsage)
			return nil
		}
		return fmt.Errorf("%w\n%s", err, auditUsage)
	}
	if c.fs.NArg() != 0 {
		return fmt.Errorf("unexpected argument %q\n%s", c.fs.Arg(0), auditUsage)
	}
	if *limit < 0 {
		return errors.New("--limit must not be negative")
	}
	q := store.AuditQuery{Team: *team, Action: *action, Limit: *limit}
	if *since != "" {
		t, err := parseSince(*since, time.Now())
		if err != nil {
			return err
		}
		q.Since = t
	}

	ctx := context.Background()
	st, err := openStore(ctx, *c.dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	entries, err := st.QueryAudit(ctx, q)
	if err != nil {
		return err
	}
	if *asJSON {
		return printAuditJSON(stdout, entries)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tTEAM\tKEY\tACTION\tTARGET\tRESULT\tCLIENT\tDURATION\tDETAIL")
	for _, e := range entries {
		key := e.KeyName
		if key == "" {
			key = e.KeyID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format(time.RFC3339),
			cell(e.TeamName), cell(key), cell(e.Action), cell(e.Target), cell(e.Result), cell(e.Client),
			humanDuration(e.Duration.Round(time.Microsecond)), cell(e.Detail))
	}
	return tw.Flush()
}

// parseSince reads --since: a duration back from now, or a time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %s: give how long back, e.g. 1h", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: give a duration (90m, 24h) or an RFC 3339 time (2026-12-01T10:00:00Z)", s)
}

// cell is s for a table cell: "-" when empty, on one line.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return oneLine(s)
}

// oneLine escapes what would break a table row: a command line may hold
// tabs and newlines.
func oneLine(s string) string {
	return strings.NewReplacer("\\", "\\\\", "\n", "\\n", "\r", "\\r", "\t", "\\t").Replace(s)
}

func printAuditJSON(w io.Writer, entries []store.AuditEntry) error {
	enc := json.NewEncoder(w)
	for _, e := range entries {
		if err := enc.Encode(auditlog.ToJSON(e)); err != nil {
			return err
		}
	}
	return nil
}
