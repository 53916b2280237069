package linux_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/capability"

	"github.com/sandpit-dev/sandpit/internal/cgroup"
	"github.com/sandpit-dev/sandpit/internal/egress"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux/sandboxinit"
	"github.com/sandpit-dev/sandpit/internal/template"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the sandbox's init and as a stand-in agent
// that runs shell commands, so the runtime is tested without the real
// agent.
func TestMain(m *testing.M) {
	sandboxinit.RunIfAsked(os.Args[1:])
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "envd":
			testAgent()
			return
		}
	}
	os.Exit(m.Run())
}

func testAgent() {
	var cfg sandboxinit.EnvdConfig
	_ = json.Unmarshal([]byte(os.Getenv(sandboxinit.EnvdConfigEnv)), &cfg)
	os.Unsetenv(sandboxinit.EnvdConfigEnv)
	ln, err := net.FileListener(os.NewFile(sandboxinit.ListenerFD, "listener"))
	if err != nil {
		os.Exit(2)
	}
	_, _ = unix.Write(sandboxinit.ControlFD, []byte("ok"))
	unix.Close(sandboxinit.ControlFD)
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/log": // a line of the agent's own log
			fmt.Fprintf(os.Stderr, "%s\n", body)
			return
		case "/environ": // the environment the agent started with
			// Not readable from a command: the agent's real uid (see
			// below) leaves it undumpable, its /proc files the host's.
			b, _ := os.ReadFile("/proc/self/environ")
			w.Write(b)
			return
		}
		cmd := exec.Command("/bin/sh", "-c", string(body))
		// As the real agent does, switch even to root: the init gives the
		// agent a real uid of its own (sandboxinit's reserveTasks), which
		// a shell started without a switch takes for a set-uid start and
		// drops to.
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 0, Gid: 0}}
		if r.URL.Query().Get("user") == "user" {
			cmd.SysProcAttr = userCred()
		}
		out, _ := cmd.CombinedOutput()
		w.Write(out)
	}))
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the Linux runtime needs root (user namespaces with idmapped mounts, cgroups)")
	}
}

type env struct {
	rt       *linux.Runtime
	tmpl     *template.Template
	stateDir string
	exe      string
	cg       cgroup.Manager
}

func newEnv(t *testing.T, configure ...func(*linux.Config)) *env {
	needRoot(t)
	// Root's alone (t.TempDir is 0700 under a 0700 dir), as a daemon's
	// data dir is: sandboxes never reach into it by path.
	dir := t.TempDir()
	tmpl, err := template.BuildBase(t.Context(), dir+"/templates")
	if err != nil {
		t.Fatalf("building base template: %v", err)
	}
	cg, err := cgroup.New("sandpit-test/" + filepath.Base(filepath.Dir(dir)))
	if err != nil {
		t.Fatalf("cgroups: %v", err)
	}
	exe, _ := os.Executable()
	cfg := linux.Config{StateDir: dir + "/sandboxes", Exe: exe, Cgroups: cg}
	for _, f := range configure {
		f(&cfg)
	}
	rt, err := linux.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{rt: rt, tmpl: tmpl, stateDir: dir + "/sandboxes", exe: exe, cg: cg}
}

func (e *env) create(t *testing.T, id string) *runtime.Sandbox {
	t.Helper()
	return e.createSpec(t, runtime.Spec{ID: id})
}

// createSpec creates a sandbox from spec, filling in the hostname, the
// base template's mounts and small resources.
func (e *env) createSpec(t *testing.T, spec runtime.Spec) *runtime.Sandbox {
	t.Helper()
	id := spec.ID
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	spec.Hostname, spec.Mounts = id, e.tmpl.Mounts
	spec.Resources = runtime.Resources{CPUCount: 1, MemoryMB: 256, PidsMax: 256, DiskMB: spec.Resources.DiskMB}
	sb, err := e.rt.Create(ctx, spec)
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	t.Cleanup(func() {
		_ = e.rt.Kill(context.Background(), id)
		_ = e.rt.Close()
	})
	return sb
}

// agentClient talks to sb's test agent.
func agentClient(sb *runtime.Sandbox) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sb.EnvdSocket)
	}}}
}

func run(t *testing.T, sb *runtime.Sandbox, cmd string, asUser bool) string {
	t.Helper()
	c := agentClient(sb)
	u := "http://sandbox/run"
	if asUser {
		u += "?user=user"
	}
	resp, err := c.Post(u, "text/plain", strings.NewReader(cmd))
	if err != nil {
		t.Fatalf("running %q: %v", cmd, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return string(out)
}

// agentGet is what the test agent answers at path.
func agentGet(t *testing.T, sb *runtime.Sandbox, path string) string {
	t.Helper()
	resp, err := agentClient(sb).Get("http://sandbox" + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return string(out)
}

func TestIsolation(t *testing.T) {
	e := newEnv(t)
	sb := e.create(t, "iso1")
	checks := []struct {
		cmd, want string
	}{
		{"cat /proc/1/cmdline | tr '\\0' ' '", "/.sandpit/envd envd"},
		{"id -u", "0"},
		{"hostname", "iso1"},
		{"ls /proc | grep -c '^[0-9]'", ""},
		{"cat /proc/self/uid_map | awk '{print $2}'", fmt.Sprint(1 << 20)},
		{"ls /work /root/go 2>&1 | head -1", "No such file"},
		{"cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '", "lo"},
		{"ls -ln /usr/bin/sudo | awk '{print $3}'", "0"},
		{"mount -t tmpfs x /mnt 2>&1; echo rc=$?", "rc=32"},
		// The seccomp filter: no new namespaces, by unshare or by clone.
		{"unshare -U true 2>&1; echo rc=$?", "Operation not permitted"},
		{"grep CapBnd /proc/self/status", "00000000a80425fb"},
		{"cat /proc/self/cgroup", "0::/"},
		{"touch /usr/bin/x && echo wrote", "wrote"},
		{"stat -c %u /home/user", "1000"},
	}
	if goruntime.GOARCH == "amd64" {
		// clone (56) with CLONE_NEWUSER | SIGCHLD: were it allowed, both
		// processes would print nothing.
		checks = append(checks, struct{ cmd, want string }{
			"perl -e 'syscall(56, 0x10000000|17, 0, 0, 0, 0) < 0 and print \"$!\\n\"'", "Operation not permitted"})
	}
	for _, c := range checks {
		got := strings.TrimSpace(run(t, sb, c.cmd, false))
		if !strings.Contains(got, c.want) {
			t.Errorf("%s: got %q, want it to contain %q", c.cmd, got, c.want)
		}
	}
	// As user: sudo reaches the sandbox's root.
	if got := strings.TrimSpace(run(t, sb, "id -un; sudo -n id -u", true)); got != "user\n0" {
		t.Errorf("user + sudo: got %q", got)
	}
	// The host does not see the write to /usr.
	if _, err := os.Stat("/usr/bin/x"); err == nil {
		t.Fatal("a sandbox's write to /usr reached the host")
	}
}

// TestMaskedPaths checks that what leaks host kernel state is hidden and
// what stays visible under /proc cannot be written, on the paths this
// host has.
func TestMaskedPaths(t *testing.T) {
	e := newEnv(t)
	sb := e.create(t, "mask1")
	dirs := 0
	devs := map[string]bool{} // the filesystems showing in masked directories
	for _, p := range []string{"/proc/acpi", "/proc/asound", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"} {
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			continue
		}
		dirs++
		devs[strings.TrimSpace(run(t, sb, "stat -c %d "+p, false))] = true
		got := strings.TrimSpace(run(t, sb, "ls -A "+p+" | wc -l; touch "+p+"/x 2>&1; echo rc=$?", false))
		if !strings.HasPrefix(got, "0\n") || !strings.Contains(got, "Read-only file system") || !strings.HasSuffix(got, "rc=1") {
			t.Errorf("%s: got %q, want it empty and read-only", p, got)
		}
	}
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/interrupts", "/proc/sched_debug"} {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			continue
		}
		if got := strings.TrimSpace(run(t, sb, "wc -c < "+p+"; stat -Lc %t:%T "+p, false)); got != "0\n1:3" {
			t.Errorf("%s: got %q, want /dev/null (0 bytes, device 1:3)", p, got)
		}
	}
	for _, p := range []string{"/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches", "/proc/sysrq-trigger"} {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if got := strings.TrimSpace(run(t, sb, "echo x > "+p+" 2>&1; echo rc=$?", false)); !strings.Contains(got, "Read-only file system") {
			t.Errorf("writing %s: got %q, want a read-only file system", p, got)
		}
	}
	if dirs == 0 {
		t.Log("this host has none of the masked directories; only files were checked")
	}
	// One tmpfs for them all: each superblock more would be a shrinker
	// that every memory cgroup made afterwards is sized for.
	if len(devs) > 1 {
		t.Errorf("the %d masked directories show %d filesystems, want one", dirs, len(devs))
	}
}

func TestKillLeavesNothing(t *testing.T) {
	e := newEnv(t)
	before := snapshot(t, e)
	const cycles = 20
	for i := range cycles {
		id := fmt.Sprintf("leak%d", i)
		sb := e.create(t, id)
		run(t, sb, "sleep 1000 >/dev/null 2>&1 & echo started", false)
		if i == 0 {
			// The count sees a live sandbox's processes, so it can fail.
			if live := snapshot(t, e); live.Processes < 2 || live.StateDirs != before.StateDirs+1 || live.Cgroups != before.Cgroups+1 {
				t.Fatalf("a live sandbox is not counted: %+v (before %+v)", live, before)
			}
		}
		if err := e.rt.Kill(t.Context(), id); err != nil {
			t.Fatalf("kill %s: %v", id, err)
		}
		if err := e.rt.Kill(t.Context(), id); err != nil {
			t.Fatalf("second kill of %s: %v", id, err)
		}
		if err := unix.Kill(sb.Pid, 0); err == nil {
			t.Errorf("init of %s still alive", id)
		}
	}
	if after := snapshot(t, e); after != before {
		t.Errorf("after %d create/kill cycles:\n before %+v\n after  %+v", cycles, before, after)
	}
	ids, err := e.rt.List(t.Context())
	if err != nil || len(ids) != 0 {
		t.Errorf("runtime still lists %v (%v)", ids, err)
	}
}

// TestFailedCreateLeavesNothing: a create whose root mounts fail, while
// its cgroup and network link (set up side by side with them) succeed,
// and one whose context ends before its agent is up, leave no process,
// mount, cgroup, directory or link behind, and the next create works.
func TestFailedCreateLeavesNothing(t *testing.T) {
	e := newEnv(t, func(c *linux.Config) { c.Egress = newEgress(t) })
	before := snapshot(t, e)
	linksBefore := countLinks(t)

	spec := runtime.Spec{ID: "badroot", Hostname: "badroot", AllowInternet: true,
		Resources: runtime.Resources{CPUCount: 1, MemoryMB: 256, PidsMax: 256}}
	spec.Mounts = slices.Clone(e.tmpl.Mounts)
	spec.Mounts[0].Layers = []string{filepath.Join(t.TempDir(), "no-such-layer")}
	if _, err := e.rt.Create(t.Context(), spec); err == nil || !strings.Contains(err.Error(), "mounting / of badroot") {
		t.Fatalf("create on a missing layer: %v, want the root mount's error", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	spec.ID, spec.Hostname, spec.Mounts = "cancelled", "cancelled", e.tmpl.Mounts
	if _, err := e.rt.Create(ctx, spec); err == nil {
		t.Fatal("a cancelled create succeeded")
	}

	waitFor(t, func() bool { return snapshot(t, e) == before && countLinks(t) == linksBefore }, "the failed creates' leftovers to go")
	if ids, err := e.rt.List(t.Context()); err != nil || len(ids) != 0 {
		t.Errorf("runtime still lists %v (%v)", ids, err)
	}
	sb := e.createSpec(t, runtime.Spec{ID: "after", AllowInternet: true})
	if got := run(t, sb, "echo ok", false); got != "ok\n" {
		t.Errorf("a create after the failed ones: %q", got)
	}
}

// countLinks counts the host's sandbox links.
func countLinks(t *testing.T) int {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, egress.LinkPrefix) {
			n++
		}
	}
	return n
}

// TestRestartReaps starts a sandbox with one runtime, forgets it (as a
// crashed daemon would) and has a new runtime over the same state dir find
// and reap it.
func TestRestartReaps(t *testing.T) {
	e := newEnv(t)
	before := snapshot(t, e)
	sb := e.create(t, "orphan")
	run(t, sb, "sleep 1000 >/dev/null 2>&1 & echo started", false)

	rt2, err := linux.New(linux.Config{StateDir: e.stateDir, Exe: e.exe, Cgroups: e.cg})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := rt2.List(t.Context())
	if err != nil || len(ids) != 1 || ids[0] != "orphan" {
		t.Fatalf("new runtime lists %v (%v), want [orphan]", ids, err)
	}
	if err := rt2.Kill(t.Context(), "orphan"); err != nil {
		t.Fatalf("reaping: %v", err)
	}
	if !ended(sb.Pid) {
		t.Error("the orphan's init survived the reap")
	}
	if after := snapshot(t, e); after != before {
		t.Errorf("after the reap:\n before %+v\n after  %+v", before, after)
	}
	// A new sandbox can use the freed uid range at once.
	e.rt = rt2
	e.create(t, "next")
}

// leftovers counts what sandboxes hold on the host.
type leftovers struct {
	Mounts, StateDirs, Cgroups, Processes int
}

// ended reports whether process pid has ended within a few seconds. A
// zombie counts as ended: in these tests the first runtime, in this same
// process, is still the init's parent and reaps it a moment later, while in
// production a new daemon is not the parent at all.
func ended(pid int) bool {
	stat := fmt.Sprintf("/proc/%d/stat", pid)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(stat)
		if err != nil {
			return true
		}
		// The state follows the command name in parentheses, which may hold spaces.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return true
		}
	}
	return false
}

func snapshot(t *testing.T, e *env) leftovers {
	t.Helper()
	var l leftovers
	l.Mounts = countMounts(t)
	ents, _ := os.ReadDir(e.stateDir)
	l.StateDirs = len(ents)
	groups, err := e.cg.List()
	if err != nil {
		t.Fatal(err)
	}
	l.Cgroups = len(groups)
	// Processes of this test's sandboxes: their mounts name its state dir
	// (other tests' sandboxes may run at the same time).
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		b, err := os.ReadFile("/proc/" + p.Name() + "/mountinfo")
		if err == nil && p.Name() != "self" && strings.Contains(string(b), e.stateDir+"/") {
			l.Processes++
		}
	}
	return l
}

func countMounts(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// The agent starts with the Go runtime settings of
// sandboxinit.AgentRuntimeEnv (one P: less memory per idle sandbox).
func TestAgentRuntimeEnv(t *testing.T) {
	e := newEnv(t)
	sb := e.create(t, "rtenv1")
	env := strings.Split(agentGet(t, sb, "/environ"), "\x00")
	for _, kv := range sandboxinit.AgentRuntimeEnv {
		if !slices.Contains(env, kv) {
			t.Errorf("the agent's environment at start is %q, want %s in it", env, kv)
		}
	}
	// The init's own settings (no collector) stay the init's.
	for _, kv := range env {
		if strings.HasPrefix(kv, "GOGC=") {
			t.Errorf("the agent inherited the init's %s", kv)
		}
	}
}

// TestOOMShield: a daemon that may lower OOM scores (CAP_SYS_RESOURCE)
// shields each sandbox's first process (-1000); one that may not says so
// in its warnings instead of failing without a word.
func TestOOMShield(t *testing.T) {
	e := newEnv(t)
	sb := e.create(t, "oom1")
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", sb.Pid))
	if err != nil {
		t.Fatal(err)
	}
	caps, err := capability.NewPid2(0)
	if err == nil {
		err = caps.Load()
	}
	if err != nil {
		t.Fatal(err)
	}
	warned := slices.ContainsFunc(e.rt.Warnings(), func(w string) bool { return strings.Contains(w, "CAP_SYS_RESOURCE") })
	if caps.Get(capability.EFFECTIVE, capability.CAP_SYS_RESOURCE) {
		if got := strings.TrimSpace(string(b)); got != "-1000" || warned {
			t.Errorf("with CAP_SYS_RESOURCE: the sandbox's oom_score_adj %s (want -1000), warned %v (want not)", got, warned)
		}
		return
	}
	if !warned {
		t.Errorf("without CAP_SYS_RESOURCE the runtime does not warn that agents are not shielded: %q", e.rt.Warnings())
	}
	t.Log("this process lacks CAP_SYS_RESOURCE: the warning was checked, the shield cannot be")
}
