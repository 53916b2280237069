package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/sandpit-dev/sandpit/internal/config"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// keys manages API keys directly in the daemon's database (SQLite allows
// the daemon to run meanwhile).
func keys(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("keys", flag.ContinueOnError)
	dataDir := fs.String("data-dir", config.DefaultDataDir(), "the daemon's data directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return fmt.Errorf("usage: sandpit keys create [NAME] | list | revoke ID")
	}
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(*dataDir, "sandpit.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	switch rest[0] {
	case "create":
		name := "cli"
		if len(rest) > 1 {
			name = rest[1]
		}
		key, _, err := st.CreateKey(ctx, store.NewKey{Name: name})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, key)
		return err
	case "list":
		ks, err := st.ListKeys(ctx, "")
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tKEY\tCREATED\tSTATE")
		for _, k := range ks {
			state := "active"
			if k.Revoked() {
				state = "revoked"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Prefix, k.CreatedAt.Format(time.RFC3339), state)
		}
		return tw.Flush()
	case "revoke":
		if len(rest) != 2 {
			return fmt.Errorf("usage: sandpit keys revoke ID")
		}
		return st.RevokeKey(ctx, rest[1])
	default:
		return fmt.Errorf("unknown keys command %q: use create, list or revoke", rest[0])
	}
}
