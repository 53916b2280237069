package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// sandboxSnapshot: sandpit sandbox snapshot ID [--name N] prints the
// snapshot's ID, which `sandpit sandbox create --template` takes.
func (c *cli) sandboxSnapshot(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sandbox snapshot", flag.ContinueOnError)
	name := fs.String("name", "", `name the snapshot ("name" or "name:tag"); a name the team has is replaced`)
	asJSON := fs.Bool("json", false, "print the snapshot as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("usage: sandpit sandbox snapshot ID [--name N]")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var opts []sandpit.SnapshotOption
	if *name != "" {
		opts = append(opts, sandpit.WithSnapshotName(*name))
	}
	snap, err := cl.CreateSnapshot(ctx, pos[0], opts...)
	if err != nil {
		return sandboxErr(pos[0], err)
	}
	if *asJSON {
		return writeJSON(c.stdout, snap)
	}
	_, err = fmt.Fprintln(c.stdout, snap.ID)
	return err
}

// sandboxFork: sandpit sandbox fork ID [--count N] prints the forks' IDs,
// one a line; a fork that failed is reported on stderr and makes the exit
// code 1.
func (c *cli) sandboxFork(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sandbox fork", flag.ContinueOnError)
	count := fs.Int("count", 1, "how many forks to start")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long the forks live")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("usage: sandpit sandbox fork ID [--count N] [--timeout 5m]")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	res, err := cl.Fork(ctx, pos[0], sandpit.WithCount(*count), sandpit.WithForkTimeout(*timeout))
	if err != nil {
		return sandboxErr(pos[0], err)
	}
	var errs []error
	for i, f := range res {
		if f.Err != nil {
			errs = append(errs, fmt.Errorf("fork %d: %w", i+1, f.Err))
			continue
		}
		fmt.Fprintln(c.stdout, f.Sandbox.ID)
	}
	return errors.Join(errs...)
}

// snapshot: list, rm.
func (c *cli) snapshot(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError("snapshot needs a subcommand: list or rm")
	}
	switch args[0] {
	case "list", "ls":
		return c.snapshotList(ctx, args[1:])
	case "rm", "delete":
		return c.snapshotRemove(ctx, args[1:])
	}
	return usageError("unknown snapshot subcommand " + args[0])
}

func (c *cli) snapshotList(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("snapshot list", flag.ContinueOnError)
	of := fs.String("sandbox", "", "only snapshots of this sandbox")
	name := fs.String("name", "", "only the snapshot of this name or ID")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var opts []sandpit.SnapshotListOption
	if *of != "" {
		opts = append(opts, sandpit.WithSnapshotsOf(*of))
	}
	if *name != "" {
		opts = append(opts, sandpit.WithSnapshotName(*name))
	}
	all := []sandpit.Snapshot{}
	for s, err := range cl.Snapshots(ctx, opts...) {
		if err != nil {
			return err
		}
		all = append(all, s)
	}
	if *asJSON {
		return writeJSON(c.stdout, all)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAMES")
	for _, s := range all {
		fmt.Fprintf(tw, "%s\t%s\n", s.ID, strings.Join(s.Names, ","))
	}
	return tw.Flush()
}

func (c *cli) snapshotRemove(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("snapshot rm", flag.ContinueOnError)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	return c.eachID(pos, "usage: sandpit snapshot rm ID...", func(cl *sandpit.Client, id string) error {
		ok, err := cl.DeleteSnapshot(ctx, id)
		if err == nil && !ok {
			err = fmt.Errorf("snapshot %s not found; see `sandpit snapshot list`", id)
		}
		return err
	})
}
