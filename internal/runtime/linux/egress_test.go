package linux_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/sandpit-dev/sandpit/internal/egress"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
)

// outside is a stand-in for the internet and for the places a sandbox must
// not reach: a network namespace the test makes, joined to the host by a
// veth, answering on a public-looking address (198.51.100.2) and on a
// metadata, a private and a shared address routed to it from the host.
// Its server writes back the address each connection came from.
type outside struct {
	public  netip.Addr
	public2 netip.Addr // another internet address, routed like the blocked ones
	blocked []netip.Addr
	port    int
}

func newOutside(t *testing.T) *outside {
	t.Helper()
	sweepOutsides(t)
	name := fmt.Sprintf("sptest%d", os.Getpid()%100000)
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name)
	if err != nil {
		t.Fatalf("creating netns %s: %v", name, err)
	}
	t.Cleanup(func() { _ = netns.DeleteNamed(name) })
	// Listen inside: the socket stays in this namespace whatever thread
	// accepts on it later.
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "from %s\n", c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()

	o := &outside{
		public:  netip.MustParseAddr("198.51.100.2"),
		public2: netip.MustParseAddr("198.18.0.1"),
		blocked: []netip.Addr{
			netip.MustParseAddr("169.254.169.254"),
			netip.MustParseAddr("10.99.0.1"),
			netip.MustParseAddr("192.168.77.1"),
			netip.MustParseAddr("100.64.9.9"),
		},
		port: ln.Addr().(*net.TCPAddr).Port,
	}
	hostName := "spx" + name[len("sptest"):]
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("creating veth: %v", err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		t.Fatal(err)
	}
	mustAddr := func(h *netlink.Handle, l netlink.Link, cidr string) {
		a, _ := netlink.ParseAddr(cidr)
		if err := h.AddrAdd(l, a); err != nil {
			t.Fatalf("adding %s: %v", cidr, err)
		}
	}
	hh := &netlink.Handle{}
	mustAddr(hh, host, "198.51.100.1/30")
	if err := netlink.LinkSetUp(host); err != nil {
		t.Fatal(err)
	}
	in, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	eth, err := in.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	mustAddr(in, eth, "198.51.100.2/30")
	for _, a := range append([]netip.Addr{o.public2}, o.blocked...) {
		mustAddr(in, eth, a.String()+"/32")
	}
	for _, name := range []string{"eth0", "lo"} {
		l, err := in.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := in.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range append([]netip.Addr{o.public2}, o.blocked...) {
		dst := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
		route := &netlink.Route{LinkIndex: host.Attrs().Index, Dst: dst, Gw: net.ParseIP("198.51.100.2")}
		if err := netlink.RouteAdd(route); err != nil {
			t.Fatalf("routing %s: %v", a, err)
		}
		t.Cleanup(func() { _ = netlink.RouteDel(route) })
	}
	return o
}

// sweepOutsides removes what a run killed before its cleanup left: its
// veth (with its address and routes: the next run's would lose to them)
// and its named namespace. The outside's addresses are fixed, so no two
// runs can share a host: any such leftover is a dead run's.
func sweepOutsides(t *testing.T) {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatalf("listing links: %v", err)
	}
	for _, l := range links {
		if name := l.Attrs().Name; strings.HasPrefix(name, "spx") {
			t.Logf("removing %s, left by an earlier run", name)
			if err := netlink.LinkDel(l); err != nil {
				t.Fatalf("removing %s: %v", name, err)
			}
		}
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "sptest") {
			t.Logf("removing network namespace %s, left by an earlier run", e.Name())
			_ = netns.DeleteNamed(e.Name())
		}
	}
}

// dial runs a TCP connect from inside a sandbox and returns what it read,
// or the shell's error.
func dial(t *testing.T, sb *runtime.Sandbox, addr netip.Addr, port int) string {
	t.Helper()
	cmd := fmt.Sprintf("timeout 5 bash -c 'exec 3<>/dev/tcp/%s/%d && cat <&3' 2>&1; echo rc=$?", addr, port)
	return strings.TrimSpace(run(t, sb, cmd, false))
}

func TestEgress(t *testing.T) {
	needRoot(t)
	eg := newEgress(t)
	out := newOutside(t)
	// The host itself reaches every one of the outside's addresses, so a
	// refusal below is the sandbox rules' doing.
	for _, a := range append([]netip.Addr{out.public, out.public2}, out.blocked...) {
		c, err := net.Dial("tcp4", netip.AddrPortFrom(a, uint16(out.port)).String())
		if err != nil {
			t.Fatalf("the host cannot reach the test's %s: %v", a, err)
		}
		c.Close()
	}
	hostLn, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostLn.Close()
	go func() {
		for {
			c, err := hostLn.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("host service\n"))
			c.Close()
		}
	}()
	hostPort := hostLn.Addr().(*net.TCPAddr).Port

	e := newEnv(t, func(c *linux.Config) { c.Egress = eg })
	a := e.createSpec(t, runtime.Spec{ID: "net-a", AllowInternet: true})
	b := e.createSpec(t, runtime.Spec{ID: "net-b", AllowInternet: true})
	off := e.createSpec(t, runtime.Spec{ID: "net-off", AllowInternet: false})

	// Out to the internet, masqueraded behind the host.
	if got := dial(t, a, out.public, out.port); got != "from 198.51.100.1\nrc=0" {
		t.Errorf("sandbox to %s: got %q, want the host's address as source", out.public, got)
	}
	for _, addr := range out.blocked {
		if got := dial(t, a, addr, out.port); strings.HasSuffix(got, "rc=0") {
			t.Errorf("sandbox reached %s: %q", addr, got)
		}
	}
	// Not the host's services, by the gateway nor by the host's address.
	addrOf := func(sb *runtime.Sandbox, dev string) (addr, gw netip.Addr) {
		f := strings.Fields(run(t, sb, "ip -4 -o addr show "+dev+" | awk '{print $4}'; ip -4 route show default | awk '{print $3}'", false))
		if len(f) != 2 {
			t.Fatalf("reading %s's address: %q", sb.ID, f)
		}
		p := netip.MustParsePrefix(f[0])
		return p.Addr(), netip.MustParseAddr(f[1])
	}
	addrA, gwA := addrOf(a, "eth0")
	if !egress.DefaultPool.Contains(addrA) {
		t.Errorf("sandbox address %s is outside the pool %s", addrA, egress.DefaultPool)
	}
	for _, h := range append([]netip.Addr{gwA}, hostAddrs(t)...) {
		if got := dial(t, a, h, hostPort); strings.HasSuffix(got, "rc=0") {
			t.Errorf("sandbox reached the host's service at %s: %q", h, got)
		}
	}
	// Not another sandbox: b serves on its own address, reachable from b.
	addrB, _ := addrOf(b, "eth0")
	run(t, b, "setsid python3 -c 'import socket\ns=socket.socket()\ns.bind((\"0.0.0.0\",8080))\ns.listen()\nwhile True:\n c,_=s.accept(); c.send(b\"b here\\n\"); c.close()' >/dev/null 2>&1 &", false)
	waitFor(t, func() bool { return dial(t, b, addrB, 8080) == "b here\nrc=0" }, "b's server")
	if got := dial(t, a, addrB, 8080); strings.HasSuffix(got, "rc=0") {
		t.Errorf("sandbox a reached sandbox b at %s: %q", addrB, got)
	}
	// The sandbox's resolver is the host's.
	if got := run(t, a, "cat /etc/resolv.conf", false); got != eg.ResolvConf() {
		t.Errorf("resolv.conf: got %q, want %q", got, eg.ResolvConf())
	}
	// Without internet access: loopback only.
	if got := run(t, off, "ls /sys/class/net", false); strings.TrimSpace(got) != "lo" {
		t.Errorf("offline sandbox has links %q", got)
	}
	if got := dial(t, off, out.public, out.port); strings.HasSuffix(got, "rc=0") {
		t.Errorf("offline sandbox reached %s: %q", out.public, got)
	}

	// Kill leaves no link behind. The sandbox's eth0 names its host
	// side's index.
	var peer int
	fmt.Sscan(run(t, a, "cat /sys/class/net/eth0/iflink", false), &peer)
	hostSide, err := netlink.LinkByIndex(peer)
	if err != nil || !strings.HasPrefix(hostSide.Attrs().Name, egress.LinkPrefix) {
		t.Fatalf("finding the host side of a's link (index %d): %v", peer, err)
	}
	// Made with one queue each way on both ends: a veth made with a
	// queue per CPU drops to one under the host's rtnl lock and an RCU
	// grace period (it then shows the same queues in sysfs).
	if got := run(t, a, "ip -d link show eth0 | grep -o 'num[tr]xqueues [0-9]*' | xargs", false); strings.TrimSpace(got) != "numtxqueues 1 numrxqueues 1" {
		t.Errorf("sandbox end: %q, want numtxqueues 1 numrxqueues 1", got)
	}
	if at := hostSide.Attrs(); at.NumTxQueues != 1 || at.NumRxQueues != 1 {
		t.Errorf("host end %s: %d tx and %d rx queues, want 1 and 1", at.Name, at.NumTxQueues, at.NumRxQueues)
	}
	if hostSide.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("host end %s is down", hostSide.Attrs().Name)
	}
	if err := e.rt.Kill(t.Context(), "net-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(hostSide.Attrs().Name); err == nil {
		t.Errorf("link %s outlived its sandbox", hostSide.Attrs().Name)
	}
}

// TestEgressPolicy: E2B's network.allowOut/denyOut, at create and while
// the sandbox runs; allow wins over deny, and nothing opens what sandpit
// keeps closed.
func TestEgressPolicy(t *testing.T) {
	needRoot(t)
	eg := newCountedEgress(t)
	out := newOutside(t)
	e := newEnv(t, func(c *linux.Config) { c.Egress = eg })
	all := netip.MustParsePrefix("0.0.0.0/0")
	one := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, 32) }
	sb := e.createSpec(t, runtime.Spec{ID: "pol", AllowInternet: true, Egress: runtime.EgressPolicy{
		Deny: []netip.Prefix{all}, Allow: []netip.Prefix{one(out.public), netip.MustParsePrefix("169.254.0.0/16")},
	}})
	reach := func(a netip.Addr) bool { return strings.HasSuffix(dial(t, sb, a, out.port), "rc=0") }
	check := func(when string, want map[netip.Addr]bool) {
		t.Helper()
		for a, w := range want {
			if got := reach(a); got != w {
				t.Errorf("%s: reaching %s = %v, want %v", when, a, got, w)
			}
		}
	}
	check("deny all, allow one", map[netip.Addr]bool{out.public: true, out.public2: false, out.blocked[0]: false})

	if err := e.rt.SetEgress(t.Context(), "pol", runtime.EgressPolicy{Deny: []netip.Prefix{one(out.public)}}); err != nil {
		t.Fatal(err)
	}
	check("deny one", map[netip.Addr]bool{out.public: false, out.public2: true})
	if err := e.rt.SetEgress(t.Context(), "pol", runtime.EgressPolicy{}); err != nil {
		t.Fatal(err)
	}
	check("no policy", map[netip.Addr]bool{out.public: true, out.public2: true, out.blocked[0]: false})

	offline := e.createSpec(t, runtime.Spec{ID: "pol-off"})
	if err := e.rt.SetEgress(t.Context(), offline.ID, runtime.EgressPolicy{Deny: []netip.Prefix{all}}); err == nil || !strings.Contains(err.Error(), "offline") {
		t.Errorf("narrowing an offline sandbox: %v", err)
	}

	// Kill removes the policy chain with the link.
	if err := e.rt.SetEgress(t.Context(), "pol", runtime.EgressPolicy{Deny: []netip.Prefix{all}}); err != nil {
		t.Fatal(err)
	}
	before := policyChains(t, eg)
	if err := e.rt.Kill(t.Context(), "pol"); err != nil {
		t.Fatal(err)
	}
	if after := policyChains(t, eg); after >= before {
		t.Errorf("policy chains: %d before kill, %d after", before, after)
	}
}

// countedPool is the address pool of the tests that count policy chains:
// counted in a table of its own, the chains of a daemon or another test
// on the same host (with the default pool) do not move the count.
var countedPool = netip.MustParsePrefix("10.219.0.0/16")

// newCountedEgress is newEgress on countedPool.
func newCountedEgress(t *testing.T) *egress.Egress {
	t.Helper()
	if err := egress.KernelSupport(); err != nil {
		t.Skipf("egress needs nf_tables, which the kernel lacks: %v", err)
	}
	eg, err := egress.New(egress.Config{Pool: countedPool})
	if err != nil {
		t.Fatalf("egress: %v", err)
	}
	return eg
}

// policyChains counts the sandbox policy chains in eg's table.
func policyChains(t *testing.T, eg *egress.Egress) int {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	table := egress.TableName(countedPool, eg.Nameservers())
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ch := range chains {
		if ch.Table.Name == table && strings.HasPrefix(ch.Name, "policy_") {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for range 50 {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("waiting for %s", what)
}

func hostAddrs(t *testing.T) []netip.Addr {
	t.Helper()
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		if !ip.IsLoopback() && !strings.HasPrefix(a.Label, egress.LinkPrefix) {
			out = append(out, ip)
		}
	}
	return out
}

// newEgress gives sandboxes a way out; only a kernel without nf_tables
// skips the test, any other failure fails it.
func newEgress(t *testing.T) *egress.Egress {
	t.Helper()
	if err := egress.KernelSupport(); err != nil {
		t.Skipf("egress needs nf_tables, which the kernel lacks: %v", err)
	}
	eg, err := egress.New(egress.Config{})
	if err != nil {
		t.Fatalf("egress: %v", err)
	}
	return eg
}

// TestEgressBesideDocker: on a host where Docker (iptables-nft) has set
// table ip filter's FORWARD policy to drop, sandboxes still get out,
// through accept rules at the head of Docker's DOCKER-USER chain, which
// Close takes away again. The test builds a table shaped as Docker's,
// under a name of its own so a real Docker's is never touched, and
// removes it after.
func TestEgressBesideDocker(t *testing.T) {
	needRoot(t)
	if err := egress.KernelSupport(); err != nil {
		t.Skipf("egress needs nf_tables, which the kernel lacks: %v", err)
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	docker := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: fmt.Sprintf("sandpit_test_docker_%d", os.Getpid())}
	c.AddTable(docker)
	t.Cleanup(func() {
		c.DelTable(docker)
		if err := c.Flush(); err != nil {
			t.Errorf("removing the test's Docker table: %v", err)
		}
	})
	user := c.AddChain(&nftables.Chain{Name: "DOCKER-USER", Table: docker})
	c.AddRule(&nftables.Rule{Table: docker, Chain: user, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}}})
	accept, drop := nftables.ChainPolicyAccept, nftables.ChainPolicyDrop
	forwardChain := func(policy *nftables.ChainPolicy) *nftables.Chain {
		return &nftables.Chain{
			Name: "FORWARD", Table: docker, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: policy,
		}
	}
	// Accept until sandpit's rules are in, so no one's traffic on this
	// host stops for longer than the test needs.
	forward := c.AddChain(forwardChain(&accept))
	c.AddRule(&nftables.Rule{Table: docker, Chain: forward, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: "DOCKER-USER"}}})
	if err := c.Flush(); err != nil {
		t.Fatalf("making the test's Docker table: %v", err)
	}

	eg, err := egress.New(egress.Config{DockerTable: docker.Name})
	if err != nil {
		t.Fatalf("egress: %v", err)
	}
	rules, err := c.GetRules(docker, user)
	if err != nil || len(rules) != 3 {
		t.Fatalf("DOCKER-USER after egress.New: %d rules, %v; want sandpit's two and Docker's return", len(rules), err)
	}
	if _, ok := rules[2].Exprs[0].(*expr.Verdict); !ok {
		t.Errorf("sandpit's rules are not ahead of Docker's return")
	}

	out := newOutside(t)
	e := newEnv(t, func(c *linux.Config) { c.Egress = eg })
	sb := e.createSpec(t, runtime.Spec{ID: "docker-net", AllowInternet: true})
	c.AddChain(forwardChain(&drop))
	if err := c.Flush(); err != nil {
		t.Fatalf("setting FORWARD's policy to drop: %v", err)
	}
	if got := dial(t, sb, out.public, out.port); got != "from 198.51.100.1\nrc=0" {
		t.Errorf("sandbox to %s beside Docker: got %q", out.public, got)
	}
	// Sandpit's own rules still hold beside Docker's.
	if got := dial(t, sb, out.blocked[0], out.port); strings.HasSuffix(got, "rc=0") {
		t.Errorf("sandbox reached %s beside Docker: %q", out.blocked[0], got)
	}
	c.AddChain(forwardChain(&accept))
	if err := c.Flush(); err != nil {
		t.Fatalf("setting FORWARD's policy back to accept: %v", err)
	}

	if err := eg.Close(); err != nil {
		t.Fatal(err)
	}
	if err := eg.Close(); err != nil {
		t.Fatalf("closing twice: %v", err)
	}
	if rules, err := c.GetRules(docker, user); err != nil || len(rules) != 1 {
		t.Errorf("DOCKER-USER after Close: %d rules, %v; want Docker's return alone", len(rules), err)
	}
}
