// Package agentexec runs commands in a sandbox through its agent (envd),
// from the host side: the daemon dials the Unix socket the runtime returns
// and speaks the agent's own process.Process service and /files endpoint.
// Template builds use it to run steps in build sandboxes; sandbox start
// uses it for a template's start command and ready check.
package agentexec

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"connectrpc.com/connect"

	"github.com/sandpit-dev/sandpit/gen/proto/process"
	"github.com/sandpit-dev/sandpit/gen/proto/process/processconnect"
)

// Client talks to one sandbox's agent. It is safe for concurrent use.
type Client struct {
	http  *http.Client
	proc  processconnect.ProcessClient
	token string
}

// New returns a client for the agent listening on socket. token is the
// sandbox's envd access token ("" when it has none).
func New(socket, token string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableCompression: true,
	}
	hc := &http.Client{Transport: tr}
	return &Client{
		http:  hc,
		proc:  processconnect.NewProcessClient(hc, "http://envd", connect.WithProtoJSON()),
		token: token,
	}
}

// Close releases the client's idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Command is a shell command to run.
type Command struct {
	Script string            // run by /bin/bash -l -c, as E2B's commands.run does
	User   string            // "root" when empty
	Cwd    string            // the user's home when empty
	Env    map[string]string // added to the sandbox's environment
	// Output, when set, receives stdout and stderr as they arrive.
	Output io.Writer
	// Stderr, when set, receives stderr instead of Output.
	Stderr io.Writer
	// Started, when set, is called with the process's pid once it runs.
	Started func(pid uint32)
}

// ExitError is a command that ran and exited non-zero (or was killed).
type ExitError struct {
	Code   int
	Status string
}

func (e *ExitError) Error() string {
	if e.Status != "" {
		return fmt.Sprintf("exited with code %d (%s)", e.Code, e.Status)
	}
	return fmt.Sprintf("exited with code %d", e.Code)
}

// Run runs cmd and waits for it to end. A non-zero exit is an *ExitError;
// other errors are about reaching the agent or starting the process.
func (c *Client) Run(ctx context.Context, cmd Command) error {
	user := cmd.User
	if user == "" {
		user = "root"
	}
	cfg := &process.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-l", "-c", cmd.Script}, Envs: cmd.Env}
	if cmd.Cwd != "" {
		cfg.Cwd = &cmd.Cwd
	}
	noStdin := false
	req := connect.NewRequest(&process.StartRequest{Process: cfg, Stdin: &noStdin})
	c.auth(req.Header(), user)
	stream, err := c.proc.Start(ctx, req)
	if err != nil {
		return fmt.Errorf("starting command: %w", err)
	}
	defer stream.Close()
	for stream.Receive() {
		ev := stream.Msg().GetEvent()
		switch {
		case ev.GetStart() != nil:
			if cmd.Started != nil {
				cmd.Started(ev.GetStart().GetPid())
			}
		case ev.GetData() != nil:
			d := ev.GetData()
			if b := d.GetStdout(); len(b) > 0 && cmd.Output != nil {
				_, _ = cmd.Output.Write(b)
			}
			if b := d.GetStderr(); len(b) > 0 {
				if cmd.Stderr != nil {
					_, _ = cmd.Stderr.Write(b)
				} else if cmd.Output != nil {
					_, _ = cmd.Output.Write(b)
				}
			}
		case ev.GetEnd() != nil:
			end := ev.GetEnd()
			if end.GetExitCode() != 0 || !end.GetExited() {
				code := int(end.GetExitCode())
				if !end.GetExited() && code == 0 {
					code = -1
				}
				return &ExitError{Code: code, Status: end.GetStatus()}
			}
			return nil
		}
	}
	if err := stream.Err(); err != nil {
		return fmt.Errorf("running command: %w", err)
	}
	return errors.New("running command: the agent ended the stream without an end event")
}

// Upload writes r to path in the sandbox as user (root when empty),
// creating parent directories.
func (c *Client) Upload(ctx context.Context, path, user string, r io.Reader) error {
	if user == "" {
		user = "root"
	}
	q := url.Values{"path": {path}, "username": {user}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://envd/files?"+q.Encode(), r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	c.auth(req.Header, user)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("uploading %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("uploading %s: agent answered %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

func (c *Client) auth(h http.Header, user string) {
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":")))
	if c.token != "" {
		h.Set("X-Access-Token", c.token)
	}
}

// Quote quotes s for a POSIX shell.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
