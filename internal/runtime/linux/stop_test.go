package linux_test

import (
	"errors"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
)

// TestStopStart: a stopped sandbox's processes are gone and its files are
// not; Start boots it again on them (a fresh /tmp and process tree, the
// same agent socket), over and over, with or without a disk of its own;
// Kill then leaves nothing.
func TestStopStart(t *testing.T) {
	for _, quota := range []bool{false, true} {
		t.Run("quota="+strconv.FormatBool(quota), func(t *testing.T) {
			if _, err := os.Stat("/dev/loop-control"); quota && err != nil {
				t.Skipf("sandbox disks need loop devices, which the kernel lacks: %v", err)
			}
			e := newEnv(t, func(c *linux.Config) { c.DiskQuota = quota })
			before := snapshot(t, e)
			spec := runtime.Spec{ID: "stop1", Hostname: "stop1", Mounts: e.tmpl.Mounts,
				Resources: runtime.Resources{CPUCount: 1, MemoryMB: 256, PidsMax: 256, DiskMB: 64}}
			sb := e.createSpec(t, spec)
			run(t, sb, "echo kept > /home/user/f; echo gone > /tmp/t; sleep 1000 >/dev/null 2>&1 & echo started", false)

			if err := e.rt.Stop(t.Context(), "stop1"); err != nil {
				t.Fatal(err)
			}
			if err := e.rt.Stop(t.Context(), "stop1"); !errors.Is(err, errdefs.ErrConflict) {
				t.Errorf("second stop: %v, want a conflict", err)
			}
			if st, err := e.rt.Stats(t.Context(), "stop1"); err != nil || st.MemUsed != 0 || st.CPU != 0 {
				t.Errorf("stats of a stopped sandbox: %+v %v, want zeros", st, err)
			}
			if err := e.rt.SetEgress(t.Context(), "stop1", runtime.EgressPolicy{}); !errors.Is(err, errdefs.ErrConflict) {
				t.Errorf("egress of a stopped sandbox: %v, want a conflict", err)
			}
			if _, err := os.Stat("/proc/" + strconv.Itoa(sb.Pid)); err == nil {
				t.Error("the init outlived Stop")
			}
			if live := snapshot(t, e); live.Processes != before.Processes || live.Cgroups != before.Cgroups {
				t.Errorf("a stopped sandbox holds %+v (before it %+v): want its dir only", live, before)
			}
			if _, err := os.Stat(e.stateDir + "/stop1/stopped"); err != nil {
				t.Errorf("a stopped sandbox's dir lacks its mark: %v", err)
			}
			if ids, err := e.rt.List(t.Context()); err != nil || len(ids) != 1 {
				t.Errorf("List of a stopped sandbox: %v %v", ids, err)
			}

			for i := range 5 {
				again, err := e.rt.Start(t.Context(), spec)
				if err != nil {
					t.Fatalf("start %d: %v", i, err)
				}
				if _, err := os.Stat(e.stateDir + "/stop1/stopped"); err == nil {
					t.Error("a started sandbox is still marked stopped")
				}
				if again.EnvdSocket != sb.EnvdSocket {
					t.Errorf("the agent moved from %s to %s", sb.EnvdSocket, again.EnvdSocket)
				}
				got := strings.TrimSpace(run(t, again, "cat /home/user/f; cat /tmp/t 2>&1 | head -c 20; echo; pgrep -c sleep; hostname", false))
				want := "kept" + strings.Repeat("\nkept", i) + "\ncat: /tmp/t: No such\n0\nstop1"
				if got != want {
					t.Fatalf("after start %d: got %q, want %q", i, got, want)
				}
				if _, err := e.rt.Start(t.Context(), spec); !errors.Is(err, errdefs.ErrConflict) {
					t.Errorf("start of a running sandbox: %v, want a conflict", err)
				}
				run(t, again, "echo kept >> /home/user/f; echo gone > /tmp/t; sleep 1000 >/dev/null 2>&1 & echo started", false)
				if err := e.rt.Stop(t.Context(), "stop1"); err != nil {
					t.Fatalf("stop %d: %v", i, err)
				}
			}
			// A frozen sandbox stops too (its memory dropped).
			again, err := e.rt.Start(t.Context(), spec)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.rt.Pause(t.Context(), "stop1"); err != nil {
				t.Fatal(err)
			}
			if err := e.rt.Stop(t.Context(), "stop1"); err != nil {
				t.Fatalf("stopping a frozen sandbox: %v", err)
			}
			if _, err := os.Stat("/proc/" + strconv.Itoa(again.Pid)); err == nil {
				t.Error("the frozen init outlived Stop")
			}
			if again, err = e.rt.Start(t.Context(), spec); err != nil {
				t.Fatal(err)
			}
			if got := strings.Count(run(t, again, "cat /home/user/f", false), "kept"); got != 6 {
				t.Errorf("after stopping a frozen sandbox the file has %d lines, want 6", got)
			}
			if err := e.rt.Kill(t.Context(), "stop1"); err != nil {
				t.Fatal(err)
			}
			// The disk pool keeps spare images in the state dir: count
			// the sandbox's own dir only.
			after := snapshot(t, e)
			after.StateDirs, before.StateDirs = 0, 0
			if after != before {
				t.Errorf("after kill:\n before %+v\n after  %+v", before, after)
			}
			if _, err := os.Stat(e.stateDir + "/stop1"); err == nil {
				t.Error("Kill left the stopped sandbox's dir")
			}
			if _, err := e.rt.Start(t.Context(), spec); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("start of a killed sandbox: %v, want not found", err)
			}
		})
	}
}

// TestStopStartEgress: a stopped sandbox lets go of its network link and
// policy; Start connects it again with the spec's policy, which holds as
// before; nothing of the old link is left.
func TestStopStartEgress(t *testing.T) {
	needRoot(t)
	eg := newCountedEgress(t)
	out := newOutside(t)
	e := newEnv(t, func(c *linux.Config) { c.Egress = eg })
	chains := policyChains(t, eg)
	all := netip.MustParsePrefix("0.0.0.0/0")
	spec := runtime.Spec{ID: "stop-net", Hostname: "stop-net", Mounts: e.tmpl.Mounts, AllowInternet: true,
		Resources: runtime.Resources{CPUCount: 1, MemoryMB: 256, PidsMax: 256},
		Egress:    runtime.EgressPolicy{Deny: []netip.Prefix{all}, Allow: []netip.Prefix{netip.PrefixFrom(out.public, 32)}}}
	sb := e.createSpec(t, spec)
	for i := range 3 {
		for a, want := range map[netip.Addr]bool{out.public: true, out.public2: false, out.blocked[0]: false} {
			if got := strings.HasSuffix(dial(t, sb, a, out.port), "rc=0"); got != want {
				t.Errorf("boot %d: reaching %s = %v, want %v", i, a, got, want)
			}
		}
		if err := e.rt.Stop(t.Context(), spec.ID); err != nil {
			t.Fatal(err)
		}
		if got := policyChains(t, eg); got != chains {
			t.Errorf("stopped: %d policy chains, want %d", got, chains)
		}
		var err error
		if sb, err = e.rt.Start(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.rt.Kill(t.Context(), spec.ID); err != nil {
		t.Fatal(err)
	}
	if got := policyChains(t, eg); got != chains {
		t.Errorf("after kill: %d policy chains, want %d", got, chains)
	}
}
