package agent

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// tunnels tracks the connections of open CONNECT tunnels so a stopping
// agent can close them (http.Server.Shutdown does not see hijacked ones).
type tunnels struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newTunnels() *tunnels { return &tunnels{conns: map[net.Conn]struct{}{}} }

func (t *tunnels) add(c net.Conn) {
	t.mu.Lock()
	t.conns[c] = struct{}{}
	t.mu.Unlock()
}

func (t *tunnels) remove(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

func (t *tunnels) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		_ = c.Close()
	}
}

// tunnelTarget validates a CONNECT authority: only loopback, with a port.
func tunnelTarget(authority string) (string, error) {
	host, port, err := net.SplitHostPort(authority)
	if err != nil {
		return "", errors.New("CONNECT target must be host:port")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", errors.New("CONNECT target has an invalid port")
	}
	switch host {
	case "127.0.0.1", "localhost":
		return net.JoinHostPort("127.0.0.1", port), nil
	case "::1":
		return net.JoinHostPort("::1", port), nil
	}
	return "", errors.New("CONNECT is only allowed to 127.0.0.1 or localhost")
}

// tunnel serves CONNECT 127.0.0.1:PORT: it dials the port inside the
// sandbox's network namespace, answers 200 and splices both ways until both
// sides are done. A closed port answers 502.
func (a *Agent) tunnel(w http.ResponseWriter, r *http.Request) {
	target, err := tunnelTarget(r.Host)
	if err != nil {
		writeError(w, http.StatusForbidden, err.Error())
		return
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	upstream, err := d.DialContext(r.Context(), "tcp", target)
	if err != nil {
		a.logger.Debug("tunnel dial", "target", target, "err", err)
		writeError(w, http.StatusBadGateway, "port closed: nothing listens on "+target+" in the sandbox")
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		_ = upstream.Close()
		writeError(w, http.StatusInternalServerError, "connection cannot be hijacked")
		return
	}
	client, buf, err := hj.Hijack()
	if err != nil {
		_ = upstream.Close()
		a.logger.Debug("tunnel hijack", "err", err)
		return
	}
	a.tunnels.add(client)
	a.tunnels.add(upstream)
	done := make(chan struct{})
	defer func() {
		_ = client.Close()
		_ = upstream.Close()
		<-done
		a.tunnels.remove(client)
		a.tunnels.remove(upstream)
	}()
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection Established\r\n\r\n"); err != nil {
		close(done)
		return
	}
	go func() {
		defer close(done)
		// Bytes the client sent after the request line sit in buf.
		_, _ = io.Copy(upstream, buf.Reader)
		closeWrite(upstream)
	}()
	_, _ = io.Copy(client, upstream)
	closeWrite(client)
	// The server is done; give the client a moment to finish its side,
	// then close both (the deferred Close ends the copy above).
	select {
	case <-done:
	case <-time.After(tunnelLinger):
	}
}

// tunnelLinger is how long a tunnel stays half-open after the sandbox side
// has closed.
const tunnelLinger = 5 * time.Second

// closeWrite half-closes c when it can, else closes it.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}
