package egress

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Limits bound one sandbox's way out, so that one sandbox cannot starve
// the host's uplink or its connection tracking. Zero fields bound
// nothing.
//
//   - Rate is bytes per second, each way: a token bucket (tbf) on the
//     sandbox's eth0 shapes what it sends, one on the host's end of its
//     veth what it receives; the egress proxy meters the connections it
//     relays (they leave the sandbox over loopback, past both).
//   - Conns is how many TCP connections to the outside the sandbox holds
//     at once: nftables' connlimit in its own namespace (ahead of the
//     proxy's redirect, so proxied connections count too) answers one
//     more with a reset.
type Limits struct {
	Rate  uint64
	Conns int
}

// Zero reports whether l bounds nothing.
func (l Limits) Zero() bool { return l == Limits{} }

// Or is l with its zero fields taken from def.
func (l Limits) Or(def Limits) Limits {
	if l.Rate == 0 {
		l.Rate = def.Rate
	}
	if l.Conns == 0 {
		l.Conns = def.Conns
	}
	return l
}

// limitsTable is the table (family ip) in a sandbox's namespace that
// holds its connection limit.
const limitsTable = "sandpit_limits"

// setLimits makes the kernel hold lim for l (and nothing when lim is
// zero), unless it holds them already.
func (e *Egress) setLimits(l Link, lim Limits) error {
	e.netnsMu.Lock()
	defer e.netnsMu.Unlock()
	e.mu.Lock()
	cur, had := e.limits[l.Index]
	e.mu.Unlock()
	if had && cur == lim {
		return nil
	}
	if lim.Zero() && !had {
		return nil
	}
	if l.Pid <= 0 {
		return fmt.Errorf("limits for %s: the link has no sandbox process", l.Host)
	}
	if err := shape(l, lim.Rate); err != nil {
		return err
	}
	if err := connLimit(l.Pid, lim.Conns); err != nil {
		return err
	}
	e.mu.Lock()
	if lim.Zero() {
		delete(e.limits, l.Index)
	} else {
		e.limits[l.Index] = lim
	}
	e.mu.Unlock()
	return nil
}

// shape puts a tbf of rate bytes/s at the root of both ends of l's veth,
// or removes it when rate is zero.
func shape(l Link, rate uint64) error {
	f, err := os.Open("/proc/" + strconv.Itoa(l.Pid) + "/ns/net")
	if err != nil {
		return fmt.Errorf("opening the network namespace of %s: %w", l.Host, err)
	}
	defer f.Close()
	inside, err := netlink.NewHandleAt(netns.NsHandle(f.Fd()))
	if err != nil {
		return fmt.Errorf("opening netlink in the namespace of %s: %w", l.Host, err)
	}
	defer inside.Close()
	for _, end := range []struct {
		h    *netlink.Handle
		name string
	}{{nil, l.Host}, {inside, "eth0"}} {
		var link netlink.Link
		if end.h == nil {
			link, err = netlink.LinkByName(end.name)
		} else {
			link, err = end.h.LinkByName(end.name)
		}
		if err != nil {
			return fmt.Errorf("finding %s of %s: %w", end.name, l.Host, err)
		}
		attrs := netlink.QdiscAttrs{LinkIndex: link.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT}
		if rate == 0 {
			q := &netlink.Tbf{QdiscAttrs: attrs}
			if end.h == nil {
				err = netlink.QdiscDel(q)
			} else {
				err = end.h.QdiscDel(q)
			}
			if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("removing the rate limit of %s on %s: %w", l.Host, end.name, err)
			}
			continue
		}
		// A burst of a tenth of a second (at least 64 KiB, so a full
		// TSO segment fits) and a queue of a quarter second.
		burst := max(rate/10, 64<<10)
		q := &netlink.Tbf{QdiscAttrs: attrs, Rate: rate, Limit: uint32(min(burst+rate/4, 1<<30)), Buffer: netlink.Xmittime(rate, uint32(min(burst, 1<<30)))}
		if end.h == nil {
			err = netlink.QdiscReplace(q)
		} else {
			err = end.h.QdiscReplace(q)
		}
		if err != nil {
			return fmt.Errorf("limiting the rate of %s on %s: %w", l.Host, end.name, err)
		}
	}
	return nil
}

// connLimit installs, in the namespace of pid, the table that refuses TCP
// connections past n open at once (none when n is zero):
//
//	output (filter, before NAT): not loopback, TCP, new, ct count over
//	                             n → reset
func connLimit(pid, n int) error {
	c, done, err := netnsConn(pid)
	if err != nil {
		return err
	}
	defer done()
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: limitsTable}
	if n == 0 {
		// Deleting a table that is not there is an error: add it first,
		// in the same batch.
		c.AddTable(t)
		c.DelTable(t)
	} else {
		// As in redirectIn: add (a no-op when there) and flush, rather
		// than delete and add, which costs ~10 ms.
		t = c.AddTable(t)
		accept := nftables.ChainPolicyAccept
		out := c.AddChain(&nftables.Chain{
			Name: "output", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRef(-150), Policy: &accept,
		})
		c.FlushChain(out)
		exprs := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifnameKey("lo")},
		}
		exprs = append(exprs, l4proto(unix.IPPROTO_TCP)...)
		exprs = append(exprs, ctNew()...)
		exprs = append(exprs,
			&expr.Connlimit{Count: uint32(n), Flags: connlimitOver},
			&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
		)
		c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: exprs})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("limiting the connections of pid %d: %w", pid, err)
	}
	return nil
}

// connlimitOver is NFT_CONNLIMIT_F_INV: "ct count over n".
const connlimitOver = 1
