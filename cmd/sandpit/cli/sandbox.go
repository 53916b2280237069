package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// sandbox: create, list, kill, pause, resume, connect, snapshot, fork.
func (c *cli) sandbox(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError("sandbox needs a subcommand: create, list, kill, pause, resume, connect, snapshot or fork")
	}
	switch args[0] {
	case "create":
		return c.sandboxCreate(ctx, args[1:])
	case "list", "ls":
		return c.sandboxList(ctx, args[1:])
	case "kill", "rm":
		return c.sandboxKill(ctx, args[1:])
	case "pause", "resume":
		return c.sandboxPause(ctx, args[0], args[1:])
	case "snapshot":
		return c.sandboxSnapshot(ctx, args[1:])
	case "fork":
		return c.sandboxFork(ctx, args[1:])
	case "connect":
		fs := flag.NewFlagSet("sandbox connect", flag.ContinueOnError)
		pos, err := parse(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return usageError("usage: sandpit sandbox connect ID")
		}
		return c.shellIn(ctx, pos[0])
	}
	return usageError("unknown sandbox subcommand " + args[0])
}

// metadataFlag collects repeated K=V flags.
type kvFlag map[string]string

func (m kvFlag) String() string { return "" }

func (m kvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return errors.New("want KEY=VALUE")
	}
	m[k] = v
	return nil
}

func (c *cli) sandboxCreate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sandbox create", flag.ContinueOnError)
	template := fs.String("template", "base", "template to create the sandbox from")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long the sandbox lives")
	asJSON := fs.Bool("json", false, "print the sandbox as JSON")
	md := kvFlag{}
	fs.Var(md, "metadata", "KEY=VALUE metadata (repeatable)")
	envs := kvFlag{}
	fs.Var(envs, "env", "KEY=VALUE environment variable for every process (repeatable)")
	onTimeout := fs.String("on-timeout", "", "what the timeout does: kill (the default) or pause")
	keepMemory := fs.Bool("keep-memory", true, "with --on-timeout pause: keep memory (false: the filesystem only)")
	autoResume := fs.Bool("auto-resume", false, "with --on-timeout pause: the first request to any port resumes it")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError("usage: sandpit sandbox create [--template T] [--timeout 5m] [--on-timeout kill|pause] [--keep-memory=false] [--auto-resume] [--json]")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	opts := []sandpit.CreateOption{sandpit.WithTemplate(*template), sandpit.WithTimeout(*timeout)}
	if len(md) > 0 {
		opts = append(opts, sandpit.WithMetadata(md))
	}
	if len(envs) > 0 {
		opts = append(opts, sandpit.WithEnvs(envs))
	}
	if *onTimeout != "" || !*keepMemory || *autoResume {
		opts = append(opts, sandpit.WithLifecycle(sandpit.Lifecycle{
			OnTimeout: sandpit.OnTimeout(*onTimeout), FilesystemOnly: !*keepMemory, AutoResume: *autoResume,
		}))
	}
	c.status("creating a sandbox from %s...", *template)
	sb, err := cl.Create(ctx, opts...)
	if err != nil {
		return err
	}
	if !*asJSON {
		_, err := fmt.Fprintln(c.stdout, sb.ID)
		return err
	}
	info, err := sb.Info(ctx)
	if err != nil {
		return err
	}
	return writeJSON(c.stdout, info)
}

func (c *cli) sandboxList(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sandbox list", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	md := kvFlag{}
	fs.Var(md, "metadata", "only sandboxes with KEY=VALUE metadata (repeatable)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var opts []sandpit.ListOption
	if len(md) > 0 {
		opts = append(opts, sandpit.WithMetadata(md))
	}
	all, err := cl.ListAll(ctx, opts...)
	if err != nil {
		return err
	}
	if *asJSON {
		if all == nil {
			all = []sandpit.SandboxInfo{}
		}
		return writeJSON(c.stdout, all)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTEMPLATE\tSTATE\tSTARTED\tENDS IN\tMETADATA")
	for _, s := range all {
		var kv []string
		for k, v := range s.Metadata {
			kv = append(kv, k+"="+v)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.TemplateID, s.State,
			s.StartedAt.Local().Format(time.DateTime), time.Until(s.EndAt).Round(time.Second), strings.Join(kv, ","))
	}
	return tw.Flush()
}

func (c *cli) sandboxKill(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sandbox kill", flag.ContinueOnError)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	return c.eachID(pos, "usage: sandpit sandbox kill ID...", func(cl *sandpit.Client, id string) error {
		if err := cl.Kill(ctx, id); err != nil {
			return sandboxErr(id, err)
		}
		return nil
	})
}

// eachID runs do for every ID given, going on past failures, and returns
// them all; no ID at all is a usage error.
func (c *cli) eachID(ids []string, usage string, do func(cl *sandpit.Client, id string) error) error {
	if len(ids) == 0 {
		return usageError(usage)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		if err := do(cl, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sandboxPause pauses (memory kept, or the filesystem only) or resumes
// sandboxes.
func (c *cli) sandboxPause(ctx context.Context, verb string, args []string) error {
	fs := flag.NewFlagSet("sandbox "+verb, flag.ContinueOnError)
	var keepMemory *bool
	if verb == "pause" {
		keepMemory = fs.Bool("keep-memory", true, "keep memory (false: end the processes, keep the filesystem; resuming boots it again)")
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	return c.eachID(pos, "usage: sandpit sandbox "+verb+" ID...", func(cl *sandpit.Client, id string) error {
		if verb == "pause" {
			paused, err := cl.Pause(ctx, id, sandpit.WithKeepMemory(*keepMemory))
			if err == nil && !paused {
				err = errors.New("already paused")
			}
			if err != nil {
				return sandboxErr(id, err)
			}
			return nil
		}
		if _, err := cl.Connect(ctx, id); err != nil {
			return sandboxErr(id, err)
		}
		return nil
	})
}

func writeJSON(w interface{ Write([]byte) (int, error) }, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
