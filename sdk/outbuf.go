package sandpit

import (
	"bytes"
	"io"
	"sync"
)

// maxBuffered is how much unread terminal output a PTYHandle holds before
// the stream waits for Read.
const maxBuffered = 16 << 20

// outputBuffer is a pipe with a large buffer: writes do not wait for a
// reader until maxBuffered bytes are unread, so a terminal whose output
// nobody reads still reports its exit.
type outputBuffer struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    bytes.Buffer
	closed bool
}

func newOutputBuffer() *outputBuffer {
	b := &outputBuffer{}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.buf.Len() >= maxBuffered && !b.closed {
		b.cond.Wait()
	}
	if b.closed {
		return 0, io.ErrClosedPipe
	}
	b.buf.Write(p)
	b.cond.Broadcast()
	return len(p), nil
}

func (b *outputBuffer) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.buf.Len() == 0 && !b.closed {
		b.cond.Wait()
	}
	if b.buf.Len() == 0 {
		return 0, io.EOF
	}
	n, _ := b.buf.Read(p)
	b.cond.Broadcast()
	return n, nil
}

// Close ends the buffer: Read drains what is left, then returns io.EOF.
func (b *outputBuffer) Close() {
	b.mu.Lock()
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

// discard drops unread output and ends the buffer.
func (b *outputBuffer) discard() {
	b.mu.Lock()
	b.closed = true
	b.buf.Reset()
	b.cond.Broadcast()
	b.mu.Unlock()
}
