package sandpit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/sandpit-dev/sandpit/gen/proto/process"
	"github.com/sandpit-dev/sandpit/gen/proto/process/processconnect"
)

// cleanupTimeout bounds the best-effort kill after a cancelled Run.
const cleanupTimeout = 5 * time.Second

// keepaliveInterval is the Keepalive-Ping-Interval (seconds) streams ask
// for, as the E2B SDKs do.
const keepaliveInterval = "50"

// Commands runs processes in a sandbox: Run waits for the command, Start
// returns a handle on it. Commands run under bash -l -c, as with E2B.
type Commands struct {
	sb  *Sandbox
	rpc processconnect.ProcessClient
}

// CommandResult is what a finished command left.
type CommandResult struct {
	// ExitCode is the exit code; -1 when a signal killed the process.
	ExitCode int
	// Stdout and Stderr are everything the command wrote.
	Stdout, Stderr string
	// Error is the server's description of a failure, e.g. "exit status 1";
	// empty on success.
	Error string
}

// ProcessInfo describes a process running in the sandbox.
type ProcessInfo struct {
	// PID is its process ID inside the sandbox.
	PID uint32
	// Tag is the tag it was started with, if any.
	Tag string
	// Cmd, Args, Envs and Cwd are how it was started.
	Cmd  string
	Args []string
	Envs map[string]string
	Cwd  string
}

// Run runs cmd (a bash command line) and waits for it. Output streams to
// the OnStdout/OnStderr callbacks and WithStdout/WithStderr writers as it
// arrives, and is also collected in the result.
//
// A non-zero exit returns the result and a *CommandExitError. When the
// command outlives its timeout (WithTimeout, default 60s) the sandbox kills
// it and Run returns ErrTimeout. Cancelling ctx ends the call at once and
// kills the command.
func (c *Commands) Run(ctx context.Context, cmd string, opts ...CommandOption) (*CommandResult, error) {
	h, err := c.Start(ctx, cmd, opts...)
	if err != nil {
		return nil, err
	}
	res, err := h.Wait(ctx)
	if ctx.Err() != nil {
		kctx, cancel := detached(ctx)
		_ = h.Kill(kctx)
		cancel()
	}
	return res, err
}

// Start starts cmd and returns once it runs. Its output streams to the
// callbacks and writers in opts; Wait returns the result. ctx bounds the
// handle: cancelling it stops the output stream (Wait then returns the
// context's error) but not the process; use Kill for that.
func (c *Commands) Start(ctx context.Context, cmd string, opts ...CommandOption) (*CommandHandle, error) {
	cfg := commandConfig{timeout: defaultStreamTimeout}
	for _, o := range opts {
		o.applyCommand(&cfg)
	}
	pc := &process.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-l", "-c", cmd}, Envs: cfg.envs}
	if cfg.cwd != "" {
		pc.Cwd = &cfg.cwd
	}
	stdin := cfg.stdin
	req := connect.NewRequest(&process.StartRequest{Process: pc, Stdin: &stdin})
	return c.open(ctx, "run "+quoteOp(cmd), cfg, req.Header(), startCall(c.rpc, req))
}

// Connect attaches to a running process: its further output streams to the
// callbacks and writers in opts, and Wait returns its result. ErrNotFound
// when there is no such process.
func (c *Commands) Connect(ctx context.Context, pid uint32, opts ...CommandOption) (*CommandHandle, error) {
	cfg := commandConfig{timeout: defaultStreamTimeout}
	for _, o := range opts {
		o.applyCommand(&cfg)
	}
	req := connect.NewRequest(&process.ConnectRequest{Process: pidSelector(pid)})
	return c.open(ctx, "connect to process", cfg, req.Header(), connectCall(c.rpc, req))
}

// open starts a stream and the goroutine that pumps it into a handle.
func (c *Commands) open(ctx context.Context, op string, cfg commandConfig, h http.Header, call func(context.Context) (eventStream, error)) (*CommandHandle, error) {
	h.Set("Keepalive-Ping-Interval", keepaliveInterval)
	setUser(h, cfg.user)
	sctx, cancel := context.WithCancel(ctx)
	if cfg.timeout > 0 {
		// connect-go sends the deadline as Connect-Timeout-Ms; the
		// sandbox kills the process when it passes.
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
	ch := &CommandHandle{PID: pid, cmds: c, op: op, cancel: cancel, done: make(chan struct{}), cfg: cfg, parent: ctx}
	go ch.pump(s)
	return ch, nil
}

func pidSelector(pid uint32) *process.ProcessSelector {
	return &process.ProcessSelector{Selector: &process.ProcessSelector_Pid{Pid: pid}}
}

// quoteOp shortens a command line for an error's Op.
func quoteOp(cmd string) string {
	if len(cmd) > 40 {
		cmd = cmd[:37] + "..."
	}
	return "\"" + cmd + "\""
}

// List returns the processes running in the sandbox that were started
// through the API.
func (c *Commands) List(ctx context.Context) ([]ProcessInfo, error) {
	ctx, cancel := c.sb.client.withRequestTimeout(ctx)
	defer cancel()
	resp, err := c.rpc.List(ctx, connect.NewRequest(&process.ListRequest{}))
	if err != nil {
		return nil, rpcError("list processes", err)
	}
	var out []ProcessInfo
	for _, p := range resp.Msg.GetProcesses() {
		cfg := p.GetConfig()
		out = append(out, ProcessInfo{
			PID: p.GetPid(), Tag: p.GetTag(),
			Cmd: cfg.GetCmd(), Args: cfg.GetArgs(), Envs: cfg.GetEnvs(), Cwd: cfg.GetCwd(),
		})
	}
	return out, nil
}

// Kill sends SIGKILL to a process. ErrNotFound when there is no such process.
func (c *Commands) Kill(ctx context.Context, pid uint32) error {
	ctx, cancel := c.sb.client.withRequestTimeout(ctx)
	defer cancel()
	_, err := c.rpc.SendSignal(ctx, connect.NewRequest(&process.SendSignalRequest{
		Process: pidSelector(pid), Signal: process.Signal_SIGNAL_SIGKILL,
	}))
	return rpcError("kill process", err)
}

// SendStdin writes data to a process's stdin (started WithStdin).
func (c *Commands) SendStdin(ctx context.Context, pid uint32, data []byte) error {
	ctx, cancel := c.sb.client.withRequestTimeout(ctx)
	defer cancel()
	_, err := c.rpc.SendInput(ctx, connect.NewRequest(&process.SendInputRequest{
		Process: pidSelector(pid), Input: &process.ProcessInput{Input: &process.ProcessInput_Stdin{Stdin: data}},
	}))
	return rpcError("send stdin", err)
}

// CloseStdin closes a process's stdin, so it reads end of file.
func (c *Commands) CloseStdin(ctx context.Context, pid uint32) error {
	ctx, cancel := c.sb.client.withRequestTimeout(ctx)
	defer cancel()
	_, err := c.rpc.CloseStdin(ctx, connect.NewRequest(&process.CloseStdinRequest{Process: pidSelector(pid)}))
	return rpcError("close stdin", err)
}

// CommandHandle is a running command started by Start or attached by
// Connect. Its methods are safe for concurrent use.
type CommandHandle struct {
	// PID is the process's ID inside the sandbox.
	PID uint32

	cmds   *Commands
	op     string
	cfg    commandConfig
	cancel context.CancelFunc
	done   chan struct{}
	parent context.Context // the caller's, to tell its deadline from the timeout's

	mu             sync.Mutex
	stdout, stderr bytes.Buffer
	result         *CommandResult // set when done, if the process ended
	err            error          // set when done
}

// pump reads the stream until it ends, delivering output.
func (h *CommandHandle) pump(s eventStream) {
	defer close(h.done)
	defer h.cancel()
	defer s.close()
	var outSplit, errSplit utf8Splitter
	var end *process.ProcessEvent_EndEvent
	var streamErr error
	for {
		ev, err := s.next()
		if err != nil {
			streamErr = err
			break
		}
		if ev == nil {
			break
		}
		if d := ev.GetData(); d != nil {
			if b := d.GetStdout(); b != nil {
				if err := h.deliver(&h.stdout, b, h.cfg.stdoutW, h.cfg.onStdout, &outSplit); err != nil {
					streamErr = err
					break
				}
			}
			if b := d.GetStderr(); b != nil {
				if err := h.deliver(&h.stderr, b, h.cfg.stderrW, h.cfg.onStderr, &errSplit); err != nil {
					streamErr = err
					break
				}
			}
		}
		if e := ev.GetEnd(); e != nil {
			end = e
		}
	}
	if rest := outSplit.flush(); rest != "" && h.cfg.onStdout != nil {
		h.cfg.onStdout(rest)
	}
	if rest := errSplit.flush(); rest != "" && h.cfg.onStderr != nil {
		h.cfg.onStderr(rest)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case end != nil:
		h.result = &CommandResult{
			ExitCode: int(end.GetExitCode()),
			Stdout:   h.stdout.String(),
			Stderr:   h.stderr.String(),
			Error:    end.GetError(),
		}
		if h.result.ExitCode != 0 {
			h.err = &CommandExitError{ExitCode: h.result.ExitCode, Stdout: h.result.Stdout, Stderr: h.result.Stderr, Message: h.result.Error}
		}
	case streamErr != nil && h.cfg.timeout > 0 && h.parent != nil && h.parent.Err() == nil &&
		connect.CodeOf(streamErr) == connect.CodeDeadlineExceeded:
		h.err = &Error{Op: h.op, Message: fmt.Sprintf("ran past its timeout of %v and was killed", h.cfg.timeout), kind: ErrTimeout, cause: streamErr}
	case streamErr != nil:
		h.err = rpcError(h.op, streamErr)
	default:
		h.err = &Error{Op: h.op, Message: "the process's stream ended without a result"}
	}
}

// deliver appends output to buf and hands it to the writer and callback.
func (h *CommandHandle) deliver(buf *bytes.Buffer, b []byte, w interface{ Write([]byte) (int, error) }, fn func(string), split *utf8Splitter) error {
	h.mu.Lock()
	buf.Write(b)
	h.mu.Unlock()
	if w != nil {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	if fn != nil {
		if s := split.feed(b); s != "" {
			fn(s)
		}
	}
	return nil
}

// Wait waits for the command to end and returns its result: with a
// *CommandExitError when it exited non-zero, ErrTimeout when it outlived its
// timeout. Cancelling ctx stops the waiting, not the command.
func (h *CommandHandle) Wait(ctx context.Context) (*CommandResult, error) {
	select {
	case <-h.done:
	case <-ctx.Done():
		return nil, &Error{Op: h.op, cause: ctx.Err(), kind: ctxKind(ctx.Err())}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.result, h.err
}

// ctxKind maps a context error to a category.
func ctxKind(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return ErrTimeout
	}
	return nil
}

// Done is closed when the command's stream has ended.
func (h *CommandHandle) Done() <-chan struct{} { return h.done }

// Stdout returns what the command has written to stdout so far.
func (h *CommandHandle) Stdout() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stdout.String()
}

// Stderr returns what the command has written to stderr so far.
func (h *CommandHandle) Stderr() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stderr.String()
}

// Kill sends SIGKILL to the command. ErrNotFound when it has already ended.
func (h *CommandHandle) Kill(ctx context.Context) error { return h.cmds.Kill(ctx, h.PID) }

// SendStdin writes to the command's stdin (it must be started WithStdin).
func (h *CommandHandle) SendStdin(ctx context.Context, data []byte) error {
	return h.cmds.SendStdin(ctx, h.PID, data)
}

// CloseStdin closes the command's stdin.
func (h *CommandHandle) CloseStdin(ctx context.Context) error { return h.cmds.CloseStdin(ctx, h.PID) }

// Disconnect stops receiving the command's output; the command keeps
// running (reattach with Commands.Connect). Wait then returns an error.
func (h *CommandHandle) Disconnect() {
	h.cancel()
	<-h.done
}
