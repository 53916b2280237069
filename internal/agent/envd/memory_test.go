package envd

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// newTestReleaser is a releaser that counts its releases.
func newTestReleaser(first, quiet time.Duration) (*releaser, *atomic.Int32) {
	var n atomic.Int32
	return newReleaser(first, quiet, func() { n.Add(1) }), &n
}

func waitCount(t *testing.T, n *atomic.Int32, want int32, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); n.Load() < want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d releases after %v, want %d", n.Load(), within, want)
		}
	}
}

// The agent releases its memory after start, then once after each spell
// of activity on its connections, and not while idle.
func TestReleaserReleasesWhenQuiet(t *testing.T) {
	const quiet = 100 * time.Millisecond
	r, n := newTestReleaser(20*time.Millisecond, quiet)
	defer r.stop()
	waitCount(t, n, 1, 5*time.Second)

	// Idle: nothing more, however long.
	time.Sleep(3 * quiet)
	if got := n.Load(); got != 1 {
		t.Fatalf("an idle agent released %d times, want 1", got)
	}

	// Traffic on an accepted connection arms a release, which waits for
	// the traffic to stop.
	ln, err := net.Listen("unix", t.TempDir()+"/s")
	if err != nil {
		t.Fatal(err)
	}
	ln = r.listener(ln)
	defer ln.Close()
	go func() {
		c, err := net.Dial("unix", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		for range 10 {
			_, _ = c.Write([]byte("x"))
			time.Sleep(quiet / 4)
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1)
	for range 10 {
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	waitCount(t, n, 2, 5*time.Second)
	// Idle again: no more.
	after := n.Load()
	time.Sleep(3 * quiet)
	if got := n.Load(); got != after {
		t.Errorf("an idle agent went on releasing: %d, then %d", after, got)
	}
}

// After stop no release runs.
func TestReleaserStop(t *testing.T) {
	r, n := newTestReleaser(50*time.Millisecond, 50*time.Millisecond)
	r.stop()
	time.Sleep(200 * time.Millisecond)
	r.touch()
	time.Sleep(200 * time.Millisecond)
	if got := n.Load(); got != 0 {
		t.Errorf("%d releases after stop", got)
	}
}
