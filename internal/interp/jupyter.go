package interp

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-zeromq/zmq4"
)

// A Jupyter kernel driven over the Jupyter messaging protocol.
//
// The client side uses github.com/go-zeromq/zmq4, a pure-Go ZeroMQ (ZMTP 3)
// implementation: the agent is a static CGO-free binary, which rules out
// libzmq bindings, and zmq4 implements the DEALER and SUB sockets and the ipc
// transport that a Jupyter client needs. The kernel binds its sockets on ipc
// (unix socket) endpoints in a private directory, so nothing depends on the
// sandbox's loopback interface or on free TCP ports.

// jupyterSpec describes how to run and talk to one kind of Jupyter kernel.
type jupyterSpec struct {
	name string // kernel_name in the connection file
	// argv returns the command line starting the kernel on connFile.
	argv func(connFile string) []string
	// setup is code run silently once the kernel is ready.
	setup string
	// envCode returns code that sets and unsets environment variables.
	envCode func(set map[string]string, unset []string) string
	// chdirCode returns code that changes the working directory.
	chdirCode func(dir string) string
}

// kernelOpts is what every kernel start needs from the Server.
type kernelOpts struct {
	log            *slog.Logger
	id             identity
	env            []string
	dir            string // initial working directory
	tmp            string // parent of per-kernel private directories
	startTimeout   time.Duration
	interruptGrace time.Duration
	start          func(*exec.Cmd) error // Config.StartProcess
}

// kernelDir makes a kernel's private directory, owned by the user the
// kernel runs as.
func (o kernelOpts) kernelDir() (string, error) {
	dir, err := os.MkdirTemp(o.tmp, "sandpit-kernel-")
	if err != nil {
		return "", fmt.Errorf("creating kernel directory: %w", err)
	}
	if err := o.id.chown(dir); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

type jupyterKernel struct {
	log   *slog.Logger
	spec  jupyterSpec
	proc  *process
	dir   string
	sig   signer
	sess  string
	grace time.Duration

	stop              context.CancelFunc // ends the sockets' lives
	shell, iopub, ctl zmq4.Socket
	shellCh, iopubCh  chan message
	readers           sync.WaitGroup
	closeOnce         sync.Once
}

var _ kernel = (*jupyterKernel)(nil)

// Connection file ports; with the ipc transport they are suffixes of the
// socket paths.
const (
	portShell = iota + 1
	portIOPub
	portStdin
	portControl
	portHB
)

// startJupyter starts a kernel and returns once it answers kernel_info on
// shell and publishes on iopub.
func startJupyter(ctx context.Context, spec jupyterSpec, o kernelOpts) (_ *jupyterKernel, err error) {
	dir, err := o.kernelDir()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	k := &jupyterKernel{
		log:     o.log.With("kernel", spec.name),
		spec:    spec,
		dir:     dir,
		sig:     signer{key: []byte(newID())},
		sess:    newID(),
		grace:   o.interruptGrace,
		shellCh: make(chan message, 64),
		iopubCh: make(chan message, 1024),
	}
	base := filepath.Join(dir, "k")
	conn := map[string]any{
		"transport":        "ipc",
		"ip":               base,
		"shell_port":       portShell,
		"iopub_port":       portIOPub,
		"stdin_port":       portStdin,
		"control_port":     portControl,
		"hb_port":          portHB,
		"key":              string(k.sig.key),
		"signature_scheme": "hmac-sha256",
		"kernel_name":      spec.name,
	}
	b, err := json.Marshal(conn)
	if err != nil {
		return nil, fmt.Errorf("encoding connection file: %w", err)
	}
	connFile := filepath.Join(dir, "connection.json")
	if err := os.WriteFile(connFile, b, 0o600); err != nil {
		return nil, fmt.Errorf("writing connection file: %w", err)
	}
	if err := o.id.chown(connFile); err != nil {
		return nil, err
	}

	argv := spec.argv(connFile)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = o.env
	cmd.Dir = o.dir
	cmd.SysProcAttr = o.id.sysProcAttr()
	k.proc, err = startProcess(cmd, o.start)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			k.proc.kill()
		}
	}()
	k.log = k.log.With("pid", cmd.Process.Pid)

	ctx, cancel := context.WithTimeout(ctx, o.startTimeout)
	defer cancel()
	if err := k.connect(ctx, base); err != nil {
		k.closeSockets()
		return nil, err
	}
	if err := k.handshake(ctx); err != nil {
		k.closeSockets()
		return nil, err
	}
	if spec.setup != "" {
		if err := k.runSilent(ctx, spec.setup); err != nil {
			k.closeSockets()
			return nil, fmt.Errorf("running kernel setup: %w", err)
		}
	}
	return k, nil
}

// startError describes a kernel that did not come up, with its stderr.
func (k *jupyterKernel) startError(what string, err error) error {
	select {
	case <-k.proc.done:
		return fmt.Errorf("%s: kernel exited (%v): %s", what, k.proc.cmd.ProcessState, k.proc.stderr.String())
	default:
	}
	return fmt.Errorf("%s: %w", what, err)
}

// connect waits for the kernel to bind its sockets and connects to them.
func (k *jupyterKernel) connect(ctx context.Context, base string) error {
	for _, port := range []int{portShell, portIOPub, portControl} {
		path := fmt.Sprintf("%s-%d", base, port)
		if err := pollUntil(ctx, k.proc.done, func() bool {
			_, err := os.Stat(path)
			return err == nil
		}); err != nil {
			return k.startError("waiting for kernel sockets", err)
		}
	}
	sctx, stop := context.WithCancel(context.Background())
	k.stop = stop
	zlog := slog.NewLogLogger(k.log.Handler(), slog.LevelDebug)
	opts := []zmq4.Option{
		zmq4.WithLogger(zlog),
		zmq4.WithDialerRetry(5 * time.Millisecond),
		zmq4.WithDialerMaxRetries(400),
	}
	k.shell = zmq4.NewDealer(sctx, opts...)
	k.ctl = zmq4.NewDealer(sctx, opts...)
	k.iopub = zmq4.NewSub(sctx, opts...)
	for _, s := range []struct {
		sock zmq4.Socket
		port int
	}{{k.shell, portShell}, {k.ctl, portControl}, {k.iopub, portIOPub}} {
		if err := s.sock.Dial(fmt.Sprintf("ipc://%s-%d", base, s.port)); err != nil {
			return k.startError("connecting to kernel", err)
		}
	}
	if err := k.iopub.SetOption(zmq4.OptionSubscribe, ""); err != nil {
		return fmt.Errorf("subscribing to iopub: %w", err)
	}
	k.readers.Add(2)
	go k.read(sctx, k.shell, k.shellCh)
	go k.read(sctx, k.iopub, k.iopubCh)
	return nil
}

// read decodes messages from sock into ch until the socket is closed or
// ctx is done.
func (k *jupyterKernel) read(ctx context.Context, sock zmq4.Socket, ch chan<- message) {
	defer k.readers.Done()
	defer close(ch)
	for {
		raw, err := sock.Recv()
		if err != nil {
			return
		}
		m, err := k.sig.decode(raw.Frames)
		if err != nil {
			k.log.Warn("dropping kernel message", "err", err)
			continue
		}
		select {
		case ch <- m:
		case <-ctx.Done():
			return
		}
	}
}

// handshake sends kernel_info requests until one is answered on shell and
// its status is seen on iopub: a SUB socket only receives what is published
// after its subscription reached the kernel.
func (k *jupyterKernel) handshake(ctx context.Context) error {
	var onIOPub, replied bool
	for !(onIOPub && replied) {
		id, err := k.send(k.shell, "kernel_info_request", struct{}{})
		if err != nil {
			return err
		}
		onIOPub = false
		retry := time.NewTimer(100 * time.Millisecond)
	wait:
		for !(onIOPub && replied) {
			select {
			case m, ok := <-k.shellCh:
				if !ok {
					retry.Stop()
					return k.startError("waiting for kernel_info", errKernelDied)
				}
				if m.Header.MsgType == "kernel_info_reply" {
					replied = true
				}
			case m, ok := <-k.iopubCh:
				if !ok {
					retry.Stop()
					return k.startError("waiting for kernel_info", errKernelDied)
				}
				if m.ParentHeader.MsgID == id {
					onIOPub = true
				}
			case <-retry.C:
				break wait
			case <-k.proc.done:
				retry.Stop()
				return k.startError("waiting for kernel_info", errKernelDied)
			case <-ctx.Done():
				retry.Stop()
				return k.startError("waiting for kernel_info", ctx.Err())
			}
		}
		retry.Stop()
	}
	// Drain the rest of the handshake's iopub traffic (status idle).
	for {
		select {
		case <-k.iopubCh:
		default:
			return nil
		}
	}
}

func (k *jupyterKernel) send(sock zmq4.Socket, msgType string, content any) (string, error) {
	frames, id, err := k.sig.encode(k.sess, msgType, content)
	if err != nil {
		return "", err
	}
	if err := sock.SendMulti(zmq4.NewMsgFrom(frames...)); err != nil {
		return "", fmt.Errorf("sending %s: %w", msgType, err)
	}
	return id, nil
}

type executeRequest struct {
	Code            string         `json:"code"`
	Silent          bool           `json:"silent"`
	StoreHistory    bool           `json:"store_history"`
	UserExpressions map[string]any `json:"user_expressions"`
	AllowStdin      bool           `json:"allow_stdin"`
	StopOnError     bool           `json:"stop_on_error"`
}

func (k *jupyterKernel) execute(ctx context.Context, code string, emit func(any)) error {
	// stop_on_error would make the kernel abort requests that reach it
	// shortly after a failed one, including the next cell we send once
	// this one replied; executions are serialized here, so there is never
	// a queue to abort. A failing statement still ends its own cell.
	return k.run(ctx, executeRequest{
		Code:            code,
		StoreHistory:    true,
		UserExpressions: map[string]any{},
	}, emit)
}

// runSilent runs code without output or history, failing if it raises.
func (k *jupyterKernel) runSilent(ctx context.Context, code string) error {
	var failure *errorLine
	err := k.run(ctx, executeRequest{
		Code:            code,
		Silent:          true,
		UserExpressions: map[string]any{},
	}, func(v any) {
		if e, ok := v.(errorLine); ok {
			failure = &e
		}
	})
	if err != nil {
		return err
	}
	if failure != nil {
		return fmt.Errorf("%s: %s", failure.Name, failure.Value)
	}
	return nil
}

// run sends an execute_request and turns its iopub messages into lines
// until the kernel reports idle for it. Every output of a request is
// published before its idle status, so the shell reply is not awaited: it
// can come after idle, and an interrupt that lands between requests makes
// ipykernel drop the reply altogether.
func (k *jupyterKernel) run(ctx context.Context, req executeRequest, emit func(any)) error {
	id, err := k.send(k.shell, "execute_request", req)
	if err != nil {
		select {
		case <-k.proc.done:
			return errKernelDied
		default:
			return err
		}
	}
	in := newInterrupter(ctx, k.proc, k.grace, k.log)
	defer in.stop()
	for {
		select {
		case m, ok := <-k.iopubCh:
			if !ok {
				return k.died()
			}
			if m.ParentHeader.MsgID != id {
				continue // left over from an earlier, interrupted execution
			}
			if m.Header.MsgType == "status" {
				var st struct {
					ExecutionState string `json:"execution_state"`
				}
				if json.Unmarshal(m.Content, &st) == nil && st.ExecutionState == "idle" {
					return nil
				}
				continue
			}
			if line, ok := iopubLine(m); ok {
				emit(line)
			}
		case _, ok := <-k.shellCh:
			// Replies carry nothing the iopub messages did not; errors
			// are published there too.
			if !ok {
				return k.died()
			}
		case <-k.proc.done:
			return k.died()
		case <-in.requested():
			in.start()
		case <-in.repeat():
			in.resend()
		case <-in.expired():
			in.kill()
			return k.died()
		}
	}
}

func (k *jupyterKernel) died() error {
	select {
	case <-k.proc.done:
		k.log.Warn("kernel died", "state", k.proc.cmd.ProcessState.String(), "stderr", k.proc.stderr.String())
	default:
		k.log.Warn("kernel connection lost")
	}
	return errKernelDied
}

// iopubLine maps an iopub message of an execution to its NDJSON line.
func iopubLine(m message) (any, bool) {
	switch m.Header.MsgType {
	case "stream":
		var c struct {
			Name string `json:"name"`
			Text string `json:"text"`
		}
		if json.Unmarshal(m.Content, &c) != nil {
			return nil, false
		}
		typ := "stdout"
		if c.Name == "stderr" {
			typ = "stderr"
		}
		return streamLine{Type: typ, Text: c.Text, Timestamp: m.Header.Date}, true
	case "execute_input":
		var c struct {
			ExecutionCount int `json:"execution_count"`
		}
		if json.Unmarshal(m.Content, &c) != nil {
			return nil, false
		}
		return countLine{Type: "number_of_executions", ExecutionCount: c.ExecutionCount}, true
	case "execute_result", "display_data":
		var c struct {
			Data map[string]json.RawMessage `json:"data"`
		}
		if json.Unmarshal(m.Content, &c) != nil {
			return nil, false
		}
		return resultFromMIME(c.Data, m.Header.MsgType == "execute_result"), true
	case "error":
		var c struct {
			EName     string   `json:"ename"`
			EValue    string   `json:"evalue"`
			Traceback []string `json:"traceback"`
		}
		if json.Unmarshal(m.Content, &c) != nil {
			return nil, false
		}
		return newErrorLine(c.EName, c.EValue, strings.Join(c.Traceback, "\n")), true
	}
	return nil, false
}

func (k *jupyterKernel) setEnv(ctx context.Context, set map[string]string, unset []string) error {
	if len(set) == 0 && len(unset) == 0 {
		return nil
	}
	return k.runSilent(ctx, k.spec.envCode(set, unset))
}

func (k *jupyterKernel) chdir(ctx context.Context, dir string) error {
	return k.runSilent(ctx, k.spec.chdirCode(dir))
}

func (k *jupyterKernel) exited() <-chan struct{} { return k.proc.done }

func (k *jupyterKernel) closeSockets() {
	if k.stop == nil {
		return
	}
	k.stop()
	for _, s := range []zmq4.Socket{k.shell, k.ctl, k.iopub} {
		_ = s.Close()
	}
	k.readers.Wait()
}

func (k *jupyterKernel) close() error {
	k.closeOnce.Do(func() {
		k.proc.kill()
		k.closeSockets()
		if err := os.RemoveAll(k.dir); err != nil {
			k.log.Warn("removing kernel directory", "err", err)
		}
	})
	return nil
}

// pollUntil calls cond every few milliseconds until it is true, ctx is done
// or dead is closed.
func pollUntil(ctx context.Context, dead <-chan struct{}, cond func() bool) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-dead:
			return errKernelDied
		case <-t.C:
		}
	}
	return nil
}
