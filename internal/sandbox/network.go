package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// Network is E2B's network.allowOut and denyOut for one sandbox, as the
// client gave them: IP addresses, CIDR ranges and, in AllowOut only,
// domain names ("example.com", "*.example.com"). An entry in AllowOut
// gets out even when DenyOut covers it.
type Network struct {
	AllowOut []string
	DenyOut  []string
	// Limits are the sandbox's own bandwidth and connection limits (a
	// sandpit extension at create), within Config.EgressCeiling; zero
	// fields take the runtime's defaults. Updates keep them.
	Limits runtime.EgressLimits
}

// Empty reports whether n narrows nothing: it has no rules (its Limits
// do not count).
func (n *Network) Empty() bool { return n == nil || len(n.AllowOut)+len(n.DenyOut) == 0 }

// limited reports whether n has limits of its own.
func (n *Network) limited() bool { return n != nil && n.Limits != (runtime.EgressLimits{}) }

func (n *Network) clone() *Network {
	if n == nil {
		return nil
	}
	return &Network{AllowOut: slices.Clone(n.AllowOut), DenyOut: slices.Clone(n.DenyOut), Limits: n.Limits}
}

// teamEgress holds n's limits to team t's maximum: asking for more is
// refused, and a limit left to the server's default (def) is set to the
// team's maximum where the default is higher or unbounded. It returns n,
// or a copy of it with the limits set.
func teamEgress(t store.Team, n *Network, def runtime.EgressLimits) (*Network, error) {
	maxRate, maxConns := uint64(max(t.Limits.MaxEgressRate, 0)), t.Limits.MaxEgressConns
	if maxRate == 0 && maxConns == 0 {
		return n, nil
	}
	var l runtime.EgressLimits
	if n != nil {
		l = n.Limits
	}
	switch {
	case maxRate > 0 && l.Rate > maxRate:
		return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf(
			"sandpitNetworkLimits.egressBytesPerSecond %d is over team %q's maximum of %d (max-egress-rate)", l.Rate, t.Name, maxRate))
	case maxConns > 0 && l.Conns > maxConns:
		return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf(
			"sandpitNetworkLimits.maxConnections %d is over team %q's maximum of %d (max-egress-conns)", l.Conns, t.Name, maxConns))
	}
	want := l
	if maxRate > 0 && want.Rate == 0 && (def.Rate == 0 || def.Rate > maxRate) {
		want.Rate = maxRate
	}
	if maxConns > 0 && want.Conns == 0 && (def.Conns == 0 || def.Conns > maxConns) {
		want.Conns = maxConns
	}
	if want == l {
		return n, nil
	}
	c := n.clone()
	if c == nil {
		c = &Network{}
	}
	c.Limits = want
	return c, nil
}

// checkLimits refuses limits past the ceiling (zero fields: none).
func checkLimits(l, ceiling runtime.EgressLimits) error {
	if ceiling.Rate > 0 && l.Rate > ceiling.Rate {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("sandpitNetworkLimits.egressBytesPerSecond %d is over this server's maximum of %d", l.Rate, ceiling.Rate))
	}
	if ceiling.Conns > 0 && l.Conns > ceiling.Conns {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("sandpitNetworkLimits.maxConnections %d is over this server's maximum of %d", l.Conns, ceiling.Conns))
	}
	return nil
}

var allTraffic = netip.MustParsePrefix("0.0.0.0/0")

// policy turns n into the runtime's terms; offline denies everything n
// does not allow, as allowInternetAccess=false does beside a network
// config on E2B. Domain names are allowed in allowOut only, as on E2B:
// a name is matched on what a connection asks for (TLS SNI, HTTP Host),
// which a deny could not hold against a client that leaves it out. IPv6
// entries are accepted and change nothing, since sandboxes have no IPv6
// way out at all. intercept says the sandbox has network rules the
// runtime's proxy applies (Manager.intercepts).
func (n *Network) policy(offline, intercept bool) (runtime.EgressPolicy, error) {
	p := runtime.EgressPolicy{Intercept: intercept}
	if n != nil {
		p.Limits = n.Limits
		var err error
		if p.Allow, p.Names, err = parseRules("allowOut", n.AllowOut, true); err != nil {
			return p, err
		}
		if p.Deny, _, err = parseRules("denyOut", n.DenyOut, false); err != nil {
			return p, err
		}
	}
	if offline {
		p.Deny = append(p.Deny, allTraffic)
	}
	return p, nil
}

// parseRules splits entries into address ranges and domain names; names
// are an error unless namesOK.
func parseRules(field string, entries []string, namesOK bool) ([]netip.Prefix, []string, error) {
	var out []netip.Prefix
	var names []string
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
			if !strings.Contains(s, "/") && strings.ContainsAny(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ*") && !strings.Contains(s, ":") {
				if !namesOK {
					return nil, nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("network.%s: %q is a domain name; domain names are allowed in allowOut only (denyOut takes IP addresses and CIDR ranges; deny everything with 0.0.0.0/0 and allow the names you want)", field, s))
				}
				name, nerr := DomainRule(s)
				if nerr != nil {
					return nil, nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("network.%s: %q: %v", field, s, nerr))
				}
				names = append(names, name)
				continue
			}
			return nil, nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("network.%s: %q is not an IP address, CIDR range or domain name", field, s))
		}
		if p.Addr().Is4() {
			out = append(out, p.Masked())
		}
	}
	return out, names, nil
}

// DomainRule checks an allowOut domain entry and returns its normal form
// (lower case, no trailing dot): a DNS name of letters, digits and
// hyphens, or one with a leading "*." that matches its subdomains at any
// depth. A bare "*" and wildcards elsewhere are refused.
func DomainRule(s string) (string, error) {
	name := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
	host := strings.TrimPrefix(name, "*.")
	if host == "" || len(host) > 253 {
		return "", errors.New("want a domain name such as example.com or *.example.com")
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", errors.New("want a domain name such as example.com or *.example.com")
		}
		for _, c := range label {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
				if c == '*' {
					return "", errors.New("a wildcard is allowed only as the first label (*.example.com)")
				}
				return "", errors.New("want a domain name such as example.com or *.example.com")
			}
		}
	}
	return name, nil
}

// UpdateNetwork replaces a running sandbox's network rules (E2B's PUT
// /sandboxes/{id}/network). allowInternet false denies everything the
// rules do not allow. A sandbox created offline has no way out to narrow
// or widen: that is errdefs.ErrConflict.
func (m *Manager) UpdateNetwork(ctx context.Context, id string, n *Network, allowInternet bool) error {
	m.mu.Lock()
	e, ok := m.sandboxes[id]
	var online, stopped, intercept bool
	if ok {
		// The rules change; the sandbox's own limits stay.
		if old := e.info.Network; old.limited() {
			n = n.clone()
			if n == nil {
				n = &Network{}
			}
			n.Limits = old.Limits
		}
		online = e.info.AllowInternet
		intercept = m.intercepts(e.info.Traffic)
		// Paused keeping its filesystem only, it has no link to apply
		// rules to: its next boot applies what is recorded.
		stopped = e.info.State == StatePaused && e.info.PausedFilesystemOnly
	}
	m.mu.Unlock()
	if !ok {
		return m.count(notFound(id))
	}
	p, err := n.policy(!allowInternet, intercept)
	if err != nil {
		return m.count(err)
	}
	if !online {
		if len(p.Allow)+len(p.Names) == 0 && !allowInternet {
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
		if n.Empty() && !n.limited() {
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
