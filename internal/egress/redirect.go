package egress

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// A sandbox whose Policy names domains (or has network rules) has its
// outbound TCP redirected to a Proxy that reads the name each connection
// asks for. The redirect and
// the proxy's listening socket both live inside the sandbox's own network
// namespace: a table there turns every outbound TCP connection (but DNS to
// the nameservers and loopback) into one to 127.0.0.1:PORT, where a socket
// the daemon opened in that namespace accepts it. So the redirected
// traffic never crosses the host's input hook, every sandbox has a
// listener of its own (the proxy knows which sandbox a connection is from
// without looking at addresses), and the host's table needs no change:
// anything that gets past the redirect still meets the sandbox's Policy
// chain there, which denies what the names were to rescue. The sandbox's
// root holds no CAP_NET_ADMIN (see sandboxinit's capability set), so it
// cannot remove the table.

// Proxy serves the redirected connections of sandboxes with domain rules
// (netproxy implements it).
type Proxy interface {
	// Serve accepts connections on ln, a listener inside a sandbox's
	// network namespace, and serves them under p until the Route is
	// closed. It returns at once.
	Serve(ln *net.TCPListener, p Policy) Route
}

// Route is one sandbox's place in the Proxy.
type Route interface {
	// Update replaces the policy connections accepted from now on meet;
	// connections already relayed go on, as established ones do past
	// nftables.
	Update(p Policy)
	// Close stops accepting, closes the listener and every connection
	// the route relays, and waits for them. Closing twice is fine.
	Close() error
}

// proxied is a sandbox link whose TCP goes through the Proxy.
type proxied struct {
	pid   int
	route Route
}

// redirectTable is the table (family ip) in a sandbox's namespace.
const redirectTable = "sandpit_redirect"

// proxiedBy reports whether p sends a sandbox's TCP through the proxy:
// names matter only where something is denied that they could rescue,
// and network rules always (the proxy applies them).
func proxiedBy(p Policy) bool { return p.Intercept || len(p.Names) > 0 && len(p.Deny) > 0 }

// setRedirect starts, updates or ends the redirect of l's TCP to the
// proxy, as p asks.
func (e *Egress) setRedirect(l Link, p Policy) error {
	e.netnsMu.Lock()
	defer e.netnsMu.Unlock()
	e.mu.Lock()
	cur := e.proxied[l.Index]
	e.mu.Unlock()
	want := proxiedBy(p)
	switch {
	case want && cur != nil:
		cur.route.Update(p)
		return nil
	case want && e.proxy == nil:
		return fmt.Errorf("policy for %s names domains or has network rules and this daemon has no egress proxy", l.Host)
	case want:
		if l.Pid <= 0 {
			return fmt.Errorf("policy for %s names domains or has network rules and the link has no sandbox process", l.Host)
		}
		ln, err := listenIn(l.Pid)
		if err != nil {
			return err
		}
		if err := e.redirectIn(l.Pid, ln.Addr().(*net.TCPAddr).Port); err != nil {
			ln.Close()
			return err
		}
		route := e.proxy.Serve(ln, p)
		e.mu.Lock()
		e.proxied[l.Index] = &proxied{pid: l.Pid, route: route}
		e.mu.Unlock()
		return nil
	case cur != nil:
		e.mu.Lock()
		delete(e.proxied, l.Index)
		e.mu.Unlock()
		err := e.unredirectIn(cur.pid)
		cur.route.Close()
		return err
	}
	return nil
}

// dropRedirect forgets l's route; its namespace is going away.
func (e *Egress) dropRedirect(l Link) {
	e.netnsMu.Lock()
	defer e.netnsMu.Unlock()
	e.mu.Lock()
	cur := e.proxied[l.Index]
	delete(e.proxied, l.Index)
	e.mu.Unlock()
	if cur != nil {
		cur.route.Close()
	}
}

// inNetns runs fn on a thread in the network namespace of pid. A thread
// whose namespace cannot be put back is not given back to the Go
// scheduler: it ends with the goroutine.
func inNetns(pid int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("opening the daemon's network namespace: %w", err)
			return
		}
		defer self.Close()
		target, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening the network namespace of pid %d: %w", pid, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering the network namespace of pid %d: %w", pid, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("leaving the network namespace of pid %d: %w", pid, err)
			return // the thread stays locked and dies
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// listenIn opens a TCP listener on 127.0.0.1 (a port the kernel picks)
// inside the network namespace of pid.
func listenIn(pid int) (*net.TCPListener, error) {
	var ln *net.TCPListener
	err := inNetns(pid, func() error {
		l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		ln = l
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening the egress proxy's listener for pid %d: %w", pid, err)
	}
	return ln, nil
}

// netnsConn opens nftables in the network namespace of pid.
func netnsConn(pid int) (*nftables.Conn, func(), error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return nil, nil, fmt.Errorf("opening the network namespace of pid %d: %w", pid, err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("opening nftables in the network namespace of pid %d: %w", pid, err)
	}
	return c, func() { f.Close() }, nil
}

// redirectIn installs, in the namespace of pid, the table that sends its
// outbound TCP to 127.0.0.1:port:
//
//	output (nat): loopback → as is; TCP to a nameserver's port 53 → as
//	              is; any other TCP → redirect to :port
func (e *Egress) redirectIn(pid, port int) error {
	c, done, err := netnsConn(pid)
	if err != nil {
		return err
	}
	defer done()
	// Adding a table or chain that is there already changes nothing, and
	// the flush replaces the rules an earlier daemon left (its listener
	// is gone): deleting the table instead would cost a create ~10 ms,
	// the kernel's wait for readers of the hooks it unregisters.
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: redirectTable})
	accept := nftables.ChainPolicyAccept
	out := c.AddChain(&nftables.Chain{
		Name: "output", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest, Policy: &accept,
	})
	c.FlushChain(out)
	rule := func(exprs ...[]expr.Any) {
		var all []expr.Any
		for _, e := range exprs {
			all = append(all, e...)
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: all})
	}
	ret := verdict(expr.VerdictReturn)
	rule([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameKey("lo")},
	}, ret)
	for _, a := range e.ns {
		rule(daddrIn(netPrefix32(a)), l4proto(unix.IPPROTO_TCP), dport(53), ret)
	}
	rule(l4proto(unix.IPPROTO_TCP), []expr.Any{
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(port))},
		&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
	})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("redirecting the TCP of pid %d to the egress proxy: %w", pid, err)
	}
	return nil
}

// unredirectIn removes the redirect table from the namespace of pid.
func (e *Egress) unredirectIn(pid int) error {
	c, done, err := netnsConn(pid)
	if err != nil {
		return err
	}
	defer done()
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: redirectTable})
	if err := c.Flush(); err != nil && !isNotExist(err) {
		return fmt.Errorf("ending the egress proxy redirect of pid %d: %w", pid, err)
	}
	return nil
}
