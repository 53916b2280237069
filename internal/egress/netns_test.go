package egress

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// inNewNetns starts a process in a network namespace of its own and
// returns its pid; it ends with the test.
func inNewNetns(t *testing.T) int {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if err := KernelSupport(); err != nil {
		t.Skipf("needs nf_tables, which the kernel lacks: %v", err)
	}
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

// rulesIn lists the rules of table's output chain in the namespace of
// pid; nil when there is no such table.
func rulesIn(t *testing.T, pid int, table string) []*nftables.Rule {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if tb.Name == table {
			rules, err := c.GetRules(tb, &nftables.Chain{Name: "output", Table: tb})
			if err != nil {
				t.Fatal(err)
			}
			return rules
		}
	}
	return nil
}

// TestRedirectInReplaces: setting the redirect again (a daemon adopting
// the sandbox, with a new listener) replaces its rules rather than
// adding to them, and the limit table comes and goes.
func TestRedirectInReplaces(t *testing.T) {
	pid := inNewNetns(t)
	e := &Egress{ns: []netip.Addr{netip.MustParseAddr("192.0.2.53")}}
	ln, err := listenIn(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The listener is in the sandbox's namespace: not on the host's
	// loopback.
	if c, err := net.Dial("tcp4", ln.Addr().String()); err == nil {
		c.Close()
		t.Errorf("the listener in the namespace answers on the host's %s", ln.Addr())
	}
	for _, port := range []int{40001, 40002} {
		if err := e.redirectIn(pid, port); err != nil {
			t.Fatal(err)
		}
	}
	rules := rulesIn(t, pid, redirectTable)
	if len(rules) != 3 { // loopback, DNS to the one nameserver, the redirect
		t.Fatalf("%d rules after two redirects, want 3", len(rules))
	}
	var port []byte
	for _, x := range rules[2].Exprs {
		if im, ok := x.(*expr.Immediate); ok {
			port = im.Data
		}
	}
	if len(port) != 2 || int(port[0])<<8|int(port[1]) != 40002 {
		t.Errorf("redirect to port %v, want 40002", port)
	}
	if err := e.unredirectIn(pid); err != nil {
		t.Fatal(err)
	}
	if rulesIn(t, pid, redirectTable) != nil {
		t.Error("the redirect table outlived unredirectIn")
	}

	for _, n := range []int{4, 8} {
		if err := connLimit(pid, n); err != nil {
			t.Fatal(err)
		}
	}
	if rules := rulesIn(t, pid, limitsTable); len(rules) != 1 {
		t.Fatalf("%d limit rules after two limits, want 1", len(rules))
	}
	for range 2 { // removing twice is fine
		if err := connLimit(pid, 0); err != nil {
			t.Fatal(err)
		}
	}
	if rulesIn(t, pid, limitsTable) != nil {
		t.Error("the limits table outlived a zero limit")
	}
}

// fakeProxy counts the routes it serves and the ones closed.
type fakeProxy struct{ served, closed int }

type fakeRoute struct {
	p  *fakeProxy
	ln *net.TCPListener
}

func (p *fakeProxy) Serve(ln *net.TCPListener, _ Policy) Route {
	p.served++
	return fakeRoute{p: p, ln: ln}
}

func (r fakeRoute) Update(Policy) {}
func (r fakeRoute) Close() error  { r.p.closed++; return r.ln.Close() }

// TestRoutingFollowsPolicy: a sandbox is routed through the proxy while
// its policy has names that a deny makes matter, or network rules
// (Intercept, whatever allowOut says), and an update that removes them
// all ends the routing.
func TestRoutingFollowsPolicy(t *testing.T) {
	pid := inNewNetns(t)
	pool := netip.MustParsePrefix("10.252.0.0/16") // a table of its own, removed below
	ns := []netip.Addr{netip.MustParseAddr("10.255.255.53")}
	px := &fakeProxy{}
	e, err := New(Config{Pool: pool, Nameservers: ns, Proxy: px})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := nftables.New()
	t.Cleanup(func() {
		c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: e.table})
		_ = c.Flush()
	})
	l := e.link(9)
	l.Pid = pid
	all := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	steps := []struct {
		what   string
		p      Policy
		routed bool
	}{
		{"names under a deny", Policy{Names: []string{"example.com"}, Deny: all}, true},
		{"every name and rule removed", Policy{}, false},
		{"network rules with allow-all", Policy{Intercept: true}, true},
		{"rules removed, a deny kept", Policy{Deny: all}, false},
		{"names without a deny", Policy{Names: []string{"example.com"}}, false},
		{"rules beside names", Policy{Names: []string{"example.com"}, Intercept: true}, true},
		{"all removed", Policy{}, false},
	}
	for _, s := range steps {
		if err := e.SetPolicy(l, s.p); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		e.mu.Lock()
		_, routed := e.proxied[l.Index]
		e.mu.Unlock()
		table := rulesIn(t, pid, redirectTable) != nil
		if routed != s.routed || table != s.routed {
			t.Errorf("%s: routed %v, redirect table %v; want %v", s.what, routed, table, s.routed)
		}
	}
	if px.served != 3 || px.closed != 3 {
		t.Errorf("the proxy served %d routes and closed %d, want 3 and 3", px.served, px.closed)
	}
}
