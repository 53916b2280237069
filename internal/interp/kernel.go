package interp

import (
	"context"
	"errors"
	"strings"
)

// kernel runs the code of one context. execute, setEnv and chdir are called
// by one goroutine at a time (the owning context serializes them); close may
// be called concurrently with them and more than once.
type kernel interface {
	// execute runs code and reports every output line through emit as it
	// happens. When ctx is done the kernel is interrupted and execute
	// returns once the kernel is idle again. It returns errKernelDied when
	// the kernel process is gone, after which the kernel is unusable.
	execute(ctx context.Context, code string, emit func(any)) error
	// setEnv sets and unsets environment variables in the kernel.
	setEnv(ctx context.Context, set map[string]string, unset []string) error
	// chdir changes the kernel's working directory.
	chdir(ctx context.Context, dir string) error
	// exited is closed when the kernel process has exited.
	exited() <-chan struct{}
	// close stops the kernel process and everything it owns, and waits for
	// them. It is safe to call more than once.
	close() error
}

var (
	// errKernelDied means the kernel process exited during or before an
	// execution.
	errKernelDied = errors.New("kernel died")
	// errUnsupportedLanguage means no kernel is available for a language.
	errUnsupportedLanguage = errors.New("unsupported language")
)

// Language names as reported to clients (the keys of the default contexts).
const (
	langPython     = "python"
	langJavaScript = "javascript"
	langTypeScript = "typescript"
	langBash       = "bash"
	langR          = "r"
	langJava       = "java"
)

// normalizeLanguage maps a client's language string to a canonical name,
// as upstream does: lowercased, trimmed, with common aliases.
func normalizeLanguage(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	switch s {
	case "", "python", "python3", "py", "ipython":
		return langPython
	case "javascript", "js", "node", "nodejs":
		return langJavaScript
	case "typescript", "ts":
		return langTypeScript
	case "bash", "sh", "shell":
		return langBash
	case "r":
		return langR
	case "java":
		return langJava
	}
	return s
}

// NDJSON lines of an execution (spec §5.1).

type streamLine struct {
	Type      string `json:"type"` // "stdout" or "stderr"
	Text      string `json:"text"`
	Timestamp string `json:"timestamp"`
}

type errorLine struct {
	Type      string `json:"type"` // "error"
	Name      string `json:"name"`
	Value     string `json:"value"`
	Traceback string `json:"traceback"`
}

type countLine struct {
	Type           string `json:"type"` // "number_of_executions"
	ExecutionCount int    `json:"execution_count"`
}

// typeLine is a line with only a type: end_of_execution, keepalive.
type typeLine struct {
	Type string `json:"type"`
}

func newErrorLine(name, value, traceback string) errorLine {
	return errorLine{Type: "error", Name: name, Value: value, Traceback: traceback}
}
