package sandpit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Execution is what RunCode produced.
type Execution struct {
	// Results are the rich results in order: display() calls and the value
	// of the last expression (IsMainResult).
	Results []Result
	// Logs holds what the code printed.
	Logs Logs
	// Error is set when the code raised an error. RunCode still returns a
	// nil error then: the execution itself worked.
	Error *ExecutionError
	// ExecutionCount is the kernel's execution counter.
	ExecutionCount int
}

// Text returns the text of the main result (the last expression's value),
// or "" when there is none.
func (e *Execution) Text() string {
	for _, r := range e.Results {
		if r.IsMainResult {
			return r.Text
		}
	}
	return ""
}

// Logs holds printed output, one element per chunk the kernel reported.
type Logs struct {
	Stdout []string
	Stderr []string
}

// ExecutionError is an error raised by executed code.
type ExecutionError struct {
	// Name is the error's type, e.g. "ZeroDivisionError".
	Name string
	// Value is its message, e.g. "division by zero".
	Value string
	// Traceback is the formatted traceback (ANSI colour codes included).
	Traceback string
}

// Error returns "Name: Value".
func (e *ExecutionError) Error() string { return e.Name + ": " + e.Value }

// Result is one rich result of an execution: the same value in every
// format the kernel could render it in. Fields of absent formats are empty.
type Result struct {
	Text       string
	HTML       string
	Markdown   string
	SVG        string
	LaTeX      string
	JavaScript string
	// PNG, JPEG and PDF are the decoded bytes.
	PNG, JPEG, PDF []byte
	// JSON, Data (e.g. a DataFrame's columns) and Chart (the data behind a
	// matplotlib figure) are raw JSON.
	JSON, Data, Chart json.RawMessage
	// Extra holds formats without a field of their own, by MIME type.
	Extra map[string]json.RawMessage
	// IsMainResult is true for the value of the cell's last expression.
	IsMainResult bool
}

// Formats lists the formats the result has, e.g. ["text", "png"].
func (r Result) Formats() []string {
	var out []string
	add := func(name string, present bool) {
		if present {
			out = append(out, name)
		}
	}
	add("text", r.Text != "")
	add("html", r.HTML != "")
	add("markdown", r.Markdown != "")
	add("svg", r.SVG != "")
	add("png", len(r.PNG) > 0)
	add("jpeg", len(r.JPEG) > 0)
	add("pdf", len(r.PDF) > 0)
	add("latex", r.LaTeX != "")
	add("json", len(r.JSON) > 0)
	add("javascript", r.JavaScript != "")
	add("data", len(r.Data) > 0)
	add("chart", len(r.Chart) > 0)
	for k := range r.Extra {
		out = append(out, k)
	}
	return out
}

// wireLine is one NDJSON line of /execute.
type wireLine struct {
	Type           string                     `json:"type"`
	Text           string                     `json:"text"`
	HTML           string                     `json:"html"`
	Markdown       string                     `json:"markdown"`
	SVG            string                     `json:"svg"`
	PNG            string                     `json:"png"`
	JPEG           string                     `json:"jpeg"`
	PDF            string                     `json:"pdf"`
	LaTeX          string                     `json:"latex"`
	JSON           json.RawMessage            `json:"json"`
	JavaScript     string                     `json:"javascript"`
	Data           json.RawMessage            `json:"data"`
	Chart          json.RawMessage            `json:"chart"`
	Extra          map[string]json.RawMessage `json:"extra"`
	IsMainResult   bool                       `json:"is_main_result"`
	Name           string                     `json:"name"`
	Value          string                     `json:"value"`
	Traceback      string                     `json:"traceback"`
	ExecutionCount int                        `json:"execution_count"`
}

func (l *wireLine) result() Result {
	dec := func(s string) []byte {
		b, _ := base64.StdEncoding.DecodeString(s)
		return b
	}
	return Result{
		Text: l.Text, HTML: l.HTML, Markdown: l.Markdown, SVG: l.SVG, LaTeX: l.LaTeX,
		JavaScript: l.JavaScript, PNG: dec(l.PNG), JPEG: dec(l.JPEG), PDF: dec(l.PDF),
		JSON: l.JSON, Data: l.Data, Chart: l.Chart, Extra: l.Extra, IsMainResult: l.IsMainResult,
	}
}

// RunCode runs code in the sandbox's code interpreter (a stateful kernel:
// variables survive between calls in the same context) and returns what it
// produced. Output and results stream to the OnStdout, OnStderr, OnResult
// and OnError callbacks as they arrive.
//
// An error raised by the code is reported in Execution.Error, not as
// RunCode's error. Without WithLanguage or WithCodeContext the code runs in
// the default Python context. The execution may take WithTimeout (default
// 60s; 0 for no limit); past it RunCode returns ErrTimeout. The sandbox must
// run a template with the interpreter (sandpit: any; E2B:
// code-interpreter-v1).
func (sb *Sandbox) RunCode(ctx context.Context, code string, opts ...RunCodeOption) (*Execution, error) {
	cfg := runCodeConfig{timeout: defaultStreamTimeout}
	for _, o := range opts {
		o.applyRunCode(&cfg)
	}
	const op = "run code"
	if cfg.language != "" && cfg.contextID != "" {
		return nil, &Error{Op: op, Message: "give a language or a context, not both", kind: ErrInvalidArgument}
	}
	body := map[string]any{"code": code}
	if cfg.language != "" {
		body["language"] = cfg.language
	}
	if cfg.contextID != "" {
		body["context_id"] = cfg.contextID
	}
	if cfg.envs != nil {
		body["env_vars"] = cfg.envs
	}
	if cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.timeout)
		defer cancel()
	}
	resp, err := sb.interp(ctx, op, http.MethodPost, "/execute", body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	exec := &Execution{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 256<<20) // a PNG line can be large
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var l wireLine
		if err := json.Unmarshal(line, &l); err != nil {
			return exec, &Error{Op: op, Message: "decoding the interpreter's output: " + err.Error(), cause: err}
		}
		switch l.Type {
		case "stdout":
			exec.Logs.Stdout = append(exec.Logs.Stdout, l.Text)
			if cfg.onStdout != nil {
				cfg.onStdout(l.Text)
			}
			if cfg.stdoutW != nil {
				if _, err := io.WriteString(cfg.stdoutW, l.Text); err != nil {
					return exec, &Error{Op: op, cause: err}
				}
			}
		case "stderr":
			exec.Logs.Stderr = append(exec.Logs.Stderr, l.Text)
			if cfg.onStderr != nil {
				cfg.onStderr(l.Text)
			}
			if cfg.stderrW != nil {
				if _, err := io.WriteString(cfg.stderrW, l.Text); err != nil {
					return exec, &Error{Op: op, cause: err}
				}
			}
		case "result":
			r := l.result()
			exec.Results = append(exec.Results, r)
			if cfg.onResult != nil {
				cfg.onResult(r)
			}
		case "error":
			exec.Error = &ExecutionError{Name: l.Name, Value: l.Value, Traceback: l.Traceback}
			if cfg.onError != nil {
				cfg.onError(exec.Error)
			}
		case "number_of_executions":
			exec.ExecutionCount = l.ExecutionCount
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return exec, &Error{Op: op, Message: "the execution timed out", kind: ErrTimeout, cause: err}
		}
		return exec, sb.client.transportError(op, err)
	}
	return exec, nil
}

// interp sends one request to the code interpreter and checks the status.
func (sb *Sandbox) interp(ctx context.Context, op, method, path string, body any) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, &Error{Op: op, cause: err}
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, sb.baseURL(CodeInterpreterPort)+path, r)
	if err != nil {
		return nil, &Error{Op: op, cause: err}
	}
	sb.setHeaders(req.Header, CodeInterpreterPort)
	req.Header.Set("Content-Type", "application/json")
	resp, err := sb.client.hc.Do(req)
	if err != nil {
		return nil, sb.client.transportError(op, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, sandboxHTTPError(op, resp.StatusCode, strings.TrimSpace(string(raw)))
	}
	return resp, nil
}

// CodeContext is a kernel of its own: code run in it shares its variables
// and imports, apart from other contexts.
type CodeContext struct {
	// ID identifies the context.
	ID string `json:"id"`
	// Language is its language, normalized ("python", "javascript", ...).
	Language string `json:"language"`
	// Cwd is its working directory.
	Cwd string `json:"cwd"`
}

// interpJSON does a request whose answer, if out is non-nil, is JSON.
func (sb *Sandbox) interpJSON(ctx context.Context, op, method, path string, body, out any) error {
	ctx, cancel := sb.client.withRequestTimeout(ctx)
	defer cancel()
	resp, err := sb.interp(ctx, op, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return &Error{Op: op, Message: "decoding the interpreter's answer: " + err.Error(), cause: err}
	}
	return nil
}

// CreateCodeContext starts a new context (WithLanguage, default python;
// WithCwd, default the user's home).
func (sb *Sandbox) CreateCodeContext(ctx context.Context, opts ...CodeContextOption) (CodeContext, error) {
	var cfg codeContextConfig
	for _, o := range opts {
		o.applyCodeContext(&cfg)
	}
	body := map[string]string{}
	if cfg.language != "" {
		body["language"] = cfg.language
	}
	if cfg.cwd != "" {
		body["cwd"] = cfg.cwd
	}
	var out CodeContext
	err := sb.interpJSON(ctx, "create code context", http.MethodPost, "/contexts", body, &out)
	return out, err
}

// CodeContexts lists the sandbox's contexts, the default ones included.
func (sb *Sandbox) CodeContexts(ctx context.Context) ([]CodeContext, error) {
	var out []CodeContext
	err := sb.interpJSON(ctx, "list code contexts", http.MethodGet, "/contexts", nil, &out)
	return out, err
}

// RemoveCodeContext stops a context's kernel; ErrNotFound when there is no
// such context.
func (sb *Sandbox) RemoveCodeContext(ctx context.Context, cc CodeContext) error {
	return sb.interpJSON(ctx, "remove code context", http.MethodDelete, "/contexts/"+url.PathEscape(cc.ID), nil, nil)
}

// RestartCodeContext restarts a context's kernel: its state is lost, its ID
// stays.
func (sb *Sandbox) RestartCodeContext(ctx context.Context, cc CodeContext) error {
	return sb.interpJSON(ctx, "restart code context", http.MethodPost, "/contexts/"+url.PathEscape(cc.ID)+"/restart", nil, nil)
}
