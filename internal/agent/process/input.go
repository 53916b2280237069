package process

import (
	"context"
	"errors"
	"fmt"
	"io"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	pb "github.com/sandpit-dev/sandpit/gen/proto/process"
	"github.com/sandpit-dev/sandpit/internal/agent/errconnect"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// SendInput writes stdin bytes to a pipe process or input bytes to a PTY.
func (s *Service) SendInput(ctx context.Context, req *connect.Request[pb.SendInputRequest]) (*connect.Response[pb.SendInputResponse], error) {
	p, err := s.lookup(req.Msg.GetProcess(), false)
	if err != nil {
		return nil, errconnect.Error(err)
	}
	if err := p.write(req.Msg.GetInput()); err != nil {
		return nil, errconnect.Error(err)
	}
	return connect.NewResponse(&pb.SendInputResponse{}), nil
}

// StreamInput is SendInput as a client stream: a start event naming the
// process, then data events. The SDKs do not use it.
func (s *Service) StreamInput(ctx context.Context, stream *connect.ClientStream[pb.StreamInputRequest]) (*connect.Response[pb.StreamInputResponse], error) {
	var p *proc
	for stream.Receive() {
		switch ev := stream.Msg().GetEvent().(type) {
		case *pb.StreamInputRequest_Start:
			found, err := s.lookup(ev.Start.GetProcess(), false)
			if err != nil {
				return nil, errconnect.Error(err)
			}
			p = found
		case *pb.StreamInputRequest_Data:
			if p == nil {
				return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("the first message must be a start event"))
			}
			if err := p.write(ev.Data.GetInput()); err != nil {
				return nil, errconnect.Error(err)
			}
		}
	}
	if err := stream.Err(); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.StreamInputResponse{}), nil
}

// write sends in to p. stdin bytes to a PTY process, or pty bytes to a pipe
// process, is an error (internal, as upstream).
func (p *proc) write(in *pb.ProcessInput) error {
	var b []byte
	switch v := in.GetInput().(type) {
	case *pb.ProcessInput_Stdin:
		if p.isPTY {
			return errors.New("process uses a pty: send input as pty, not stdin")
		}
		b = v.Stdin
	case *pb.ProcessInput_Pty:
		if !p.isPTY {
			return errors.New("process has no pty: send input as stdin, not pty")
		}
		b = v.Pty
	default:
		return errdefs.New(errdefs.ErrInvalidArgument, "input needs stdin or pty bytes")
	}
	p.inMu.Lock()
	defer p.inMu.Unlock()
	if p.in == nil {
		return errdefs.New(errdefs.ErrConflict, "stdin is closed or was not enabled for this process")
	}
	if _, err := p.in.Write(b); err != nil {
		return fmt.Errorf("writing input: %w", err)
	}
	return nil
}

// CloseStdin closes a pipe process's stdin (EOF for the process).
func (s *Service) CloseStdin(ctx context.Context, req *connect.Request[pb.CloseStdinRequest]) (*connect.Response[pb.CloseStdinResponse], error) {
	p, err := s.lookup(req.Msg.GetProcess(), false)
	if err != nil {
		return nil, errconnect.Error(err)
	}
	if p.isPTY {
		return nil, errconnect.Error(errdefs.New(errdefs.ErrConflict, "cannot close stdin of a pty process: send EOT (Ctrl-D) as pty input"))
	}
	p.inMu.Lock()
	defer p.inMu.Unlock()
	if p.in != nil {
		if err := p.in.Close(); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			return nil, errconnect.Error(fmt.Errorf("closing stdin: %w", err))
		}
		p.in = nil
	}
	return connect.NewResponse(&pb.CloseStdinResponse{}), nil
}

// SendSignal sends SIGKILL or SIGTERM to the process's session.
func (s *Service) SendSignal(ctx context.Context, req *connect.Request[pb.SendSignalRequest]) (*connect.Response[pb.SendSignalResponse], error) {
	p, err := s.lookup(req.Msg.GetProcess(), false)
	if err != nil {
		return nil, errconnect.Error(err)
	}
	var sig unix.Signal
	switch req.Msg.GetSignal() {
	case pb.Signal_SIGNAL_SIGKILL:
		sig = unix.SIGKILL
	case pb.Signal_SIGNAL_SIGTERM:
		sig = unix.SIGTERM
	default:
		return nil, connect.NewError(connect.CodeUnimplemented, fmt.Errorf("signal %v is not supported", req.Msg.GetSignal()))
	}
	if err := p.signal(sig); err != nil {
		return nil, errconnect.Error(fmt.Errorf("sending %v to process %d: %w", sig, p.pid, err))
	}
	return connect.NewResponse(&pb.SendSignalResponse{}), nil
}

// Update resizes a PTY process's terminal.
func (s *Service) Update(ctx context.Context, req *connect.Request[pb.UpdateRequest]) (*connect.Response[pb.UpdateResponse], error) {
	p, err := s.lookup(req.Msg.GetProcess(), false)
	if err != nil {
		return nil, errconnect.Error(err)
	}
	if req.Msg.Pty == nil {
		return connect.NewResponse(&pb.UpdateResponse{}), nil
	}
	if !p.isPTY {
		return nil, errconnect.Error(errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("process %d has no pty to resize", p.pid)))
	}
	size := req.Msg.GetPty().GetSize()
	p.inMu.Lock()
	defer p.inMu.Unlock()
	if p.in == nil {
		return nil, errconnect.Error(errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("process %d has exited", p.pid)))
	}
	if err := resizePTY(p.master, size.GetCols(), size.GetRows()); err != nil {
		return nil, errconnect.Error(fmt.Errorf("resizing pty: %w", err))
	}
	return connect.NewResponse(&pb.UpdateResponse{}), nil
}
