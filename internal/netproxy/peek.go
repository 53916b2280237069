package netproxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"time"
)

// maxPeek bounds what the proxy reads before it knows a connection's
// name: a ClientHello with post-quantum key shares is ~2 KiB, request
// headers rarely pass 8 KiB.
const maxPeek = 16 << 10

// peekName reads the start of a connection (under the deadline the
// caller set) and returns the name it asks for, TLS SNI or HTTP Host, and
// every byte read, to be replayed upstream. Neither: "".
func peekName(c net.Conn) (string, []byte) {
	first := make([]byte, 4096)
	n, _ := c.Read(first)
	if n == 0 {
		return "", nil
	}
	first = first[:n]
	if first[0] == 0x16 { // a TLS handshake record
		return sni(first, c)
	}
	return httpHost(first, c)
}

// sni lets crypto/tls parse the ClientHello from what was read and what
// follows, keeping a copy of every byte, and stops it there.
func sni(first []byte, c net.Conn) (string, []byte) {
	var more bytes.Buffer
	r := io.MultiReader(bytes.NewReader(first), io.TeeReader(io.LimitReader(c, maxPeek), &more))
	var name string
	errStop := errors.New("stop after the ClientHello")
	_ = tls.Server(readOnly{r}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			name = h.ServerName
			return nil, errStop
		},
	}).Handshake()
	return name, append(first, more.Bytes()...)
}

// httpHost reads request headers until their end and returns the Host.
func httpHost(buf []byte, c net.Conn) (string, []byte) {
	if !looksHTTP(buf) {
		return "", buf
	}
	chunk := make([]byte, 4096)
	for !bytes.Contains(buf, []byte("\r\n\r\n")) && len(buf) < maxPeek {
		n, err := c.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if err != nil {
			break
		}
	}
	for _, line := range strings.Split(string(buf), "\r\n")[1:] {
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), "host") {
			host := strings.TrimSpace(v)
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			return strings.Trim(host, "[]"), buf
		}
	}
	return "", buf
}

// looksHTTP: the bytes start with an upper-case method and a space.
func looksHTTP(b []byte) bool {
	i := bytes.IndexByte(b, ' ')
	if i <= 0 || i > 16 {
		return false
	}
	for _, c := range b[:i] {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

// readOnly is a net.Conn for crypto/tls that reads from r and writes
// nowhere (the handshake stops before it would answer).
type readOnly struct{ r io.Reader }

func (c readOnly) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (readOnly) Write(p []byte) (int, error)        { return 0, io.ErrClosedPipe }
func (readOnly) Close() error                       { return nil }
func (readOnly) LocalAddr() net.Addr                { return nil }
func (readOnly) RemoteAddr() net.Addr               { return nil }
func (readOnly) SetDeadline(t time.Time) error      { return nil }
func (readOnly) SetReadDeadline(t time.Time) error  { return nil }
func (readOnly) SetWriteDeadline(t time.Time) error { return nil }
