package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/sandboxlog"
	"github.com/sandpit-dev/sandpit/internal/template"
	"github.com/sandpit-dev/sandpit/internal/template/agentexec"
)

// DefaultReadyTimeout bounds how long create waits for a template's ready
// check to pass.
const DefaultReadyTimeout = 60 * time.Second

// startTail is how much of the start command's output an error shows.
const startTail = 4096

// startTemplate runs a template's start command in a fresh sandbox and
// waits for its ready check, through the sandbox's agent at socket. The
// start command runs as the template's user in its workdir, for as long
// as it likes: a goroutine follows its output into the sandbox's log
// (ring, when not nil) until it exits, the sandbox goes, or bg ends. The
// ready check is polled until it exits 0. If the start command exits
// first, or the check does not pass in time, the error shows the start
// command's output. A template without a start command returns at once.
func startTemplate(ctx, bg context.Context, tpl *template.Template, socket, token string, ring *sandboxlog.Ring) error {
	if tpl.StartCmd == "" {
		return nil
	}
	out := &startOutput{ring: ring}
	started := make(chan uint32, 1)
	ended := make(chan error, 1)
	follow := agentexec.New(socket, token)
	go func() {
		defer follow.Close()
		err := follow.Run(bg, agentexec.Command{
			Script: tpl.StartCmd, User: tpl.User, Cwd: tpl.Workdir,
			Output: out.stream("stdout"), Stderr: out.stream("stderr"),
			Started: func(pid uint32) { out.setPid(pid); started <- pid },
		})
		out.flush()
		ended <- err
	}()
	select {
	case <-started:
	case err := <-ended:
		return fmt.Errorf("starting the start command of template %s: %w", tpl.ID, err)
	case <-ctx.Done():
		return fmt.Errorf("starting the start command of template %s: %w", tpl.ID, ctx.Err())
	}
	if tpl.ReadyCmd == "" {
		return nil
	}
	c := agentexec.New(socket, token)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, DefaultReadyTimeout)
	defer cancel()
	delay := 10 * time.Millisecond
	for {
		err := c.Run(ctx, agentexec.Command{Script: tpl.ReadyCmd, User: tpl.User, Cwd: tpl.Workdir})
		if err == nil {
			return nil
		}
		var exit *agentexec.ExitError
		if !errors.As(err, &exit) && ctx.Err() == nil {
			return fmt.Errorf("running the ready check of template %s: %w", tpl.ID, err)
		}
		select {
		case <-ended:
			// The start command died: it will never become ready.
			return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf(
				"template %s: the start command %q exited before the ready check %q passed; its output:\n%s",
				tpl.ID, tpl.StartCmd, tpl.ReadyCmd, out.tail()))
		case <-ctx.Done():
			return errdefs.New(errdefs.ErrDeadlineExceeded, fmt.Sprintf(
				"template %s: the ready check %q did not pass within %s; the start command's output:\n%s",
				tpl.ID, tpl.ReadyCmd, DefaultReadyTimeout, out.tail()))
		case <-time.After(delay):
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// startOutput takes the start command's output: each line becomes an
// entry of the sandbox's log as upstream envd logs a process's output
// (event_type process_output, stream, pid), and the last startTail bytes
// are kept for error messages.
type startOutput struct {
	ring *sandboxlog.Ring

	mu      sync.Mutex
	pid     string
	partial map[string][]byte // an unfinished line per stream
	last    []byte
}

func (o *startOutput) setPid(pid uint32) {
	o.mu.Lock()
	o.pid = strconv.FormatUint(uint64(pid), 10)
	o.mu.Unlock()
}

type streamWriter struct {
	o      *startOutput
	stream string
}

func (o *startOutput) stream(name string) streamWriter { return streamWriter{o, name} }

// Write implements io.Writer.
func (w streamWriter) Write(p []byte) (int, error) {
	o := w.o
	o.mu.Lock()
	defer o.mu.Unlock()
	o.last = append(o.last, p...)
	if len(o.last) > startTail {
		o.last = append(o.last[:0], o.last[len(o.last)-startTail:]...)
	}
	if o.partial == nil {
		o.partial = map[string][]byte{}
	}
	buf := append(o.partial[w.stream], p...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		o.emitLocked(w.stream, bytes.TrimSuffix(buf[:i], []byte("\r")))
		buf = buf[i+1:]
	}
	for len(buf) >= sandboxlog.MaxLine {
		o.emitLocked(w.stream, buf[:sandboxlog.MaxLine])
		buf = buf[sandboxlog.MaxLine:]
	}
	o.partial[w.stream] = append([]byte(nil), buf...)
	return len(p), nil
}

// flush logs what is left of unfinished lines.
func (o *startOutput) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range []string{"stdout", "stderr"} {
		if b := o.partial[s]; len(b) > 0 {
			o.emitLocked(s, b)
		}
		delete(o.partial, s)
	}
}

// emitLocked logs one line. Preconditions: o.mu is held.
func (o *startOutput) emitLocked(stream string, line []byte) {
	if o.ring == nil || len(line) == 0 {
		return
	}
	o.ring.Append(sandboxlog.Entry{
		Level: sandboxlog.LevelInfo, Logger: "processSvc", Message: string(line),
		Fields: map[string]string{"event_type": "process_output", "stream": stream, "pid": o.pid, "tag": "start_cmd"},
	})
}

func (o *startOutput) tail() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.last)
}
