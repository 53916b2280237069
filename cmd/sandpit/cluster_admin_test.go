package main

import (
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/cluster"
	"github.com/sandpit-dev/sandpit/internal/cluster/clustertest"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// With --kubeconfig the keys and teams commands act on a cluster's
// objects, printing what they print for a daemon; the API replicas' key
// cache sees each change.
func TestKeysAndTeamsCLIOnACluster(t *testing.T) {
	if !clustertest.Built() {
		t.Skip(clustertest.ErrNoBinaries)
	}
	cp, err := clustertest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Error(err)
		}
	})
	kube := []string{"--kubeconfig", cp.Kubeconfig, "--namespace", "sandpit"}
	run := func(args ...string) string { t.Helper(); return mustRun(t, append(args, kube...)...) }

	out := run("teams", "create", "acme_1")
	if !strings.HasPrefix(out, "created team acme_1 (") || !strings.Contains(out, "NAME") {
		t.Errorf("teams create said %q", out)
	}
	mustFail(t, "a team of that name exists", append([]string{"teams", "create", "acme_1"}, kube...)...)
	// Limits go to the Team object, which the api replicas enforce.
	run("teams", "create", "b", "--max-sandboxes", "2")
	if out := run("teams", "set", "b", "--max-lifetime", "1h", "--creates-per-second", "2.5"); !strings.Contains(out, "1h") {
		t.Errorf("teams set said %q", out)
	}

	key := func(out string) string {
		t.Helper()
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		if last := lines[len(lines)-1]; store.WellFormedKey(last) {
			return last
		}
		t.Fatalf("no key alone on the last line of %q", out)
		return ""
	}
	out = run("keys", "create", "ci", "--team", "acme_1")
	if !strings.Contains(out, `"ci" for team acme_1; it is shown only now`) {
		t.Errorf("keys create said %q", out)
	}
	ciKey := key(out)
	opsKey := key(run("keys", "create", "ops", "--admin"))
	mustFail(t, `no team "nope"`, append([]string{"keys", "create", "x", "--team", "nope"}, kube...)...)

	ts := jsonLines[teamJSON](t, run("teams", "list", "--json"))
	if len(ts) != 3 || ts[0].Name != "acme_1" || ts[1].Name != "b" || ts[2].Name != store.DefaultTeamName ||
		ts[0].MaxSandboxes != 0 || ts[1].MaxSandboxes != 2 || ts[1].CreatesPerSecond != 2.5 || ts[1].MaxLifetimeSeconds != 3600 {
		t.Fatalf("teams list --json = %+v", ts)
	}
	ks := jsonLines[keyLine](t, run("keys", "list", "--json"))
	// Created within the same second (the objects' resolution): either order.
	if len(ks) == 2 && ks[0].Name == "ops" {
		ks[0], ks[1] = ks[1], ks[0]
	}
	if len(ks) != 2 || ks[0].Name != "ci" || ks[0].Team != "acme_1" || ks[0].TeamID != ts[0].ID || ks[0].Admin ||
		ks[1].Name != "ops" || !ks[1].Admin || !strings.HasPrefix(ciKey, ks[0].Prefix) || ks[0].RevokedAt != nil {
		t.Fatalf("keys list --json = %+v", ks)
	}
	if out := run("keys", "list", "--team", "acme_1"); !strings.HasPrefix(out, "ID") || strings.Count(out, "\n") != 2 || strings.Contains(out, ciKey) {
		t.Errorf("keys list --team acme_1:\n%s", out)
	}

	cfg, err := cluster.Config(cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cluster.NewClient(cfg, "sandpit")
	if err != nil {
		t.Fatal(err)
	}
	kc := c.WatchKeys(t.Context())
	waitKey := func(k string, want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, ok := kc.Team(k)
			if ok == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("key cache: %v after 10 s, want %v", ok, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitKey(ciKey, true)
	waitKey(opsKey, true)

	if out := run("keys", "revoke", ks[0].Prefix+"…"); !strings.Contains(out, "revoked key "+ks[0].ID) {
		t.Errorf("revoke said %q", out)
	}
	waitKey(ciKey, false)
	waitKey(opsKey, true)
	if out := run("keys", "revoke", ks[0].ID); !strings.Contains(out, "already revoked") {
		t.Errorf("second revoke said %q", out)
	}
	mustFail(t, `no API key matches "key_nope"`, append([]string{"keys", "revoke", "key_nope"}, kube...)...)
	mustFail(t, "--kubeconfig does not apply to sandpit teams rm", append([]string{"teams", "rm", "acme_1"}, kube...)...)
}
