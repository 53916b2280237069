package sandpit

import (
	"context"
	"errors"
	"unicode/utf8"

	"connectrpc.com/connect"

	"github.com/sandpit-dev/sandpit/gen/proto/process"
	"github.com/sandpit-dev/sandpit/gen/proto/process/processconnect"
)

// eventStream is a Start or Connect response stream, seen as a sequence of
// process events.
type eventStream interface {
	// next returns the next event; io.EOF-like nil event and nil error at
	// a clean end.
	next() (*process.ProcessEvent, error)
	close()
}

// serverStream is a Start or Connect response stream; event picks the
// process event out of its message type.
type serverStream[T any] struct {
	s     *connect.ServerStreamForClient[T]
	event func(*T) *process.ProcessEvent
}

func (s serverStream[T]) next() (*process.ProcessEvent, error) {
	if s.s.Receive() {
		return s.event(s.s.Msg()), nil
	}
	return nil, s.s.Err()
}

func (s serverStream[T]) close() { _ = s.s.Close() }

// startCall and connectCall open a process's event stream for open.
func startCall(rpc processconnect.ProcessClient, req *connect.Request[process.StartRequest]) func(context.Context) (eventStream, error) {
	return func(ctx context.Context) (eventStream, error) {
		s, err := rpc.Start(ctx, req)
		if err != nil {
			return nil, err
		}
		return serverStream[process.StartResponse]{s, (*process.StartResponse).GetEvent}, nil
	}
}

func connectCall(rpc processconnect.ProcessClient, req *connect.Request[process.ConnectRequest]) func(context.Context) (eventStream, error) {
	return func(ctx context.Context) (eventStream, error) {
		s, err := rpc.Connect(ctx, req)
		if err != nil {
			return nil, err
		}
		return serverStream[process.ConnectResponse]{s, (*process.ConnectResponse).GetEvent}, nil
	}
}

// errNoStart: the stream's first message was not the start event.
var errNoStart = errors.New("the sandbox did not report the process start")

// awaitStart reads events up to the start event and returns its pid.
func awaitStart(s eventStream) (uint32, error) {
	for {
		ev, err := s.next()
		if err != nil {
			return 0, err
		}
		if ev == nil {
			return 0, errNoStart
		}
		if st := ev.GetStart(); st != nil {
			return st.GetPid(), nil
		}
		if ev.GetKeepalive() == nil {
			return 0, errNoStart
		}
	}
}

// utf8Splitter turns a byte stream into strings that never split a UTF-8
// sequence: an incomplete sequence at the end of a chunk waits for the next.
type utf8Splitter struct {
	pending []byte
}

func (u *utf8Splitter) feed(b []byte) string {
	buf := append(u.pending, b...)
	cut := len(buf)
	// Look back at most utf8.UTFMax-1 bytes for the start of the last rune.
	for i := len(buf) - 1; i >= 0 && i >= len(buf)-utf8.UTFMax; i-- {
		if utf8.RuneStart(buf[i]) {
			if !utf8.FullRune(buf[i:]) {
				cut = i
			}
			break
		}
	}
	u.pending = append([]byte(nil), buf[cut:]...)
	return string(buf[:cut])
}

// flush returns whatever is pending.
func (u *utf8Splitter) flush() string {
	s := string(u.pending)
	u.pending = nil
	return s
}

// detached returns a context for cleanup after ctx was cancelled.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}
