package interp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"time"
)

// The Bash kernel: one interactive bash (--noediting, no prompts) per
// context, so that cd, variables and functions persist and an interrupt
// (SIGINT to its process group) aborts the running command without ending
// the shell, as Ctrl-C does in a terminal. Each cell is sent as one line,
// `eval $'<code>'`, followed by a line that prints a sentinel with the exit
// status on stdout and stderr; output before the sentinels is the cell's.

type bashKernel struct {
	log   *slog.Logger
	proc  *process
	grace time.Duration

	stdin  io.WriteCloser
	outR   *os.File
	errR   *os.File
	chunks chan bashChunk
	stop   chan struct{} // closed by close: ends the readers
	wg     sync.WaitGroup

	count int // executions so far; used by the context's executor only

	closeOnce sync.Once
}

type bashChunk struct {
	stream int // 0 stdout, 1 stderr
	data   []byte
	at     time.Time
}

var _ kernel = (*bashKernel)(nil)

func startBash(ctx context.Context, bash string, o kernelOpts) (_ kernel, err error) {
	k := &bashKernel{
		log:    o.log.With("kernel", "bash"),
		grace:  o.interruptGrace,
		chunks: make(chan bashChunk, 256),
		stop:   make(chan struct{}),
	}
	cmd := exec.Command(bash, "--noprofile", "--norc", "--noediting", "-i")
	cmd.Env = append(append([]string(nil), o.env...), "PS1=", "PS2=", "PS0=", "PROMPT_COMMAND=")
	cmd.Dir = o.dir
	cmd.SysProcAttr = o.id.sysProcAttr()
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("creating stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("creating stderr pipe: %w", err)
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	k.outR, k.errR = outR, errR
	if k.stdin, err = cmd.StdinPipe(); err != nil {
		outR.Close()
		errR.Close()
		outW.Close()
		errW.Close()
		return nil, fmt.Errorf("creating stdin pipe: %w", err)
	}
	k.proc, err = startProcess(cmd, o.start)
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}
	k.log = k.log.With("pid", cmd.Process.Pid)
	k.wg.Add(2)
	go k.read(0, outR)
	go k.read(1, errR)

	ctx, cancel := context.WithTimeout(ctx, o.startTimeout)
	defer cancel()
	// History and history expansion off; job-control chatter at start is
	// discarded with the rest of this step's output.
	if _, err := k.run(ctx, "set +o history +o histexpand; unset MAILCHECK", nil); err != nil {
		_ = k.close()
		return nil, fmt.Errorf("starting bash: %w", err)
	}
	return k, nil
}

func (k *bashKernel) read(stream int, r *os.File) {
	defer k.wg.Done()
	defer r.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			c := bashChunk{stream: stream, data: bytes.Clone(buf[:n]), at: time.Now()}
			select {
			case k.chunks <- c:
			case <-k.stop:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// bashQuote quotes s as a bash $'...' string.
func bashQuote(s string) string {
	var b bytes.Buffer
	b.WriteString("$'")
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' || c == '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == 0:
			// bash strings cannot hold NUL.
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// run runs one line of bash and returns its exit status, passing output
// chunks to out (nil discards them).
func (k *bashKernel) run(ctx context.Context, line string, out func(stream int, data []byte, at time.Time)) (int, error) {
	id := newID()
	prefix := []byte("\x1esandpit-" + id + ":")
	cmd := "eval " + bashQuote(line) + "\n" +
		"__sandpit_rc=$?; printf '\\036sandpit-%s:%d\\036' " + id + " $__sandpit_rc; printf '\\036sandpit-%s:%d\\036' " + id + " $__sandpit_rc >&2\n"
	if _, err := io.WriteString(k.stdin, cmd); err != nil {
		if exitedNow(k) {
			return 0, errKernelDied
		}
		return 0, fmt.Errorf("sending to bash: %w", err)
	}
	var (
		pending [2][]byte
		done    [2]bool
		status  = -1
		in      = newInterrupter(ctx, k.proc, k.grace, k.log)
	)
	defer in.stop()
	for !done[0] || !done[1] {
		select {
		case c := <-k.chunks:
			if done[c.stream] {
				continue
			}
			p := append(pending[c.stream], c.data...)
			var emitNow []byte
			if i := bytes.Index(p, prefix); i >= 0 {
				end := bytes.IndexByte(p[i+len(prefix):], 0x1e)
				if end >= 0 {
					emitNow = p[:i]
					if n, err := strconv.Atoi(string(p[i+len(prefix) : i+len(prefix)+end])); err == nil {
						status = n
					}
					done[c.stream] = true
					pending[c.stream] = nil
				} else {
					emitNow, pending[c.stream] = p[:i], bytes.Clone(p[i:])
				}
			} else {
				keep := partialPrefix(p, prefix)
				emitNow, pending[c.stream] = p[:len(p)-keep], bytes.Clone(p[len(p)-keep:])
			}
			if len(emitNow) > 0 && out != nil {
				out(c.stream, emitNow, c.at)
			}
		case <-k.proc.done:
			return 0, errKernelDied
		case <-in.requested():
			in.start()
		case <-in.repeat():
			in.resend()
		case <-in.expired():
			in.kill()
			return 0, errKernelDied
		}
	}
	return status, nil
}

// partialPrefix returns the length of the longest suffix of p that is a
// proper prefix of sentinel: output that may be the start of a sentinel
// split across reads.
func partialPrefix(p, sentinel []byte) int {
	for n := min(len(p), len(sentinel)-1); n > 0; n-- {
		if bytes.Equal(p[len(p)-n:], sentinel[:n]) {
			return n
		}
	}
	return 0
}

func (k *bashKernel) execute(ctx context.Context, code string, emit func(any)) error {
	emit(countLine{Type: "number_of_executions", ExecutionCount: k.nextCount()})
	status, err := k.run(ctx, code, func(stream int, data []byte, at time.Time) {
		typ := "stdout"
		if stream == 1 {
			typ = "stderr"
		}
		emit(streamLine{Type: typ, Text: string(data), Timestamp: at.UTC().Format(time.RFC3339Nano)})
	})
	if err != nil {
		return err
	}
	if status != 0 {
		emit(newErrorLine("ExitCodeError", strconv.Itoa(status), "bash: the cell exited with status "+strconv.Itoa(status)))
	}
	return nil
}

func (k *bashKernel) nextCount() int {
	k.count++
	return k.count
}

func (k *bashKernel) setEnv(ctx context.Context, set map[string]string, unset []string) error {
	if len(set) == 0 && len(unset) == 0 {
		return nil
	}
	var b bytes.Buffer
	keys := make([]string, 0, len(set))
	for key := range set {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		fmt.Fprintf(&b, "export %s=%s\n", bashQuote(key), bashQuote(set[key]))
	}
	for _, key := range unset {
		fmt.Fprintf(&b, "unset %s\n", bashQuote(key))
	}
	_, err := k.run(ctx, b.String(), nil)
	return err
}

func (k *bashKernel) chdir(ctx context.Context, dir string) error {
	status, err := k.run(ctx, "cd -- "+bashQuote(dir), nil)
	if err != nil {
		return err
	}
	if status != 0 {
		return fmt.Errorf("cd %s: status %d", dir, status)
	}
	return nil
}

func (k *bashKernel) exited() <-chan struct{} { return k.proc.done }

func (k *bashKernel) close() error {
	k.closeOnce.Do(func() {
		close(k.stop)
		_ = k.stdin.Close()
		k.proc.kill()
		// Background jobs that outlived the shell may hold the pipes open.
		_ = k.outR.Close()
		_ = k.errR.Close()
		k.wg.Wait()
	})
	return nil
}
