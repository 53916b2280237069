package sandpit_test

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// TestGoroutinesStop: every goroutine the SDK starts (command and terminal
// pumps, watchers) ends when its handle is done with, whether by its end,
// Kill, Stop, Close, Disconnect or a cancelled context.
func TestGoroutinesStop(t *testing.T) {
	tr := &http.Transport{}
	c := newClient(t, sandpit.WithHTTPClient(&http.Client{Transport: tr}))
	ctx := t.Context()
	sb, err := c.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	// Count with no connection open, once the count settles.
	before := settle(tr)

	if _, err := sb.Commands.Run(ctx, "echo hi"); err != nil {
		t.Fatal(err)
	}
	h, err := sb.Commands.Start(ctx, "sleep 60")
	if err != nil {
		t.Fatal(err)
	}
	h.Kill(ctx)
	h.Wait(ctx)
	h, err = sb.Commands.Start(ctx, "sleep 60")
	if err != nil {
		t.Fatal(err)
	}
	h.Disconnect()
	sb.Commands.Kill(ctx, h.PID)
	cctx, cancel := context.WithCancel(ctx)
	h, err = sb.Commands.Start(cctx, "sleep 60")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-h.Done()
	sb.Commands.Kill(ctx, h.PID)

	w, err := sb.Files.Watch(ctx, "/tmp")
	if err != nil {
		t.Fatal(err)
	}
	w.Stop()

	term, err := sb.PTY.Create(ctx, sandpit.PTYSize{Cols: 80, Rows: 24})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(term, "exit\n")
	term.Wait(ctx)
	term.Close()
	term, err = sb.PTY.Create(ctx, sandpit.PTYSize{Cols: 80, Rows: 24})
	if err != nil {
		t.Fatal(err)
	}
	term.Close() // without reading anything
	sb.PTY.Kill(ctx, term.PID)

	deadline := time.Now().Add(5 * time.Second)
	for {
		tr.CloseIdleConnections()
		n := runtime.NumGoroutine()
		if n <= before {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settle closes idle connections and returns the goroutine count once it
// holds still for 100ms (connection goroutines take a moment to exit).
func settle(tr *http.Transport) int {
	last, still := -1, 0
	for still < 5 {
		tr.CloseIdleConnections()
		time.Sleep(20 * time.Millisecond)
		if n := runtime.NumGoroutine(); n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
	return last
}
