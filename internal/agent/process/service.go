// Package process implements envd's process.Process Connect service: it
// starts processes (with pipes or a PTY) as a sandbox user, streams their
// output as it is produced, lets clients re-attach, send input and signals,
// and ties a process's lifetime to the Start call's deadline.
//
// Children are started with syscall.ForkExec through a Reaper, the single
// owner of wait4 in the agent (which runs as PID 1 of the sandbox).
package process

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"

	pb "github.com/sandpit-dev/sandpit/gen/proto/process"
	"github.com/sandpit-dev/sandpit/gen/proto/process/processconnect"
	"github.com/sandpit-dev/sandpit/internal/agent/settings"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// Defaults for Config.
const (
	DefaultRetainExited = 30 * time.Second
	DefaultDrainGrace   = 200 * time.Millisecond
	DefaultKeepalive    = 90 * time.Second
)

// Config configures a Service.
type Config struct {
	Logger   *slog.Logger
	Settings *settings.Settings // required: env, default user and workdir
	Reaper   *Reaper            // required; the Service does not close it
	// RetainExited is how long an exited process's end event stays
	// available to Connect (DefaultRetainExited when zero).
	RetainExited time.Duration
	// DrainGrace is how long output is still read after a process exits
	// while something else (a background grandchild) keeps its output open
	// (DefaultDrainGrace when zero).
	DrainGrace time.Duration
}

// Service implements processconnect.ProcessHandler.
type Service struct {
	logger       *slog.Logger
	settings     *settings.Settings
	reaper       *Reaper
	retain       time.Duration
	drainGrace   time.Duration
	closeOnce    sync.Once
	closeTimeout time.Duration

	mu     sync.Mutex
	procs  map[uint32]*proc
	timers map[uint32]*time.Timer // removal of exited processes
	closed bool
}

var _ processconnect.ProcessHandler = (*Service)(nil)

// New returns a Service. Close it to kill its processes.
func New(cfg Config) *Service {
	s := &Service{
		logger:       cfg.Logger,
		settings:     cfg.Settings,
		reaper:       cfg.Reaper,
		retain:       cfg.RetainExited,
		drainGrace:   cfg.DrainGrace,
		closeTimeout: 5 * time.Second,
		procs:        map[uint32]*proc{},
		timers:       map[uint32]*time.Timer{},
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.retain <= 0 {
		s.retain = DefaultRetainExited
	}
	if s.drainGrace <= 0 {
		s.drainGrace = DefaultDrainGrace
	}
	return s
}

// Handler returns the path and handler to mount (see processconnect).
func (s *Service) Handler(opts ...connect.HandlerOption) (string, http.Handler) {
	return processconnect.NewProcessHandler(s, opts...)
}

// Close kills every running process (SIGKILL to its session), waits until
// they have ended (bounded by ctx), and forgets exited ones. Idempotent;
// Start fails with unavailable afterwards.
func (s *Service) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		procs := make([]*proc, 0, len(s.procs))
		for _, p := range s.procs {
			procs = append(procs, p)
		}
		for _, t := range s.timers {
			t.Stop()
		}
		s.timers = map[uint32]*time.Timer{}
		s.mu.Unlock()
		for _, p := range procs {
			_ = p.signal(9)
		}
		for _, p := range procs {
			select {
			case <-p.done:
			case <-ctx.Done():
				err = fmt.Errorf("waiting for process %d to end: %w", p.pid, ctx.Err())
				return
			}
		}
	})
	return err
}

// register adds a started process. One that raced with Close is killed.
func (s *Service) register(p *proc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = p.signal(9)
	}
	if t, ok := s.timers[p.pid]; ok { // an old retained process with a reused pid
		t.Stop()
		delete(s.timers, p.pid)
	}
	s.procs[p.pid] = p
}

// exited runs when p's end event is set: it keeps p for late Connects,
// then forgets it.
func (s *Service) exited(p *proc) {
	// As upstream envd, every process end is an info line of the
	// sandbox's log (E2B's sandbox logs API serves them).
	s.logger.Info("process ended", "pid", p.pid, "exit_code", p.end.GetExitCode(), "status", p.end.GetStatus())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		delete(s.procs, p.pid)
		return
	}
	s.timers[p.pid] = time.AfterFunc(s.retain, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.procs[p.pid] == p {
			delete(s.procs, p.pid)
			delete(s.timers, p.pid)
		}
	})
}

// lookup finds the process sel names; exited ones only when withExited.
func (s *Service) lookup(sel *pb.ProcessSelector, withExited bool) (*proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var found *proc
	switch v := sel.GetSelector().(type) {
	case *pb.ProcessSelector_Pid:
		found = s.procs[v.Pid]
		if found == nil {
			return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("process with pid %d not found", v.Pid))
		}
	case *pb.ProcessSelector_Tag:
		for _, p := range s.procs {
			if p.tag != nil && *p.tag == v.Tag && (found == nil || found.ended() && !p.ended()) {
				found = p
			}
		}
		if found == nil {
			return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("process with tag '%s' not found", v.Tag))
		}
	default:
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "process selector needs a pid or a tag")
	}
	if !withExited && found.ended() {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("process %d has exited", found.pid))
	}
	return found, nil
}

// List returns the running processes, oldest pid first.
func (s *Service) List(ctx context.Context, req *connect.Request[pb.ListRequest]) (*connect.Response[pb.ListResponse], error) {
	s.mu.Lock()
	var out []*pb.ProcessInfo
	for _, p := range s.procs {
		if !p.ended() {
			out = append(out, p.info())
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b *pb.ProcessInfo) int { return int(a.Pid) - int(b.Pid) })
	return connect.NewResponse(&pb.ListResponse{Processes: out}), nil
}
