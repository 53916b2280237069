package sandbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/template"
	"github.com/sandpit-dev/sandpit/internal/template/agentexec"
)

// DefaultReadyTimeout bounds how long create waits for a template's ready
// check to pass.
const DefaultReadyTimeout = 60 * time.Second

// startLog is where a template's start command writes its output inside
// the sandbox (tmpfs, so it costs no disk and goes with the sandbox).
const startLog = "/tmp/.sandpit-start.log"

// startTemplate runs a template's start command in a fresh sandbox and
// waits for its ready check, through the sandbox's agent at socket. The
// start command runs detached, as the template's user in its workdir; the
// ready check is polled until it exits 0. If the start command exits
// first, or the check does not pass in time, the error shows the start
// command's output. A template without a start command returns at once.
func startTemplate(ctx context.Context, tpl *template.Template, socket, token string) error {
	if tpl.StartCmd == "" {
		return nil
	}
	c := agentexec.New(socket, token)
	defer c.Close()
	var pidOut strings.Builder
	script := fmt.Sprintf("(%s) >%s 2>&1 </dev/null &\necho $!", tpl.StartCmd, startLog)
	if err := c.Run(ctx, agentexec.Command{Script: script, User: tpl.User, Cwd: tpl.Workdir, Output: &pidOut}); err != nil {
		return fmt.Errorf("starting the start command of template %s: %w", tpl.ID, err)
	}
	pid := strings.TrimSpace(pidOut.String())
	if tpl.ReadyCmd == "" {
		return nil
	}
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
		// The start command died: it will never become ready.
		if pid != "" && c.Run(ctx, agentexec.Command{Script: "kill -0 " + pid + " 2>/dev/null"}) != nil && ctx.Err() == nil {
			return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf(
				"template %s: the start command %q exited before the ready check %q passed; its output:\n%s",
				tpl.ID, tpl.StartCmd, tpl.ReadyCmd, startOutput(c)))
		}
		select {
		case <-ctx.Done():
			return errdefs.New(errdefs.ErrDeadlineExceeded, fmt.Sprintf(
				"template %s: the ready check %q did not pass within %s; the start command's output:\n%s",
				tpl.ID, tpl.ReadyCmd, DefaultReadyTimeout, startOutput(c)))
		case <-time.After(delay):
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// startOutput returns the tail of the start command's output.
func startOutput(c *agentexec.Client) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out strings.Builder
	_ = c.Run(ctx, agentexec.Command{Script: "tail -c 4096 " + startLog, Output: &out})
	return out.String()
}
