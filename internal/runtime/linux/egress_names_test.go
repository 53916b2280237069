package linux_test

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"

	"github.com/sandpit-dev/sandpit/internal/egress"
	"github.com/sandpit-dev/sandpit/internal/netproxy"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
)

// TestEgressNamesAndLimits: a sandbox whose policy names domains has its
// TCP redirected, inside its own namespace, to the egress proxy, which
// judges what carries no allowed name by address and refuses allowed
// names that resolve into a fixed range; limits put a connection limit in
// its namespace and a rate limit on its veth. Updates add and remove
// both, and the sandbox cannot see past them. (The names themselves, over
// DNS, HTTP and TLS, are test/compat/network_domains.test.mjs's.)
func TestEgressNamesAndLimits(t *testing.T) {
	needRoot(t)
	if err := egress.KernelSupport(); err != nil {
		t.Skipf("egress needs nf_tables, which the kernel lacks: %v", err)
	}
	refused := make(chan netproxy.Refusal, 16)
	proxy := netproxy.New(netproxy.Config{Refuse: []netip.Prefix{egress.DefaultPool}, Refused: func(r netproxy.Refusal) { refused <- r }})
	t.Cleanup(proxy.Close)
	reg := prometheus.NewRegistry()
	reg.MustRegister(proxy)
	eg, err := egress.New(egress.Config{Proxy: proxy})
	if err != nil {
		t.Fatalf("egress: %v", err)
	}
	out := newOutside(t)
	e := newEnv(t, func(c *linux.Config) { c.Egress = eg })
	all := netip.MustParsePrefix("0.0.0.0/0")
	pol := runtime.EgressPolicy{
		Deny: []netip.Prefix{all}, Allow: []netip.Prefix{netip.PrefixFrom(out.public, 32)}, Names: []string{"localhost"},
		Limits: runtime.EgressLimits{Conns: 8, Rate: 1 << 20},
	}
	sb := e.createSpec(t, runtime.Spec{ID: "names", AllowInternet: true, Egress: pol})
	pid := sb.Pid

	// An allowed address goes through the proxy, and gets out.
	if got := dial(t, sb, out.public, out.port); got != "from 198.51.100.1\nrc=0" {
		t.Errorf("allowed address: %q", got)
	}
	if n := counter(t, reg, "sandpit_netproxy_connections_total", "address"); n != 1 {
		t.Errorf("relayed by address: %v, want 1", n)
	}
	// A denied address without an allowed name is refused by the proxy.
	if got := dial(t, sb, out.public2, out.port); strings.HasSuffix(got, "rc=0") {
		t.Errorf("denied address reached: %q", got)
	}
	if r := nextRefusal(t, refused); r.Sandbox != "names" || r.Reason != "not_allowed" || r.Destination != netip.AddrPortFrom(out.public2, uint16(out.port)) {
		t.Errorf("refusal %+v", r)
	}
	// An allowed name that resolves to loopback is refused after the
	// lookup, wherever the sandbox sent it.
	cmd := fmt.Sprintf("curl -s -m 5 -H 'Host: localhost' http://%s:%d/; echo rc=$?", out.public2, out.port)
	if got := run(t, sb, cmd, false); strings.HasSuffix(strings.TrimSpace(got), "rc=0") {
		t.Errorf("a name resolving to loopback reached: %q", got)
	}
	if r := nextRefusal(t, refused); r.Reason != "resolved_fixed_range" || r.Name != "localhost" {
		t.Errorf("refusal %+v", r)
	}
	// The tables are the sandbox's own: it cannot list, let alone
	// remove, them (no CAP_NET_ADMIN).
	bnd := strings.Fields(run(t, sb, "grep CapBnd /proc/self/status", false))
	if len(bnd) != 2 {
		t.Fatalf("reading the sandbox's capability bounding set: %q", bnd)
	}
	if caps, err := strconv.ParseUint(bnd[1], 16, 64); err != nil || caps&(1<<12) != 0 {
		t.Errorf("the sandbox's bounding set %s (%v) holds CAP_NET_ADMIN", bnd[1], err)
	}
	wantTables(t, pid, map[string]bool{"sandpit_redirect": true, "sandpit_limits": true})
	wantRate(t, sb, 1<<20)

	// Without names (and limits) the redirect and the limits go.
	if err := e.rt.SetEgress(t.Context(), "names", runtime.EgressPolicy{Deny: []netip.Prefix{all}, Allow: []netip.Prefix{netip.PrefixFrom(out.public, 32)}}); err != nil {
		t.Fatal(err)
	}
	wantTables(t, pid, map[string]bool{"sandpit_redirect": false, "sandpit_limits": false})
	wantRate(t, sb, 0)
	if got := dial(t, sb, out.public, out.port); got != "from 198.51.100.1\nrc=0" {
		t.Errorf("allowed address without the proxy: %q", got)
	}
	if n := counter(t, reg, "sandpit_netproxy_connections_total", "address"); n != 1 {
		t.Errorf("relayed by address after the proxy went: %v, want still 1", n)
	}
	// And back.
	if err := e.rt.SetEgress(t.Context(), "names", pol); err != nil {
		t.Fatal(err)
	}
	wantTables(t, pid, map[string]bool{"sandpit_redirect": true, "sandpit_limits": true})
	if got := dial(t, sb, out.public, out.port); got != "from 198.51.100.1\nrc=0" {
		t.Errorf("allowed address through the proxy again: %q", got)
	}
	if n := counter(t, reg, "sandpit_netproxy_connections_total", "address"); n != 2 {
		t.Errorf("relayed by address: %v, want 2", n)
	}
	if err := e.rt.Kill(t.Context(), "names"); err != nil {
		t.Fatal(err)
	}
}

func nextRefusal(t *testing.T, ch chan netproxy.Refusal) netproxy.Refusal {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no refusal reported")
		return netproxy.Refusal{}
	}
}

// counter reads one label's value of a counter vector.
func counter(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// wantTables checks which of sandpit's tables the namespace of pid holds.
func wantTables(t *testing.T, pid int, want map[string]bool) {
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
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, tb := range tables {
		have[tb.Name] = true
	}
	for name, w := range want {
		if have[name] != w {
			t.Errorf("table %s in the sandbox's namespace: %v, want %v", name, have[name], w)
		}
	}
}

// wantRate checks the tbf on the host's end of sb's link (0: none).
func wantRate(t *testing.T, sb *runtime.Sandbox, rate uint64) {
	t.Helper()
	var peer int
	fmt.Sscan(run(t, sb, "cat /sys/class/net/eth0/iflink", false), &peer)
	link, err := netlink.LinkByIndex(peer)
	if err != nil {
		t.Fatal(err)
	}
	qdiscs, err := netlink.QdiscList(link)
	if err != nil {
		t.Fatal(err)
	}
	var got uint64
	for _, q := range qdiscs {
		if tbf, ok := q.(*netlink.Tbf); ok && q.Attrs().Parent == netlink.HANDLE_ROOT {
			got = tbf.Rate
		}
	}
	if got != rate {
		t.Errorf("rate limit on %s: %d, want %d", link.Attrs().Name, got, rate)
	}
}
