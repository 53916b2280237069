package linux_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/sandpit-dev/sandpit/internal/egress"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
)

// realDockerChild, set in the environment, tells the test binary it is
// the half of TestEgressBesideRealDocker that runs inside the test's own
// network namespace; its value is where dockerd writes its pid file.
const realDockerChild = "SANDPIT_TEST_REAL_DOCKER_PIDFILE"

// TestEgressBesideRealDocker: beside a real dockerd, which has set table
// ip filter's FORWARD policy to drop, a sandbox gets out through
// sandpit's rules in DOCKER-USER, and Docker's own networking still
// works. Without those rules the sandbox does not get out.
//
// Docker's rules must never land on the machine running the test, so the
// test runs itself again in a fresh network namespace of its own
// (CLONE_NEWNET) and does everything there: dockerd, sandpit's egress,
// the sandboxes and the stand-in internet. Docker's rules and links go
// when that namespace does. This half watches: it compares the host's
// nftables ruleset before and after, and stops a dockerd the other half
// left behind.
func TestEgressBesideRealDocker(t *testing.T) {
	needRoot(t)
	if err := egress.KernelSupport(); err != nil {
		t.Skipf("egress needs nf_tables, which the kernel lacks: %v", err)
	}
	for _, tool := range []string{"dockerd", "docker", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (scripts/setup.sh installs docker.io and iptables): %v", tool, err)
		}
	}
	if pidfile := os.Getenv(realDockerChild); pidfile != "" {
		besideRealDocker(t, pidfile)
		return
	}

	before := hostRuleset(t)
	forwardBefore, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	_, err := netlink.LinkByName("docker0")
	docker0Before := err == nil
	pidfile := filepath.Join(t.TempDir(), "docker.pid")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestEgressBesideRealDocker$", "-test.v", "-test.count=1", "-test.timeout=8m")
	cmd.Env = append(os.Environ(), realDockerChild+"="+pidfile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the thread that started the child ends, not
	// the process: this one is kept until the child is done.
	goruntime.LockOSThread()
	out, err := cmd.CombinedOutput()
	goruntime.UnlockOSThread()
	t.Logf("in the test's network namespace:\n%s", out)
	// The other half cleans up after itself unless it died (a timeout,
	// a crash): then dockerd, told to stop as it died, may still be
	// stopping, and newOutside's namespace is left.
	stopDockerd(t, pidfile)
	if cmd.ProcessState != nil {
		_ = netns.DeleteNamed(fmt.Sprintf("sptest%d", cmd.ProcessState.Pid()%100000))
	}
	switch {
	case err != nil:
		t.Fatalf("the test's half in its own network namespace: %v", err)
	case bytes.Contains(out, []byte("--- SKIP")):
		t.Skip("skipped in the test's network namespace (see its output)")
	case !bytes.Contains(out, []byte("--- PASS")):
		t.Fatal("the test's half in its own network namespace did not pass")
	}

	if after := hostRuleset(t); after != before {
		t.Errorf("the host's nftables ruleset changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if forwardAfter, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); !bytes.Equal(forwardAfter, forwardBefore) {
		t.Errorf("the host's ip_forward changed from %q to %q", forwardBefore, forwardAfter)
	}
	if _, err := netlink.LinkByName("docker0"); err == nil && !docker0Before {
		t.Errorf("the host has a docker0 now")
	}
}

// stopDockerd waits for a dockerd that outlived the test's other half to
// stop, and makes it; an error either way. A dockerd left running would
// keep its network namespace, and Docker's rules in it, alive.
func stopDockerd(t *testing.T, pidfile string) {
	t.Helper()
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return // dockerd removes it as it stops
	}
	var pid int
	fmt.Sscan(string(b), &pid)
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return
	}
	t.Errorf("dockerd (pid %d) outlived the test's other half", pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for range 600 {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// hostRuleset describes the current network namespace's nftables ruleset,
// every table, chain and rule, to compare before and after. Tables named
// sandpit_* are left out: other tests on the machine add and remove
// theirs meanwhile, and the other half makes its own only inside its own
// namespace.
func hostRuleset(t *testing.T) string {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatalf("listing the host's nftables tables: %v", err)
	}
	chains, err := c.ListChains()
	if err != nil {
		t.Fatalf("listing the host's nftables chains: %v", err)
	}
	var b strings.Builder
	for _, tb := range tables {
		if strings.HasPrefix(tb.Name, "sandpit_") {
			continue
		}
		fmt.Fprintf(&b, "table %d %s\n", tb.Family, tb.Name)
		for _, ch := range chains {
			if ch.Table.Name != tb.Name || ch.Table.Family != tb.Family {
				continue
			}
			policy := "-"
			if ch.Policy != nil {
				policy = fmt.Sprint(*ch.Policy)
			}
			fmt.Fprintf(&b, "  chain %s policy %s\n", ch.Name, policy)
			rules, err := c.GetRules(tb, ch)
			if err != nil {
				t.Fatalf("listing rules of %s %s: %v", tb.Name, ch.Name, err)
			}
			for _, r := range rules {
				fmt.Fprintf(&b, "    rule %d %q", r.Handle, r.UserData)
				for _, e := range r.Exprs {
					fmt.Fprintf(&b, " %+v", e)
				}
				b.WriteString("\n")
			}
		}
	}
	return b.String()
}

// besideRealDocker is the half inside the test's own network namespace,
// the "host" here; newOutside's namespace is its internet.
func besideRealDocker(t *testing.T, pidfile string) {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	// A new namespace inherits the host's ip_forward. Docker sets
	// FORWARD's policy to drop when it is the one to turn forwarding on,
	// as on a fresh host; so off it goes first.
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("0"), 0); err != nil {
		t.Fatal(err)
	}
	out := newOutside(t)
	d := startDockerd(t, pidfile)

	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	if got := forwardPolicy(t, c); got != "drop" {
		t.Fatalf("FORWARD's policy after Docker started: %s, want drop", got)
	}
	userChain := func() string {
		t.Helper()
		return strings.TrimSpace(d.iptables(t, "-S", "DOCKER-USER"))
	}
	if got := userChain(); got != "-N DOCKER-USER\n-A DOCKER-USER -j RETURN" {
		t.Fatalf("Docker's DOCKER-USER before sandpit: %q", got)
	}

	eg, err := egress.New(egress.Config{})
	if err != nil {
		t.Fatalf("egress beside Docker: %v", err)
	}
	// Docker's own iptables reads sandpit's rules back as its own kind.
	withSandpit := userChain()
	t.Logf("DOCKER-USER with sandpit's rules:\n%s", withSandpit)
	lines := strings.Split(withSandpit, "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[1], "-A DOCKER-USER -i spv+ ") || !strings.HasPrefix(lines[2], "-A DOCKER-USER -o spv+ ") ||
		!strings.HasSuffix(lines[1], "-j ACCEPT") || !strings.HasSuffix(lines[2], "-j ACCEPT") || lines[3] != "-A DOCKER-USER -j RETURN" {
		t.Errorf("DOCKER-USER with sandpit's rules, as iptables reads it: %q", withSandpit)
	}

	e := newEnv(t, func(c *linux.Config) { c.Egress = eg })
	sb := e.createSpec(t, runtime.Spec{ID: "real-docker", AllowInternet: true})
	if got := dial(t, sb, out.public, out.port); got != "from 198.51.100.1\nrc=0" {
		t.Errorf("sandbox to %s beside Docker: got %q", out.public, got)
	}
	if got := dial(t, sb, out.blocked[0], out.port); strings.HasSuffix(got, "rc=0") {
		t.Errorf("sandbox reached %s beside Docker: %q", out.blocked[0], got)
	}

	// Docker's networking still works, its rules changed after sandpit's
	// went in: a container on the default bridge and one on a network made
	// now reach the same internet, masqueraded by Docker.
	image := d.importImage(t)
	dialCmd := fmt.Sprintf("exec 3<>/dev/tcp/%s/%d && IFS= read -r l <&3 && echo \"$l\"", out.public, out.port)
	containerDial := func(network string) string {
		t.Helper()
		return strings.TrimSpace(d.docker(t, "run", "--rm", "--network", network, image, d.bash, "-c", dialCmd))
	}
	if got := containerDial("bridge"); got != "from 198.51.100.1" {
		t.Errorf("container on Docker's bridge to %s: got %q", out.public, got)
	}
	d.docker(t, "network", "create", "sptest")
	if got := containerDial("sptest"); got != "from 198.51.100.1" {
		t.Errorf("container on a new Docker network to %s: got %q", out.public, got)
	}
	d.docker(t, "network", "rm", "sptest")
	if got := d.docker(t, "network", "ls", "--format", "{{.Name}}"); strings.Fields(got)[0] != "bridge" {
		t.Errorf("docker network ls: %q", got)
	}
	if got := dial(t, sb, out.public, out.port); got != "from 198.51.100.1\nrc=0" {
		t.Errorf("sandbox to %s after Docker changed its rules: got %q", out.public, got)
	}
	if got := forwardPolicy(t, c); got != "drop" {
		t.Errorf("FORWARD's policy with sandpit beside Docker: %s, want Docker's drop", got)
	}

	// Docker restarting (an upgrade, its service restarted) redoes its own
	// rules and leaves sandpit's in DOCKER-USER.
	d.stop()
	d.start(t)
	if got := userChain(); got != withSandpit {
		t.Errorf("DOCKER-USER after Docker restarted: %q, want %q", got, withSandpit)
	}
	if got := dial(t, sb, out.public, out.port); got != "from 198.51.100.1\nrc=0" {
		t.Errorf("sandbox to %s after Docker restarted: got %q", out.public, got)
	}
	if got := containerDial("bridge"); got != "from 198.51.100.1" {
		t.Errorf("container on Docker's bridge after Docker restarted: got %q", got)
	}

	// Without sandpit's rules in DOCKER-USER, Docker's drop stops the
	// sandbox: they are what lets it out.
	if err := eg.Close(); err != nil {
		t.Fatal(err)
	}
	if got := userChain(); got != "-N DOCKER-USER\n-A DOCKER-USER -j RETURN" {
		t.Errorf("DOCKER-USER after egress Close: %q, want Docker's alone", got)
	}
	if got := dial(t, sb, out.public, out.port); strings.HasSuffix(got, "rc=0") {
		t.Errorf("sandbox reached %s beside Docker without sandpit's DOCKER-USER rules: %q", out.public, got)
	}
	if got := containerDial("bridge"); got != "from 198.51.100.1" {
		t.Errorf("container on Docker's bridge after egress Close: got %q", got)
	}
}

// forwardPolicy is the policy of FORWARD in table ip filter, Docker's.
func forwardPolicy(t *testing.T, c *nftables.Conn) string {
	t.Helper()
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chains {
		if ch.Table.Name == egress.DockerTable && ch.Name == "FORWARD" && ch.Policy != nil {
			if *ch.Policy == nftables.ChainPolicyDrop {
				return "drop"
			}
			return "accept"
		}
	}
	return "none"
}

// dockerd is a Docker daemon of the test's own: its data, state, socket
// and (empty) configuration all in the test's directory.
type dockerd struct {
	dir, pidfile string
	host         string // the -H for docker
	log          string
	bash         string // bash's path, as on the host and in importImage's image
	stop         func() // stops the running dockerd; nothing once it has
}

func startDockerd(t *testing.T, pidfile string) *dockerd {
	t.Helper()
	dir := t.TempDir()
	d := &dockerd{dir: dir, pidfile: pidfile, host: "unix://" + dir + "/docker.sock", log: dir + "/dockerd.log"}
	if err := os.WriteFile(dir+"/daemon.json", []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.start(t)
	return d
}

// start runs dockerd and waits until it answers.
func (d *dockerd) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(d.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("dockerd", "--config-file", d.dir+"/daemon.json",
		"--data-root", d.dir+"/data", "--exec-root", d.dir+"/exec", "--pidfile", d.pidfile, "-H", d.host)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Should this process die, dockerd stops too, taking containerd with
	// it. Pdeathsig follows the thread that started dockerd, so that
	// thread stays, locked, until dockerd is gone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	started, exited := make(chan error, 1), make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		defer goruntime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		t.Fatalf("starting dockerd: %v", err)
	}
	var once sync.Once
	d.stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(60 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
				t.Errorf("dockerd did not stop on SIGTERM; killed")
			}
		})
	}
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			log, _ := os.ReadFile(d.log)
			t.Logf("dockerd's log:\n%s", log)
		}
	})

	ping := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "unix", strings.TrimPrefix(d.host, "unix://"))
	}}}
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := ping.Get("http://docker/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(d.log)
			t.Fatalf("dockerd exited: %v\n%s", err, log)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer on %s: %v", d.host, err)
		}
	}
}

func (d *dockerd) docker(t *testing.T, args ...string) string {
	t.Helper()
	return d.run(t, nil, "docker", append([]string{"-H", d.host}, args...)...)
}

func (d *dockerd) iptables(t *testing.T, args ...string) string {
	t.Helper()
	return d.run(t, nil, "iptables", args...)
}

func (d *dockerd) run(t *testing.T, stdin []byte, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

// importImage makes an image of the host's bash and the libraries it
// loads, enough to dial out with /dev/tcp: no registry is needed.
func (d *dockerd) importImage(t *testing.T) string {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	d.bash = bash
	files := []string{bash}
	for _, f := range strings.Fields(d.run(t, nil, "ldd", bash)) {
		if strings.HasPrefix(f, "/") {
			files = append(files, f)
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		var parents []string
		for p := filepath.Dir(f); p != "/" && !dirs[p]; p = filepath.Dir(p) {
			dirs[p] = true
			parents = append([]string{p}, parents...)
		}
		for _, p := range parents {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p[1:] + "/", Mode: 0o755}); err != nil {
				t.Fatal(err)
			}
		}
		data, err := os.ReadFile(f) // follows links: the image has the files themselves
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f[1:], Mode: 0o755, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	const image = "sandpit-test-bash:1"
	d.run(t, buf.Bytes(), "docker", "-H", d.host, "import", "-", image)
	return image
}
