package netproxy

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// hostAddrs knows the host's own addresses, which no sandbox may reach
// through the proxy (nftables keeps them from the rest: traffic to them
// meets the input hook, not forward). The list is read at most once a
// second: addresses come and go rarely, and a dial must stay cheap.
type hostAddrs struct {
	mu    sync.Mutex
	addrs map[netip.Addr]bool
	read  time.Time
}

func (h *hostAddrs) has(a netip.Addr) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.read) > time.Second {
		h.addrs = map[netip.Addr]bool{}
		if list, err := net.InterfaceAddrs(); err == nil {
			for _, ia := range list {
				if n, ok := ia.(*net.IPNet); ok {
					if ip, ok := netip.AddrFromSlice(n.IP); ok {
						h.addrs[ip.Unmap()] = true
					}
				}
			}
		}
		h.read = time.Now()
	}
	return h.addrs[a]
}
