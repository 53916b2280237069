package egress

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// rulesVersion changes whenever the rules below change, so a daemon never
// trusts a table an older sandpit left.
const rulesVersion = "3"

// Denied are the IPv4 ranges no sandbox may reach: "this" network,
// private ranges (which hold the pool, so other sandboxes too), shared
// address space, loopback, link-local (cloud metadata lives at
// 169.254.169.254), multicast and the reserved block.
var Denied = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

const tablePrefix = "sandpit_egress_"

// TableName is the nftables table (family inet) that holds the rules for
// a pool and set of nameservers: "sandpit_egress_v<version>_<hash>".
// Daemons configured alike share it.
func TableName(pool netip.Prefix, ns []netip.Addr) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s", pool)
	for _, a := range ns {
		fmt.Fprintf(h, "|%s", a)
	}
	return versionPrefix() + hex.EncodeToString(h.Sum(nil))[:8]
}

// HostTableName is the table of a daemon with pool that takes the host's
// own nameservers (Config.Nameservers unset), as `sandpit serve` does:
// what a leak check outside the daemon looks into.
func HostTableName(pool netip.Prefix) string {
	return TableName(pool.Masked(), hostNameservers("/etc/resolv.conf"))
}

func versionPrefix() string { return tablePrefix + "v" + rulesVersion + "_" }

// nameserverSet holds the addresses sandboxes may send DNS to: those of
// every daemon whose table is on the host (see installRules).
const nameserverSet = "nameservers"

// addrElements makes set elements of IPv4 addresses.
func addrElements(as []netip.Addr) []nftables.SetElement {
	els := make([]nftables.SetElement, 0, len(as))
	for _, a := range as {
		if a.Is4() {
			b := a.As4()
			els = append(els, nftables.SetElement{Key: b[:]})
		}
	}
	return els
}

// policyMap maps a sandbox link's name to a jump to its policy chain.
const policyMap = "policies"

// installRules creates the table for pool unless it is there already, and
// adds ns to the nameservers every table lets DNS through to. Its
// rules match sandbox links by name prefix, so they never change as
// sandboxes come and go:
//
//	forward:     from a sandbox link → sandbox_out;
//	             to a sandbox link: replies only
//	sandbox_out: replies; DNS to the nameservers; reject Denied and the
//	             pool; reject IPv6; the sandbox's own Policy; accept the rest
//	input:       from a sandbox link: replies only (the host's services
//	             are not the sandbox's)
//	postrouting: masquerade the pool on its way out
func installRules(pool netip.Prefix, ns []netip.Addr) (created bool, err error) {
	// Daemons (and test binaries) starting together on one host must not
	// both find the table missing and both create it.
	c, unlock, err := openLocked()
	if err != nil {
		return false, err
	}
	defer unlock()
	name := TableName(pool, ns)
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("listing nftables tables: %w", err)
	}
	// A table left by another sandpit version would go on filtering
	// sandbox links alongside this one with rules of its time: remove
	// it. Tables of this version for other pools stay (another daemon's);
	// every table filters every sandbox link alike, so none of them
	// going away ever leaves a link unfiltered while this one stands.
	//
	// Because every table filters every link, each must also let DNS
	// through to every daemon's nameservers: a table that knew only its
	// own would reject, as a private address, the resolver of a daemon
	// configured otherwise (a 10.x host resolver beside a test's --dns).
	// So each table holds the union, in its nameservers set: ours go into
	// every table there is, and a new table starts with all of theirs.
	// The Keep loop calls this every few seconds: write only when something
	// is missing, so a settled host sees no nftables commits from it.
	exists, changed := false, false
	union := map[netip.Addr]bool{}
	for _, a := range ns {
		union[a] = true
	}
	for _, t := range tables {
		switch {
		case strings.HasPrefix(t.Name, tablePrefix) && !strings.HasPrefix(t.Name, versionPrefix()):
			c.DelTable(t)
			changed = true
			continue
		case !strings.HasPrefix(t.Name, versionPrefix()):
			continue
		}
		exists = exists || t.Name == name
		set, err := c.GetSetByName(t, nameserverSet)
		if err != nil {
			return false, fmt.Errorf("reading the nameservers of nftables table %s: %w", t.Name, err)
		}
		elems, err := c.GetSetElements(set)
		if err != nil {
			return false, fmt.Errorf("reading the nameservers of nftables table %s: %w", t.Name, err)
		}
		has := map[netip.Addr]bool{}
		for _, el := range elems {
			if a, ok := netip.AddrFromSlice(el.Key); ok {
				union[a.Unmap()], has[a.Unmap()] = true, true
			}
		}
		var missing []netip.Addr
		for _, a := range ns {
			if a.Is4() && !has[a] {
				missing = append(missing, a)
			}
		}
		if len(missing) > 0 {
			if err := c.SetAddElements(set, addrElements(missing)); err != nil {
				return false, fmt.Errorf("adding nameservers to nftables table %s: %w", t.Name, err)
			}
			changed = true
		}
	}
	if exists {
		if !changed {
			return false, nil
		}
		if err := c.Flush(); err != nil {
			return false, fmt.Errorf("adding nameservers to the nftables tables: %w", err)
		}
		return false, nil
	}

	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: name})
	accept := nftables.ChainPolicyAccept
	forward := c.AddChain(&nftables.Chain{
		Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	out := c.AddChain(&nftables.Chain{Name: "sandbox_out", Table: t})
	input := c.AddChain(&nftables.Chain{
		Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	post := c.AddChain(&nftables.Chain{
		Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept,
	})
	rule := func(ch *nftables.Chain, exprs ...[]expr.Any) {
		var all []expr.Any
		for _, e := range exprs {
			all = append(all, e...)
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: all})
	}

	rule(forward, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq), jump("sandbox_out"))
	rule(forward, ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq), replies(), verdict(expr.VerdictAccept))
	rule(forward, ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq), verdict(expr.VerdictDrop))

	rule(out, replies(), verdict(expr.VerdictAccept))
	rule(out, notIPv4(), reject())
	nameservers := &nftables.Set{Table: t, Name: nameserverSet, KeyType: nftables.TypeIPAddr}
	if err := c.AddSet(nameservers, addrElements(slices.Collect(maps.Keys(union)))); err != nil {
		return false, fmt.Errorf("adding the nameservers set: %w", err)
	}
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		rule(out, isIPv4(), []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Lookup{SourceRegister: 1, SetName: nameservers.Name, SetID: nameservers.ID},
		}, l4proto(proto), dport(53), verdict(expr.VerdictAccept))
	}
	for _, p := range append([]netip.Prefix{pool}, Denied...) {
		rule(out, daddrIn(p), reject())
	}
	// A sandbox with a Policy jumps to its own chain, through a map from
	// its link's name; Policy rules can narrow the way out, never widen
	// it past the rules above.
	policies := &nftables.Set{Table: t, Name: policyMap, IsMap: true, KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict}
	if err := c.AddSet(policies, nil); err != nil {
		return false, fmt.Errorf("adding the policy map: %w", err)
	}
	rule(out, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: policies.Name, SetID: policies.ID, DestRegister: 0, IsDestRegSet: true},
	})
	rule(out, verdict(expr.VerdictAccept))

	rule(input, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq), replies(), verdict(expr.VerdictAccept))
	rule(input, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq), reject())

	rule(post, saddrIn(pool), ifname(expr.MetaKeyOIFNAME, expr.CmpOpNeq), []expr.Any{&expr.Masq{}})

	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("installing nftables table %s: %w", name, err)
	}
	return true, nil
}

// lockFile serialises rule installation between processes on a host.
const lockFile = "/run/sandpit-egress.lock"

// openLocked opens nftables under the host lock; the caller calls unlock
// when its changes are in.
func openLocked() (c *nftables.Conn, unlock func(), err error) {
	unlock, err = lockHost()
	if err != nil {
		return nil, nil, err
	}
	c, err = nftables.New()
	if err != nil {
		unlock()
		return nil, nil, fmt.Errorf("opening nftables: %w", err)
	}
	return c, unlock, nil
}

func lockHost() (unlock func(), err error) {
	f, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", lockFile, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", lockFile, err)
	}
	return func() { f.Close() }, nil
}

// ifname matches an interface name that starts with LinkPrefix: a cmp on
// the prefix's bytes alone is how nftables spells "spv*".
func ifname(key expr.MetaKey, op expr.CmpOp) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: []byte(LinkPrefix)},
	}
}

func replies() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{
			SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0),
		},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// ctNew matches the first packet of a connection.
func ctNew() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{
			SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW),
			Xor:  binaryutil.NativeEndian.PutUint32(0),
		},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

func notIPv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

func isIPv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

// daddrIn and saddrIn match IPv4 packets whose destination (source)
// address lies in p.
func daddrIn(p netip.Prefix) []expr.Any { return addrIn(16, p) }
func saddrIn(p netip.Prefix) []expr.Any { return addrIn(12, p) }

func addrIn(offset uint32, p netip.Prefix) []expr.Any {
	p = p.Masked()
	mask := make([]byte, 4)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	network := p.Addr().As4()
	return append(isIPv4(),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: network[:]},
	)
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

func dport(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

// reject answers at once (ICMP administratively prohibited, or its IPv6
// twin), so a blocked connect fails fast instead of timing out.
func reject() []expr.Any {
	return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}}
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func jump(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
}
