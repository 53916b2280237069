package envd

import (
	"io"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// releaser gives the agent's free memory back to the host each time the
// agent falls quiet. A host holds thousands of idle agents, and Go keeps
// what a spell of work left: the heap grows to 4 MB before its first
// collection, and the runtime returns freed pages only down to about its
// next goal. So an agent that ran a few commands and then sat idle held
// its peak for good. Once no connection of the agent has read or written
// for quiet, it collects and returns every free page (debug.FreeOSMemory,
// about a millisecond of CPU on a heap this small), once per busy spell.
// An idle agent is not woken: only activity arms the timer.
type releaser struct {
	quiet   time.Duration
	release func() // debug.FreeOSMemory but in tests
	// last is when a connection last read or wrote (Unix nanoseconds);
	// need is the quiet (nanoseconds) the armed check waits for.
	last atomic.Int64
	need atomic.Int64
	// armed is set while a timer will look at last.
	armed atomic.Bool

	mu      sync.Mutex
	timer   *time.Timer // the armed check; nil after stop
	stopped bool
}

// newReleaser returns a releaser that calls release (nil:
// debug.FreeOSMemory) first after start, for the start-up garbage (after
// the create and the first requests it usually serves), then quiet after
// each spell of activity.
func newReleaser(first, quiet time.Duration, release func()) *releaser {
	if release == nil {
		release = debug.FreeOSMemory
	}
	r := &releaser{quiet: quiet, release: release}
	r.last.Store(time.Now().UnixNano())
	r.need.Store(int64(first))
	r.armed.Store(true)
	r.arm(first)
	return r
}

// touch records activity now and makes sure a release follows once it
// stops. It is cheap enough for every read and write.
func (r *releaser) touch() {
	r.last.Store(time.Now().UnixNano())
	if r.armed.Load() || !r.armed.CompareAndSwap(false, true) {
		return
	}
	r.need.Store(int64(r.quiet))
	r.arm(r.quiet)
}

func (r *releaser) arm(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	r.timer = time.AfterFunc(d, r.check)
}

// check releases memory when the agent has been quiet long enough, or
// looks again when it will have been.
func (r *releaser) check() {
	need := time.Duration(r.need.Load())
	if idle := time.Duration(time.Now().UnixNano() - r.last.Load()); idle < need {
		r.arm(need - idle)
		return
	}
	// Activity from here on arms a new check.
	r.armed.Store(false)
	r.release()
}

// stop ends the releaser: no release runs after it returns, but one
// running may finish.
func (r *releaser) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	if r.timer != nil {
		r.timer.Stop()
	}
}

// listener makes every connection ln accepts count as activity.
func (r *releaser) listener(ln net.Listener) net.Listener {
	if ln == nil {
		return nil
	}
	return &activeListener{Listener: ln, r: r}
}

type activeListener struct {
	net.Listener
	r *releaser
}

func (l *activeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.r.touch()
	return &activeConn{Conn: c, r: l.r}, nil
}

type activeConn struct {
	net.Conn
	r *releaser
}

func (c *activeConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.r.touch()
	return n, err
}

func (c *activeConn) Write(b []byte) (int, error) {
	c.r.touch()
	return c.Conn.Write(b)
}

// ReadFrom keeps the connection's own (splice, sendfile) for file
// downloads, which net/http finds through io.ReaderFrom.
func (c *activeConn) ReadFrom(src io.Reader) (int64, error) {
	c.r.touch()
	defer c.r.touch()
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, src)
}

// CloseWrite half-closes as net/http does on the bare connection.
func (c *activeConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
