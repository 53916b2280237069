package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/sandpit-dev/sandpit/internal/store"
)

const keysUsage = `Usage:
  sandpit keys create [NAME] [--team TEAM] [--admin]   make a key (printed last, alone on its line)
  sandpit keys list [--team TEAM] [--json]             list keys, revoked ones too
  sandpit keys revoke ID                               revoke a key by id or prefix

A key belongs to one team (default: ` + store.DefaultTeamName + `) and sees only its things.
--admin keys may also read every team's audit log over HTTP.
Every command takes --data-dir DIR (the daemon's; it may be running), or
--kubeconfig FILE [--namespace NS] (default sandpit) to act on a cluster's
keys on Kubernetes (only hashes are stored; the API replicas watch them).
--json prints one JSON object a line with the fields id, name, team_id,
team, admin, prefix, created_at, last_used_at, revoked_at (RFC 3339, null
when not yet).
`

// keys manages API keys directly in the daemon's database.
func keys(args []string, stdout io.Writer) error {
	c := newAdminCmd("keys", keysUsage, map[string][]string{
		"create": {"team", "admin", "kubeconfig", "namespace"},
		"list":   {"team", "json", "kubeconfig", "namespace"},
		"revoke": {"kubeconfig", "namespace"},
	})
	kf := addKubeFlags(c.fs)
	team := c.fs.String("team", "", "")
	admin := c.fs.Bool("admin", false, "")
	asJSON := c.fs.Bool("json", false, "")
	verb, rest, err := c.parse(args, stdout)
	if errors.Is(err, errHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case verb == "create" && len(rest) > 1:
		return fmt.Errorf("usage: sandpit keys create [NAME] [--team TEAM] [--admin]")
	case verb == "list" && len(rest) != 0:
		return fmt.Errorf("usage: sandpit keys list [--team TEAM] [--json]")
	case verb == "revoke" && len(rest) != 1:
		return fmt.Errorf("usage: sandpit keys revoke ID")
	}

	ctx := context.Background()
	if *kf.kubeconfig != "" {
		return clusterKeys(ctx, kf, verb, rest, *team, *admin, *asJSON, stdout)
	}
	st, err := openStore(ctx, *c.dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	start := time.Now()
	switch verb {
	case "create":
		name := "cli"
		if len(rest) == 1 {
			name = rest[0]
		}
		key, info, err := st.CreateKey(ctx, store.NewKey{Name: name, Team: *team, Admin: *admin})
		if err != nil {
			return err
		}
		detail := "name=" + info.Name
		if info.Admin {
			detail += " admin"
		}
		if err := recordCLI(ctx, st, start, store.AuditEntry{TeamID: info.TeamID, TeamName: info.TeamName,
			Action: "key.create", Target: info.ID, Detail: detail}); err != nil {
			return err
		}
		role := ""
		if info.Admin {
			role = ", admin"
		}
		fmt.Fprintf(stdout, "created key %s %q for team %s%s; it is shown only now:\n", info.ID, info.Name, info.TeamName, role)
		_, err = fmt.Fprintln(stdout, key)
		return err
	case "list":
		ks, err := st.ListKeys(ctx, *team)
		if err != nil {
			return err
		}
		if *asJSON {
			return printKeysJSON(stdout, ks)
		}
		return printKeysTable(stdout, ks)
	case "revoke":
		k, err := st.Key(ctx, rest[0])
		if err != nil {
			return err
		}
		if k.Revoked() {
			fmt.Fprintf(stdout, "key %s %q of team %s was already revoked\n", k.ID, k.Name, k.TeamName)
			return nil
		}
		if err := st.RevokeKey(ctx, k.ID); err != nil {
			return err
		}
		if err := recordCLI(ctx, st, start, store.AuditEntry{TeamID: k.TeamID, TeamName: k.TeamName,
			Action: "key.revoke", Target: k.ID, Detail: "name=" + k.Name}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked key %s %q of team %s\n", k.ID, k.Name, k.TeamName)
		return nil
	}
	return nil
}

// keyJSON is a key in `keys list --json`; its field names are stable.
type keyJSON struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	TeamID     string  `json:"team_id"`
	Team       string  `json:"team"`
	Admin      bool    `json:"admin"`
	Prefix     string  `json:"prefix"`
	CreatedAt  *string `json:"created_at"`
	LastUsedAt *string `json:"last_used_at"`
	RevokedAt  *string `json:"revoked_at"`
}

func printKeysJSON(w io.Writer, ks []store.KeyInfo) error {
	enc := json.NewEncoder(w)
	for _, k := range ks {
		if err := enc.Encode(keyJSON{
			ID: k.ID, Name: k.Name, TeamID: k.TeamID, Team: k.TeamName, Admin: k.Admin, Prefix: k.Prefix,
			CreatedAt: jsonTime(k.CreatedAt), LastUsedAt: jsonTime(k.LastUsedAt), RevokedAt: jsonTime(k.RevokedAt),
		}); err != nil {
			return err
		}
	}
	return nil
}

func printKeysTable(stdout io.Writer, ks []store.KeyInfo) error {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tTEAM\tKEY\tADMIN\tCREATED\tLAST USED\tSTATE")
	for _, k := range ks {
		state := "active"
		if k.Revoked() {
			state = "revoked " + k.RevokedAt.UTC().Format(time.RFC3339)
		}
		adm := "-"
		if k.Admin {
			adm = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s…\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.TeamName, k.Prefix, adm,
			timeOrDash(k.CreatedAt), timeOrDash(k.LastUsedAt), state)
	}
	return tw.Flush()
}
