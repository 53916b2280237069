// Package safedial dials only addresses on the public internet, for
// connections the daemon makes on a client's behalf (image pulls). A
// client that names a registry must not make the daemon, which runs on the
// host outside every sandbox's network rules, reach the host's own
// services, its private networks or a cloud metadata endpoint.
//
// The check runs at dial time, on the address the socket is about to
// connect to (net.Dialer.Control), after name resolution: a name that
// resolves to a public address when checked and a private one when used
// (DNS rebinding), a redirect to another host, and a token endpoint named
// by a registry are all covered, because every connection goes through it.
//
// Operators name exceptions (an in-cluster registry, a test registry on
// loopback) with an allow-list of HOST or HOST:PORT entries; a dial to an
// allowed host:port is not checked.
package safedial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// blocked lists the address ranges the daemon does not connect to for a
// client, each with the rule a refusal names. Order matters only for the
// name reported: the first match wins.
var blocked = []struct {
	prefix netip.Prefix
	rule   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified/this-network"}, // Linux connects 0.0.0.0 to the host itself
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared/carrier-grade NAT"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local/cloud metadata"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment"}, // includes NAT64/DS-Lite host addresses
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},            // used inside some clouds for internal services
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"}, // includes the broadcast address
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("fc00::/7"), "unique-local"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"}, // deprecated, still routed privately
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// Rule returns the rule that forbids connecting to ip, or "" when ip is a
// public address. IPv4 addresses written as IPv6 (::ffff:a.b.c.d) are
// judged as IPv4.
func Rule(ip netip.Addr) string {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return "invalid"
	}
	for _, b := range blocked {
		if b.prefix.Contains(ip) {
			return b.rule
		}
	}
	return ""
}

// BlockedError is a connection the dialer refused. It matches
// errdefs.ErrInvalidArgument: the client named a registry the server
// may not reach.
type BlockedError struct {
	Host string     // the host:port the client's request named
	IP   netip.Addr // the address it resolved to
	Rule string     // why that address is refused
}

func (e *BlockedError) Error() string {
	return fmt.Sprintf("refusing to connect to %s: it resolves to %s, in the %s range, and this server does not fetch from the host's own or private networks (start `sandpit serve` with --insecure-registry %s to allow it)",
		e.Host, e.IP, e.Rule, e.Host)
}

func (e *BlockedError) Unwrap() error { return errdefs.ErrInvalidArgument }

// Dialer dials public addresses, and those of allowed hosts. Its zero value
// allows nothing but public addresses. It is safe for concurrent use.
type Dialer struct {
	allow map[string]bool // "host" (any port) or "host:port", lower case
}

// New returns a Dialer that also connects, unchecked, to the hosts in
// allow, each "HOST" (any port) or "HOST:PORT".
func New(allow []string) (*Dialer, error) {
	d := &Dialer{allow: map[string]bool{}}
	for _, a := range allow {
		key, err := ParseAllow(a)
		if err != nil {
			return nil, err
		}
		d.allow[key] = true
	}
	return d, nil
}

// ParseAllow checks an allow-list entry, "HOST" or "HOST:PORT" (an IPv6
// host in brackets when it has a port), and returns its normal form.
func ParseAllow(a string) (string, error) {
	a = strings.ToLower(strings.TrimSpace(a))
	if a == "" || strings.ContainsAny(a, "/ @?#") {
		return "", fmt.Errorf("allowed registry %q: want HOST or HOST:PORT", a)
	}
	if host, port, err := net.SplitHostPort(a); err == nil {
		if host == "" || port == "" {
			return "", fmt.Errorf("allowed registry %q: want HOST or HOST:PORT", a)
		}
		return net.JoinHostPort(host, port), nil
	}
	return strings.Trim(a, "[]"), nil
}

// Allowed reports whether hostport (as in a URL: "host:port") is on the
// allow-list, by host and port or by host alone.
func (d *Dialer) Allowed(hostport string) bool {
	if d == nil {
		return false
	}
	hostport = strings.ToLower(hostport)
	if d.allow[hostport] {
		return true
	}
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return d.allow[strings.Trim(hostport, "[]")]
	}
	return d.allow[host]
}

// DialContext connects to addr ("host:port") unless it resolves to an
// address that Rule forbids and addr is not allowed. Every address the
// name resolves to is tried in turn (as net.Dialer does), each checked
// just before its socket connects.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	if !d.Allowed(addr) {
		nd.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("connecting to %s: unexpected address %q", addr, address)
			}
			if rule := Rule(ap.Addr()); rule != "" {
				return &BlockedError{Host: addr, IP: ap.Addr().Unmap(), Rule: rule}
			}
			return nil
		}
	}
	conn, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		// net.Dialer reports the first address's error when all fail;
		// surface a refusal as itself, not as a generic dial error.
		var be *BlockedError
		if errors.As(err, &be) {
			return nil, be
		}
		return nil, err
	}
	return conn, nil
}

// Transport returns an HTTP transport whose every connection goes through
// d. It uses no proxy: a proxy would make the connection on the daemon's
// behalf and the check would see only the proxy's address.
func (d *Dialer) Transport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   50,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}
