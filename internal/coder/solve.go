package coder

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sandpit-dev/sandpit/internal/clip"
	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// solvePrompt is the system prompt of Solve.
const solvePrompt = `You are a careful Python programmer working in a Linux sandbox. ` +
	`Write one complete Python program that does the user's task and prints its result. ` +
	`Run it with the run_code tool (give the whole program each time); you may use run_command for shell work such as pip install. ` +
	"Without tools, answer with the whole program in one ```python block. " +
	`If you are told the program failed, find the cause in the error and traceback and give the whole corrected program.`

// Solution is a program that ran cleanly.
type Solution struct {
	// Code is the program; Output what it printed (and the value of its
	// last expression, if any).
	Code, Output string
	// Attempts is how many programs ran, this one included.
	Attempts int
}

var solveTools = []Tool{
	{
		Name:        "run_code",
		Description: "Run a complete Python program in the sandbox and get back what it printed, or its error and traceback.",
		Parameters: map[string]any{
			"type":       "object",
			"properties": map[string]any{"code": map[string]any{"type": "string", "description": "the whole Python program"}},
			"required":   []string{"code"},
		},
	},
	{
		Name:        "run_command",
		Description: "Run a bash command line in the sandbox (e.g. pip install x) and get its exit code and output.",
		Parameters: map[string]any{
			"type":       "object",
			"properties": map[string]any{"command": map[string]any{"type": "string", "description": "the bash command line"}},
			"required":   []string{"command"},
		},
	},
}

// Solve asks the model for a program that does task, runs it in a fresh
// sandbox, and sends the output or the error and traceback back until a
// program runs cleanly or MaxAttempts programs have failed (ErrGaveUp).
// The transcript goes to Progress.
func (a *Agent) Solve(ctx context.Context, task string) (*Solution, error) {
	if strings.TrimSpace(task) == "" {
		return nil, errors.New("no task: say what the program should do")
	}
	sb, err := a.createSandbox(ctx, "solve")
	if err != nil {
		return nil, err
	}
	defer sb.Close()

	c := &conversation{a: a, tools: solveTools, history: []Message{{Role: "system", Content: solvePrompt}, {Role: "user", Content: task}}}
	attempts := 0
	// Turns without a program (a shell command, a reply without code) are
	// bounded too, so a model that never writes one cannot loop for ever.
	for turn := 1; attempts < a.cfg.MaxAttempts && turn <= 3*a.cfg.MaxAttempts; turn++ {
		reply, err := c.ask(ctx, turn)
		if err != nil {
			return nil, err
		}
		if len(reply.ToolCalls) == 0 {
			code := extractCode(reply.Content)
			if code == "" {
				c.say("Reply with the whole program in a ```python block.")
				continue
			}
			attempts++
			sol, feedback, err := a.runProgram(ctx, sb, code, attempts)
			if err != nil || sol != nil {
				return sol, err
			}
			c.say(feedback + "\nFix it and reply with the whole program.")
			continue
		}
		for _, call := range reply.ToolCalls {
			switch call.Function.Name {
			case "run_code":
				var in struct{ Code string }
				if err := args(call, &in); err != nil {
					c.answer(call, err.Error())
					continue
				}
				if strings.TrimSpace(in.Code) == "" {
					c.answer(call, "code is empty: pass the whole program in code")
					continue
				}
				if attempts == a.cfg.MaxAttempts {
					c.answer(call, "not run: no attempts left")
					continue
				}
				attempts++
				sol, feedback, err := a.runProgram(ctx, sb, in.Code, attempts)
				if err != nil || sol != nil {
					return sol, err
				}
				c.answer(call, feedback+"\nFix it and run the whole program again.")
			case "run_command":
				var in struct{ Command string }
				if err := args(call, &in); err != nil {
					c.answer(call, err.Error())
					continue
				}
				c.answer(call, a.runCommand(ctx, sb, in.Command))
			default:
				c.answer(call, fmt.Sprintf("there is no tool %q: use run_code or run_command", call.Function.Name))
			}
		}
	}
	return nil, fmt.Errorf("no program ran cleanly after %d attempt(s): %w", attempts, ErrGaveUp)
}

// runProgram runs one attempt. A clean run is the solution; otherwise
// feedback says what went wrong, for the model.
func (a *Agent) runProgram(ctx context.Context, sb *sandpit.Sandbox, code string, attempt int) (*Solution, string, error) {
	p := a.cfg.Progress
	fmt.Fprintf(p, "--- attempt %d: the model's code ---\n%s\n--- attempt %d: output ---\n", attempt, code, attempt)
	opts := []sandpit.RunCodeOption{sandpit.WithTimeout(a.cfg.RunTimeout)}
	if a.cfg.Stream {
		opts = append(opts, sandpit.WithStdout(p), sandpit.WithStderr(p))
	}
	exec, err := sb.RunCode(ctx, code, opts...)
	if errors.Is(err, sandpit.ErrTimeout) {
		fmt.Fprintf(p, "--- attempt %d: timed out after %s ---\n", attempt, a.cfg.RunTimeout)
		return nil, fmt.Sprintf("The program did not finish within %s and was stopped.", a.cfg.RunTimeout), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("running attempt %d in sandbox %s: %w", attempt, sb.ID, err)
	}
	stdout := strings.Join(exec.Logs.Stdout, "")
	stderr := strings.Join(exec.Logs.Stderr, "")
	if !a.cfg.Stream {
		fmt.Fprint(p, stdout)
		if stderr != "" {
			fmt.Fprintf(p, "--- attempt %d: stderr ---\n%s", attempt, stderr)
		}
	}
	if exec.Error == nil {
		out := stdout
		if v := exec.Text(); v != "" {
			out += v + "\n"
		}
		fmt.Fprintf(p, "--- solved in %d attempt(s) ---\n", attempt)
		return &Solution{Code: code, Output: out, Attempts: attempt}, "", nil
	}
	tb := clip.StripANSI(exec.Error.Traceback)
	fmt.Fprintf(p, "--- attempt %d: error ---\n%s: %s\n%s\n", attempt, exec.Error.Name, exec.Error.Value, tb)
	return nil, fmt.Sprintf("The program failed.\nstdout:\n%s\nstderr:\n%s\nerror: %s: %s\ntraceback:\n%s",
		cut(stdout), cut(stderr), exec.Error.Name, exec.Error.Value, cut(tb)), nil
}

// runCommand runs a shell command the model asked for and describes how
// it went.
func (a *Agent) runCommand(ctx context.Context, sb *sandpit.Sandbox, cmd string) string {
	p := a.cfg.Progress
	fmt.Fprintf(p, "--- command ---\n$ %s\n", cmd)
	r, err := sb.Commands.Run(ctx, cmd, sandpit.WithTimeout(a.cfg.RunTimeout))
	var exitErr *sandpit.CommandExitError
	switch {
	case errors.As(err, &exitErr):
		fmt.Fprintf(p, "%s%s(exit code %d)\n", exitErr.Stdout, exitErr.Stderr, exitErr.ExitCode)
		return fmt.Sprintf("exit code %d\nstdout:\n%s\nstderr:\n%s", exitErr.ExitCode, cut(exitErr.Stdout), cut(exitErr.Stderr))
	case err != nil:
		fmt.Fprintf(p, "(%v)\n", err)
		return fmt.Sprintf("the command could not run: %v", err)
	}
	fmt.Fprintf(p, "%s%s", r.Stdout, r.Stderr)
	return fmt.Sprintf("exit code 0\nstdout:\n%s\nstderr:\n%s", cut(r.Stdout), cut(r.Stderr))
}
