package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sandpit-dev/sandpit/internal/config"
	"github.com/sandpit-dev/sandpit/internal/store"
)

const teamsUsage = `Usage:
  sandpit teams create NAME [LIMITS]   make a team
  sandpit teams list [--json]          list teams and their limits
  sandpit teams set NAME LIMITS        change the limits given (0 clears one)
  sandpit teams rm NAME                remove a team with no keys, sandboxes or templates left

LIMITS (unset or 0: no limit):
  --max-sandboxes N             concurrent sandboxes, running and paused
  --creates-per-second R        sandbox creates per second (a token bucket)
  --create-burst N              creates allowed at once (default max(1, ceil(R)))
  --max-lifetime D              longest a sandbox may live, e.g. 24h
  --max-cpus N                  CPUs per sandbox
  --max-memory-mb N             memory per sandbox
  --max-disk-mb N               disk per sandbox
  --max-template-storage-mb N   the team's template layers and uploads together
  --max-egress-rate R           egress bandwidth per sandbox, bytes/s each way, e.g. 10MiB
  --max-egress-conns N          outside TCP connections per sandbox at once

Every command takes --data-dir DIR (the daemon's; it may be running).
create, list and set take --kubeconfig FILE [--namespace NS] (default
sandpit) instead, to act on a cluster's teams on Kubernetes: the limits go
to the Team object; the api replicas enforce max-sandboxes cluster-wide,
creates-per-second per replica and max-lifetime; the others are stored
only (internal/cluster/limits.go).
--json prints one JSON object a line with the fields id, name, created_at
(RFC 3339), max_sandboxes, creates_per_second, create_burst,
max_lifetime_seconds, max_cpus, max_memory_mb, max_disk_mb,
max_template_storage_mb, max_egress_rate, max_egress_conns; 0 is no limit.
`

// limitFlags are the flags that set a team's limits.
var limitFlags = []string{"max-sandboxes", "creates-per-second", "create-burst", "max-lifetime",
	"max-cpus", "max-memory-mb", "max-disk-mb", "max-template-storage-mb", "max-egress-rate", "max-egress-conns"}

// teams manages teams and their limits in the daemon's database.
func teams(args []string, stdout io.Writer) error {
	c := newAdminCmd("teams", teamsUsage, map[string][]string{
		"create": append(slices.Clip(limitFlags), "kubeconfig", "namespace"),
		"list":   {"json", "kubeconfig", "namespace"},
		"set":    append(slices.Clip(limitFlags), "kubeconfig", "namespace"),
		"rm":     nil,
	})
	kf := addKubeFlags(c.fs)
	var l store.Limits
	fs := c.fs
	fs.IntVar(&l.MaxSandboxes, "max-sandboxes", 0, "")
	fs.Float64Var(&l.CreatesPerSecond, "creates-per-second", 0, "")
	fs.IntVar(&l.CreateBurst, "create-burst", 0, "")
	fs.DurationVar(&l.MaxLifetime, "max-lifetime", 0, "")
	fs.IntVar(&l.MaxCPUs, "max-cpus", 0, "")
	fs.IntVar(&l.MaxMemoryMB, "max-memory-mb", 0, "")
	fs.IntVar(&l.MaxDiskMB, "max-disk-mb", 0, "")
	fs.IntVar(&l.MaxTemplateStorageMB, "max-template-storage-mb", 0, "")
	var egressRate config.Bytes
	fs.Var(&egressRate, "max-egress-rate", "")
	fs.IntVar(&l.MaxEgressConns, "max-egress-conns", 0, "")
	asJSON := fs.Bool("json", false, "")
	verb, rest, err := c.parse(args, stdout)
	if errors.Is(err, errHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	l.MaxEgressRate = int64(egressRate)
	if verb == "list" {
		if len(rest) != 0 {
			return fmt.Errorf("usage: sandpit teams list [--json]")
		}
	} else if len(rest) != 1 {
		return fmt.Errorf("usage: sandpit teams %s NAME%s", verb, map[string]string{"create": " [LIMITS]", "set": " LIMITS"}[verb])
	}

	ctx := context.Background()
	if *kf.kubeconfig != "" {
		var given []string
		for _, f := range limitFlags {
			if c.set(f) {
				given = append(given, f)
			}
		}
		return clusterTeams(ctx, kf, verb, rest, given, l, *asJSON, stdout)
	}
	st, err := openStore(ctx, *c.dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	start := time.Now()
	switch verb {
	case "create":
		t, err := st.CreateTeam(ctx, rest[0], l)
		if err != nil {
			return err
		}
		if err := recordCLI(ctx, st, start, store.AuditEntry{TeamID: t.ID, TeamName: t.Name,
			Action: "team.create", Target: t.ID, Detail: limitsDetail(t.Limits)}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created team %s (%s)\n", t.Name, t.ID)
		return printTeams(stdout, []store.Team{t})
	case "list":
		ts, err := st.ListTeams(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printTeamsJSON(stdout, ts)
		}
		return printTeams(stdout, ts)
	case "set":
		var given []string
		for _, f := range limitFlags {
			if c.set(f) {
				given = append(given, f)
			}
		}
		if len(given) == 0 {
			return fmt.Errorf("sandpit teams set %s: give the limits to change, e.g. --max-sandboxes 10 (0 clears one)", rest[0])
		}
		t, err := st.Team(ctx, rest[0])
		if err != nil {
			return err
		}
		// Only the limits given change.
		nl := mergeLimits(t.Limits, l, given)
		t, err = st.SetTeamLimits(ctx, t.ID, nl)
		if err != nil {
			return err
		}
		if err := recordCLI(ctx, st, start, store.AuditEntry{TeamID: t.ID, TeamName: t.Name,
			Action: "team.update", Target: t.ID, Detail: limitsDetail(t.Limits)}); err != nil {
			return err
		}
		return printTeams(stdout, []store.Team{t})
	case "rm":
		t, err := st.Team(ctx, rest[0])
		if err != nil {
			return err
		}
		if err := st.DeleteTeam(ctx, t.ID); err != nil {
			return err
		}
		if err := recordCLI(ctx, st, start, store.AuditEntry{TeamID: t.ID, TeamName: t.Name,
			Action: "team.delete", Target: t.ID}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed team %s (%s)\n", t.Name, t.ID)
		return nil
	}
	return nil
}

// mergeLimits returns old with the limits named in given (flag names)
// taken from l.
func mergeLimits(old, l store.Limits, given []string) store.Limits {
	nl := old
	for _, f := range given {
		switch f {
		case "max-sandboxes":
			nl.MaxSandboxes = l.MaxSandboxes
		case "creates-per-second":
			nl.CreatesPerSecond = l.CreatesPerSecond
		case "create-burst":
			nl.CreateBurst = l.CreateBurst
		case "max-lifetime":
			nl.MaxLifetime = l.MaxLifetime
		case "max-cpus":
			nl.MaxCPUs = l.MaxCPUs
		case "max-memory-mb":
			nl.MaxMemoryMB = l.MaxMemoryMB
		case "max-disk-mb":
			nl.MaxDiskMB = l.MaxDiskMB
		case "max-template-storage-mb":
			nl.MaxTemplateStorageMB = l.MaxTemplateStorageMB
		case "max-egress-rate":
			nl.MaxEgressRate = l.MaxEgressRate
		case "max-egress-conns":
			nl.MaxEgressConns = l.MaxEgressConns
		}
	}
	return nl
}

// limitsDetail writes the limits a team has, for the audit log.
func limitsDetail(l store.Limits) string {
	var parts []string
	add := func(name string, v any, zero bool) {
		if !zero {
			parts = append(parts, fmt.Sprintf("%s=%v", name, v))
		}
	}
	add("max_sandboxes", l.MaxSandboxes, l.MaxSandboxes == 0)
	add("creates_per_second", l.CreatesPerSecond, l.CreatesPerSecond == 0)
	add("create_burst", l.CreateBurst, l.CreateBurst == 0)
	add("max_lifetime", humanDuration(l.MaxLifetime), l.MaxLifetime == 0)
	add("max_cpus", l.MaxCPUs, l.MaxCPUs == 0)
	add("max_memory_mb", l.MaxMemoryMB, l.MaxMemoryMB == 0)
	add("max_disk_mb", l.MaxDiskMB, l.MaxDiskMB == 0)
	add("max_template_storage_mb", l.MaxTemplateStorageMB, l.MaxTemplateStorageMB == 0)
	add("max_egress_rate", l.MaxEgressRate, l.MaxEgressRate == 0)
	add("max_egress_conns", l.MaxEgressConns, l.MaxEgressConns == 0)
	if len(parts) == 0 {
		return "no limits"
	}
	return strings.Join(parts, " ")
}

func printTeams(w io.Writer, ts []store.Team) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tSANDBOXES\tCREATES/S\tBURST\tLIFETIME\tCPUS\tMEMORY\tDISK\tTEMPLATES\tEGRESS\tCONNS\tCREATED")
	for _, t := range ts {
		l := t.Limits
		lifetime := "-"
		if l.MaxLifetime != 0 {
			lifetime = humanDuration(l.MaxLifetime)
		}
		egress := "-"
		if l.MaxEgressRate != 0 {
			egress = config.Bytes(l.MaxEgressRate).String() + "/s"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.ID,
			orDash(l.MaxSandboxes, ""), orDash(l.CreatesPerSecond, ""), orDash(l.CreateBurst, ""), lifetime,
			orDash(l.MaxCPUs, ""), orDash(l.MaxMemoryMB, " MB"), orDash(l.MaxDiskMB, " MB"),
			orDash(l.MaxTemplateStorageMB, " MB"), egress, orDash(l.MaxEgressConns, ""), timeOrDash(t.CreatedAt))
	}
	return tw.Flush()
}

// teamJSON is a team in `teams list --json`; its field names are stable.
type teamJSON struct {
	ID                   string  `json:"id"`
	Name                 string  `json:"name"`
	CreatedAt            *string `json:"created_at"`
	MaxSandboxes         int     `json:"max_sandboxes"`
	CreatesPerSecond     float64 `json:"creates_per_second"`
	CreateBurst          int     `json:"create_burst"`
	MaxLifetimeSeconds   float64 `json:"max_lifetime_seconds"`
	MaxCPUs              int     `json:"max_cpus"`
	MaxMemoryMB          int     `json:"max_memory_mb"`
	MaxDiskMB            int     `json:"max_disk_mb"`
	MaxTemplateStorageMB int     `json:"max_template_storage_mb"`
	MaxEgressRate        int64   `json:"max_egress_rate"`
	MaxEgressConns       int     `json:"max_egress_conns"`
}

func printTeamsJSON(w io.Writer, ts []store.Team) error {
	enc := json.NewEncoder(w)
	for _, t := range ts {
		l := t.Limits
		if err := enc.Encode(teamJSON{
			ID: t.ID, Name: t.Name, CreatedAt: jsonTime(t.CreatedAt),
			MaxSandboxes: l.MaxSandboxes, CreatesPerSecond: l.CreatesPerSecond, CreateBurst: l.CreateBurst,
			MaxLifetimeSeconds: l.MaxLifetime.Seconds(), MaxCPUs: l.MaxCPUs, MaxMemoryMB: l.MaxMemoryMB,
			MaxDiskMB: l.MaxDiskMB, MaxTemplateStorageMB: l.MaxTemplateStorageMB,
			MaxEgressRate: l.MaxEgressRate, MaxEgressConns: l.MaxEgressConns,
		}); err != nil {
			return err
		}
	}
	return nil
}
