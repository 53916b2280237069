package netproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sandpit-dev/sandpit/internal/egress"
)

func TestMatch(t *testing.T) {
	r := newRules(egress.Policy{Names: []string{"example.com", "*.github.com", "*.api.github.com", "pypi.org."}})
	for name, want := range map[string]string{
		"example.com":         "example.com",
		"EXAMPLE.com.":        "example.com",
		"www.example.com":     "",
		"github.com":          "",
		"api.github.com":      "*.github.com",
		"a.b.github.com":      "*.github.com",
		"x.api.github.com":    "*.api.github.com",
		"evilgithub.com":      "",
		"github.com.evil.net": "",
		"pypi.org":            "pypi.org",
		"":                    "",
	} {
		if got := r.match(name); got != want {
			t.Errorf("match(%q) = %q, want %q", name, got, want)
		}
	}
	r = newRules(egress.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("192.0.2.7/32")}, Deny: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}})
	if ok, rule := r.address(netip.MustParseAddr("192.0.2.7")); !ok || rule != "allowOut 192.0.2.7/32" {
		t.Errorf("allowed address: %v %q", ok, rule)
	}
	if ok, rule := r.address(netip.MustParseAddr("192.0.2.8")); ok || rule != "denyOut 0.0.0.0/0" {
		t.Errorf("denied address: %v %q", ok, rule)
	}
}

func TestPeekName(t *testing.T) {
	t.Run("tls", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		go func() {
			_ = tls.Client(a, &tls.Config{ServerName: "api.example.com", InsecureSkipVerify: true}).Handshake()
		}()
		name, peeked := peekName(b)
		if name != "api.example.com" || len(peeked) < 100 || peeked[0] != 0x16 {
			t.Fatalf("name %q, %d bytes peeked", name, len(peeked))
		}
	})
	t.Run("http", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		req := "GET / HTTP/1.1\r\nUser-Agent: x\r\nhOsT: Example.com:8080\r\n\r\n"
		go func() { _, _ = io.WriteString(a, req) }()
		name, peeked := peekName(b)
		if name != "Example.com" || string(peeked) != req {
			t.Fatalf("name %q, peeked %q", name, peeked)
		}
	})
	t.Run("neither", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		go func() { _, _ = io.WriteString(a, "SSH-2.0-OpenSSH\r\n") }()
		if name, peeked := peekName(b); name != "" || string(peeked) != "SSH-2.0-OpenSSH\r\n" {
			t.Fatalf("name %q, peeked %q", name, peeked)
		}
	})
}

// harness serves a Proxy route on loopback; the original destination of
// every connection is dst, as if NAT had redirected it.
type harness struct {
	p     *Proxy
	route egress.Route
	addr  string
	reg   *prometheus.Registry
	refs  chan Refusal
}

func newHarness(t *testing.T, pol egress.Policy, dst netip.AddrPort, refuse []netip.Prefix, intercept InterceptFunc, tweaks ...func(*Proxy)) *harness {
	t.Helper()
	h := &harness{reg: prometheus.NewRegistry(), refs: make(chan Refusal, 16)}
	p := New(Config{PeekTimeout: 2 * time.Second, Intercept: intercept, Refused: func(r Refusal) { h.refs <- r }})
	h.reg.MustRegister(p)
	// Loopback stands in for the internet here, unless refuse holds it.
	p.refuse = refuse
	p.host.addrs, p.host.read = map[netip.Addr]bool{}, time.Now().Add(time.Hour)
	p.originalDst = func(*net.TCPConn) (netip.AddrPort, error) { return dst, nil }
	for _, tw := range tweaks {
		tw(p)
	}
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	h.p, h.addr = p, ln.Addr().String()
	h.route = p.Serve(ln, pol)
	t.Cleanup(func() { h.route.Close() })
	return h
}

// get sends a GET with host through the proxy and returns the body, or
// the error when the proxy closed the connection.
func (h *harness) get(host string) (string, error) {
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func upstream(t *testing.T) netip.AddrPort {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream saw %s", r.Host)
	}))
	t.Cleanup(srv.Close)
	return netip.MustParseAddrPort(strings.TrimPrefix(srv.URL, "http://"))
}

func TestProxyByName(t *testing.T) {
	up := upstream(t)
	// The sandbox dialled an address the policy denies; its request
	// names an allowed host, which the proxy dials itself.
	denied := netip.AddrPortFrom(netip.MustParseAddr("203.0.113.9"), up.Port())
	h := newHarness(t, egress.Policy{Sandbox: "sb1", Names: []string{"localhost"}, Deny: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}, denied, nil, nil)
	body, err := h.get(fmt.Sprintf("localhost:%d", up.Port()))
	if err != nil || body != fmt.Sprintf("upstream saw localhost:%d", up.Port()) {
		t.Fatalf("allowed name: %q %v", body, err)
	}
	// Another name is judged by the address, which is denied.
	if body, err := h.get("example.org"); err == nil {
		t.Fatalf("a name outside allowOut got %q", body)
	}
	ref := <-h.refs
	if ref.Sandbox != "sb1" || ref.Reason != "not_allowed" || ref.Name != "example.org" || ref.Destination != denied || !strings.Contains(ref.Rule, "denyOut 0.0.0.0/0") {
		t.Errorf("refusal %+v", ref)
	}
	if n := testutil.ToFloat64(h.p.refused.WithLabelValues("not_allowed")); n != 1 {
		t.Errorf("refused{not_allowed} = %v", n)
	}
	if n := testutil.ToFloat64(h.p.relayed.WithLabelValues("name")); n != 1 {
		t.Errorf("relayed{name} = %v", n)
	}

	// An update closes the name for new connections.
	h.route.Update(egress.Policy{Sandbox: "sb1", Names: []string{"*.localhost"}, Deny: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}})
	if body, err := h.get("localhost"); err == nil {
		t.Fatalf("a closed name got %q", body)
	}
}

func TestProxyRefusesFixedRangesAfterResolution(t *testing.T) {
	up := upstream(t)
	dst := netip.AddrPortFrom(netip.MustParseAddr("203.0.113.9"), up.Port())
	h := newHarness(t, egress.Policy{Sandbox: "sb2", Names: []string{"localhost"}, Deny: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}},
		dst, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil)
	if body, err := h.get("localhost"); err == nil {
		t.Fatalf("a name resolving to loopback got %q", body)
	}
	ref := <-h.refs
	if ref.Reason != "resolved_fixed_range" || !strings.Contains(ref.Rule, "127.0.0.1") {
		t.Errorf("refusal %+v", ref)
	}
}

func TestProxyByAddress(t *testing.T) {
	up := upstream(t)
	// Allowed by address: relayed to the address, whatever the name.
	h := newHarness(t, egress.Policy{Sandbox: "sb3", Names: []string{"example.com"}, Allow: []netip.Prefix{netip.PrefixFrom(up.Addr(), 32)}, Deny: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}, up, nil, nil)
	if body, err := h.get("anything.test"); err != nil || body != "upstream saw anything.test" {
		t.Fatalf("allowed address: %q %v", body, err)
	}
	// An address in a fixed range is refused even when allowed.
	h = newHarness(t, egress.Policy{Sandbox: "sb3", Names: []string{"example.com"}, Allow: []netip.Prefix{netip.PrefixFrom(up.Addr(), 32)}, Deny: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}, up, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil)
	if body, err := h.get("x"); err == nil {
		t.Fatalf("fixed range got %q", body)
	}
	if ref := <-h.refs; ref.Reason != "fixed_range" {
		t.Errorf("refusal %+v", ref)
	}
	// The host's own addresses are refused, whatever the rules say.
	h = newHarness(t, egress.Policy{Sandbox: "sb3", Allow: []netip.Prefix{netip.PrefixFrom(up.Addr(), 32)}, Deny: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}, up, nil, nil)
	h.p.host.mu.Lock()
	h.p.host.read = time.Time{}
	h.p.host.mu.Unlock()
	if body, err := h.get("x"); err == nil {
		t.Fatalf("the host's own address got %q", body)
	}
	if ref := <-h.refs; ref.Reason != "fixed_range" || ref.Rule != "the host's own addresses" {
		t.Errorf("refusal %+v", ref)
	}
}

func TestProxyIntercept(t *testing.T) {
	up := upstream(t)
	dst := netip.AddrPortFrom(netip.MustParseAddr("203.0.113.9"), up.Port())
	type call struct {
		sandbox, name string
		port          int
	}
	calls := make(chan call, 1)
	intercept := func(ctx context.Context, sandboxID, name string, port int, client net.Conn, dial func(context.Context) (net.Conn, error)) (bool, error) {
		calls <- call{sandboxID, name, port}
		upc, err := dial(ctx)
		if err != nil {
			return true, err
		}
		defer upc.Close()
		// Rewrite the request's first line's host header: read it whole.
		req, err := http.ReadRequest(bufio.NewReader(client))
		if err != nil {
			return true, err
		}
		req.Header.Set("X-Injected", "yes")
		req.Host = "rewritten"
		if err := req.Write(upc); err != nil {
			return true, err
		}
		_, err = io.Copy(client, upc)
		return true, err
	}
	h := newHarness(t, egress.Policy{Sandbox: "sb4", Names: []string{"localhost"}, Deny: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}, dst, nil, intercept)
	body, err := h.get("localhost")
	if err != nil || body != "upstream saw rewritten" {
		t.Fatalf("intercepted: %q %v", body, err)
	}
	if c := <-calls; c != (call{"sb4", "localhost", int(up.Port())}) {
		t.Errorf("intercept called with %+v", c)
	}
}

func TestRouteCloseEndsConnections(t *testing.T) {
	// An upstream that never answers keeps the relay open.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	dst := netip.MustParseAddrPort(ln.Addr().String())
	h := newHarness(t, egress.Policy{Sandbox: "sb5", Allow: []netip.Prefix{netip.PrefixFrom(dst.Addr(), 32)}, Deny: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}, dst, nil, nil)
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "hello")
	done := make(chan error, 1)
	go func() { done <- h.route.Close() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not end the relay")
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the client connection is still open after Close")
	}
}

func TestProxyRateLimit(t *testing.T) {
	const size = 512 << 10
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, size))
	}))
	defer srv.Close()
	up := netip.MustParseAddrPort(strings.TrimPrefix(srv.URL, "http://"))
	pol := egress.Policy{Sandbox: "sb6", Allow: []netip.Prefix{netip.PrefixFrom(up.Addr(), 32)}, Deny: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")},
		Limits: egress.Limits{Rate: 128 << 10}}
	h := newHarness(t, pol, up, nil, nil)
	start := time.Now()
	body, err := h.get("x")
	if err != nil || len(body) != size {
		t.Fatalf("got %d bytes, %v", len(body), err)
	}
	// 512 KiB at 128 KiB/s with a 64 KiB burst: at least 3.5 s. Only the
	// lower bound is checked: a loaded machine may be slower still.
	if took := time.Since(start); took < 3*time.Second {
		t.Errorf("512 KiB took %v at 128 KiB/s", took)
	}
}

// With Intercept set, a connection the address allows is still peeked,
// but a protocol where the server speaks first goes through after
// ServerFirstWait, by address.
func TestProxyServerFirstWithIntercept(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "SSH-2.0-test\r\n")
			c.Close()
		}
	}()
	dst := netip.MustParseAddrPort(ln.Addr().String())
	called := make(chan string, 1)
	intercept := func(ctx context.Context, sandboxID, name string, port int, client net.Conn, dial func(context.Context) (net.Conn, error)) (bool, error) {
		called <- name
		return false, nil
	}
	h := newHarness(t, egress.Policy{Sandbox: "sb7", Names: []string{"example.com"}, Allow: []netip.Prefix{netip.PrefixFrom(dst.Addr(), 32)}, Deny: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}, dst, nil, intercept)
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	banner, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || banner != "SSH-2.0-test\r\n" {
		t.Fatalf("banner %q, %v", banner, err)
	}
	select {
	case name := <-called:
		t.Errorf("Intercept called for a connection without a name (%q)", name)
	default:
	}
}

// A connection made straight to the proxy's listener (not redirected) is
// refused at once, and so is one past MaxConns.
func TestProxyRefusesDirectAndTooMany(t *testing.T) {
	pol := egress.Policy{Sandbox: "sb8", Names: []string{"example.com"}, Deny: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}
	h := newHarness(t, pol, netip.AddrPort{}, nil, nil, func(p *Proxy) {
		p.originalDst = func(c *net.TCPConn) (netip.AddrPort, error) {
			return netip.MustParseAddrPort(c.LocalAddr().String()), nil // not NATed
		}
	})
	if body, err := h.get("example.com"); err == nil {
		t.Fatalf("a connection to the listener itself got %q", body)
	}
	if r := <-h.refs; r.Reason != "no_destination" {
		t.Errorf("refusal %+v", r)
	}

	// Past MaxConns: two connections held in their peek, a third refused.
	dst := netip.MustParseAddrPort("203.0.113.9:80")
	h = newHarness(t, pol, dst, nil, nil, func(p *Proxy) { p.cfg.MaxConns = 2 })
	for range 2 {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	deadline := time.Now().Add(20 * time.Second)
	for h.route.(*route).count() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if body, err := h.get("example.com"); err == nil {
		t.Fatalf("a third connection got %q", body)
	}
	if r := <-h.refs; r.Reason != "too_many_connections" {
		t.Errorf("refusal %+v", r)
	}
}

// A sandbox with network rules and no names (allow-all) is routed here
// for its rules: the hook sees connections the address allows, and its
// dial goes to the name, never to the address the sandbox chose, and only
// where denyOut lets the name's addresses out.
func TestProxyInterceptAllowedByAddress(t *testing.T) {
	up := upstream(t)
	called := make(chan string, 2)
	intercept := func(ctx context.Context, sandboxID, name string, port int, client net.Conn, dial func(context.Context) (net.Conn, error)) (bool, error) {
		called <- sandboxID + " " + name
		upc, err := dial(ctx)
		if err != nil {
			return true, err
		}
		defer upc.Close()
		req, err := http.ReadRequest(bufio.NewReader(client))
		if err != nil {
			return true, err
		}
		req.Host = "rewritten"
		if err := req.Write(upc); err != nil {
			return true, err
		}
		_, err = io.Copy(client, upc)
		return true, err
	}
	// The sandbox dialled an address where nothing listens: relayed by
	// address, the request would fail.
	nowhere := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), up.Port())
	h := newHarness(t, egress.Policy{Sandbox: "sb8", Intercept: true}, nowhere, nil, intercept)
	body, err := h.get("localhost")
	if err != nil || body != "upstream saw rewritten" {
		t.Fatalf("allow-all with rules: %q %v", body, err)
	}
	if c := <-called; c != "sb8 localhost" {
		t.Errorf("intercept called for %q", c)
	}

	// denyOut holds for the name's addresses too.
	h.route.Update(egress.Policy{Sandbox: "sb8", Intercept: true, Deny: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	if body, err := h.get("localhost"); err == nil {
		t.Fatalf("a name resolving into denyOut got %q", body)
	}
	<-called
}

// The proxy asks Config.Intercepts first: a sandbox without rules whose
// connection the address allows is not peeked, so a server that speaks
// first is answered at once, not after the peek's wait.
func TestProxyNoPeekWithoutRules(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "SSH-2.0-test\r\n")
			c.Close()
		}
	}()
	dst := netip.MustParseAddrPort(ln.Addr().String())
	intercept := func(ctx context.Context, sandboxID, name string, port int, client net.Conn, dial func(context.Context) (net.Conn, error)) (bool, error) {
		return false, nil
	}
	asked := make(chan string, 4)
	slowPeek := func(p *Proxy) {
		p.cfg.PeekTimeout, p.cfg.ServerFirstWait = time.Hour, time.Hour
		p.cfg.Intercepts = func(id string) bool { asked <- id; return false }
	}
	h := newHarness(t, egress.Policy{Sandbox: "sb9", Names: []string{"example.com"}, Allow: []netip.Prefix{netip.PrefixFrom(dst.Addr(), 32)}, Deny: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}, dst, nil, intercept, slowPeek)
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Far below the hour a peek would wait, far above any load.
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	banner, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || banner != "SSH-2.0-test\r\n" {
		t.Fatalf("banner %q, %v", banner, err)
	}
	if id := <-asked; id != "sb9" {
		t.Errorf("Intercepts asked about %q", id)
	}
}
