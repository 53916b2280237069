package cli

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// exec runs a command in a sandbox, streaming its output, and exits with
// its exit code. Piped stdin is forwarded.
func (c *cli) exec(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	user := fs.String("user", "", "run as this sandbox user (default: the sandbox's)")
	cwd := fs.String("cwd", "", "working directory (default: the user's home)")
	timeout := fs.Duration("timeout", 0, "kill the command after this long (default: no limit)")
	envs := kvFlag{}
	fs.Var(envs, "env", "KEY=VALUE environment variable (repeatable)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return usageError("usage: sandpit exec ID -- CMD [ARG...]")
	}
	sb, err := c.connect(ctx, pos[0])
	if err != nil {
		return err
	}
	opts := []sandpit.CommandOption{
		sandpit.WithStdout(c.stdout), sandpit.WithStderr(c.stderr), sandpit.WithTimeout(*timeout),
	}
	if *user != "" {
		opts = append(opts, sandpit.WithUser(*user))
	}
	if *cwd != "" {
		opts = append(opts, sandpit.WithCwd(*cwd))
	}
	if len(envs) > 0 {
		opts = append(opts, sandpit.WithEnvs(envs))
	}
	forward := c.pipedStdin()
	if forward != nil {
		opts = append(opts, sandpit.WithStdin())
	}
	h, err := sb.Commands.Start(ctx, shellJoin(pos[1:]), opts...)
	if err != nil {
		return err
	}
	if forward != nil {
		go c.forwardStdin(ctx, h, forward)
	}
	res, err := h.Wait(ctx)
	if ctx.Err() != nil {
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5e9)
		_ = h.Kill(kctx)
		cancel()
		return exitCode(130)
	}
	var exit *sandpit.CommandExitError
	if errors.As(err, &exit) {
		code := exit.ExitCode
		if code < 0 || code > 255 {
			code = 137 // killed by a signal
		}
		return exitCode(code)
	}
	if err != nil {
		return err
	}
	return exitCode(res.ExitCode)
}

// pipedStdin returns stdin when it is a pipe or file, nil when it is a
// terminal or absent: only piped input is forwarded.
func (c *cli) pipedStdin() io.Reader {
	f, ok := c.stdin.(*os.File)
	if !ok {
		return c.stdin
	}
	if f == nil || isTerminal(f) {
		return nil
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&(os.ModeNamedPipe|os.ModeCharDevice) == os.ModeCharDevice {
		return nil // /dev/null and other devices
	}
	return f
}

func (c *cli) forwardStdin(ctx context.Context, h *sandpit.CommandHandle, r io.Reader) {
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if h.SendStdin(ctx, buf[:n]) != nil {
				return
			}
		}
		if err != nil {
			_ = h.CloseStdin(ctx)
			return
		}
	}
}

// shellJoin quotes args for bash -c, leaving a single argument as is so
// `sandpit exec ID -- 'echo $HOME | wc'` runs a pipeline.
func shellJoin(args []string) string {
	if len(args) == 1 {
		return args[0]
	}
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
