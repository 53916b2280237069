package sandpit

import (
	"context"
	"io"
	"net/http"
	"sync"

	"connectrpc.com/connect"

	"github.com/sandpit-dev/sandpit/gen/proto/process"
	"github.com/sandpit-dev/sandpit/gen/proto/process/processconnect"
)

// PTY opens interactive terminals (a login bash in a pseudo-terminal) in a
// sandbox.
type PTY struct {
	sb  *Sandbox
	rpc processconnect.ProcessClient
}

// PTYSize is a terminal's size in character cells.
type PTYSize struct {
	Cols, Rows uint32
}

// Create starts bash -i -l in a new terminal of the given size. The
// terminal's output is read from the handle (or goes to WithOutput's
// writer); input is written to it. Like commands, a terminal lives for its
// timeout (WithTimeout, default 60s; 0 for no limit). Cancelling ctx
// closes the output stream but leaves the terminal running.
func (p *PTY) Create(ctx context.Context, size PTYSize, opts ...PTYOption) (*PTYHandle, error) {
	cfg := ptyConfig{timeout: defaultStreamTimeout}
	for _, o := range opts {
		o.applyPTY(&cfg)
	}
	envs := map[string]string{"TERM": "xterm-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
	for k, v := range cfg.envs {
		envs[k] = v
	}
	pc := &process.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-i", "-l"}, Envs: envs}
	if cfg.cwd != "" {
		pc.Cwd = &cfg.cwd
	}
	req := connect.NewRequest(&process.StartRequest{
		Process: pc,
		Pty:     &process.PTY{Size: &process.PTY_Size{Cols: size.Cols, Rows: size.Rows}},
	})
	return p.open(ctx, "create terminal", cfg, req.Header(), startCall(p.rpc, req))
}

// Connect attaches to a running terminal by its pid.
func (p *PTY) Connect(ctx context.Context, pid uint32, opts ...PTYOption) (*PTYHandle, error) {
	cfg := ptyConfig{timeout: defaultStreamTimeout}
	for _, o := range opts {
		o.applyPTY(&cfg)
	}
	req := connect.NewRequest(&process.ConnectRequest{Process: pidSelector(pid)})
	return p.open(ctx, "connect to terminal", cfg, req.Header(), connectCall(p.rpc, req))
}

func (p *PTY) open(ctx context.Context, op string, cfg ptyConfig, h http.Header, call func(context.Context) (eventStream, error)) (*PTYHandle, error) {
	cmds := &Commands{sb: p.sb, rpc: p.rpc}
	ccfg := commandConfig{user: cfg.user, timeout: cfg.timeout}
	setUser(h, cfg.user)
	h.Set("Keepalive-Ping-Interval", keepaliveInterval)
	sctx, cancel := context.WithCancel(ctx)
	if cfg.timeout > 0 {
		sctx, cancel = context.WithTimeout(ctx, cfg.timeout)
	}
	s, err := call(sctx)
	if err != nil {
		cancel()
		return nil, rpcError(op, err)
	}
	pid, err := awaitStart(s)
	if err != nil {
		s.close()
		cancel()
		return nil, rpcError(op, err)
	}
	ph := &PTYHandle{PID: pid, pty: p, done: make(chan struct{})}
	var out io.Writer = cfg.output
	if out == nil {
		ph.out = newOutputBuffer()
		out = ph.out
	}
	ccfg.stdoutW = out
	ph.cmd = &CommandHandle{PID: pid, cmds: cmds, op: op, cancel: cancel, done: ph.done, cfg: ccfg, parent: ctx}
	go ph.pump(s)
	return ph, nil
}

// Resize changes a terminal's size.
func (p *PTY) Resize(ctx context.Context, pid uint32, size PTYSize) error {
	ctx, cancel := p.sb.client.withRequestTimeout(ctx)
	defer cancel()
	_, err := p.rpc.Update(ctx, connect.NewRequest(&process.UpdateRequest{
		Process: pidSelector(pid),
		Pty:     &process.PTY{Size: &process.PTY_Size{Cols: size.Cols, Rows: size.Rows}},
	}))
	return rpcError("resize terminal", err)
}

// SendInput types data into a terminal.
func (p *PTY) SendInput(ctx context.Context, pid uint32, data []byte) error {
	ctx, cancel := p.sb.client.withRequestTimeout(ctx)
	defer cancel()
	_, err := p.rpc.SendInput(ctx, connect.NewRequest(&process.SendInputRequest{
		Process: pidSelector(pid), Input: &process.ProcessInput{Input: &process.ProcessInput_Pty{Pty: data}},
	}))
	return rpcError("send terminal input", err)
}

// Kill ends a terminal (SIGKILL). ErrNotFound when it has already ended.
func (p *PTY) Kill(ctx context.Context, pid uint32) error {
	return (&Commands{sb: p.sb, rpc: p.rpc}).Kill(ctx, pid)
}

// PTYHandle is a running terminal. Read returns its output (unless it was
// created WithOutput); Write types into it. Output nobody reads is kept, up
// to 16 MiB; past that the stream waits for Read.
type PTYHandle struct {
	// PID is the shell's process ID inside the sandbox.
	PID uint32

	pty  *PTY
	cmd  *CommandHandle
	done chan struct{}
	out  *outputBuffer // nil with WithOutput

	closeOnce sync.Once
}

// pump runs the command pump, then ends Read.
func (h *PTYHandle) pump(s eventStream) {
	// The command pump reads data.stdout; terminal output arrives as
	// data.pty, so rewrite it before delivery.
	h.cmd.pump(ptyStream{s})
	if h.out != nil {
		h.out.Close()
	}
}

// ptyStream presents terminal output as stdout.
type ptyStream struct{ eventStream }

func (s ptyStream) next() (*process.ProcessEvent, error) {
	ev, err := s.eventStream.next()
	if d := ev.GetData(); d != nil && d.GetPty() != nil {
		ev = &process.ProcessEvent{Event: &process.ProcessEvent_Data{Data: &process.ProcessEvent_DataEvent{
			Output: &process.ProcessEvent_DataEvent_Stdout{Stdout: d.GetPty()},
		}}}
	}
	return ev, err
}

// Read reads terminal output. After the terminal ends it returns what is
// left, then io.EOF.
func (h *PTYHandle) Read(p []byte) (int, error) {
	if h.out == nil {
		return 0, io.EOF
	}
	return h.out.Read(p)
}

// Write types p into the terminal (bounded by the client's request timeout).
func (h *PTYHandle) Write(p []byte) (int, error) {
	if err := h.pty.SendInput(context.Background(), h.PID, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// SendInput types data into the terminal.
func (h *PTYHandle) SendInput(ctx context.Context, data []byte) error {
	return h.pty.SendInput(ctx, h.PID, data)
}

// Resize changes the terminal's size.
func (h *PTYHandle) Resize(ctx context.Context, size PTYSize) error {
	return h.pty.Resize(ctx, h.PID, size)
}

// Kill ends the terminal.
func (h *PTYHandle) Kill(ctx context.Context) error { return h.pty.Kill(ctx, h.PID) }

// Wait waits for the shell to exit and returns its result (a
// *CommandExitError when it exits non-zero).
func (h *PTYHandle) Wait(ctx context.Context) (*CommandResult, error) {
	return h.cmd.Wait(ctx)
}

// Done is closed when the terminal's stream has ended.
func (h *PTYHandle) Done() <-chan struct{} { return h.done }

// Close stops receiving output, leaving the terminal running (Kill ends
// it). Pending and later Reads return io.EOF. Close is safe to call twice.
func (h *PTYHandle) Close() error {
	h.closeOnce.Do(func() {
		if h.out != nil {
			h.out.discard()
		}
		h.cmd.Disconnect()
	})
	return nil
}
