package process

import (
	"context"
	"time"

	"connectrpc.com/connect"

	"github.com/creack/pty"
	pb "github.com/sandpit-dev/sandpit/gen/proto/process"
	"github.com/sandpit-dev/sandpit/internal/agent/errconnect"
	"github.com/sandpit-dev/sandpit/internal/agent/users"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// Start starts a process and streams its events. The process outlives the
// stream when the client goes away; the Start deadline (Connect-Timeout-Ms)
// is its lifetime: when it passes the process is killed.
func (s *Service) Start(ctx context.Context, req *connect.Request[pb.StartRequest], stream *connect.ServerStream[pb.StartResponse]) error {
	sp, err := s.prepare(req)
	if err != nil {
		return errconnect.Error(err)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return connect.NewError(connect.CodeUnavailable, errdefs.New(errdefs.ErrUnavailable, "the agent is shutting down"))
	}
	p, sub, err := s.spawn(sp)
	if err != nil {
		s.logger.Info("starting process", "cmd", sp.argv[0], "err", err)
		return errconnect.Error(err)
	}
	s.logger.Info("process started", "pid", p.pid, "cmd", sp.argv[0], "user", sp.user.Name)
	if deadline, ok := ctx.Deadline(); ok {
		p.mu.Lock()
		if p.end == nil {
			p.lifetime = time.AfterFunc(time.Until(deadline), func() {
				s.logger.Debug("process deadline passed, killing", "pid", p.pid)
				p.timedOut.Store(true)
				_ = p.signal(9)
			})
		}
		p.mu.Unlock()
	}
	return s.stream(ctx, p, sub, true, keepaliveInterval(req.Header().Get("Keepalive-Ping-Interval")), func(ev *pb.ProcessEvent) error {
		return stream.Send(&pb.StartResponse{Event: ev})
	})
}

// Connect re-attaches to a process: the start event, then output from now
// on, then the end event. An exited process still retained gets its start
// and end events.
func (s *Service) Connect(ctx context.Context, req *connect.Request[pb.ConnectRequest], stream *connect.ServerStream[pb.ConnectResponse]) error {
	p, err := s.lookup(req.Msg.GetProcess(), true)
	if err != nil {
		return errconnect.Error(err)
	}
	sub := p.subscribe()
	return s.stream(ctx, p, sub, false, keepaliveInterval(req.Header().Get("Keepalive-Ping-Interval")), func(ev *pb.ProcessEvent) error {
		return stream.Send(&pb.ConnectResponse{Event: ev})
	})
}

// prepare validates a StartRequest and resolves its user, env, cwd and
// executable.
func (s *Service) prepare(req *connect.Request[pb.StartRequest]) (*spawnSpec, error) {
	msg := req.Msg
	cfg := msg.GetProcess()
	if cfg.GetCmd() == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "process.cmd is required")
	}
	vals := s.settings.Get()
	u, err := users.Resolve(req.Header(), vals.DefaultUser)
	if err != nil {
		return nil, err
	}
	sp := &spawnSpec{req: msg, user: u, argv: append([]string{cfg.GetCmd()}, cfg.GetArgs()...)}
	if msg.Pty != nil {
		size := msg.GetPty().GetSize()
		cols, rows := size.GetCols(), size.GetRows()
		if cols == 0 {
			cols = 80
		}
		if rows == 0 {
			rows = 24
		}
		sp.ptySize = &pty.Winsize{Cols: uint16(cols), Rows: uint16(rows)}
	}
	sp.env = buildEnv(u, vals.Env, cfg.GetEnvs(), sp.ptySize != nil)
	if sp.cwd, err = resolveCwd(cfg.Cwd, u, vals.DefaultWorkdir); err != nil {
		return nil, err
	}
	if sp.path, err = lookPath(cfg.GetCmd(), sp.env); err != nil {
		return nil, err
	}
	if sp.cred, err = credential(u); err != nil {
		return nil, err
	}
	return sp, nil
}
