// Package egress gives sandboxes a way out to the internet and nowhere
// else: a routed veth pair per sandbox with a /30 from a private pool, and
// one nftables table that masquerades sandbox traffic and rejects what must
// stay unreachable — the host's own services, link-local and metadata
// addresses, private ranges, and other sandboxes.
//
// Per sandbox, a Policy narrows that way out: address rules in a chain of
// the host's table; domain names by sending the sandbox's TCP, from a
// table in its own namespace, to a Proxy the daemon serves there
// (redirect.go); bandwidth and connection Limits by token buckets on its
// veth and a connection limit in its namespace (limits.go).
//
// Everything is done over netlink (vishvananda/netlink for links and
// addresses, google/nftables for the rules); nothing shells out.
package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LinkPrefix starts the host-side name of every sandbox veth; the rules
// match it as a wildcard. The rest of the name is the /30's index in the
// pool, so the kernel's refusal of a taken name is what keeps two daemons
// on one host from handing out the same addresses.
const LinkPrefix = "spv"

// DefaultPool is where sandbox addresses come from unless configured.
var DefaultPool = netip.MustParsePrefix("10.213.0.0/16")

// Config configures egress for one daemon.
type Config struct {
	// Pool is the IPv4 range sandbox links are carved from, a /30 each.
	Pool netip.Prefix
	// Nameservers are the resolvers sandboxes use. Default: the host's
	// non-loopback nameservers from /etc/resolv.conf.
	Nameservers []netip.Addr
	// DockerTable is the ip table whose DOCKER-USER chain, where there
	// is one, gets accept rules for sandbox links (see docker.go).
	// Default: DockerTable, Docker's; tests name one of their own.
	DockerTable string
	// Proxy serves the TCP of sandboxes whose Policy names domains or
	// has Intercept (see redirect.go). Nil: such a Policy is an error.
	Proxy Proxy
	// Limits bound every sandbox's way out where its Policy's Limits
	// leave a field zero.
	Limits Limits
}

// Egress hands out sandbox links. It is safe for concurrent use.
type Egress struct {
	pool  netip.Prefix
	ns    []netip.Addr
	table string
	size  int // number of /30s in the pool
	mtu   int
	start int // where searches for a free index begin

	mu       sync.Mutex
	used     map[int]bool
	policies map[int]Policy // links with a policy chain
	proxied  map[int]*proxied
	pids     map[int]int    // the sandbox process of each link, where known
	limits   map[int]Limits // what the kernel holds for each limited link
	// leftChains names the policy chains an earlier run left in the
	// table, read once by the first Adopt; nil before.
	leftChains map[string]bool

	dockerTable string
	proxy       Proxy
	defaults    Limits
	// netnsMu serialises changes inside sandboxes' namespaces (the
	// redirect and limits there), so two callers setting one sandbox's
	// policy at once cannot both open it a listener.
	netnsMu sync.Mutex
	// dockerMu serialises adding and removing DOCKER-USER rules.
	dockerMu sync.Mutex
	closed   bool // Close ran: add no more rules
}

// Policy narrows one sandbox's way out, as E2B's network.allowOut and
// denyOut do: an address in Allow gets out even when Deny covers it.
// Nothing lets a sandbox reach what Denied covers. IPv4 only: sandboxes
// have no IPv6 way out at all.
type Policy struct {
	Allow, Deny []netip.Prefix
	// Names are domain names (exact, or "*.example.com" for any
	// subdomain) a connection may ask for (TLS SNI, HTTP Host) to get out
	// whatever Deny says. Where something is denied, they send the
	// sandbox's TCP through the Proxy.
	Names []string
	// Intercept: the sandbox has network rules (E2B's header transforms)
	// that the Proxy applies, so its TCP goes through the Proxy whatever
	// the addresses and names allow, as E2B applies rules regardless of
	// allowOut. What the policy allows is unchanged.
	Intercept bool
	// Sandbox names the sandbox for the proxy's logs and hooks.
	Sandbox string
	// Limits override Config.Limits field by field for this sandbox.
	Limits Limits
}

// Empty reports whether p changes nothing.
func (p Policy) Empty() bool {
	return len(p.Allow) == 0 && len(p.Deny) == 0 && len(p.Names) == 0 && !p.Intercept && p.Limits.Zero()
}

// Link is one sandbox's connection: Host is the host-side interface, and
// the sandbox's side is eth0 with Addr, routed via Gateway.
type Link struct {
	Index   int
	Host    string
	Addr    netip.Prefix // the sandbox's address with the /30
	Gateway netip.Addr   // the host side
	// Pid is the sandbox's first process, in the namespace that holds
	// eth0: Attach sets it, and a caller of Adopt or Link sets it for
	// policies that name domains.
	Pid int
}

// New prepares the host for egress: it installs the nftables table and
// turns on IPv4 forwarding.
func New(cfg Config) (*Egress, error) {
	if !cfg.Pool.IsValid() {
		cfg.Pool = DefaultPool
	}
	if !cfg.Pool.Addr().Is4() || cfg.Pool.Bits() > 29 {
		return nil, fmt.Errorf("egress pool %s: want an IPv4 range of /29 or larger", cfg.Pool)
	}
	cfg.Pool = cfg.Pool.Masked()
	if cfg.Nameservers == nil {
		cfg.Nameservers = hostNameservers("/etc/resolv.conf")
	}
	if cfg.DockerTable == "" {
		cfg.DockerTable = DockerTable
	}
	e := &Egress{
		pool:     cfg.Pool,
		ns:       cfg.Nameservers,
		table:    TableName(cfg.Pool, cfg.Nameservers),
		size:     1 << (32 - cfg.Pool.Bits() - 2),
		used:     map[int]bool{},
		policies: map[int]Policy{},
		proxied:  map[int]*proxied{},
		pids:     map[int]int{},
		proxy:    cfg.Proxy,
		limits:   map[int]Limits{},
		defaults: cfg.Limits,
		mtu:      hostMTU(),

		dockerTable: cfg.DockerTable,
	}
	// Daemons sharing a host start their searches apart so they rarely
	// race for the same name.
	e.start = rand.IntN(e.size)
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0); err != nil {
		return nil, fmt.Errorf("enabling IPv4 forwarding: %w", err)
	}
	if _, err := installRules(cfg.Pool, cfg.Nameservers); err != nil {
		return nil, err
	}
	if _, err := e.besideDocker(); err != nil {
		return nil, err
	}
	return e, nil
}

// Keep puts the table back, with every sandbox's policy, whenever
// something has removed it (`nft flush ruleset`, another sandpit version
// replacing it), checking every interval until ctx ends: the sandboxes'
// isolation from the host rests on it. It also lets sandbox links past a
// Docker that started after the daemon (see besideDocker).
func (e *Egress) Keep(ctx context.Context, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		restored, err := e.ensure()
		switch {
		case err != nil:
			log.Error("checking the egress table", "table", e.table, "err", err)
		case restored:
			log.Warn("the egress table was gone and is restored", "table", e.table)
		}
		if added, err := e.besideDocker(); err != nil {
			log.Error("letting sandbox traffic past Docker's FORWARD policy", "err", err)
		} else if added {
			log.Info("sandbox links accepted in Docker's DOCKER-USER chain", "table", e.dockerTable)
		}
	}
}

// ensure installs the table if it is missing and then re-applies every
// policy; it reports whether it had to.
func (e *Egress) ensure() (bool, error) {
	created, err := installRules(e.pool, e.ns)
	if err != nil || !created {
		return false, err
	}
	e.mu.Lock()
	policies := maps.Clone(e.policies)
	e.mu.Unlock()
	var errs []error
	for idx, p := range policies {
		l := e.link(idx)
		e.mu.Lock()
		l.Pid = e.pids[idx]
		e.mu.Unlock()
		errs = append(errs, e.SetPolicy(l, p))
	}
	return true, errors.Join(errs...)
}

// Nameservers are the resolvers a sandbox's /etc/resolv.conf should name.
func (e *Egress) Nameservers() []netip.Addr { return e.ns }

// ResolvConf is the /etc/resolv.conf a networked sandbox gets.
func (e *Egress) ResolvConf() string {
	var b strings.Builder
	for _, ns := range e.ns {
		b.WriteString("nameserver " + ns.String() + "\n")
	}
	return b.String()
}

// Attach creates a veth pair between the host and the network namespace of
// pid, names the sandbox's end eth0, and addresses and raises the host's
// end. The sandbox's init configures its own end (it owns its namespace).
func (e *Egress) Attach(pid int) (Link, error) {
	for tries := 0; tries < e.size; tries++ {
		idx, ok := e.reserve()
		if !ok {
			break
		}
		l := e.link(idx)
		veth := &netlink.Veth{
			// One queue each way, on both ends, asked for in the
			// request: a veth otherwise gets a queue per CPU and
			// then drops to one, and dropping queues waits for an
			// RCU grace period with the host's rtnl lock held, which
			// every other create and teardown then waits on too. The
			// host's end comes up in the same request.
			LinkAttrs:     netlink.LinkAttrs{Name: l.Host, MTU: e.mtu, NumTxQueues: 1, NumRxQueues: 1, Flags: net.FlagUp},
			PeerName:      "eth0",
			PeerNamespace: netlink.NsPid(pid),
		}
		err := netlink.LinkAdd(veth)
		if errors.Is(err, unix.EEXIST) {
			// Another daemon (or a link still going away) holds this
			// index; keep it marked for now and try the next.
			continue
		}
		if err != nil {
			e.release(idx)
			return Link{}, fmt.Errorf("creating veth %s: %w", l.Host, err)
		}
		if err := e.addressHost(veth, l); err != nil {
			_ = netlink.LinkDel(veth)
			e.release(idx)
			return Link{}, err
		}
		l.Pid = pid
		e.mu.Lock()
		e.pids[idx] = pid
		e.mu.Unlock()
		if err := e.setLimits(l, e.defaults); err != nil {
			_ = e.Detach(l)
			return Link{}, err
		}
		return l, nil
	}
	return Link{}, fmt.Errorf("no free address in egress pool %s (%d sandbox links)", e.pool, e.size)
}

// addressHost gives the host's end of l (link, just made) the sandbox's
// gateway address.
func (e *Egress) addressHost(link netlink.Link, l Link) error {
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: l.Gateway.AsSlice(), Mask: net.CIDRMask(30, 32)}}
	if err := netlink.AddrAdd(link, addr); err != nil {
		return fmt.Errorf("addressing veth %s: %w", l.Host, err)
	}
	return nil
}

// Detach removes a sandbox's link. The kernel removes the pair by itself
// when the sandbox's namespace goes, but not at once: deleting it here
// means a killed sandbox leaves no interface behind. Detaching a link that
// is already gone is not an error.
func (e *Egress) Detach(l Link) error {
	defer e.release(l.Index)
	return e.detach(l)
}

// Forget removes the link of a sandbox whose processes have all ended,
// and returns once the pair is gone. The kernel deletes the pair with the
// sandbox's network namespace, batched with the other namespaces that
// went meanwhile; a deletion of its own (Detach) holds the host's rtnl
// lock through RCU grace periods that every other sandbox's network setup
// and teardown waits for, and under load those waits were most of a
// create. The link's address is not handed out again before the pair is
// gone; after linkGrace Forget deletes it itself.
func (e *Egress) Forget(l Link) error {
	defer e.release(l.Index)
	e.mu.Lock()
	delete(e.pids, l.Index)
	e.mu.Unlock()
	path := filepath.Join("/sys/class/net", l.Host)
	delay := time.Millisecond
	for waited := time.Duration(0); waited < linkGrace; waited += delay {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			break
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
	return e.detach(l)
}

// linkGrace is how long Forget waits for the kernel to remove a link.
const linkGrace = 5 * time.Second

// detach removes what the daemon set up for link l and the pair itself,
// if it is still there.
func (e *Egress) detach(l Link) error {
	e.dropRedirect(l)
	e.mu.Lock()
	_, hadPolicy := e.policies[l.Index]
	delete(e.policies, l.Index)
	delete(e.pids, l.Index)
	delete(e.limits, l.Index)
	e.mu.Unlock()
	if hadPolicy {
		if err := e.dropPolicy(l); err != nil {
			return err
		}
	}
	link, err := netlink.LinkByName(l.Host)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("finding veth %s: %w", l.Host, err)
	}
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting veth %s: %w", l.Host, err)
	}
	return nil
}

// Reap removes what a sandbox left by an earlier run of the daemon held:
// its link and any policy chain.
func (e *Egress) Reap(l Link) error {
	return errors.Join(e.dropPolicy(l), e.Detach(l))
}

// Adopt takes over the link of a sandbox an earlier run of the daemon
// left running: its index is not handed out again until Detach, and its
// policy is set again (so a change a crash interrupted is made whole) and
// kept through Keep's restores.
func (e *Egress) Adopt(l Link, p Policy) error {
	e.mu.Lock()
	e.used[l.Index] = true
	if l.Pid > 0 {
		e.pids[l.Index] = l.Pid
	}
	e.mu.Unlock()
	if !p.Empty() {
		return e.SetPolicy(l, p)
	}
	if err := e.setLimits(l, e.defaults); err != nil {
		return err
	}
	// A policy chain an earlier run left for it must not filter it. Most
	// links have none: one listing of the table spares them each a
	// round of nftables calls.
	left, err := e.policyChainsLeft()
	if err != nil {
		return err
	}
	if !left[policyChain(l)] {
		return nil
	}
	return e.dropPolicy(l)
}

// policyChainsLeft lists the policy chains in the table once.
func (e *Egress) policyChainsLeft() (map[string]bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.leftChains != nil {
		return e.leftChains, nil
	}
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("opening nftables: %w", err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("listing the policy chains of %s: %w", e.table, err)
	}
	e.leftChains = map[string]bool{}
	for _, ch := range chains {
		if ch.Table.Name == e.table && strings.HasPrefix(ch.Name, policyChain(Link{})) {
			e.leftChains[ch.Name] = true
		}
	}
	return e.leftChains, nil
}

// Link rebuilds the Link of a pool index, for a daemon that finds a
// sandbox left by an earlier run.
func (e *Egress) Link(idx int) Link { return e.link(idx) }

func (e *Egress) link(idx int) Link {
	base := e.pool.Addr().As4()
	n := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	n += uint32(idx) * 4
	ip := func(v uint32) netip.Addr {
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	return Link{
		Index:   idx,
		Host:    LinkPrefix + strconv.Itoa(idx),
		Gateway: ip(n + 1),
		Addr:    netip.PrefixFrom(ip(n+2), 30),
	}
}

func (e *Egress) reserve() (int, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := 0; i < e.size; i++ {
		idx := (e.start + i) % e.size
		if !e.used[idx] {
			e.used[idx] = true
			e.start = (idx + 1) % e.size
			return idx, true
		}
	}
	return 0, false
}

func (e *Egress) release(idx int) {
	e.mu.Lock()
	delete(e.used, idx)
	e.mu.Unlock()
}

// hostMTU is the smallest MTU among the host's up, non-loopback links, so
// sandbox packets are never too big for the way out.
func hostMTU() int {
	links, err := netlink.LinkList()
	if err != nil {
		return 1500
	}
	mtu := 0
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || a.Flags&net.FlagUp == 0 || strings.HasPrefix(a.Name, LinkPrefix) {
			continue
		}
		if mtu == 0 || a.MTU < mtu {
			mtu = a.MTU
		}
	}
	if mtu == 0 {
		return 1500
	}
	return mtu
}

// HostNameservers are the resolvers sandboxes get when Config.Nameservers
// is unset: the host's IPv4, non-loopback ones from /etc/resolv.conf.
func HostNameservers() []netip.Addr { return hostNameservers("/etc/resolv.conf") }

// hostNameservers reads the IPv4, non-loopback nameservers of a
// resolv.conf; a loopback resolver (systemd-resolved's stub) cannot be
// reached from a sandbox.
func hostNameservers(path string) []netip.Addr {
	f, err := os.Open(path)
	if err != nil {
		return []netip.Addr{}
	}
	defer f.Close()
	out := []netip.Addr{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(fields[1])
		if err != nil || !a.Is4() || a.IsLoopback() {
			continue
		}
		out = append(out, a)
	}
	return out
}
