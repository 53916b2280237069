// Package proxy routes sandbox traffic. A request that names a sandbox, by
// the E2b-Sandbox-Id and E2b-Sandbox-Port headers the E2B SDKs send or by a
// Host of the form PORT-SANDBOXID.DOMAIN, goes to that sandbox's agent over
// its Unix socket: envd (port 49983) and the code interpreter (49999) are
// served by the agent itself; any other port is reached through an HTTP
// CONNECT tunnel the agent opens to that port inside the sandbox. Every
// other request goes to the control plane. Sandbox requests that change
// state (file writes, process starts, code runs) can be audited: see
// Config.Audit and Event.
package proxy

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Ports the agent serves itself.
const (
	EnvdPort        = 49983
	InterpreterPort = 49999
)

// Lookup returns the host path of a running sandbox's agent socket.
type Lookup func(id string) (socket string, ok bool)

// Config configures a Proxy. Lookup and Next are required.
type Config struct {
	Lookup Lookup
	// Signed finds the sandbox a signed /files URL (E2B's uploadUrl and
	// downloadUrl) was made for: such URLs carry a signature made with the
	// sandbox's token but name no sandbox. Nil refuses them.
	Signed func(r *http.Request) (id, socket string, ok bool)
	// Next serves control-plane requests.
	Next http.Handler
	// Audit, when set, is told of every sandbox request that changes
	// state (see Event), once its response is over. r is the client's
	// request as it came in; the hook must not read its body. Nil audits
	// nothing.
	Audit func(r *http.Request, ev Event)
	// Authorize, when set, is asked about a request for sandbox id that
	// carries an API key (X-API-KEY): false (the key is not valid, or its
	// team is not the sandbox's) answers as for an unknown sandbox. A
	// request without a key is the sandbox's access token's business, as
	// on E2B.
	Authorize func(r *http.Request, id string) bool
	// Wake, when set, is asked for a sandbox Lookup does not find: it
	// resumes a paused sandbox created with autoResume and returns its
	// socket, so the request that found it paused is served (E2B's
	// lifecycle.autoResume). Nil leaves paused sandboxes unreachable.
	Wake func(ctx context.Context, id string) (socket string, ok bool)
	// Traffic, when set, returns a sandbox's private-port token and Host
	// mask (see Traffic); ok is false for an unknown sandbox. Nil makes
	// every port public and leaves Host as the client sent it.
	Traffic func(id string) (t Traffic, ok bool)
	Logger  *slog.Logger
}

// Traffic is what the proxy enforces on requests to a sandbox's ports,
// envd's excepted (envd has its own access token): E2B's private ports
// and maskRequestHost.
type Traffic struct {
	// AccessToken, when set, must come in TrafficTokenHeader.
	AccessToken string
	// MaskRequestHost, when set, is the Host the sandbox's server sees;
	// ${PORT} in it stands for the port.
	MaskRequestHost string
}

// TrafficTokenHeader carries a sandbox's traffic access token, as on
// E2B.
const TrafficTokenHeader = "e2b-traffic-access-token"

// Proxy is an http.Handler in front of the control plane.
type Proxy struct {
	lookup  Lookup
	signed  func(r *http.Request) (id, socket string, ok bool)
	next    http.Handler
	audit   func(r *http.Request, ev Event)
	authz   func(r *http.Request, id string) bool
	wake    func(ctx context.Context, id string) (string, bool)
	traffic func(id string) (Traffic, bool)
	log     *slog.Logger
	rp      *httputil.ReverseProxy

	// transports holds one pooled transport per sandbox (keyed by id);
	// entries of sandboxes that are gone are swept when new ones are
	// added.
	transports sync.Map
	sweepMu    sync.Mutex
}

// New returns a proxy that sends sandbox traffic to sandboxes and
// everything else to cfg.Next.
func New(cfg Config) *Proxy {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{lookup: cfg.Lookup, signed: cfg.Signed, next: cfg.Next, audit: cfg.Audit, authz: cfg.Authorize, wake: cfg.Wake, traffic: cfg.Traffic, log: log}
	p.rp = &httputil.ReverseProxy{
		Rewrite:       func(*httputil.ProxyRequest) {}, // set per request in ServeHTTP
		Transport:     p,
		FlushInterval: -1, // streams (Connect, NDJSON) go out as they come
		BufferPool:    &bufferPool{},
		ErrorHandler:  p.proxyError,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return p
}

type ctxKey struct{}

type target struct {
	id     string
	port   int
	socket string
}

// ServeHTTP routes one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, port, routed, err := route(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var socket, host string
	switch {
	case routed:
		var ok bool
		socket, ok = p.lookup(id)
		if ok || p.wake != nil {
			// Another team's key reaches nothing and wakes nothing:
			// it is told what an unknown sandbox's would be.
			if p.authz != nil && r.Header.Get("X-Api-Key") != "" && !p.authz(r, id) {
				ok = false
			} else {
				// A private port's token is checked before anything
				// else happens, a wake included.
				var refused bool
				if host, refused = p.checkTraffic(w, r, id, port); refused {
					return
				}
				if !ok {
					socket, ok = p.wake(r.Context(), id)
				}
			}
		}
		if !ok {
			writeGone(w, id, "The sandbox was not found")
			return
		}
	case r.URL.Path == "/files" && r.URL.Query().Has("signature"):
		var ok bool
		if p.signed != nil {
			id, socket, ok = p.signed(r)
		}
		if !ok {
			writeUnauthorized(w)
			return
		}
		port = EnvdPort
	default:
		p.next.ServeHTTP(w, r)
		return
	}
	// The agent answers streams (process output) while the client may
	// still be sending; without full duplex the server would cut the
	// request body once the first event goes out, and the transport would
	// drop the stream with it.
	_ = http.NewResponseController(w).EnableFullDuplex()
	t := &target{id: id, port: port, socket: socket}
	out := r.Clone(context.WithValue(r.Context(), ctxKey{}, t))
	out.URL.Scheme = "http"
	out.URL.Host = "127.0.0.1:" + strconv.Itoa(port)
	out.Host = r.Host
	if host != "" {
		out.Host = host
	}
	// The agent routes interpreter traffic on this header, whichever way
	// the request named its port.
	out.Header.Set("E2b-Sandbox-Port", strconv.Itoa(port))
	if p.audit != nil {
		if action := classify(r.Method, port, r.URL.Path); action != "" {
			p.serveAudited(w, r, out, id, action)
			return
		}
	}
	p.rp.ServeHTTP(w, out)
}

// checkTraffic enforces sandbox id's private ports on a request to port:
// refused is true when the request lacks the sandbox's traffic token, or
// carries another, and has been answered as E2B answers it (403). host is
// the Host the request goes on with ("" keeps the client's).
func (p *Proxy) checkTraffic(w http.ResponseWriter, r *http.Request, id string, port int) (host string, refused bool) {
	if p.traffic == nil || port == EnvdPort {
		return "", false
	}
	t, ok := p.traffic(id)
	if !ok {
		return "", false
	}
	if t.AccessToken != "" {
		got := r.Header.Get(TrafficTokenHeader)
		switch {
		case got == "":
			writeForbidden(w, id, "Sandbox is secured with traffic access token. Token header '"+TrafficTokenHeader+"' is missing")
			return "", true
		case subtle.ConstantTimeCompare([]byte(got), []byte(t.AccessToken)) != 1:
			writeForbidden(w, id, "Sandbox is secured with traffic access token. Provided token in header '"+TrafficTokenHeader+"' is invalid")
			return "", true
		}
	}
	if t.MaskRequestHost != "" {
		host = strings.ReplaceAll(t.MaskRequestHost, "${PORT}", strconv.Itoa(port))
	}
	return host, false
}

// writeForbidden answers a request refused by a sandbox's private ports
// in the shape E2B's proxy uses.
func writeForbidden(w http.ResponseWriter, id, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusForbidden)
	_ = json.NewEncoder(w).Encode(struct {
		SandboxID string `json:"sandboxId"`
		Message   string `json:"message"`
		Code      int    `json:"code"`
	}{id, msg, http.StatusForbidden})
}

// route finds the sandbox a request is for. routed is false for control
// plane traffic; err is set when the request names a sandbox badly.
func route(r *http.Request) (id string, port int, routed bool, err error) {
	hid, hport := r.Header.Get("E2b-Sandbox-Id"), r.Header.Get("E2b-Sandbox-Port")
	switch {
	case hid != "" && hport != "":
		port, err = strconv.Atoi(hport)
		if err != nil || port < 1 || port > 65535 {
			return "", 0, true, fmt.Errorf("invalid E2b-Sandbox-Port %q", hport)
		}
		return hid, port, true, nil
	case hid != "" || hport != "":
		return "", 0, true, errors.New("missing header: E2b-Sandbox-Id and E2b-Sandbox-Port go together")
	}
	// PORT-SANDBOXID.DOMAIN
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	label, _, found := strings.Cut(host, ".")
	if !found {
		return "", 0, false, nil
	}
	ps, sid, found := strings.Cut(label, "-")
	if !found || sid == "" {
		return "", 0, false, nil
	}
	port, err = strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, false, nil
	}
	return sid, port, true, nil
}

// RoundTrip sends a request to its sandbox over that sandbox's transport.
func (p *Proxy) RoundTrip(r *http.Request) (*http.Response, error) {
	t, _ := r.Context().Value(ctxKey{}).(*target)
	if t == nil {
		return nil, errors.New("proxy: request has no sandbox target")
	}
	return p.transport(t).RoundTrip(r)
}

// idleConnTimeout is how long a connection to a sandbox's agent stays
// open unused. Each holds its two buffers (128 KiB), so with net/http's
// 90 s default every sandbox used in the last minute and a half cost the
// daemon that much. Dialing the agent's Unix socket again costs far less
// than keeping it.
const idleConnTimeout = 5 * time.Second

func (p *Proxy) transport(t *target) *http.Transport {
	if v, ok := p.transports.Load(t.id); ok {
		return v.(*http.Transport)
	}
	socket := t.socket
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dial(ctx, socket, addr)
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     idleConnTimeout,
		// Larger buffers than net/http's 4 KiB: file transfers cross
		// here, and 4 KiB writes cap them well below the agent's own
		// speed. Not larger than 64 KiB: commands on 2000 live
		// sandboxes, 8 at a time, keep over a thousand connections
		// within the idle timeout, and at 256 KiB they held 650 MiB of
		// the daemon's memory (1 GiB uploads stay above 540 MB/s).
		WriteBufferSize:       64 << 10,
		ReadBufferSize:        64 << 10,
		ResponseHeaderTimeout: 0, // long-polls and streams are normal
		DisableCompression:    true,
	}
	v, loaded := p.transports.LoadOrStore(t.id, tr)
	if !loaded {
		p.sweep()
	}
	return v.(*http.Transport)
}

// sweep drops the transports of sandboxes that are gone.
func (p *Proxy) sweep() {
	if !p.sweepMu.TryLock() {
		return
	}
	defer p.sweepMu.Unlock()
	p.transports.Range(func(k, v any) bool {
		if _, ok := p.lookup(k.(string)); !ok {
			p.transports.Delete(k)
			v.(*http.Transport).CloseIdleConnections()
		}
		return true
	})
}

// dial connects to the agent; for a port the agent does not serve itself
// it asks the agent for a CONNECT tunnel to that port inside the sandbox.
func dial(ctx context.Context, socket, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("dialing agent: %w", err)
	}
	_, ps, _ := net.SplitHostPort(addr)
	if ps == strconv.Itoa(EnvdPort) || ps == strconv.Itoa(InterpreterPort) {
		return c, nil
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(c, "CONNECT 127.0.0.1:%s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\n\r\n", ps, ps); err != nil {
		c.Close()
		return nil, fmt.Errorf("asking agent for a tunnel: %w", err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("reading tunnel answer: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, &portClosedError{port: ps, status: resp.Status}
	}
	_ = c.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		// The agent speaks first on no protocol we tunnel, so nothing
		// may be buffered past the CONNECT answer.
		c.Close()
		return nil, errors.New("tunnel sent data before the request")
	}
	return c, nil
}

type portClosedError struct{ port, status string }

func (e *portClosedError) Error() string {
	return "no server is listening on port " + e.port + " (" + e.status + ")"
}

func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	t, _ := r.Context().Value(ctxKey{}).(*target)
	id := ""
	if t != nil {
		id = t.id
	}
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	var pc *portClosedError
	if errors.As(err, &pc) {
		writeGone(w, id, "The sandbox "+id+" has no server listening on port "+pc.port)
		return
	}
	if _, ok := p.lookup(id); !ok {
		writeGone(w, id, "The sandbox was not found")
		return
	}
	p.log.Warn("proxying to sandbox", "sandbox_id", id, "path", r.URL.Path, "err", err)
	writeGone(w, id, "The sandbox "+id+" did not answer")
}

// writeGone answers 502 in the shape E2B's proxy uses; the SDKs map it to
// "sandbox not found / timed out".
func writeGone(w http.ResponseWriter, id, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusBadGateway)
	_ = json.NewEncoder(w).Encode(struct {
		SandboxID string `json:"sandboxId"`
		Message   string `json:"message"`
		Code      int    `json:"code"`
	}{id, msg, http.StatusBadGateway})
}

// writeUnauthorized answers a signed URL that matches no sandbox as envd
// answers a bad signature.
func writeUnauthorized(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{http.StatusUnauthorized, "invalid signature"})
}

// bufferPool lends the reverse proxy 256 KiB copy buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 256<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
