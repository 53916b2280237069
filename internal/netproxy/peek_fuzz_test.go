package netproxy

import (
	"bytes"
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// FuzzPeekName: whatever a sandbox sends first, the peek neither panics
// nor loses or invents a byte: what it returns is a prefix of the input,
// to be replayed upstream.
func FuzzPeekName(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"))
	f.Add([]byte("POST /x HTTP/1.1\r\nhost:[::1]:80\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00})
	// A real ClientHello.
	a, b := net.Pipe()
	go func() {
		_ = tls.Client(a, &tls.Config{ServerName: "api.example.com", InsecureSkipVerify: true}).Handshake()
	}()
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, hello := peekName(b); len(hello) > 0 {
		f.Add(hello)
	}
	a.Close()
	b.Close()

	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		defer b.Close()
		go func() {
			_, _ = a.Write(in)
			a.Close()
		}()
		_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, peeked := peekName(b)
		if !bytes.HasPrefix(in, peeked) {
			t.Fatalf("peeked %q is not a prefix of the input %q", peeked, in)
		}
	})
}
