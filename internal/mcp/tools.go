package mcp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandpit-dev/sandpit/internal/clip"
	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// Bounds on what a call may ask for.
const (
	maxSandboxTimeout = 24 * time.Hour
	maxCallTimeout    = 30 * time.Minute
	defaultCallTimout = 2 * time.Minute
	maxListDepth      = 5
)

// The tools' arguments. The jsonschema tags are the descriptions a model
// reads; a field without omitempty is required.
type (
	createSandboxArgs struct {
		Template       string            `json:"template,omitempty" jsonschema:"template to start from, e.g. code-interpreter-v1 (the default: Python with the code interpreter) or base"`
		TimeoutSeconds int               `json:"timeout_seconds,omitempty" jsonschema:"seconds the sandbox lives before it is killed (default: the server's, usually 300; at most 86400)"`
		Metadata       map[string]string `json:"metadata,omitempty" jsonschema:"string key-value pairs to label the sandbox with"`
	}
	createSandboxOut struct {
		SandboxID string `json:"sandbox_id" jsonschema:"the new sandbox's ID: pass it as sandbox_id to the other tools"`
		Template  string `json:"template" jsonschema:"the template it was made from"`
	}
	runCodeArgs struct {
		SandboxID      string `json:"sandbox_id,omitempty" jsonschema:"sandbox to run in; leave out to use this session's sandbox"`
		Code           string `json:"code" jsonschema:"the source code to run, like a notebook cell: variables and imports stay for later calls, and the last expression's value is returned"`
		Language       string `json:"language,omitempty" jsonschema:"python (default), javascript, r, java or bash"`
		Context        string `json:"context,omitempty" jsonschema:"name of a separate interpreter state to run in (created on first use); leave out to share the default one"`
		TimeoutSeconds int    `json:"timeout_seconds,omitempty" jsonschema:"seconds the code may run (default 120, at most 1800)"`
	}
	runCommandArgs struct {
		SandboxID      string            `json:"sandbox_id,omitempty" jsonschema:"sandbox to run in; leave out to use this session's sandbox"`
		Command        string            `json:"command" jsonschema:"a bash command line, e.g. 'pip install requests' or 'ls -la /tmp'"`
		Cwd            string            `json:"cwd,omitempty" jsonschema:"working directory (default: the user's home, /home/user)"`
		Env            map[string]string `json:"env,omitempty" jsonschema:"extra environment variables"`
		TimeoutSeconds int               `json:"timeout_seconds,omitempty" jsonschema:"seconds the command may run (default 120, at most 1800)"`
	}
	readFileArgs struct {
		SandboxID string `json:"sandbox_id,omitempty" jsonschema:"sandbox to read from; leave out to use this session's sandbox"`
		Path      string `json:"path" jsonschema:"file to read; relative paths are under /home/user"`
	}
	writeFileArgs struct {
		SandboxID string `json:"sandbox_id,omitempty" jsonschema:"sandbox to write in; leave out to use this session's sandbox"`
		Path      string `json:"path" jsonschema:"file to write, replacing it if it exists; missing directories are created; relative paths are under /home/user"`
		Content   string `json:"content" jsonschema:"the file's whole new content, as text"`
	}
	listFilesArgs struct {
		SandboxID string `json:"sandbox_id,omitempty" jsonschema:"sandbox to list in; leave out to use this session's sandbox"`
		Path      string `json:"path,omitempty" jsonschema:"directory to list (default /home/user)"`
		Depth     int    `json:"depth,omitempty" jsonschema:"how many levels to descend (default 1, at most 5)"`
	}
	killSandboxArgs struct {
		SandboxID string `json:"sandbox_id,omitempty" jsonschema:"sandbox to kill; leave out to kill this session's sandbox (a new one is made on the next call that needs it)"`
	}
)

func (s *Server) addTools() {
	mcp.AddTool(s.srv, &mcp.Tool{
		Name:        "create_sandbox",
		Title:       "Create a sandbox",
		Description: "Start a new isolated Linux sandbox and return its sandbox_id. Not needed for simple work: the other tools use this session's own sandbox when sandbox_id is left out. The sandbox is killed after timeout_seconds, or by kill_sandbox.",
		Annotations: &mcp.ToolAnnotations{OpenWorldHint: new(false)},
	}, s.createSandbox)
	mcp.AddTool(s.srv, &mcp.Tool{
		Name:        "run_code",
		Title:       "Run code",
		Description: "Run code in a sandbox's stateful interpreter (Jupyter-like: state persists between calls) and return what it printed, its results (charts come back as images) and, if it raised, the error with its traceback.",
		Annotations: &mcp.ToolAnnotations{OpenWorldHint: new(false)},
	}, s.runCode)
	mcp.AddTool(s.srv, &mcp.Tool{
		Name:        "run_command",
		Title:       "Run a shell command",
		Description: "Run a bash command line in a sandbox and return its stdout and stderr. A non-zero exit code is reported as an error with the code and stderr.",
		Annotations: &mcp.ToolAnnotations{OpenWorldHint: new(false)},
	}, s.runCommand)
	mcp.AddTool(s.srv, &mcp.Tool{
		Name:        "read_file",
		Title:       "Read a file",
		Description: "Read a file from a sandbox. Text comes back as text, images as images, other binary files as a base64 resource.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: new(false)},
	}, s.readFile)
	mcp.AddTool(s.srv, &mcp.Tool{
		Name:        "write_file",
		Title:       "Write a file",
		Description: "Write text to a file in a sandbox, replacing what was there and creating missing directories.",
		Annotations: &mcp.ToolAnnotations{OpenWorldHint: new(false)},
	}, s.writeFile)
	mcp.AddTool(s.srv, &mcp.Tool{
		Name:        "list_files",
		Title:       "List files",
		Description: "List a directory in a sandbox: one entry a line, with its type, size and path.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: new(false)},
	}, s.listFiles)
	mcp.AddTool(s.srv, &mcp.Tool{
		Name:        "kill_sandbox",
		Title:       "Kill a sandbox",
		Description: "Kill a sandbox now; everything in it is lost.",
		Annotations: &mcp.ToolAnnotations{DestructiveHint: new(true), IdempotentHint: true, OpenWorldHint: new(false)},
	}, s.killSandbox)
}

// seconds turns a tool's timeout argument into a duration, or says what
// is wrong with it.
func seconds(name string, n int, def, maxD time.Duration) (time.Duration, error) {
	switch {
	case n == 0:
		return def, nil
	case n < 0 || time.Duration(n)*time.Second > maxD:
		return 0, fmt.Errorf("%s must be between 1 and %d seconds, not %d", name, int(maxD/time.Second), n)
	}
	return time.Duration(n) * time.Second, nil
}

func (s *Server) createSandbox(ctx context.Context, _ *mcp.CallToolRequest, in createSandboxArgs) (*mcp.CallToolResult, createSandboxOut, error) {
	timeout, err := seconds("timeout_seconds", in.TimeoutSeconds, 0, maxSandboxTimeout)
	if err != nil {
		return nil, createSandboxOut{}, err
	}
	template := cmp.Or(strings.TrimSpace(in.Template), s.cfg.Template)
	opts := []sandpit.CreateOption{sandpit.WithTemplate(template)}
	if timeout > 0 {
		opts = append(opts, sandpit.WithTimeout(timeout))
	}
	md := map[string]string{"created_by": "mcp"}
	maps.Copy(md, in.Metadata)
	opts = append(opts, sandpit.WithMetadata(md))
	sb, err := s.cfg.Client.Create(ctx, opts...)
	if errors.Is(err, sandpit.ErrNotFound) {
		return nil, createSandboxOut{}, fmt.Errorf("no template %q: leave template out for %s, or use base", template, s.cfg.Template)
	}
	if err != nil {
		return nil, createSandboxOut{}, fmt.Errorf("creating a sandbox from %s: %w", template, err)
	}
	s.mu.Lock()
	s.handles[sb.ID] = sb
	s.mu.Unlock()
	return nil, createSandboxOut{SandboxID: sb.ID, Template: template}, nil
}

func (s *Server) runCode(ctx context.Context, req *mcp.CallToolRequest, in runCodeArgs) (*mcp.CallToolResult, any, error) {
	if strings.TrimSpace(in.Code) == "" {
		return nil, nil, errors.New("code is empty: pass the source to run in code")
	}
	timeout, err := seconds("timeout_seconds", in.TimeoutSeconds, defaultCallTimout, maxCallTimeout)
	if err != nil {
		return nil, nil, err
	}
	sb, err := s.sandbox(ctx, req.Session, in.SandboxID)
	if err != nil {
		return nil, nil, err
	}
	opts := []sandpit.RunCodeOption{sandpit.WithTimeout(timeout)}
	switch {
	case in.Context != "":
		cc, err := s.codeContext(ctx, sb, in.Context, in.Language)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, sandpit.WithCodeContext(cc))
	case in.Language != "":
		opts = append(opts, sandpit.WithLanguage(in.Language))
	}
	exec, err := sb.RunCode(ctx, in.Code, opts...)
	if err != nil {
		return nil, nil, s.callError(ctx, sb.ID, "running the code", err)
	}
	return s.executionResult(exec), nil, nil
}

// codeContext returns the named context in sb, creating it on first use.
func (s *Server) codeContext(ctx context.Context, sb *sandpit.Sandbox, name, language string) (sandpit.CodeContext, error) {
	key := [2]string{sb.ID, name}
	s.mu.Lock()
	cc, ok := s.contexts[key]
	s.mu.Unlock()
	if ok {
		if language != "" && !strings.EqualFold(language, cc.Language) {
			return cc, fmt.Errorf("context %q is a %s context: leave language out, or name another context for %s", name, cc.Language, language)
		}
		return cc, nil
	}
	var opts []sandpit.CodeContextOption
	if language != "" {
		opts = append(opts, sandpit.WithLanguage(language))
	}
	cc, err := sb.CreateCodeContext(ctx, opts...)
	if err != nil {
		return cc, s.callError(ctx, sb.ID, "creating code context "+name, err)
	}
	s.mu.Lock()
	s.contexts[key] = cc
	s.mu.Unlock()
	return cc, nil
}

// executionResult renders what RunCode gave: printed output, results
// (images as image content), and a raised error as a tool error.
func (s *Server) executionResult(exec *sandpit.Execution) *mcp.CallToolResult {
	res := &mcp.CallToolResult{}
	var text strings.Builder
	if out := strings.Join(exec.Logs.Stdout, ""); out != "" {
		fmt.Fprintf(&text, "stdout:\n%s\n", s.truncate(out))
	}
	if out := strings.Join(exec.Logs.Stderr, ""); out != "" {
		fmt.Fprintf(&text, "stderr:\n%s\n", s.truncate(out))
	}
	var images []mcp.Content
	for _, r := range exec.Results {
		label := "result"
		if r.IsMainResult {
			label = "value"
		}
		switch {
		case len(r.PNG) > 0:
			images = append(images, &mcp.ImageContent{Data: r.PNG, MIMEType: "image/png"})
		case len(r.JPEG) > 0:
			images = append(images, &mcp.ImageContent{Data: r.JPEG, MIMEType: "image/jpeg"})
		case r.SVG != "":
			images = append(images, &mcp.ImageContent{Data: []byte(r.SVG), MIMEType: "image/svg+xml"})
		}
		switch {
		case r.Text != "":
			fmt.Fprintf(&text, "%s:\n%s\n", label, s.truncate(r.Text))
		case r.Markdown != "":
			fmt.Fprintf(&text, "%s (markdown):\n%s\n", label, s.truncate(r.Markdown))
		case len(r.JSON) > 0:
			fmt.Fprintf(&text, "%s (json):\n%s\n", label, s.truncate(string(r.JSON)))
		}
	}
	if e := exec.Error; e != nil {
		res.IsError = true
		fmt.Fprintf(&text, "error: %s: %s\n", e.Name, e.Value)
		if tb := clip.StripANSI(e.Traceback); tb != "" {
			fmt.Fprintf(&text, "traceback:\n%s\n", s.truncate(tb))
		}
	}
	if text.Len() == 0 && len(images) == 0 {
		text.WriteString("(the code ran and printed nothing)")
	}
	if text.Len() > 0 {
		res.Content = append(res.Content, &mcp.TextContent{Text: strings.TrimRight(text.String(), "\n")})
	}
	res.Content = append(res.Content, images...)
	return res
}

func (s *Server) runCommand(ctx context.Context, req *mcp.CallToolRequest, in runCommandArgs) (*mcp.CallToolResult, any, error) {
	if strings.TrimSpace(in.Command) == "" {
		return nil, nil, errors.New("command is empty: pass a bash command line in command")
	}
	timeout, err := seconds("timeout_seconds", in.TimeoutSeconds, defaultCallTimout, maxCallTimeout)
	if err != nil {
		return nil, nil, err
	}
	sb, err := s.sandbox(ctx, req.Session, in.SandboxID)
	if err != nil {
		return nil, nil, err
	}
	opts := []sandpit.CommandOption{sandpit.WithTimeout(timeout)}
	if in.Cwd != "" {
		opts = append(opts, sandpit.WithCwd(in.Cwd))
	}
	if len(in.Env) > 0 {
		opts = append(opts, sandpit.WithEnvs(in.Env))
	}
	r, err := sb.Commands.Run(ctx, in.Command, opts...)
	var exitErr *sandpit.CommandExitError
	switch {
	case errors.As(err, &exitErr):
		text := fmt.Sprintf("the command exited with code %d", exitErr.ExitCode)
		if exitErr.ExitCode == -1 {
			text = "the command was killed by a signal"
		}
		text += "\nstderr:\n" + s.truncate(exitErr.Stderr)
		if exitErr.Stdout != "" {
			text += "\nstdout:\n" + s.truncate(exitErr.Stdout)
		}
		return errorResult(text), nil, nil
	case errors.Is(err, sandpit.ErrTimeout):
		return nil, nil, fmt.Errorf("the command ran out of its %s timeout and was killed: raise timeout_seconds or run it in the background (cmd > log 2>&1 &)", timeout)
	case err != nil:
		if errors.Is(err, sandpit.ErrNotFound) && in.Cwd != "" {
			return nil, nil, fmt.Errorf("running the command: %w (does cwd %s exist?)", err, in.Cwd)
		}
		return nil, nil, s.callError(ctx, sb.ID, "running the command", err)
	}
	var text strings.Builder
	text.WriteString("exit code 0")
	if r.Stdout != "" {
		text.WriteString("\nstdout:\n" + s.truncate(r.Stdout))
	}
	if r.Stderr != "" {
		text.WriteString("\nstderr:\n" + s.truncate(r.Stderr))
	}
	return textResult(text.String()), nil, nil
}

func (s *Server) readFile(ctx context.Context, req *mcp.CallToolRequest, in readFileArgs) (*mcp.CallToolResult, any, error) {
	if strings.TrimSpace(in.Path) == "" {
		return nil, nil, errors.New("path is empty: name the file to read")
	}
	sb, err := s.sandbox(ctx, req.Session, in.SandboxID)
	if err != nil {
		return nil, nil, err
	}
	data, err := sb.Files.Read(ctx, in.Path)
	if err != nil {
		return nil, nil, s.fileError(ctx, sb.ID, in.Path, "reading", err)
	}
	mime := mimeType(in.Path, data)
	switch {
	case strings.HasPrefix(mime, "image/"):
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.ImageContent{Data: data, MIMEType: mime}}}, nil, nil
	case utf8.Valid(data):
		if len(data) == 0 {
			return textResult("(the file is empty)"), nil, nil
		}
		return textResult(s.truncate(string(data))), nil, nil
	}
	return &mcp.CallToolResult{Content: []mcp.Content{
		&mcp.TextContent{Text: fmt.Sprintf("%s is a binary file of %d bytes (%s)", in.Path, len(data), mime)},
		&mcp.EmbeddedResource{Resource: &mcp.ResourceContents{URI: resourceURI(sb.ID, in.Path), MIMEType: mime, Blob: data}},
	}}, nil, nil
}

func (s *Server) writeFile(ctx context.Context, req *mcp.CallToolRequest, in writeFileArgs) (*mcp.CallToolResult, any, error) {
	if strings.TrimSpace(in.Path) == "" {
		return nil, nil, errors.New("path is empty: name the file to write")
	}
	sb, err := s.sandbox(ctx, req.Session, in.SandboxID)
	if err != nil {
		return nil, nil, err
	}
	e, err := sb.Files.Write(ctx, in.Path, []byte(in.Content))
	if err != nil {
		return nil, nil, s.fileError(ctx, sb.ID, in.Path, "writing", err)
	}
	return textResult(fmt.Sprintf("wrote %d bytes to %s", len(in.Content), cmp.Or(e.Path, in.Path))), nil, nil
}

func (s *Server) listFiles(ctx context.Context, req *mcp.CallToolRequest, in listFilesArgs) (*mcp.CallToolResult, any, error) {
	if in.Depth < 0 || in.Depth > maxListDepth {
		return nil, nil, fmt.Errorf("depth must be between 1 and %d, not %d", maxListDepth, in.Depth)
	}
	path := cmp.Or(in.Path, "/home/user")
	sb, err := s.sandbox(ctx, req.Session, in.SandboxID)
	if err != nil {
		return nil, nil, err
	}
	var opts []sandpit.FileOption
	if in.Depth > 0 {
		opts = append(opts, sandpit.WithDepth(in.Depth))
	}
	entries, err := sb.Files.List(ctx, path, opts...)
	if err != nil {
		return nil, nil, s.fileError(ctx, sb.ID, path, "listing", err)
	}
	if len(entries) == 0 {
		return textResult(path + " is empty"), nil, nil
	}
	slices.SortFunc(entries, func(a, b sandpit.EntryInfo) int { return strings.Compare(a.Path, b.Path) })
	var b strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&b, "%-7s %10d  %s\n", e.Type, e.Size, e.Path)
	}
	return textResult(s.truncate(strings.TrimRight(b.String(), "\n"))), nil, nil
}

func (s *Server) killSandbox(ctx context.Context, _ *mcp.CallToolRequest, in killSandboxArgs) (*mcp.CallToolResult, any, error) {
	id := in.SandboxID
	if id == "" {
		s.mu.Lock()
		if s.session != nil {
			id = s.session.ID
		}
		s.mu.Unlock()
		if id == "" {
			return textResult("this session has no sandbox to kill"), nil, nil
		}
	}
	err := s.cfg.Client.Kill(ctx, id)
	s.forget(id)
	if err != nil {
		return nil, nil, sandboxError(id, err)
	}
	return textResult("killed sandbox " + id), nil, nil
}

// callError explains a failed call into a sandbox; a sandbox gone is
// forgotten, so the next call says so at once.
func (s *Server) callError(ctx context.Context, id, doing string, err error) error {
	if errors.Is(err, sandpit.ErrNotFound) {
		if info, _ := s.cfg.Client.GetInfo(ctx, id); info.ID == "" {
			s.forget(id)
			return sandboxError(id, err)
		}
	}
	if errors.Is(err, sandpit.ErrTimeout) {
		return fmt.Errorf("%s: it ran out of time; raise timeout_seconds: %w", doing, err)
	}
	return fmt.Errorf("%s in sandbox %s: %w", doing, id, err)
}

// fileError explains a failed file call.
func (s *Server) fileError(ctx context.Context, id, path, doing string, err error) error {
	if errors.Is(err, sandpit.ErrNotFound) {
		if info, _ := s.cfg.Client.GetInfo(ctx, id); info.ID != "" {
			return fmt.Errorf("%s %s: no such file or directory; list_files shows what is there", doing, path)
		}
		s.forget(id)
		return sandboxError(id, err)
	}
	return fmt.Errorf("%s %s in sandbox %s: %w", doing, path, id, err)
}

// truncate keeps the head and tail of s within MaxOutput bytes and says
// how much it cut from the middle.
func (s *Server) truncate(text string) string {
	return clip.Middle(text, s.cfg.MaxOutput)
}

func textResult(text string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}
}

func errorResult(text string) *mcp.CallToolResult {
	r := textResult(text)
	r.IsError = true
	return r
}
