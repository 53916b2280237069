package egress

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/google/nftables"
)

func TestLinkAddresses(t *testing.T) {
	e := &Egress{pool: netip.MustParsePrefix("10.213.0.0/16"), size: 1 << 14}
	cases := []struct {
		idx           int
		host, gw, sbx string
	}{
		{0, "spv0", "10.213.0.1", "10.213.0.2/30"},
		{1, "spv1", "10.213.0.5", "10.213.0.6/30"},
		{64, "spv64", "10.213.1.1", "10.213.1.2/30"},
		{16383, "spv16383", "10.213.255.253", "10.213.255.254/30"},
	}
	for _, c := range cases {
		l := e.link(c.idx)
		if l.Host != c.host || l.Gateway.String() != c.gw || l.Addr.String() != c.sbx {
			t.Errorf("link %d = %s %s %s, want %s %s %s", c.idx, l.Host, l.Gateway, l.Addr, c.host, c.gw, c.sbx)
		}
		if len(l.Host) > 15 {
			t.Errorf("link name %q is longer than IFNAMSIZ-1", l.Host)
		}
	}
}

func TestReserveWrapsAndSkipsUsed(t *testing.T) {
	e := &Egress{size: 4, start: 3, used: map[int]bool{0: true}}
	var got []int
	for {
		idx, ok := e.reserve()
		if !ok {
			break
		}
		got = append(got, idx)
	}
	if len(got) != 3 || got[0] != 3 || got[1] != 1 || got[2] != 2 {
		t.Fatalf("reserved %v, want [3 1 2]", got)
	}
	e.release(1)
	if idx, ok := e.reserve(); !ok || idx != 1 {
		t.Fatalf("after release got %d %v", idx, ok)
	}
}

func TestHostNameservers(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(p, []byte("# comment\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nnameserver ::1\nnameserver 2001:db8::1\nsearch example\nnameserver 192.0.2.7\n"), 0o644)
	got := hostNameservers(p)
	if len(got) != 2 || got[0].String() != "10.255.255.53" || got[1].String() != "192.0.2.7" {
		t.Fatalf("nameservers %v", got)
	}
	e := &Egress{ns: got}
	if rc := e.ResolvConf(); rc != "nameserver 10.255.255.53\nnameserver 192.0.2.7\n" {
		t.Fatalf("resolv.conf %q", rc)
	}
}

func TestTableNameFollowsConfig(t *testing.T) {
	pool := netip.MustParsePrefix("10.213.0.0/16")
	ns := []netip.Addr{netip.MustParseAddr("10.255.255.53")}
	a, b := TableName(pool, ns), TableName(netip.MustParsePrefix("10.214.0.0/16"), ns)
	if a == b || a != TableName(pool, ns) || len(a) > 64 {
		t.Fatalf("table names %q %q", a, b)
	}
}

// Daemons starting together must end up with one table, not one each or
// one with every rule twice.
func TestInstallRulesConcurrently(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installing nftables rules needs root")
	}
	pool := netip.MustParsePrefix("10.250.0.0/16") // a table of its own, removed below
	ns := []netip.Addr{netip.MustParseAddr("10.255.255.53")}
	name := TableName(pool, ns)
	if err := KernelSupport(); err != nil {
		t.Skipf("the kernel lacks nf_tables: %v", err)
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: name})
		_ = c.Flush()
	})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := installRules(pool, ns)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("installRules: %v", err)
		}
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tb := range tables {
		if tb.Name == name {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d tables named %s", n, name)
	}
	tb := &nftables.Table{Family: nftables.TableFamilyINet, Name: name}
	rules, err := c.GetRules(tb, &nftables.Chain{Name: "forward", Table: tb})
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 3 {
		t.Fatalf("forward chain has %d rules, want 3", len(rules))
	}
}

// The table comes back, policies and all, after something removed it.
func TestEnsureRestoresTableAndPolicies(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installing nftables rules needs root")
	}
	ns := []netip.Addr{netip.MustParseAddr("10.255.255.53")}
	if err := KernelSupport(); err != nil {
		t.Skipf("the kernel lacks nf_tables: %v", err)
	}
	e, err := New(Config{Pool: netip.MustParsePrefix("10.251.0.0/16"), Nameservers: ns})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := nftables.New()
	tb := &nftables.Table{Family: nftables.TableFamilyINet, Name: e.table}
	t.Cleanup(func() {
		c.DelTable(tb)
		_ = c.Flush()
	})
	l := e.link(7)
	if err := e.SetPolicy(l, Policy{Deny: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}); err != nil {
		t.Fatal(err)
	}
	if restored, err := e.ensure(); err != nil || restored {
		t.Fatalf("ensure with the table present: %v %v", restored, err)
	}
	c.DelTable(tb)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if restored, err := e.ensure(); err != nil || !restored {
		t.Fatalf("ensure with the table gone: %v %v", restored, err)
	}
	rules, err := c.GetRules(tb, &nftables.Chain{Name: policyChain(l), Table: tb})
	if err != nil || len(rules) != 1 {
		t.Fatalf("policy chain after restore: %d rules, %v", len(rules), err)
	}
}

// Every table filters every sandbox link, so each lets DNS through to the
// nameservers of every daemon on the host: a table that knew only its own
// rejected another daemon's private resolver (a 10.x host resolver beside a
// test daemon's --dns), and that daemon's sandboxes could resolve nothing.
func TestNameserversSharedByEveryTable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installing nftables rules needs root")
	}
	if err := KernelSupport(); err != nil {
		t.Skipf("the kernel lacks nf_tables: %v", err)
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	type daemon struct {
		pool netip.Prefix
		ns   []netip.Addr
	}
	a := daemon{netip.MustParsePrefix("10.247.0.0/16"), []netip.Addr{netip.MustParseAddr("10.255.255.53")}}
	b := daemon{netip.MustParsePrefix("10.248.0.0/16"), []netip.Addr{netip.MustParseAddr("198.51.100.53"), netip.MustParseAddr("10.9.9.9")}}
	for _, d := range []daemon{a, b} {
		t.Cleanup(func() {
			c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: TableName(d.pool, d.ns)})
			_ = c.Flush()
		})
		if _, err := installRules(d.pool, d.ns); err != nil {
			t.Fatalf("installRules(%s): %v", d.pool, err)
		}
	}
	// Again, as a restarted daemon (or the Keep loop) does: nothing fails
	// on elements that are there already.
	if _, err := installRules(a.pool, a.ns); err != nil {
		t.Fatalf("installRules again: %v", err)
	}
	for _, d := range []daemon{a, b} {
		tb := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName(d.pool, d.ns)}
		set, err := c.GetSetByName(tb, nameserverSet)
		if err != nil {
			t.Fatalf("table of %s: %v", d.pool, err)
		}
		els, err := c.GetSetElements(set)
		if err != nil {
			t.Fatal(err)
		}
		got := map[netip.Addr]bool{}
		for _, el := range els {
			addr, _ := netip.AddrFromSlice(el.Key)
			got[addr] = true
		}
		for _, want := range append(slices.Clone(a.ns), b.ns...) {
			if !got[want] {
				t.Errorf("the table of %s lets no DNS through to %s (has %v)", d.pool, want, got)
			}
		}
	}
}
