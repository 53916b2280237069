package linux_test

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/egress"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
	"github.com/sandpit-dev/sandpit/internal/sandboxlog"
)

// TestAdopt: sandboxes a first runtime started outlive it; a second
// runtime over the same state dir adopts them (their agents answer, their
// processes go on, pause works), reports one that dies on its own, and
// Kill then releases everything, as for a sandbox it created.
func TestAdopt(t *testing.T) {
	needRoot(t)
	eg := newEgress(t)
	e := newEnv(t, func(c *linux.Config) { c.Egress = eg; c.DiskQuota = true })
	before := snapshot(t, e)
	policy := runtime.EgressPolicy{Deny: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
	sb1 := e.createSpec(t, runtime.Spec{ID: "adopt1", AllowInternet: true, Egress: policy})
	sb2 := e.create(t, "adopt2")
	run(t, sb1, "setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/c; sleep 0.05; done' >/dev/null 2>&1 &", false)
	counter := func() int {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(sb1.Pid) + "/root/tmp/c")
		if err != nil {
			return -1
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	waitFor(t, func() bool { return counter() > 0 }, "the counter to run")

	// The daemon goes; its sandboxes stay.
	if err := e.rt.Close(); err != nil {
		t.Fatal(err)
	}
	n := counter()
	waitFor(t, func() bool { return counter() > n+2 }, "the counter to go on without a runtime")

	rt2, err := linux.New(linux.Config{StateDir: e.stateDir, Exe: e.exe, Cgroups: e.cg, Egress: newEgress(t), DiskQuota: true})
	if err != nil {
		t.Fatal(err)
	}
	e.rt = rt2 // the tests' cleanups kill through it
	ids, _ := rt2.List(t.Context())
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"adopt1", "adopt2"}) {
		t.Fatalf("the new runtime lists %v", ids)
	}
	// The record says the rules were cleared (a crash came before the
	// runtime heard of it): the chain the first runtime set goes.
	if !hasPolicyChain(t, e.stateDir, "adopt1") {
		t.Fatal("the first runtime set no policy chain")
	}
	a1, err := rt2.Adopt(t.Context(), runtime.Adoption{ID: "adopt1"})
	if err != nil {
		t.Fatal(err)
	}
	if hasPolicyChain(t, e.stateDir, "adopt1") {
		t.Error("the policy chain is left after adopting with no rules")
	}
	if err := rt2.SetEgress(t.Context(), "adopt1", policy); err != nil {
		t.Fatalf("setting the egress of an adopted sandbox: %v", err)
	}
	if a1.Pid != sb1.Pid || a1.EnvdSocket != sb1.EnvdSocket {
		t.Fatalf("adopted %+v, created %+v", a1, sb1)
	}
	if got := run(t, a1, "echo hi; grep -c eth0 /proc/net/dev", false); got != "hi\n1\n" {
		t.Fatalf("the adopted agent answers %q", got)
	}
	// The agent's log reaches the new runtime.
	agentLog(t, a1, "after-adoption")
	ring, err := rt2.Log("adopt1")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		return len(ring.Entries(sandboxlog.Query{Search: "after-adoption"})) > 0
	}, "the agent's log line in the new runtime")
	if _, err := rt2.Adopt(t.Context(), runtime.Adoption{ID: "adopt1"}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("adopting twice: %v", err)
	}
	if err := rt2.Pause(t.Context(), "adopt1"); err != nil {
		t.Fatal(err)
	}
	if err := rt2.Resume(t.Context(), "adopt1"); err != nil {
		t.Fatal(err)
	}
	if st, err := rt2.Stats(t.Context(), "adopt1"); err != nil || st.MemUsed == 0 {
		t.Fatalf("stats of the adopted sandbox: %+v %v", st, err)
	}
	a2, err := rt2.Adopt(t.Context(), runtime.Adoption{ID: "adopt2"})
	if err != nil {
		t.Fatal(err)
	}

	// An adopted sandbox that dies on its own is reported.
	if err := unix.Kill(a2.Pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-rt2.Exited():
		if id != "adopt2" {
			t.Fatalf("exited: %s", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the adopted sandbox's exit was not reported")
	}
	link := recordedLink(t, e.stateDir, "adopt1")
	for _, id := range []string{"adopt1", "adopt2"} {
		if err := rt2.Kill(t.Context(), id); err != nil {
			t.Fatalf("kill %s: %v", id, err)
		}
	}
	if !ended(sb1.Pid) {
		t.Error("the adopted init survived Kill")
	}
	for _, id := range []string{"adopt1", "adopt2"} {
		if _, err := os.Stat(filepath.Join(e.stateDir, id)); err == nil {
			t.Errorf("the dir of %s is left", id)
		}
	}
	// The state dir also holds the disks' golden images and spares.
	after := snapshot(t, e)
	after.StateDirs, before.StateDirs = 0, 0
	if after != before {
		t.Errorf("after kill:\n before %+v\n after  %+v", before, after)
	}
	if policyChainOf(t, link) {
		t.Error("Kill left the policy chain")
	}
	_ = sb2
}

// TestAdoptRefusesOthers: a sandbox dir whose recorded init is not the
// process that has its pid now (a reused pid, another boot, a dir of an
// older version) is not adopted, and Kill removes the dir without
// signalling that process.
func TestAdoptRefusesOthers(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	self := strconv.Itoa(os.Getpid())
	bootRaw, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	boot := strings.TrimSpace(string(bootRaw))
	dirs := map[string]string{
		"reused":  boot + " 1", // this test process has the pid, started later
		"reboot":  "00000000-0000-0000-0000-000000000000 1",
		"old":     "", // no identity recorded
		"garbled": "x",
	}
	for id, ident := range dirs {
		// A dir of an older version records each fact in a file of
		// its own; this one appends them to its state file.
		dir := filepath.Join(e.stateDir, id)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		_ = os.WriteFile(filepath.Join(dir, "pid"), []byte(self), 0o600)
		_ = os.WriteFile(filepath.Join(dir, "slot"), []byte("7"), 0o600)
		if ident != "" {
			_ = os.WriteFile(filepath.Join(dir, "ident"), []byte(ident), 0o600)
		}
		if ident == "" {
			continue // the state file always records an identity
		}
		dir = filepath.Join(e.stateDir, id+"-state")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		_ = os.WriteFile(filepath.Join(dir, "state"), []byte("slot 8\ninit "+self+" "+ident+"\n"), 0o600)
	}
	for _, id := range slices.Collect(maps.Keys(dirs)) {
		if dirs[id] != "" {
			dirs[id+"-state"] = dirs[id]
		}
	}
	rt, err := linux.New(linux.Config{StateDir: e.stateDir, Exe: e.exe, Cgroups: e.cg})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	for id := range dirs {
		if _, err := rt.Adopt(t.Context(), runtime.Adoption{ID: id}); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("adopting %s: %v, want not found", id, err)
		}
		if err := rt.Kill(t.Context(), id); err != nil {
			t.Errorf("reaping %s: %v", id, err)
		}
		if _, err := os.Stat(filepath.Join(e.stateDir, id)); err == nil {
			t.Errorf("the dir of %s is left", id)
		}
	}
	for _, id := range []string{"", "..", "a/b"} {
		if _, err := rt.Adopt(t.Context(), runtime.Adoption{ID: id}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("adopting %q: %v", id, err)
		}
	}
}

// agentLog has the test agent write line to its log (its stderr).
func agentLog(t *testing.T, sb *runtime.Sandbox, line string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sb.EnvdSocket)
	}}}
	resp, err := c.Post("http://sandbox/log", "text/plain", strings.NewReader(line))
	if err != nil {
		t.Fatalf("logging through the agent: %v", err)
	}
	resp.Body.Close()
}

// hasPolicyChain reports whether the link of sandbox id has a policy chain.
func hasPolicyChain(t *testing.T, stateDir, id string) bool {
	t.Helper()
	return policyChainOf(t, recordedLink(t, stateDir, id))
}

// recordedLink returns the link index sandbox id's state file records
// last.
func recordedLink(t *testing.T, stateDir, id string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(stateDir, id, "state"))
	if err != nil {
		t.Fatalf("the state of %s: %v", id, err)
	}
	idx := ""
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "link "); ok {
			idx = v
		}
	}
	if idx == "" || idx == "-" {
		t.Fatalf("the state of %s records no link:\n%s", id, raw)
	}
	return idx
}

// policyChainOf reports whether link index idx has a policy chain.
func policyChainOf(t *testing.T, idx string) bool {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chains {
		if strings.HasPrefix(ch.Table.Name, "sandpit_egress_") && ch.Name == "policy_"+egress.LinkPrefix+idx {
			return true
		}
	}
	return false
}

// A sandbox the next runtime adopts can be stopped and started again on
// its files, and one stopped before the restart is adopted as stopped and
// started on its files; Kill then leaves nothing.
func TestAdoptThenStopStart(t *testing.T) {
	needRoot(t)
	e := newEnv(t, func(c *linux.Config) { c.DiskQuota = true })
	before := snapshot(t, e)
	sbRun := e.create(t, "adopt-run")
	sbStop := e.create(t, "adopt-stop")
	run(t, sbRun, "echo kept-run > /home/user/f", false)
	run(t, sbStop, "echo kept-stop > /home/user/f", false)
	if err := e.rt.Stop(t.Context(), "adopt-stop"); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Close(); err != nil {
		t.Fatal(err)
	}
	rt2, err := linux.New(linux.Config{StateDir: e.stateDir, Exe: e.exe, Cgroups: e.cg, DiskQuota: true})
	if err != nil {
		t.Fatal(err)
	}
	e.rt = rt2
	if _, err := rt2.Adopt(t.Context(), runtime.Adoption{ID: "adopt-run"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rt2.Adopt(t.Context(), runtime.Adoption{ID: "adopt-stop"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("adopting a stopped sandbox as running: %v, want not found", err)
	}
	if _, err := rt2.Adopt(t.Context(), runtime.Adoption{ID: "adopt-stop", Stopped: true}); err != nil {
		t.Fatal(err)
	}
	if err := rt2.Stop(t.Context(), "adopt-run"); err != nil {
		t.Fatal(err)
	}
	if !ended(sbRun.Pid) {
		t.Fatal("the adopted init survived Stop")
	}
	for id, want := range map[string]string{"adopt-run": "kept-run\n", "adopt-stop": "kept-stop\n"} {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		sb, err := rt2.Start(ctx, runtime.Spec{ID: id, Hostname: id, Mounts: e.tmpl.Mounts,
			Resources: runtime.Resources{CPUCount: 1, MemoryMB: 256, PidsMax: 256}})
		cancel()
		if err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		if got := run(t, sb, "cat /home/user/f", false); got != want {
			t.Fatalf("%s after its start reads %q, want %q", id, got, want)
		}
	}
	for _, id := range []string{"adopt-run", "adopt-stop"} {
		if err := rt2.Kill(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	// The state dir also holds the disks' golden images and spares.
	after := snapshot(t, e)
	after.StateDirs = before.StateDirs
	if after != before {
		t.Errorf("left behind:\n before %+v\n after  %+v", before, after)
	}
}
