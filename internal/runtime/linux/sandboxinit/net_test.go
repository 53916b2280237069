package sandboxinit

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// inNewNetns runs fn on a thread of its own in a fresh network namespace;
// the thread ends with fn (it is never unlocked), so no other goroutine
// runs in that namespace.
func inNewNetns(t *testing.T, fn func() error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// The ioctls leave what the netlink calls they replaced left: lo and eth0
// up, the /30 with its broadcast address, a default route via the gateway
// on eth0.
func TestConfigureNetwork(t *testing.T) {
	addr := netip.MustParsePrefix("10.231.0.6/30")
	gw := netip.MustParseAddr("10.231.0.5")
	inNewNetns(t, func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0"}); err != nil {
			return err
		}
		if err := loopbackUp(); err != nil {
			return err
		}
		if err := configureEth0(addr, gw); err != nil {
			return err
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if lo.Attrs().Flags&net.FlagUp == 0 {
			t.Error("lo is down")
		}
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if eth.Attrs().Flags&net.FlagUp == 0 {
			t.Error("eth0 is down")
		}
		addrs, err := netlink.AddrList(eth, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		if len(addrs) != 1 || addrs[0].IPNet.String() != addr.String() || addrs[0].Broadcast.String() != "10.231.0.7" {
			t.Errorf("eth0 addresses %v, want %s brd 10.231.0.7", addrs, addr)
		}
		routes, err := netlink.RouteList(eth, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		var found bool
		for _, r := range routes {
			if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
				found = r.Gw.String() == gw.String() && r.LinkIndex == eth.Attrs().Index && r.Protocol == unix.RTPROT_BOOT && r.Priority == 0
			}
		}
		if !found {
			t.Errorf("no default route via %s on eth0 in %v", gw, routes)
		}
		if err := configureEth0(netip.MustParsePrefix("fd00::2/64"), netip.MustParseAddr("fd00::1")); err == nil {
			t.Error("configureEth0 took an IPv6 address")
		}
		return nil
	})
}
