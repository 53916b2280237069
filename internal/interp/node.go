package interp

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// The JavaScript/TypeScript kernel: node_kernel.js, run by Node, takes one
// JSON request per line on stdin and writes JSON events on fd 3. Output that
// bypasses process.stdout (a child process writing to the inherited fd 1)
// is read from the process's stdout and stderr and attributed to the
// running execution.

//go:embed node_kernel.js
var nodeKernelJS []byte

type nodeRequest struct {
	ID    string            `json:"id"`
	Op    string            `json:"op"` // exec, env, chdir
	Code  string            `json:"code,omitempty"`
	Set   map[string]string `json:"set,omitempty"`
	Unset []string          `json:"unset,omitempty"`
	Dir   string            `json:"dir,omitempty"`
}

type nodeEvent struct {
	ID        string `json:"id"`
	Type      string `json:"type"` // ready, count, stdout, stderr, result, error, done
	Text      string `json:"text"`
	Count     int    `json:"count"`
	Name      string `json:"name"`
	Value     string `json:"value"`
	Traceback string `json:"traceback"`
	at        string
}

// anyExecution marks output read from the process's own stdout/stderr.
const anyExecution = "*"

type nodeKernel struct {
	log   *slog.Logger
	proc  *process
	dir   string
	grace time.Duration

	stdin  io.WriteCloser
	evR    *os.File // the read end of fd 3
	events chan nodeEvent
	stop   chan struct{} // closed by close: ends the readers
	wg     sync.WaitGroup

	closeOnce sync.Once
}

var _ kernel = (*nodeKernel)(nil)

// startNode starts the kernel for lang (JavaScript or TypeScript);
// typescript is the typescript package's directory, or "" when it is not
// installed.
func startNode(ctx context.Context, node, lang, typescript string, o kernelOpts) (_ kernel, err error) {
	dir, err := o.kernelDir()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	script := filepath.Join(dir, "kernel.js")
	if err := os.WriteFile(script, nodeKernelJS, 0o644); err != nil {
		return nil, fmt.Errorf("writing node kernel: %w", err)
	}
	evR, evW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("creating event pipe: %w", err)
	}
	defer evW.Close()

	k := &nodeKernel{
		log:    o.log.With("kernel", "node"),
		dir:    dir,
		grace:  o.interruptGrace,
		events: make(chan nodeEvent, 256),
		stop:   make(chan struct{}),
	}
	// --expose-internals gives the kernel Node's REPL rewriter for
	// top-level await.
	cmd := exec.Command(node, "--expose-internals", script)
	cmd.Env = append(append([]string(nil), o.env...), "SANDPIT_LANGUAGE="+lang)
	if typescript != "" {
		cmd.Env = append(cmd.Env, "SANDPIT_TYPESCRIPT="+typescript)
	}
	cmd.Dir = o.dir
	cmd.SysProcAttr = o.id.sysProcAttr()
	cmd.ExtraFiles = []*os.File{evW}
	cmd.Stdout = &eventWriter{k: k, typ: "stdout"}
	stderr := &tailBuffer{max: 8 << 10}
	cmd.Stderr = io.MultiWriter(stderr, &eventWriter{k: k, typ: "stderr"})
	if k.stdin, err = cmd.StdinPipe(); err != nil {
		evR.Close()
		return nil, fmt.Errorf("creating stdin pipe: %w", err)
	}
	if k.proc, err = startProcess(cmd, o.start); err != nil {
		evR.Close()
		return nil, err
	}
	k.proc.stderr = stderr
	k.log = k.log.With("pid", cmd.Process.Pid)
	k.evR = evR
	k.wg.Add(1)
	go k.readEvents(evR)

	ctx, cancel := context.WithTimeout(ctx, o.startTimeout)
	defer cancel()
	for {
		select {
		case ev := <-k.events:
			if ev.Type == "ready" {
				return k, nil
			}
		case <-k.proc.done:
			_ = k.close()
			return nil, fmt.Errorf("node kernel exited (%v): %s", k.proc.cmd.ProcessState, stderr.String())
		case <-ctx.Done():
			_ = k.close()
			return nil, fmt.Errorf("waiting for node kernel: %w", ctx.Err())
		}
	}
}

// readEvents decodes events from the kernel's fd 3 until it is closed.
func (k *nodeKernel) readEvents(r *os.File) {
	defer k.wg.Done()
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	for sc.Scan() {
		var ev nodeEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			k.log.Warn("bad node kernel event", "err", err)
			continue
		}
		if !k.deliver(ev) {
			return
		}
	}
}

func (k *nodeKernel) deliver(ev nodeEvent) bool {
	ev.at = time.Now().UTC().Format(time.RFC3339Nano)
	select {
	case k.events <- ev:
		return true
	case <-k.stop:
		return false
	}
}

// eventWriter turns a process's raw output into events.
type eventWriter struct {
	k   *nodeKernel
	typ string
}

func (w *eventWriter) Write(p []byte) (int, error) {
	if !w.k.deliver(nodeEvent{ID: anyExecution, Type: w.typ, Text: string(p)}) {
		return 0, io.ErrClosedPipe
	}
	return len(p), nil
}

// request sends req and passes its events to on until "done".
func (k *nodeKernel) request(ctx context.Context, req nodeRequest, on func(nodeEvent)) error {
	req.ID = newID()
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encoding kernel request: %w", err)
	}
	if _, err := k.stdin.Write(append(b, '\n')); err != nil {
		if exitedNow(k) {
			return errKernelDied
		}
		return fmt.Errorf("sending kernel request: %w", err)
	}
	in := newInterrupter(ctx, k.proc, k.grace, k.log)
	defer in.stop()
	for {
		select {
		case ev := <-k.events:
			if ev.ID != req.ID && ev.ID != anyExecution {
				continue // output of an earlier cell's timers
			}
			if ev.Type == "done" {
				return nil
			}
			on(ev)
		case <-k.proc.done:
			return errKernelDied
		case <-in.requested():
			in.start()
		case <-in.repeat():
			in.resend()
		case <-in.expired():
			in.kill()
			return errKernelDied
		}
	}
}

func (k *nodeKernel) execute(ctx context.Context, code string, emit func(any)) error {
	return k.request(ctx, nodeRequest{Op: "exec", Code: code}, func(ev nodeEvent) {
		switch ev.Type {
		case "count":
			emit(countLine{Type: "number_of_executions", ExecutionCount: ev.Count})
		case "stdout", "stderr":
			emit(streamLine{Type: ev.Type, Text: ev.Text, Timestamp: ev.at})
		case "result":
			emit(map[string]any{"type": "result", "text": ev.Text, "is_main_result": true})
		case "error":
			emit(newErrorLine(ev.Name, ev.Value, ev.Traceback))
		}
	})
}

func (k *nodeKernel) setEnv(ctx context.Context, set map[string]string, unset []string) error {
	if len(set) == 0 && len(unset) == 0 {
		return nil
	}
	return k.quiet(ctx, nodeRequest{Op: "env", Set: set, Unset: unset})
}

func (k *nodeKernel) chdir(ctx context.Context, dir string) error {
	return k.quiet(ctx, nodeRequest{Op: "chdir", Dir: dir})
}

// quiet runs a request whose only possible output is an error.
func (k *nodeKernel) quiet(ctx context.Context, req nodeRequest) error {
	var failure error
	err := k.request(ctx, req, func(ev nodeEvent) {
		if ev.Type == "error" {
			failure = fmt.Errorf("%s: %s", ev.Name, ev.Value)
		}
	})
	if err != nil {
		return err
	}
	return failure
}

func (k *nodeKernel) exited() <-chan struct{} { return k.proc.done }

func (k *nodeKernel) close() error {
	k.closeOnce.Do(func() {
		close(k.stop)
		_ = k.stdin.Close()
		k.proc.kill()
		// A child that outlived the kernel may hold fd 3 open.
		_ = k.evR.Close()
		k.wg.Wait()
		if err := os.RemoveAll(k.dir); err != nil {
			k.log.Warn("removing kernel directory", "err", err)
		}
	})
	return nil
}
