// Package netproxy is the transparent egress proxy behind sandboxes'
// domain rules (E2B's network.allowOut with names). The egress package
// redirects the outbound TCP of a sandbox whose policy names domains to a
// listener of its own; for each connection the proxy
//
//  1. recovers the destination the sandbox dialled (SO_ORIGINAL_DST);
//  2. unless that address is allowed anyway, reads the name the
//     connection asks for without consuming it: the TLS ClientHello's SNI
//     or the HTTP Host header, on any port;
//  3. on a name the policy allows, dials that NAME itself through the
//     daemon's resolver (the --dns servers), never the address the sandbox
//     chose, and refuses every resolved address the fixed rules refuse
//     (egress.Denied: the host, private and link-local ranges, the sandbox
//     pool) at connect time, so DNS rebinding gets nowhere;
//  4. without a name (or with one the policy does not allow) judges the
//     address alone, as nftables would: Allow wins over Deny;
//  5. relays bytes both ways with io.Copy between *net.TCPConn, which
//     the kernel splices.
//
// A refused connection is closed at once, counted in
// sandpit_netproxy_refused_total{reason}, logged with the sandbox, the
// destination, the name and the rule, and handed to Config.Refused (the
// daemon's audit log).
//
// # Interception hook
//
// Config.Intercept, when set, is called for an allowed connection that
// asked for a name, before the plain relay, with the client connection (its reads replay the
// bytes the proxy peeked first) and a dial func that connects to the
// name under the same checks. It returns handled=true when it served the
// connection itself (TLS interception, header injection); the proxy then
// closes the client's connection, and the hook closes what it dialled.
// With handled=false it must not have read from the client, and the proxy
// relays as usual. Nil means plain relay always.
//
// The hook also sees connections the address alone allows (a sandbox
// with network rules and no names in allowOut is routed here for them):
// those are peeked too, for at most ServerFirstWait, and a protocol where
// the server speaks first (SSH, SMTP) is relayed after that wait, by
// address. Config.Intercepts spares the sandboxes without rules that
// wait. For such connections the hook's dial connects to the name (to
// the addresses of it the policy allows), not to the address dialled.
package netproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/sandpit-dev/sandpit/internal/egress"
)

// InterceptFunc is Config.Intercept: see the package doc.
type InterceptFunc func(ctx context.Context, sandboxID, name string, port int, client net.Conn, dial func(context.Context) (net.Conn, error)) (handled bool, err error)

// Refusal is one refused connection, for the audit trail.
type Refusal struct {
	Sandbox     string
	Destination netip.AddrPort // what the sandbox dialled
	Name        string         // the SNI or Host it asked for; "" when none
	Reason      string         // the metric's label
	Rule        string         // the rule that refused it, for people
}

// Config configures a Proxy. Every field may be zero.
type Config struct {
	// Nameservers answer the proxy's lookups of allowed names (port 53).
	// None: the host's resolver.
	Nameservers []netip.Addr
	// Refuse are address ranges no proxied connection may reach beside
	// egress.Denied: the daemon's sandbox pool.
	Refuse []netip.Prefix
	// Intercept: see the package doc.
	Intercept InterceptFunc
	// Intercepts, when set, tells whether Intercept may handle any
	// connection of a sandbox (it has network rules). For a sandbox it
	// says no to, the proxy peeks only connections whose address does
	// not decide them, so a protocol where the server speaks first does
	// not wait ServerFirstWait. Nil: Intercept may handle any.
	Intercepts func(sandboxID string) bool
	// Refused is told of every refused connection; it must not block.
	Refused func(Refusal)
	Logger  *slog.Logger
	// PeekTimeout bounds the wait for a connection's first bytes when its
	// name decides it. Default 5s.
	PeekTimeout time.Duration
	// ServerFirstWait bounds that wait when the address alone allows
	// the connection and only Intercept wants the name. Default 250ms.
	ServerFirstWait time.Duration
	// MaxConns bounds one sandbox's connections through the proxy at
	// once, whatever its own limit (which nftables counts before the
	// redirect), so no sandbox can hold the daemon's descriptors.
	// Default 4096.
	MaxConns int
	// DialTimeout bounds the connect to the destination. Default 10s.
	DialTimeout time.Duration
}

// Proxy serves the redirected connections of every proxied sandbox. It
// implements egress.Proxy and is safe for concurrent use.
type Proxy struct {
	cfg      Config
	log      *slog.Logger
	resolver *net.Resolver
	refuse   []netip.Prefix
	host     hostAddrs

	refused  *prometheus.CounterVec
	relayed  *prometheus.CounterVec
	setupDur prometheus.Histogram

	mu     sync.Mutex
	routes map[*route]struct{}
	closed bool

	cacheMu sync.Mutex
	cache   map[string]cached // lookups of allowed names

	// originalDst finds what a connection was dialled to; tests replace
	// it where there is no NAT.
	originalDst func(*net.TCPConn) (netip.AddrPort, error)
}

var _ egress.Proxy = (*Proxy)(nil)

// New returns a Proxy.
func New(cfg Config) *Proxy {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PeekTimeout <= 0 {
		cfg.PeekTimeout = 5 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 4096
	}
	if cfg.ServerFirstWait <= 0 {
		cfg.ServerFirstWait = 250 * time.Millisecond
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	p := &Proxy{
		cfg:         cfg,
		log:         cfg.Logger,
		resolver:    resolver(cfg.Nameservers),
		refuse:      append(append([]netip.Prefix(nil), egress.Denied...), cfg.Refuse...),
		originalDst: originalDst,
		routes:      map[*route]struct{}{},
		cache:       map[string]cached{},
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandpit_netproxy_refused_total",
			Help: "Sandbox connections the egress proxy refused, by reason.",
		}, []string{"reason"}),
		relayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandpit_netproxy_connections_total",
			Help: "Sandbox connections the egress proxy relayed, by what allowed them (name or address).",
		}, []string{"by"}),
		setupDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sandpit_netproxy_setup_seconds",
			Help:    "Time from accepting a sandbox connection to relaying it (peek, lookup and connect).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8),
		}),
	}
	return p
}

// Describe implements prometheus.Collector: register the Proxy to serve
// its metrics.
func (p *Proxy) Describe(ch chan<- *prometheus.Desc) {
	p.refused.Describe(ch)
	p.relayed.Describe(ch)
	p.setupDur.Describe(ch)
}

// Collect implements prometheus.Collector.
func (p *Proxy) Collect(ch chan<- prometheus.Metric) {
	p.refused.Collect(ch)
	p.relayed.Collect(ch)
	p.setupDur.Collect(ch)
}

// resolver looks names up at the given servers, or as the host does.
func resolver(ns []netip.Addr) *net.Resolver {
	if len(ns) == 0 {
		return net.DefaultResolver
	}
	var next atomic.Uint32
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			a := ns[int(next.Add(1))%len(ns)]
			var d net.Dialer
			return d.DialContext(ctx, network, netip.AddrPortFrom(a, 53).String())
		},
	}
}

// Serve implements egress.Proxy.
func (p *Proxy) Serve(ln *net.TCPListener, pol egress.Policy) egress.Route {
	ctx, cancel := context.WithCancel(context.Background())
	r := &route{p: p, ln: ln, ctx: ctx, cancel: cancel, conns: map[*net.TCPConn]struct{}{}}
	r.Update(pol)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		r.Close()
		return r
	}
	p.routes[r] = struct{}{}
	p.mu.Unlock()
	r.wg.Add(1)
	go r.accept()
	return r
}

// Close closes every route (see egress.Route's Close) and makes later
// ones closed from the start. Closing twice is fine.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	routes := p.routes
	p.routes = map[*route]struct{}{}
	p.mu.Unlock()
	for r := range routes {
		r.Close()
	}
}

// route is one sandbox's listener and the connections it relays.
type route struct {
	p      *Proxy
	ln     *net.TCPListener
	pol    atomic.Pointer[rules]
	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	conns   map[*net.TCPConn]struct{}
	clients int // the sandbox's side of conns
	closed  bool
	// The sandbox's rate limit, each way, shared by its connections;
	// nil: none.
	rate     uint64
	up, down *rate.Limiter
}

func (r *route) Update(pol egress.Policy) {
	r.pol.Store(newRules(pol))
	r.mu.Lock()
	defer r.mu.Unlock()
	if pol.Limits.Rate == r.rate {
		return
	}
	r.rate, r.up, r.down = pol.Limits.Rate, nil, nil
	if r.rate > 0 {
		burst := int(max(r.rate/10, 64<<10))
		r.up = rate.NewLimiter(rate.Limit(r.rate), burst)
		r.down = rate.NewLimiter(rate.Limit(r.rate), burst)
	}
}

func (r *route) limiters() (up, down *rate.Limiter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.up, r.down
}

func (r *route) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	err := r.ln.Close()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	r.p.mu.Lock()
	delete(r.p.routes, r)
	r.p.mu.Unlock()
	return err
}

// track adds c to the connections Close ends; false when closed already.
func (r *route) track(c *net.TCPConn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

// count is how many connections the route relays or is deciding; the
// sandbox's side of each counts once.
func (r *route) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.clients
}

func (r *route) untrack(c *net.TCPConn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

func (r *route) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.AcceptTCP()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.p.log.Error("egress proxy stopped accepting", "sandbox_id", r.pol.Load().sandbox, "err", err)
			}
			return
		}
		if !r.track(c) {
			c.Close()
			return
		}
		r.mu.Lock()
		r.clients++
		r.mu.Unlock()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer func() {
				r.untrack(c)
				r.mu.Lock()
				r.clients--
				r.mu.Unlock()
			}()
			r.serve(c)
		}()
	}
}

// serve decides one connection and relays it, in stages: admit (where
// was it going, is there room), peek (its name, when that matters),
// decide, intercept or connect, relay.
func (r *route) serve(c *net.TCPConn) {
	start := time.Now()
	pol := r.pol.Load()
	dst, ok := r.admit(c, pol)
	if !ok {
		return
	}
	addrOK, _ := pol.address(dst.Addr())
	hook := r.p.intercepts(pol.sandbox)
	var name string
	var peeked []byte
	if !addrOK || hook {
		name, peeked = r.peek(c, addrOK)
	}
	dial, by, ref := r.decide(pol, dst, name)
	if dial == nil {
		r.refuse(pol, ref)
		return
	}

	if hook && name != "" {
		// The hook gets the name dialled, never the address the sandbox
		// chose, so a sandbox that points a ruled name at its own host
		// (curl --resolve) cannot have the rule's headers sent there.
		// Allowed by address only, the name's addresses must be too.
		hookDial := dial
		if by == "address" {
			hookDial = func(ctx context.Context) (net.Conn, error) { return r.p.dialNameWhere(ctx, name, dst.Port(), pol) }
		}
		client := &replayConn{TCPConn: c, pending: peeked}
		handled, err := r.p.cfg.Intercept(r.ctx, pol.sandbox, name, int(dst.Port()), client, hookDial)
		if handled || err != nil {
			if err != nil {
				r.p.log.Info("egress proxy interception ended", "sandbox_id", pol.sandbox, "name", name, "err", err)
			}
			return
		}
	}

	ctx, cancel := context.WithTimeout(r.ctx, r.p.cfg.DialTimeout)
	up, err := dial(ctx)
	cancel()
	if err != nil {
		ref.Reason, ref.Rule = "dial_failed", err.Error()
		var be *blockedError
		if errors.As(err, &be) {
			ref.Reason, ref.Rule = "resolved_fixed_range", be.Error()
		}
		r.refuse(pol, ref)
		return
	}
	upTCP := up.(*net.TCPConn)
	if !r.track(upTCP) {
		up.Close()
		return
	}
	defer r.untrack(upTCP)
	if len(peeked) > 0 {
		if _, err := upTCP.Write(peeked); err != nil {
			return
		}
	}
	r.p.relayed.WithLabelValues(by).Inc()
	r.p.setupDur.Observe(time.Since(start).Seconds())
	upLim, downLim := r.limiters()
	relay(r.ctx, c, upTCP, upLim, downLim)
}

// admit recovers where c was going and refuses it (returning false)
// when it was not redirected or the sandbox holds too many connections.
func (r *route) admit(c *net.TCPConn, pol *rules) (netip.AddrPort, bool) {
	dst, err := r.p.originalDst(c)
	if err != nil {
		r.refuse(pol, Refusal{Reason: "no_destination", Rule: err.Error()})
		return dst, false
	}
	if dst.String() == c.LocalAddr().String() {
		// Dialled straight at the listener, not redirected: nothing to
		// relay, and no place to hold while a peek waits.
		r.refuse(pol, Refusal{Destination: dst, Reason: "no_destination", Rule: "connected to the proxy itself"})
		return dst, false
	}
	if r.count() > r.p.cfg.MaxConns {
		r.refuse(pol, Refusal{Destination: dst, Reason: "too_many_connections", Rule: fmt.Sprintf("over %d connections through the proxy", r.p.cfg.MaxConns)})
		return dst, false
	}
	return dst, true
}

// peek reads c's name without consuming it (see peekName), waiting
// PeekTimeout for its first bytes, or only ServerFirstWait when its
// address allows it anyway.
func (r *route) peek(c *net.TCPConn, addrOK bool) (name string, peeked []byte) {
	wait := r.p.cfg.PeekTimeout
	if addrOK {
		wait = min(wait, r.p.cfg.ServerFirstWait)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	defer c.SetReadDeadline(time.Time{})
	return peekName(c)
}

// decide judges a connection to dst that asked for name ("" when none):
// it returns how to dial its destination and what allowed it ("name" or
// "address"), or a nil dial and the refusal.
func (r *route) decide(pol *rules, dst netip.AddrPort, name string) (dial func(context.Context) (net.Conn, error), by string, ref Refusal) {
	ref = Refusal{Destination: dst, Name: name}
	if name != "" && pol.match(name) != "" {
		return func(ctx context.Context) (net.Conn, error) { return r.p.dialName(ctx, name, dst.Port()) }, "name", ref
	}
	addrOK, addrRule := pol.address(dst.Addr())
	if !addrOK {
		ref.Reason, ref.Rule = "not_allowed", addrRule
		if name != "" {
			ref.Rule = addrRule + "; the name " + name + " is not in allowOut"
		}
		return nil, "", ref
	}
	if rule := r.p.fixed(dst.Addr()); rule != "" {
		ref.Reason, ref.Rule = "fixed_range", rule
		return nil, "", ref
	}
	return func(ctx context.Context) (net.Conn, error) { return r.p.dial(ctx, dst.String()) }, "address", ref
}

func (r *route) refuse(pol *rules, ref Refusal) {
	ref.Sandbox = pol.sandbox
	r.p.refused.WithLabelValues(ref.Reason).Inc()
	r.p.log.Info("egress proxy refused a connection", "sandbox_id", ref.Sandbox,
		"destination", ref.Destination.String(), "name", ref.Name, "reason", ref.Reason, "rule", ref.Rule)
	if r.p.cfg.Refused != nil {
		r.p.cfg.Refused(ref)
	}
}

// relay copies between the sandbox's connection and the upstream one,
// both ways, until both sides are done, metering each way with its
// limiter (nil: none). io.Copy between two *net.TCPConn splices on
// Linux, and so does io.CopyN.
func relay(ctx context.Context, sandbox, upstream *net.TCPConn, up, down *rate.Limiter) {
	var wg sync.WaitGroup
	wg.Go(func() {
		copyLimited(ctx, upstream, sandbox, up)
		_ = upstream.CloseWrite()
	})
	copyLimited(ctx, sandbox, upstream, down)
	_ = sandbox.CloseWrite()
	wg.Wait()
}

// copyLimited copies src to dst, taking a chunk's worth of tokens from
// lim before each chunk.
func copyLimited(ctx context.Context, dst, src *net.TCPConn, lim *rate.Limiter) {
	if lim == nil {
		_, _ = io.Copy(dst, src)
		return
	}
	chunk := min(lim.Burst(), 64<<10)
	for {
		if err := lim.WaitN(ctx, chunk); err != nil {
			return
		}
		if n, err := io.CopyN(dst, src, int64(chunk)); err != nil || n < int64(chunk) {
			return
		}
	}
}

// blockedError is a resolved address the fixed rules refuse.
type blockedError struct {
	host string
	ip   netip.Addr
	rule string
}

func (e *blockedError) Error() string {
	return fmt.Sprintf("%s resolves to %s, in %s, which no sandbox may reach", e.host, e.ip, e.rule)
}

// fixed returns the fixed range that holds a, or "".
func (p *Proxy) fixed(a netip.Addr) string {
	a = a.Unmap()
	if !a.Is4() {
		return "IPv6 (sandboxes have no IPv6 way out)"
	}
	for _, pf := range p.refuse {
		if pf.Contains(a) {
			return pf.String()
		}
	}
	if p.host.has(a) {
		return "the host's own addresses"
	}
	return ""
}

// dial connects to hostport over IPv4, through the proxy's resolver,
// checking each address just before its socket connects.
func (p *Proxy) dial(ctx context.Context, hostport string) (net.Conn, error) {
	d := net.Dialer{
		Resolver: p.resolver,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("connecting to %s: unexpected address %q", hostport, address)
			}
			if rule := p.fixed(ap.Addr()); rule != "" {
				return &blockedError{host: hostport, ip: ap.Addr().Unmap(), rule: rule}
			}
			return nil
		},
	}
	c, err := d.DialContext(ctx, "tcp4", hostport)
	if err != nil {
		var be *blockedError
		if errors.As(err, &be) {
			return nil, be
		}
		return nil, err
	}
	return c, nil
}

// intercepts reports whether Config.Intercept may want the connections
// of sandbox id.
func (p *Proxy) intercepts(id string) bool {
	return p.cfg.Intercept != nil && (p.cfg.Intercepts == nil || p.cfg.Intercepts(id))
}

// dialName connects to name:port, trying each IPv4 address the proxy's
// resolver gives (from its cache when fresh) in turn; each is checked
// just before its socket connects.
func (p *Proxy) dialName(ctx context.Context, name string, port uint16) (net.Conn, error) {
	return p.dialNameWhere(ctx, name, port, nil)
}

// dialNameWhere is dialName for a name pol does not allow, which gets
// out only to addresses pol allows (nil: any).
func (p *Proxy) dialNameWhere(ctx context.Context, name string, port uint16, pol *rules) (net.Conn, error) {
	addrs, err := p.lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	if pol != nil {
		var ok []netip.Addr
		for _, a := range addrs {
			if allowed, _ := pol.address(a); allowed {
				ok = append(ok, a)
			}
		}
		if len(ok) == 0 {
			return nil, fmt.Errorf("%s resolves to %v, which this sandbox's denyOut refuses", name, addrs)
		}
		addrs = ok
	}
	var first error
	for _, a := range addrs {
		c, err := p.dial(ctx, netip.AddrPortFrom(a, port).String())
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// cacheFor is how long the proxy trusts a lookup. It spares a relayed
// connection the round trip to the resolver that the sandbox made just
// before (Go's resolver does not tell the record's TTL); it cannot be
// abused, since every address is checked when it is dialled.
const cacheFor = 5 * time.Second

type cached struct {
	addrs []netip.Addr
	until time.Time
}

// lookup resolves name to IPv4 addresses.
func (p *Proxy) lookup(ctx context.Context, name string) ([]netip.Addr, error) {
	p.cacheMu.Lock()
	c, ok := p.cache[name]
	p.cacheMu.Unlock()
	if ok && time.Now().Before(c.until) {
		return c.addrs, nil
	}
	addrs, err := p.resolver.LookupNetIP(ctx, "ip4", name)
	if err != nil {
		return nil, fmt.Errorf("looking up %s: %w", name, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("looking up %s: no IPv4 address", name)
	}
	p.cacheMu.Lock()
	now := time.Now()
	if len(p.cache) > 4096 { // sweep rather than grow without bound
		for k, v := range p.cache {
			if now.After(v.until) {
				delete(p.cache, k)
			}
		}
	}
	p.cache[name] = cached{addrs: addrs, until: now.Add(cacheFor)}
	p.cacheMu.Unlock()
	return addrs, nil
}

// originalDst reads SO_ORIGINAL_DST: where the connection went before
// the redirect.
func originalDst(c *net.TCPConn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var ap netip.AddrPort
	var serr error
	err = rc.Control(func(fd uintptr) {
		var m *unix.IPv6Mreq
		m, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if serr != nil {
			return
		}
		// A sockaddr_in: family, port (big endian), address.
		b := m.Multiaddr
		ap = netip.AddrPortFrom(netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]}), uint16(b[2])<<8|uint16(b[3]))
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("reading the original destination: %w", err)
	}
	return ap, nil
}

// replayConn reads the peeked bytes before the connection's own.
type replayConn struct {
	*net.TCPConn
	pending []byte
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.TCPConn.Read(b)
}
