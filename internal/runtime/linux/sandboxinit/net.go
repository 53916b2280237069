package sandboxinit

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// configureEth0 sets up eth0 in the calling thread's network namespace:
// the sandbox's init calls it before it drops its capabilities.
func configureEth0(addr netip.Prefix, gateway netip.Addr) error {
	eth, err := netlink.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("finding eth0: %w", err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}}
	if err := netlink.AddrAdd(eth, a); err != nil {
		return fmt.Errorf("addressing eth0: %w", err)
	}
	if err := netlink.LinkSetUp(eth); err != nil {
		return fmt.Errorf("raising eth0: %w", err)
	}
	route := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gateway.AsSlice()}
	if err := netlink.RouteAdd(route); err != nil {
		return fmt.Errorf("adding default route via %s: %w", gateway, err)
	}
	return nil
}
