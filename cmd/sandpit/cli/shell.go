package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// shell opens an interactive terminal in a sandbox.
func (c *cli) shell(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("shell", flag.ContinueOnError)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("usage: sandpit shell ID")
	}
	return c.shellIn(ctx, pos[0])
}

// shellIn runs a terminal session: the local terminal in raw mode, its size
// kept in step (SIGWINCH), until the remote shell exits; then exits with the
// shell's code.
func (c *cli) shellIn(ctx context.Context, id string) error {
	in, ok := c.stdin.(*os.File)
	if !ok || !isTerminal(in) {
		return errors.New("sandpit shell needs a terminal; use `sandpit exec ID -- CMD` from scripts")
	}
	sb, err := c.connect(ctx, id)
	if err != nil {
		return err
	}
	size := termSize(in)
	term, err := sb.PTY.Create(ctx, size, sandpit.WithTimeout(0), sandpit.WithOutput(c.stdout))
	if err != nil {
		return err
	}
	defer term.Close()

	restore, err := makeRaw(in)
	if err != nil {
		_ = term.Kill(context.WithoutCancel(ctx))
		return err
	}
	defer restore()

	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	go func() {
		for {
			select {
			case <-winch:
				_ = term.Resize(ctx, termSize(in))
			case <-term.Done():
				return
			}
		}
	}()

	// Keys go to the terminal as they are typed. The reader goroutine ends
	// with the process (a blocked read of a terminal cannot be cancelled).
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				if term.SendInput(ctx, buf[:n]) != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()

	select {
	case <-term.Done():
	case <-ctx.Done():
		restore()
		_ = term.Kill(context.WithoutCancel(ctx))
		return exitCode(130)
	}
	res, err := term.Wait(ctx)
	restore()
	var exit *sandpit.CommandExitError
	switch {
	case errors.As(err, &exit):
		return exitCode(max(exit.ExitCode, 1))
	case err != nil:
		return fmt.Errorf("terminal: %w", err)
	}
	return exitCode(res.ExitCode)
}

// termSize is the local terminal's size (80x24 when unknown).
func termSize(f *os.File) sandpit.PTYSize {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 || ws.Row == 0 {
		return sandpit.PTYSize{Cols: 80, Rows: 24}
	}
	return sandpit.PTYSize{Cols: uint32(ws.Col), Rows: uint32(ws.Row)}
}

// makeRaw puts the terminal in raw mode (as cfmakeraw does) and returns a
// function that restores it; calling that twice is fine.
func makeRaw(f *os.File) (func(), error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("reading terminal settings: %w", err)
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, fmt.Errorf("setting raw mode: %w", err)
	}
	done := false
	return func() {
		if !done {
			done = true
			_ = unix.IoctlSetTermios(fd, unix.TCSETS, old)
		}
	}, nil
}
