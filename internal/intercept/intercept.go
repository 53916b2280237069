// Package intercept injects headers into a sandbox's outgoing HTTP and
// HTTPS requests on the daemon's side (E2B's network rules with
// transforms), so that credentials such as `Authorization: Bearer
// <secret>` reach the API they are for and never enter the sandbox.
//
// The egress proxy (internal/netproxy) hands Intercept each connection
// whose name it matched. When the sandbox's rules name the host,
// Intercept serves the connection itself: for TLS it terminates the
// sandbox's TLS with a leaf certificate for the name, signed by a
// per-daemon CA the sandbox was given to trust, reads each HTTP/1.1
// request, sets the rule's headers (secrets resolved at that moment,
// replacing any the sandbox sent), and forwards it to the real upstream
// over TLS verified against the host's roots (plus an operator's extra
// CA). Plain HTTP is handled the same way without the TLS. Hosts no rule
// names are not touched: they are relayed as bytes.
//
// The trade: for the named hosts the daemon sees the requests in the
// clear, and the sandbox trusts a CA whose key is on the daemon's host.
// A sandbox cannot use the CA for anything but talking to the daemon's
// interception (the key never enters it), and it sees the certificates
// the daemon mints, not the upstream's. See the README's security model.
package intercept

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Transforms is what Intercept needs to know of sandboxes' rules.
type Transforms interface {
	// Intercepts reports whether the rules of sandboxID name host, so its
	// connections to host are served by Intercept. Asked once per
	// connection before anything is read: it must be cheap and open no
	// secret.
	Intercepts(sandboxID, host string) bool
	// Headers returns the headers to set on one request of sandboxID to
	// host, secrets resolved. An error refuses the request (502 to the
	// sandbox) rather than sending it on without them.
	Headers(ctx context.Context, sandboxID, host string) (http.Header, error)
}

// Config configures an Interceptor. DataDir and Transforms are required.
type Config struct {
	// DataDir holds the CA (CAKeyFile, CACertFile), made on first use.
	DataDir    string
	Transforms Transforms
	// UpstreamCAFile, when set, names a PEM file of CA certificates
	// trusted for upstreams besides the host's roots (serve
	// --intercept-upstream-ca).
	UpstreamCAFile string
	Logger         *slog.Logger
}

// Interceptor serves the connections of sandboxes whose rules name their
// destination. It is safe for concurrent use.
type Interceptor struct {
	ca    *ca
	rules Transforms
	roots *x509.CertPool
	log   *slog.Logger
	now   func() time.Time
}

// Limits on what a sandbox may send through the interception.
const (
	maxHeaderBytes = 1 << 20
	idleTimeout    = 2 * time.Minute
	handshakeLimit = 30 * time.Second
)

// New returns an Interceptor, making its CA in cfg.DataDir on first use.
func New(cfg Config) (*Interceptor, error) {
	if cfg.DataDir == "" || cfg.Transforms == nil {
		return nil, errors.New("intercept.New: DataDir and Transforms are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, err := loadCA(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if cfg.UpstreamCAFile != "" {
		pemData, err := os.ReadFile(cfg.UpstreamCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the upstream CA file: %w", err)
		}
		if !roots.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("the upstream CA file %s holds no PEM certificate", cfg.UpstreamCAFile)
		}
	}
	return &Interceptor{ca: c, rules: cfg.Transforms, roots: roots, log: log, now: time.Now}, nil
}

// CACertPEM is the CA certificate sandboxes with rules trust.
func (i *Interceptor) CACertPEM() []byte { return i.ca.certPEM }

// Intercept serves client, a sandbox's connection to name:port, when the
// sandbox's rules name name; handled is false (and nothing was read) when
// they do not. dial connects to the verified upstream. Its signature is
// netproxy's InterceptFunc. The caller closes client afterwards; so does
// Intercept.
func (i *Interceptor) Intercept(ctx context.Context, sandboxID, name string, port int, client net.Conn, dial func(context.Context) (net.Conn, error)) (handled bool, err error) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if !i.rules.Intercepts(sandboxID, name) {
		return false, nil
	}
	defer client.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The connection ends with ctx (a daemon stopping, a sandbox killed).
	stop := context.AfterFunc(ctx, func() { client.Close() })
	defer stop()

	br := bufio.NewReader(client)
	first, err := br.Peek(1)
	if err != nil {
		return true, fmt.Errorf("reading from sandbox %s: %w", sandboxID, err)
	}
	s := &session{i: i, sandboxID: sandboxID, name: name, port: port, dial: dial}
	var in net.Conn = &readerConn{Conn: client, r: br}
	if first[0] == 0x16 { // a TLS handshake record
		tc := tls.Server(in, &tls.Config{
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return i.ca.leaf(name, i.now())
			},
			// HTTP/1.1 only: the requests are read and rewritten here.
			NextProtos: []string{"http/1.1"},
			MinVersion: tls.VersionTLS12,
		})
		hctx, hcancel := context.WithTimeout(ctx, handshakeLimit)
		err := tc.HandshakeContext(hctx)
		hcancel()
		if err != nil {
			return true, fmt.Errorf("TLS handshake with sandbox %s for %s: %w", sandboxID, name, err)
		}
		in, s.tls = tc, true
	}
	defer s.close()
	return true, s.serve(ctx, in)
}

// session is one intercepted connection: the sandbox's side, and the
// upstream's, dialed on the first request.
type session struct {
	i         *Interceptor
	sandboxID string
	name      string
	port      int
	tls       bool
	dial      func(context.Context) (net.Conn, error)

	up   net.Conn
	upBr *bufio.Reader
}

func (s *session) close() {
	if s.up != nil {
		s.up.Close()
	}
}

// serve reads requests from the sandbox until it closes, forwarding each
// with the rule's headers.
func (s *session) serve(ctx context.Context, in net.Conn) error {
	// The header limit applies while a request's head is read, not to
	// its body.
	lr := &io.LimitedReader{R: in, N: maxHeaderBytes}
	br := bufio.NewReader(lr)
	for {
		lr.N = maxHeaderBytes
		_ = in.SetReadDeadline(time.Now().Add(idleTimeout))
		req, err := http.ReadRequest(br)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("reading a request of sandbox %s to %s: %w", s.sandboxID, s.name, err)
		}
		lr.N = math.MaxInt64
		_ = in.SetReadDeadline(time.Time{})
		keep, err := s.forward(ctx, in, br, req)
		if err != nil || !keep {
			return err
		}
	}
}

// forward sends one request upstream and its response back; keep is
// false when the connection ends with it.
func (s *session) forward(ctx context.Context, in net.Conn, inBr *bufio.Reader, req *http.Request) (keep bool, err error) {
	defer req.Body.Close()
	// Only requests for the name the connection was matched on get the
	// headers: a Host naming another site on the same connection goes on
	// untouched, to the same verified upstream.
	host := req.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), s.name) {
		hdr, err := s.i.rules.Headers(ctx, s.sandboxID, s.name)
		if err != nil {
			s.i.log.Warn("resolving the headers of a network rule", "sandbox_id", s.sandboxID, "name", s.name, "err", err)
			writeError(in, http.StatusBadGateway, "sandpit: the network rule for "+s.name+" could not be applied")
			return false, nil
		}
		for k, v := range hdr {
			req.Header[http.CanonicalHeaderKey(k)] = v
		}
	}
	if s.up == nil {
		if err := s.connect(ctx); err != nil {
			s.i.log.Info("connecting to an intercepted upstream", "sandbox_id", s.sandboxID, "name", s.name, "err", err)
			writeError(in, http.StatusBadGateway, "sandpit: "+s.name+" could not be reached")
			return false, nil
		}
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""} // Write adds Go's otherwise
	}
	if err := req.Write(s.up); err != nil {
		return false, fmt.Errorf("sending a request of sandbox %s to %s: %w", s.sandboxID, s.name, err)
	}
	resp, err := http.ReadResponse(s.upBr, req)
	// Interim answers (100 Continue, 103 Early Hints) go back as they
	// come; the final one follows.
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		if werr := resp.Write(in); werr != nil {
			return false, werr
		}
		resp, err = http.ReadResponse(s.upBr, req)
	}
	if err != nil {
		return false, fmt.Errorf("reading the answer of %s to sandbox %s: %w", s.name, s.sandboxID, err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// An upgrade (WebSocket): the head goes back, then bytes both
		// ways until either side ends.
		if err := resp.Write(in); err != nil {
			return false, err
		}
		pipe(in, inBr, s.up, s.upBr)
		return false, nil
	}
	defer resp.Body.Close()
	if err := resp.Write(in); err != nil {
		return false, fmt.Errorf("answering sandbox %s for %s: %w", s.sandboxID, s.name, err)
	}
	return !req.Close && !resp.Close, nil
}

// connect dials the upstream, over TLS verified for the name when the
// sandbox spoke TLS.
func (s *session) connect(ctx context.Context) error {
	c, err := s.dial(ctx)
	if err != nil {
		return err
	}
	if s.tls {
		tc := tls.Client(c, &tls.Config{
			ServerName: s.name,
			RootCAs:    s.i.roots,
			NextProtos: []string{"http/1.1"},
			MinVersion: tls.VersionTLS12,
		})
		hctx, cancel := context.WithTimeout(ctx, handshakeLimit)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			c.Close()
			return fmt.Errorf("TLS to %s: %w", s.name, err)
		}
		c = tc
	}
	s.up, s.upBr = c, bufio.NewReader(c)
	return nil
}

// pipe copies bytes both ways, each reader's buffered bytes first, until
// one side ends.
func pipe(a net.Conn, aBr *bufio.Reader, b net.Conn, bBr *bufio.Reader) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(b, aBr)
		b.Close()
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(a, bBr)
		a.Close()
	}()
	wg.Wait()
}

// writeError answers the sandbox with a short plain-text error.
func writeError(w io.Writer, status int, msg string) {
	_, _ = fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(msg), msg)
}

// readerConn is a net.Conn whose reads come through r (which peeked).
type readerConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }
