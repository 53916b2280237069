package coder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sandpit-dev/sandpit/internal/template/agentexec"
	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// Bounds on what Fix copies into the sandbox and shows the model.
const (
	maxFixFileSize  = 256 << 10
	maxFixFiles     = 200
	maxFixTotalSize = 2 << 20
	// workDir is where the files go in the sandbox; tests run there.
	workDir = "/home/user/work"
	// origDir holds the originals of changed files, for the diff.
	origDir = "/tmp/sandpit-fix-orig"
)

// skipDirs are not copied from a directory to fix.
var skipDirs = map[string]bool{".git": true, ".hg": true, ".svn": true, "__pycache__": true, "node_modules": true,
	".venv": true, "venv": true, ".mypy_cache": true, ".pytest_cache": true, ".tox": true}

// fixPrompt is the system prompt of Fix.
const fixPrompt = `You are a careful programmer repairing code whose tests fail. You get the project's files and the failing test output. ` +
	`Find the bug and fix the code, not the tests (unless a test is plainly wrong). ` +
	`Give each changed file's whole new content with the write_file tool. ` +
	"Without tools, give each changed file's whole new content in a fenced block whose info string names it, e.g. ```python calc.py. " +
	`After your change the tests run again and you see the result.`

var fixTools = []Tool{{
	Name:        "write_file",
	Description: "Replace a project file's whole content. The tests run again after your answer.",
	Parameters: map[string]any{
		"type": "object",
		"properties": map[string]any{
			"path":    map[string]any{"type": "string", "description": "the file's path relative to the project root, as shown"},
			"content": map[string]any{"type": "string", "description": "the file's whole new content"},
		},
		"required": []string{"path", "content"},
	},
}}

// Repair is what Fix did.
type Repair struct {
	// AlreadyPassing is set when the tests passed before any change.
	AlreadyPassing bool
	// Changed are the files written back, relative to the root.
	Changed []string
	// Diff is the unified diff of the change.
	Diff string
	// Attempts is how many fixes were tried.
	Attempts int
}

// project is the files Fix works on: root is a directory on the host,
// files their contents by slash-separated path relative to it.
type project struct {
	root  string
	files map[string][]byte
	modes map[string]fs.FileMode
	// single is set when one file was named: only it is editable.
	single string
}

// Fix copies target (a file, or a directory's files) into a sandbox, runs
// test there, and while it fails asks the model for a fix, applies it and
// reruns, up to MaxAttempts fixes. When the tests pass, the changed files
// are written back to the host (and the diff returned); when the attempts
// run out (ErrGaveUp) nothing on the host is touched.
func (a *Agent) Fix(ctx context.Context, target, test string) (*Repair, error) {
	if strings.TrimSpace(test) == "" {
		return nil, errors.New("no test command: pass one with --test, e.g. --test 'python3 -m pytest -q'")
	}
	proj, err := readProject(target)
	if err != nil {
		return nil, err
	}
	sb, err := a.createSandbox(ctx, "fix")
	if err != nil {
		return nil, err
	}
	defer sb.Close()
	for _, name := range proj.names() {
		if _, err := sb.Files.Write(ctx, workDir+"/"+name, proj.files[name]); err != nil {
			return nil, fmt.Errorf("copying %s into the sandbox: %w", name, err)
		}
	}
	fmt.Fprintf(a.cfg.Progress, "--- copied %d file(s) to %s; running: %s ---\n", len(proj.files), workDir, test)
	ok, out, err := a.runTests(ctx, sb, test)
	if err != nil {
		return nil, err
	}
	if ok {
		fmt.Fprintln(a.cfg.Progress, "--- the tests already pass: nothing to fix ---")
		return &Repair{AlreadyPassing: true}, nil
	}

	current := maps.Clone(proj.files)
	c := &conversation{a: a, tools: fixTools, history: []Message{
		{Role: "system", Content: fixPrompt},
		{Role: "user", Content: proj.describe(test, out)},
	}}
	attempts := 0
	for turn := 1; attempts < a.cfg.MaxAttempts && turn <= 3*a.cfg.MaxAttempts; turn++ {
		reply, err := c.ask(ctx, turn)
		if err != nil {
			return nil, err
		}
		edits, problems := proj.edits(reply)
		for _, call := range reply.ToolCalls {
			c.answer(call, problems[call.ID])
		}
		if len(edits) == 0 {
			c.say("No file was changed. " + problems[""] + "Give the whole new content of each file you change.")
			continue
		}
		attempts++
		for _, e := range edits {
			fmt.Fprintf(a.cfg.Progress, "--- attempt %d: the model rewrote %s ---\n%s\n", attempts, e.path, e.content)
			if _, err := sb.Files.Write(ctx, workDir+"/"+e.path, []byte(e.content)); err != nil {
				return nil, fmt.Errorf("writing %s in the sandbox: %w", e.path, err)
			}
			current[e.path] = []byte(e.content)
		}
		fmt.Fprintf(a.cfg.Progress, "--- attempt %d: running %s ---\n", attempts, test)
		ok, out, err := a.runTests(ctx, sb, test)
		if err != nil {
			return nil, err
		}
		if ok {
			fmt.Fprintf(a.cfg.Progress, "--- the tests pass after %d attempt(s) ---\n", attempts)
			return a.finish(ctx, sb, proj, current, attempts)
		}
		c.say("The tests still fail:\n" + cut(out) + "\nFix the code and give the whole new content of each file you change.")
	}
	return nil, fmt.Errorf("the tests still fail after %d attempt(s); %s is unchanged: %w", attempts, target, ErrGaveUp)
}

// runTests runs the test command in the work directory.
func (a *Agent) runTests(ctx context.Context, sb *sandpit.Sandbox, test string) (ok bool, output string, err error) {
	opts := []sandpit.CommandOption{sandpit.WithCwd(workDir), sandpit.WithTimeout(a.cfg.RunTimeout)}
	if a.cfg.Stream {
		opts = append(opts, sandpit.WithStdout(a.cfg.Progress), sandpit.WithStderr(a.cfg.Progress))
	}
	r, err := sb.Commands.Run(ctx, test, opts...)
	var exitErr *sandpit.CommandExitError
	switch {
	case errors.As(err, &exitErr):
		out := exitErr.Stdout + exitErr.Stderr
		if !a.cfg.Stream {
			fmt.Fprint(a.cfg.Progress, out)
		}
		fmt.Fprintf(a.cfg.Progress, "(exit code %d)\n", exitErr.ExitCode)
		return false, fmt.Sprintf("exit code %d\n%s", exitErr.ExitCode, out), nil
	case errors.Is(err, sandpit.ErrTimeout):
		return false, fmt.Sprintf("the tests did not finish within %s and were stopped", a.cfg.RunTimeout), nil
	case err != nil:
		return false, "", fmt.Errorf("running the tests in sandbox %s: %w", sb.ID, err)
	}
	if !a.cfg.Stream {
		fmt.Fprint(a.cfg.Progress, r.Stdout+r.Stderr)
	}
	return true, r.Stdout + r.Stderr, nil
}

// finish diffs the changed files against the originals (with diff -u in
// the sandbox) and writes them back to the host.
func (a *Agent) finish(ctx context.Context, sb *sandpit.Sandbox, proj *project, current map[string][]byte, attempts int) (*Repair, error) {
	rep := &Repair{Attempts: attempts}
	for _, name := range slices.Sorted(maps.Keys(current)) {
		if orig, ok := proj.files[name]; !ok || string(orig) != string(current[name]) {
			rep.Changed = append(rep.Changed, name)
		}
	}
	var diff strings.Builder
	for _, name := range rep.Changed {
		orig := proj.files[name] // nil for a new file: diffed against empty
		if _, err := sb.Files.Write(ctx, origDir+"/"+name, orig); err != nil {
			return nil, fmt.Errorf("staging the original of %s for the diff: %w", name, err)
		}
		cmd := fmt.Sprintf("diff -u --label a/%s --label b/%s %s %s", agentexec.Quote(name), agentexec.Quote(name),
			agentexec.Quote(origDir+"/"+name), agentexec.Quote(workDir+"/"+name))
		r, err := sb.Commands.Run(ctx, cmd)
		var exitErr *sandpit.CommandExitError
		switch {
		case errors.As(err, &exitErr) && exitErr.ExitCode == 1:
			diff.WriteString(exitErr.Stdout)
		case err != nil:
			fmt.Fprintf(&diff, "(no diff of %s: %v)\n", name, err)
		default:
			diff.WriteString(r.Stdout)
		}
	}
	rep.Diff = diff.String()
	for _, name := range rep.Changed {
		if err := proj.writeBack(name, current[name]); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// readProject reads a file, or a directory's files, from the host.
func readProject(target string) (*project, error) {
	info, err := os.Stat(target)
	if err != nil {
		return nil, fmt.Errorf("reading what to fix: %w", err)
	}
	p := &project{files: map[string][]byte{}, modes: map[string]fs.FileMode{}}
	if !info.IsDir() {
		p.root = filepath.Dir(target)
		p.single = filepath.Base(target)
		if info.Size() > maxFixFileSize {
			return nil, fmt.Errorf("%s is %d bytes: fix handles files up to %d", target, info.Size(), maxFixFileSize)
		}
		data, err := os.ReadFile(target)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", target, err)
		}
		p.files[p.single], p.modes[p.single] = data, info.Mode().Perm()
		return p, nil
	}
	p.root = target
	total := 0
	err = filepath.WalkDir(target, func(file string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if file != target && skipDirs[d.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil || info.Size() > maxFixFileSize {
			return err
		}
		rel, err := filepath.Rel(target, file)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		total += len(data)
		if len(p.files) >= maxFixFiles || total > maxFixTotalSize {
			return fmt.Errorf("%s holds more than %d files or %d bytes: point fix at a smaller directory", target, maxFixFiles, maxFixTotalSize)
		}
		name := filepath.ToSlash(rel)
		p.files[name], p.modes[name] = data, info.Mode().Perm()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", target, err)
	}
	if len(p.files) == 0 {
		return nil, fmt.Errorf("%s has no files to fix", target)
	}
	return p, nil
}

func (p *project) names() []string {
	return slices.Sorted(maps.Keys(p.files))
}

// describe is the first message to the model: the files and the failure.
func (p *project) describe(test, output string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "The test command `%s` fails. The project's files:\n\n", test)
	for _, name := range p.names() {
		data := p.files[name]
		if !utf8.Valid(data) {
			fmt.Fprintf(&b, "%s (binary, %d bytes)\n\n", name, len(data))
			continue
		}
		fmt.Fprintf(&b, "File %s:\n```%s %s\n%s\n```\n\n", name, lang(name), name, strings.TrimRight(string(data), "\n"))
	}
	if p.single != "" {
		fmt.Fprintf(&b, "Only %s may be changed.\n\n", p.single)
	}
	fmt.Fprintf(&b, "The test output:\n%s\n\nFix the code.", cut(output))
	return b.String()
}

// lang names a file's language for a fenced block.
func lang(name string) string {
	switch path.Ext(name) {
	case ".py":
		return "python"
	case ".js", ".mjs":
		return "javascript"
	case ".ts":
		return "typescript"
	case ".go":
		return "go"
	case ".sh":
		return "bash"
	}
	return "text"
}

// edit is a file's new content.
type edit struct {
	path, content string
}

// edits reads the file changes from the model's answer: write_file calls,
// else fenced blocks naming a file (or, with one editable file, any block).
// problems holds, by tool call ID ("" for the plain answer), what was
// wrong, for the model.
func (p *project) edits(reply Message) (edits []edit, problems map[string]string) {
	problems = map[string]string{}
	for _, call := range reply.ToolCalls {
		if call.Function.Name != "write_file" {
			problems[call.ID] = fmt.Sprintf("there is no tool %q: use write_file", call.Function.Name)
			continue
		}
		var in struct{ Path, Content string }
		if err := args(call, &in); err != nil {
			problems[call.ID] = err.Error()
			continue
		}
		name, err := p.editable(in.Path)
		if err != nil {
			problems[call.ID] = err.Error()
			continue
		}
		edits = append(edits, edit{path: name, content: in.Content})
		problems[call.ID] = "written " + name
	}
	if len(reply.ToolCalls) > 0 {
		return edits, problems
	}
	blocks := codeBlocks(reply.Content)
	for _, b := range blocks {
		name := ""
		for _, field := range strings.Fields(b.info) {
			field = strings.Trim(strings.TrimPrefix(strings.TrimPrefix(field, "title="), "path="), `"'`)
			if n, err := p.editable(field); err == nil && (p.files[n] != nil || strings.Contains(field, ".")) {
				name = n
			}
		}
		if name == "" && p.single != "" && len(blocks) == 1 {
			name = p.single
		}
		if name == "" {
			continue
		}
		edits = append(edits, edit{path: name, content: b.body})
	}
	if len(edits) == 0 {
		problems[""] = "I found no fenced block naming a project file (e.g. ```python calc.py). "
	}
	return edits, problems
}

// editable checks a path the model named: relative, inside the project,
// and (when one file was named) that file.
func (p *project) editable(name string) (string, error) {
	name = strings.TrimPrefix(strings.TrimPrefix(name, workDir+"/"), "./")
	clean := path.Clean(name)
	if name == "" || path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("path %q is not a file of the project: give a path relative to its root, as shown", name)
	}
	if p.single != "" && clean != p.single {
		return "", fmt.Errorf("only %s may be changed", p.single)
	}
	return clean, nil
}

// writeBack writes a changed file to the host, through a temporary file
// renamed over it so a crash leaves the old or the new content, whole. The
// name comes from the model: it is opened in the project's root (os.Root),
// so no "..", absolute path or symlink takes it outside.
func (p *project) writeBack(name string, data []byte) error {
	root, err := os.OpenRoot(p.root)
	if err != nil {
		return fmt.Errorf("writing %s back: %w", name, err)
	}
	defer root.Close()
	rel := filepath.FromSlash(name)
	mode, ok := p.modes[name]
	if !ok {
		mode = 0o644
		if err := root.MkdirAll(filepath.Dir(rel), 0o755); err != nil {
			return fmt.Errorf("writing %s back: %w", name, err)
		}
	}
	tmp := filepath.Join(filepath.Dir(rel), "."+filepath.Base(rel)+".sandpit-"+strconv.Itoa(os.Getpid()))
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("writing %s back: %w", name, err)
	}
	defer root.Remove(tmp)
	_, err = f.Write(data)
	if err == nil {
		// OpenFile's mode is masked by the umask; the file keeps its own.
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, rel)
	}
	if err != nil {
		return fmt.Errorf("writing %s back: %w", name, err)
	}
	return nil
}
