package sandbox

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
)

// Network is E2B's network.allowOut and denyOut for one sandbox, as the
// client gave them: IP addresses and CIDR ranges. An address in AllowOut
// gets out even when DenyOut covers it.
type Network struct {
	AllowOut []string
	DenyOut  []string
}

// Empty reports whether n narrows nothing.
func (n *Network) Empty() bool { return n == nil || len(n.AllowOut)+len(n.DenyOut) == 0 }

func (n *Network) clone() *Network {
	if n == nil {
		return nil
	}
	return &Network{AllowOut: slices.Clone(n.AllowOut), DenyOut: slices.Clone(n.DenyOut)}
}

var allTraffic = netip.MustParsePrefix("0.0.0.0/0")

// policy turns n into the runtime's terms; offline denies everything n
// does not allow, as allowInternetAccess=false does beside a network
// config on E2B. Domain names are refused: sandpit filters by address
// only. IPv6 entries are accepted and change nothing, since sandboxes
// have no IPv6 way out at all.
func (n *Network) policy(offline bool) (runtime.EgressPolicy, error) {
	var p runtime.EgressPolicy
	if n != nil {
		var err error
		if p.Allow, err = prefixes("allowOut", n.AllowOut); err != nil {
			return p, err
		}
		if p.Deny, err = prefixes("denyOut", n.DenyOut); err != nil {
			return p, err
		}
	}
	if offline {
		p.Deny = append(p.Deny, allTraffic)
	}
	return p, nil
}

func prefixes(field string, entries []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range entries {
		s = strings.TrimSpace(s)
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			if strings.ContainsAny(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ*") && !strings.Contains(s, ":") {
				return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("network.%s: %q is a domain name; sandpit filters by IP address and CIDR range only", field, s))
			}
			return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("network.%s: %q is not an IP address or CIDR range", field, s))
		}
		if p.Addr().Is4() {
			out = append(out, p.Masked())
		}
	}
	return out, nil
}

// UpdateNetwork replaces a running sandbox's network rules (E2B's PUT
// /sandboxes/{id}/network). allowInternet false denies everything the
// rules do not allow. A sandbox created offline has no way out to narrow
// or widen: that is errdefs.ErrConflict.
func (m *Manager) UpdateNetwork(ctx context.Context, id string, n *Network, allowInternet bool) error {
	m.mu.Lock()
	e, ok := m.sandboxes[id]
	var online, stopped bool
	if ok {
		online = e.info.AllowInternet
		// Paused keeping its filesystem only, it has no link to apply
		// rules to: its next boot applies what is recorded.
		stopped = e.info.State == StatePaused && e.info.PausedFilesystemOnly
	}
	m.mu.Unlock()
	if !ok {
		return m.count(notFound(id))
	}
	p, err := n.policy(!allowInternet)
	if err != nil {
		return m.count(err)
	}
	if !online {
		if len(p.Allow) == 0 && !allowInternet {
			return nil // offline already
		}
		return m.count(errdefs.New(errdefs.ErrConflict, fmt.Sprintf("sandbox %s was created without internet access; create it with allowInternetAccess true to change its network rules", id)))
	}
	setter, ok := m.rt.(runtime.EgressSetter)
	if !ok {
		return m.count(errdefs.New(errdefs.ErrUnavailable, "this runtime cannot change network rules of a running sandbox"))
	}
	if !stopped {
		if err := setter.SetEgress(ctx, id, p); err != nil {
			return m.count(err)
		}
	}
	var stored *Network
	m.mu.Lock()
	if e, ok := m.sandboxes[id]; ok {
		e.info.Network = n.clone()
		if n.Empty() {
			e.info.Network = nil
		}
		e.info.InternetBlocked = !allowInternet
		stored = e.info.Network
	}
	m.mu.Unlock()
	// A restarted daemon applies the recorded rules again.
	if err := m.store.SetSandboxNetwork(ctx, id, storedNetwork(stored), !allowInternet); err != nil {
		m.log.WarnContext(ctx, "recording sandbox network rules", "sandbox_id", id, "err", err)
	}
	return nil
}
