package sandboxinit

import (
	"fmt"
	"net/netip"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The init sets up its network with ioctls on one datagram socket, not
// with a netlink library: that opened a socket per call and parsed every
// attribute of the link it looked up, ~0.3 ms of CPU per create, and its
// package initialisers ran at every start of the agent binary (twice per
// sandbox). IPv4 ioctls cover all the init does: raise a link, give it an
// address, add a default route.

// loopbackUp raises lo in the calling thread's network namespace.
func loopbackUp() error {
	fd, err := inetSocket()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := linkUp(fd, "lo"); err != nil {
		return fmt.Errorf("bringing loopback up: %w", err)
	}
	return nil
}

// configureEth0 sets up eth0 in the calling thread's network namespace:
// the sandbox's init calls it before it drops its capabilities. What it
// leaves is what `ip addr add ADDR/BITS brd + dev eth0; ip link set eth0
// up; ip route add default via GATEWAY dev eth0` would.
func configureEth0(addr netip.Prefix, gateway netip.Addr) error {
	if !addr.Addr().Is4() || !gateway.Is4() {
		return fmt.Errorf("configuring eth0: %s via %s: only IPv4 is supported", addr, gateway)
	}
	fd, err := inetSocket()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ip := addr.Addr().As4()
	mask := netip.PrefixFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), addr.Bits()).Masked().Addr().As4()
	// The kernel derives the broadcast address from the address and then
	// from the netmask, as netlink's `brd +` does.
	if err := setInet4(fd, "eth0", unix.SIOCSIFADDR, ip); err != nil {
		return fmt.Errorf("addressing eth0: %w", err)
	}
	if err := setInet4(fd, "eth0", unix.SIOCSIFNETMASK, mask); err != nil {
		return fmt.Errorf("addressing eth0: %w", err)
	}
	if err := linkUp(fd, "eth0"); err != nil {
		return fmt.Errorf("raising eth0: %w", err)
	}
	if err := addDefaultRoute(fd, "eth0", gateway.As4()); err != nil {
		return fmt.Errorf("adding default route via %s: %w", gateway, err)
	}
	return nil
}

func inetSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening a socket to configure the network: %w", err)
	}
	return fd, nil
}

func linkUp(fd int, name string) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("reading flags of %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

func setInet4(fd int, name string, req uint, a [4]byte) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := ifr.SetInet4Addr(a[:]); err != nil {
		return err
	}
	return unix.IoctlIfreq(fd, req, ifr)
}

// rtentry is the kernel's struct rtentry (<linux/route.h>), which
// x/sys/unix does not define; Go lays out these field types as C does.
type rtentry struct {
	pad1    uintptr
	dst     unix.RawSockaddrInet4
	gateway unix.RawSockaddrInet4
	genmask unix.RawSockaddrInet4
	flags   uint16
	pad2    int16
	pad3    uintptr
	pad4    uintptr
	metric  int16
	dev     *byte
	mtu     uintptr
	window  uintptr
	irtt    uint16
}

func addDefaultRoute(fd int, dev string, gateway [4]byte) error {
	name, err := unix.BytePtrFromString(dev)
	if err != nil {
		return err
	}
	rt := rtentry{
		dst:     unix.RawSockaddrInet4{Family: unix.AF_INET},
		genmask: unix.RawSockaddrInet4{Family: unix.AF_INET},
		gateway: unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: gateway},
		flags:   unix.RTF_UP | unix.RTF_GATEWAY,
		dev:     name,
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCADDRT, uintptr(unsafe.Pointer(&rt)))
	runtime.KeepAlive(name)
	if errno != 0 {
		return errno
	}
	return nil
}
