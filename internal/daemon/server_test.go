package daemon

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHeaderLimit: a request whose line and headers fit in MaxHeaderBytes
// is served; one byte more gets 431, and so does one far beyond what
// net/http itself reads.
func TestHeaderLimit(t *testing.T) {
	s := httptest.NewUnstartedServer(nil)
	s.Config = newServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), slog.New(slog.DiscardHandler))
	s.Start()
	defer s.Close()
	// head builds a raw request of exactly size bytes up to and including
	// the blank line.
	head := func(size int) string {
		start := "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: "
		return start + strings.Repeat("a", size-len(start)-4) + "\r\n\r\n"
	}
	for _, c := range []struct {
		size   int
		status int
	}{
		{1 << 10, 200},
		{MaxHeaderBytes, 200},
		{MaxHeaderBytes + 1, 431},
		{MaxHeaderBytes + 6<<10, 431},
		{MaxHeaderBytes + 10<<10, 431},
		{1 << 20, 431},
	} {
		t.Run(fmt.Sprint(c.size), func(t *testing.T) {
			conn, err := net.Dial("tcp", s.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			go io.WriteString(conn, head(c.size))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Errorf("a %d-byte head: %d, want %d", c.size, resp.StatusCode, c.status)
			}
		})
	}
}
