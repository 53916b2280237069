package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/sandpit-dev/sandpit/internal/cluster"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// With --kubeconfig, `sandpit keys` and `sandpit teams` act on a cluster's
// Team and APIKey objects (internal/cluster) instead of a daemon's
// database, and print what they print there. The API replicas watch the
// keys, so a new key works and a revoked one stops within seconds; team
// limits go to the Team object, which the replicas watch too.

// kubeFlags are the admin commands' flags that choose a cluster.
type kubeFlags struct {
	kubeconfig *string
	namespace  *string
}

func addKubeFlags(fs *flag.FlagSet) kubeFlags {
	ns := os.Getenv("SANDPIT_NAMESPACE")
	if ns == "" {
		ns = "sandpit"
	}
	return kubeFlags{
		kubeconfig: fs.String("kubeconfig", "", "kubeconfig `file` of a cluster: act on its keys and teams"),
		namespace:  fs.String("namespace", ns, "Kubernetes namespace of the cluster's objects"),
	}
}

func (k kubeFlags) client() (*cluster.Client, error) {
	rc, err := cluster.Config(*k.kubeconfig)
	if err != nil {
		return nil, err
	}
	return cluster.NewClient(rc, *k.namespace)
}

func keyInfo(k *cluster.APIKey) store.KeyInfo {
	ki := store.KeyInfo{
		ID: k.KeyID(), Name: k.Spec.Name, TeamID: k.Spec.TeamID, TeamName: k.Spec.TeamName,
		Admin: k.Spec.Admin, Prefix: k.Spec.Prefix, CreatedAt: k.CreationTimestamp.Time,
	}
	if k.Status.RevokedAt != nil {
		ki.RevokedAt = k.Status.RevokedAt.Time
	}
	return ki
}

// clusterKeys runs `sandpit keys VERB` on a cluster.
func clusterKeys(ctx context.Context, kf kubeFlags, verb string, rest []string, team string, admin, asJSON bool, stdout io.Writer) error {
	c, err := kf.client()
	if err != nil {
		return err
	}
	switch verb {
	case "create":
		name := "cli"
		if len(rest) == 1 {
			name = rest[0]
		}
		if team == "" {
			// The default team exists from the start on one machine; a
			// cluster makes it with its first key.
			team = store.DefaultTeamName
			if _, err := c.GetTeam(ctx, team); errors.Is(err, cluster.ErrNotFound) {
				if _, err := c.CreateTeam(ctx, team); err != nil {
					return err
				}
			}
		}
		key, k, err := c.CreateKey(ctx, name, team, admin)
		if err != nil {
			return err
		}
		info := keyInfo(k)
		role := ""
		if info.Admin {
			role = ", admin"
		}
		fmt.Fprintf(stdout, "created key %s %q for team %s%s; it is shown only now:\n", info.ID, info.Name, info.TeamName, role)
		_, err = fmt.Fprintln(stdout, key)
		return err
	case "list":
		if team != "" {
			if _, err := c.GetTeam(ctx, team); err != nil {
				return err
			}
		}
		ks, err := c.ListKeys(ctx, team)
		if err != nil {
			return err
		}
		infos := make([]store.KeyInfo, 0, len(ks))
		for i := range ks {
			infos = append(infos, keyInfo(&ks[i]))
		}
		if asJSON {
			return printKeysJSON(stdout, infos)
		}
		return printKeysTable(stdout, infos)
	case "revoke":
		k, err := c.GetKey(ctx, rest[0])
		if err != nil {
			return err
		}
		if k.Status.RevokedAt != nil {
			fmt.Fprintf(stdout, "key %s %q of team %s was already revoked\n", k.KeyID(), k.Spec.Name, k.Spec.TeamName)
			return nil
		}
		if _, err := c.RevokeKey(ctx, k); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked key %s %q of team %s\n", k.KeyID(), k.Spec.Name, k.Spec.TeamName)
		return nil
	}
	return nil
}

// clusterTeams runs `sandpit teams create|list|set` on a cluster; given
// names the limit flags set, whose values are in l.
func clusterTeams(ctx context.Context, kf kubeFlags, verb string, rest []string, given []string, l store.Limits, asJSON bool, stdout io.Writer) error {
	// rm does not take --kubeconfig (the flag parser says so).
	c, err := kf.client()
	if err != nil {
		return err
	}
	teamOf := func(t *cluster.Team) store.Team {
		return store.Team{ID: t.Spec.ID, Name: t.TeamName(), CreatedAt: t.CreationTimestamp.Time, Limits: t.Spec.Limits.Store()}
	}
	// setLimits writes the limits given to t, again on a conflict.
	setLimits := func(t *cluster.Team) (*cluster.Team, error) {
		for {
			t.Spec.Limits = cluster.TeamLimitsOf(mergeLimits(t.Spec.Limits.Store(), l, given))
			out, err := c.UpdateTeam(ctx, t)
			if !apierrors.IsConflict(err) {
				return out, err
			}
			if t, err = c.GetTeam(ctx, t.TeamName()); err != nil {
				return nil, err
			}
		}
	}
	switch verb {
	case "create":
		t, err := c.CreateTeam(ctx, rest[0])
		if err != nil {
			return err
		}
		if len(given) > 0 {
			if t, err = setLimits(t); err != nil {
				return err
			}
		}
		fmt.Fprintf(stdout, "created team %s (%s)\n", t.TeamName(), t.Spec.ID)
		return printTeams(stdout, []store.Team{teamOf(t)})
	case "set":
		if len(given) == 0 {
			return fmt.Errorf("sandpit teams set %s: give the limits to change, e.g. --max-sandboxes 10 (0 clears one)", rest[0])
		}
		t, err := c.GetTeam(ctx, rest[0])
		if err != nil {
			return err
		}
		if t, err = setLimits(t); err != nil {
			return err
		}
		return printTeams(stdout, []store.Team{teamOf(t)})
	}
	ts, err := c.ListTeams(ctx)
	if err != nil {
		return err
	}
	out := make([]store.Team, 0, len(ts))
	for i := range ts {
		out = append(out, teamOf(&ts[i]))
	}
	if asJSON {
		return printTeamsJSON(stdout, out)
	}
	return printTeams(stdout, out)
}
