package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sandpit-dev/sandpit/cmd/sandpit/cli"
	"github.com/sandpit-dev/sandpit/internal/coder"
)

const agentUsage = `Usage:
  sandpit agent [--model M] [--max-attempts N] [--template T] [--tools auto|on|off] TASK...
      ask the model for a Python program that does TASK, run it in a sandbox, and feed
      errors back until it runs cleanly; its output is printed last (exit 0), or exit 1
      when the attempts run out
  sandpit agent fix FILE|DIR --test CMD [--model M] [--max-attempts N] [--template T]
      copy FILE (or DIR's files) into a sandbox, run CMD there, and ask the model for
      fixes until CMD passes; then print the diff and write the changed files back
      (exit 0), or leave them untouched (exit 1)

The model is any OpenAI-compatible chat endpoint: OPENAI_BASE_URL (default
https://api.openai.com/v1), OPENAI_API_KEY, and --model or MODEL. The sandboxes come
from the daemon SANDPIT_URL and SANDPIT_API_KEY name (or the E2B variables).
`

// agentCmd is `sandpit agent`: the coding agent's two loops.
func agentCmd(args []string, stdout, stderr io.Writer) error {
	fix := len(args) > 0 && args[0] == "fix"
	if fix {
		args = args[1:]
	}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, agentUsage, "\nFlags:\n"); fs.PrintDefaults() }
	model := fs.String("model", cmp.Or(os.Getenv("MODEL"), "gpt-4o-mini"), "model name ($MODEL sets the default)")
	baseURL := fs.String("base-url", cmp.Or(os.Getenv("OPENAI_BASE_URL"), "https://api.openai.com/v1"), "root of the chat completions API ($OPENAI_BASE_URL sets the default)")
	attempts := fs.Int("max-attempts", coder.DefaultMaxAttempts, "programs (or fixes) to try before giving up")
	template := fs.String("template", coder.DefaultTemplate, "template of the agent's sandbox")
	tools := fs.String("tools", string(coder.ToolsAuto), "offer the model tools: auto (fall back to code blocks if the endpoint refuses), on, off")
	stream := fs.String("stream", "auto", "stream the model's answers and the output as they come: auto (when stderr is a terminal), on, off")
	test := fs.String("test", "", "fix: the test command, run in the copied project's root (e.g. 'python3 -m pytest -q')")
	// Flags may come after the positional arguments (fix FILE --test CMD).
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) == 0 || fix && len(pos) != 1 {
		fs.Usage()
		return errors.New("agent: say what to do (a task, or fix FILE --test CMD)")
	}
	if *stream != "auto" && *stream != "on" && *stream != "off" {
		return fmt.Errorf("agent: --stream %q: use auto, on or off", *stream)
	}
	if !fix && *test != "" {
		return errors.New("agent: --test goes with fix: sandpit agent fix FILE --test CMD")
	}
	client, err := cli.NewClient()
	if err != nil {
		return err
	}
	agent, err := coder.New(coder.Config{
		Chat:        &coder.Chat{BaseURL: *baseURL, APIKey: os.Getenv("OPENAI_API_KEY"), Model: *model},
		Client:      client,
		Template:    *template,
		MaxAttempts: *attempts,
		Tools:       coder.ToolMode(*tools),
		Progress:    stderr,
		Stream:      *stream == "on" || *stream == "auto" && isTerminal(stderr),
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if fix {
		rep, err := agent.Fix(ctx, pos[0], *test)
		if err != nil {
			return err
		}
		if rep.AlreadyPassing {
			return nil
		}
		fmt.Fprint(stdout, rep.Diff)
		fmt.Fprintf(stderr, "fixed in %d attempt(s); wrote back %s\n", rep.Attempts, strings.Join(rep.Changed, ", "))
		return nil
	}
	sol, err := agent.Solve(ctx, strings.Join(pos, " "))
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, sol.Output)
	return nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
