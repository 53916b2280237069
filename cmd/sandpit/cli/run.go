package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// languages maps file extensions to interpreter languages.
var languages = map[string]string{
	".py": "python", ".js": "javascript", ".mjs": "javascript", ".ts": "typescript",
	".sh": "bash", ".bash": "bash", ".r": "r", ".R": "r", ".java": "java",
}

// runFile runs a script in a throwaway sandbox: output streams, results are
// printed, images saved into --out. It exits 1 when the script raised.
func (c *cli) runFile(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	template := fs.String("template", "code-interpreter-v1", "template of the sandbox")
	out := fs.String("out", ".", "directory for image and PDF results")
	lang := fs.String("language", "", "language (default: from the file's extension)")
	timeout := fs.Duration("timeout", 5*time.Minute, "longest the script may run")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("usage: sandpit run FILE [--template T] [--out DIR]")
	}
	file := pos[0]
	if *lang == "" {
		*lang = languages[filepath.Ext(file)]
		if *lang == "" {
			return fmt.Errorf("cannot tell the language of %s from its extension; pass --language", file)
		}
	}
	code, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	c.status("creating a sandbox from %s...", *template)
	sb, err := cl.Create(ctx, sandpit.WithTemplate(*template), sandpit.WithTimeout(*timeout+time.Minute))
	if err != nil {
		return err
	}
	defer sb.Close()
	c.status("running %s (%s) in %s...", file, *lang, sb.ID)

	base := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	n := 0
	var saveErr error
	save := func(r sandpit.Result) {
		for _, img := range []struct {
			ext  string
			data []byte
		}{{"png", r.PNG}, {"jpeg", r.JPEG}, {"pdf", r.PDF}, {"svg", []byte(r.SVG)}} {
			if len(img.data) == 0 {
				continue
			}
			n++
			name := filepath.Join(*out, fmt.Sprintf("%s-%d.%s", base, n, img.ext))
			if err := os.WriteFile(name, img.data, 0o644); err != nil {
				saveErr = err
				continue
			}
			fmt.Fprintf(c.stderr, "saved %s\n", name)
		}
		if r.Text != "" && len(r.PNG) == 0 && len(r.JPEG) == 0 && r.SVG == "" {
			fmt.Fprintln(c.stdout, r.Text)
		}
	}
	exec, err := sb.RunCode(ctx, string(code), sandpit.WithLanguage(*lang), sandpit.WithTimeout(*timeout),
		sandpit.WithStdout(c.stdout), sandpit.WithStderr(c.stderr), sandpit.OnResult(save))
	if err != nil {
		return err
	}
	if saveErr != nil {
		return saveErr
	}
	if exec.Error != nil {
		fmt.Fprintf(c.stderr, "%s: %s\n%s\n", exec.Error.Name, exec.Error.Value, exec.Error.Traceback)
		return exitCode(1)
	}
	return nil
}

// status prints a progress line on stderr when it is a terminal.
func (c *cli) status(format string, args ...any) {
	if f, ok := c.stderr.(*os.File); ok && isTerminal(f) {
		fmt.Fprintf(c.stderr, format+"\n", args...)
	}
}
