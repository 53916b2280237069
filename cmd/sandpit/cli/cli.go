// Package cli is the client side of the sandpit command: the verbs that
// drive a server through the Go SDK (sandbox, exec, shell, files, run). The
// server is found through SANDPIT_URL (or E2B_API_URL and E2B_SANDBOX_URL),
// the key through SANDPIT_API_KEY (or E2B_API_KEY).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// Usage lists the client verbs, for the sandpit command's usage text.
const Usage = `  sandpit sandbox create [--template T] [--timeout 5m] [--metadata K=V] [--json]
                 [--on-timeout kill|pause] [--keep-memory=false] [--auto-resume]
  sandpit sandbox list [--json]  |  sandpit sandbox kill|resume ID...  |  sandpit sandbox connect ID
  sandpit sandbox pause [--keep-memory=false] ID...
  sandpit sandbox snapshot ID [--name N]  |  sandpit snapshot list [--sandbox ID] | rm ID...
  sandpit sandbox fork ID [--count N] [--timeout 5m]            start sandboxes from its files
  sandpit exec ID [--user U] [--cwd DIR] [--env K=V] [--timeout D] -- CMD [ARG...]
  sandpit shell ID                                                interactive terminal
  sandpit files ls|cat ID PATH  |  sandpit files put|get ID SRC DST   (- is stdin/stdout)
  sandpit run FILE [--template T] [--out DIR]                     run a script in a throwaway sandbox
`

// DefaultURL is where the CLI looks for a server when no variable names one:
// sandpit serve's default address.
const DefaultURL = "http://127.0.0.1:49982"

// Verbs are the first arguments Main handles.
var Verbs = []string{"sandbox", "snapshot", "exec", "shell", "files", "run"}

// Main runs one client verb (args[0] is the verb) and returns the process's
// exit code. Errors are printed to stderr, prefixed "sandpit: ".
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	err := c.run(ctx, args)
	var code exitCode
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code)
	case errors.Is(err, flag.ErrHelp):
		return 0
	}
	fmt.Fprintln(stderr, "sandpit:", c.explain(err))
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// exitCode makes Main exit with this code without printing anything.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit code %d", int(e)) }

// usageError is a mistake in the command line.
type usageError string

func (e usageError) Error() string { return string(e) }

type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	url            string // the API URL in use, for messages
}

func (c *cli) run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError("no command")
	}
	rest := args[1:]
	switch args[0] {
	case "sandbox":
		return c.sandbox(ctx, rest)
	case "snapshot", "snapshots":
		return c.snapshot(ctx, rest)
	case "exec":
		return c.exec(ctx, rest)
	case "shell":
		return c.shell(ctx, rest)
	case "files":
		return c.files(ctx, rest)
	case "run":
		return c.runFile(ctx, rest)
	}
	return usageError("unknown command " + args[0])
}

// client builds the SDK client from the environment.
func (c *cli) client() (*sandpit.Client, error) {
	var opts []sandpit.ClientOption
	if c.getenv("SANDPIT_URL") == "" && c.getenv("E2B_API_URL") == "" {
		opts = append(opts, sandpit.WithURL(DefaultURL))
	}
	if c.getenv("SANDPIT_API_KEY") == "" && c.getenv("E2B_API_KEY") == "" {
		return nil, errors.New("no API key: set SANDPIT_API_KEY (create one with `sandpit keys create` on the server)")
	}
	cl, err := sandpit.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	c.url = cl.APIURL()
	return cl, nil
}

// connect returns a handle on sandbox id, without changing its timeout.
func (c *cli) connect(ctx context.Context, id string) (*sandpit.Sandbox, error) {
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	info, err := cl.GetInfo(ctx, id)
	if err != nil {
		return nil, sandboxErr(id, err)
	}
	// Connect sets the sandbox's timeout: keep what is left, so looking at
	// a sandbox does not change its life.
	var opts []sandpit.ConnectOption
	if left := time.Until(info.EndAt); left > time.Second {
		opts = append(opts, sandpit.WithTimeout(left))
	}
	sb, err := cl.Connect(ctx, id, opts...)
	return sb, sandboxErr(id, err)
}

// sandboxErr words ErrNotFound for a sandbox.
func sandboxErr(id string, err error) error {
	if errors.Is(err, sandpit.ErrNotFound) {
		return fmt.Errorf("sandbox %s not found (killed or timed out); see `sandpit sandbox list`", id)
	}
	return err
}

// explain turns an error into what a person at a terminal needs to know.
func (c *cli) explain(err error) string {
	url := c.url
	if url == "" {
		url = DefaultURL
	}
	var e *sandpit.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("no sandpit server at %s; start one with `sandpit serve` (or set SANDPIT_URL)", url)
	case errors.Is(err, sandpit.ErrAuth) && errors.As(err, &e) && e.StatusCode == http.StatusUnauthorized && strings.Contains(e.Op, "sandbox"):
		return "the API key was refused; create one with `sandpit keys create` on the server and set SANDPIT_API_KEY"
	}
	var ue usageError
	if errors.As(err, &ue) {
		return err.Error() + "\n\nUsage:\n" + Usage
	}
	return err.Error()
}

// parse parses flags that may come before, between or after the positional
// arguments; everything after "--" is positional.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var tail []string
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], args[i+1:]
			break
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, usageError(fs.Name() + " options:\n" + flagHelp(fs))
			}
			return nil, usageError(err.Error())
		}
		args = fs.Args()
		if len(args) == 0 {
			return append(pos, tail...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func flagHelp(fs *flag.FlagSet) string {
	var b strings.Builder
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}

// NewClient returns the SDK client the verbs use, configured from the
// environment as they are (for commands outside this package: mcp, agent).
func NewClient() (*sandpit.Client, error) {
	c := &cli{getenv: os.Getenv}
	return c.client()
}
