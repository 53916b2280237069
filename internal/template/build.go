package template

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/safepath"
	"github.com/sandpit-dev/sandpit/internal/template/agentexec"
)

// LogEntry is one line of a build's log.
type LogEntry struct {
	Time    time.Time `json:"timestamp"`
	Level   string    `json:"level"` // debug, info, warn, error
	Message string    `json:"message"`
	Step    string    `json:"step,omitempty"` // "base", "finalize" or a 1-based step index
}

// StepError is a build that failed at one step.
type StepError struct {
	Step string // "base", "finalize" or the 1-based index of the step
	Msg  string // names the step and shows the command's output
	Err  error
}

func (e *StepError) Error() string { return e.Msg }
func (e *StepError) Unwrap() error { return e.Err }

// Builder runs builder steps in build sandboxes and keeps the layers they
// make. Its methods are safe for concurrent use.
type Builder struct {
	rt     runtime.Runtime
	commit runtime.Committer
	layers string
	log    *slog.Logger
}

// BuilderConfig is what NewBuilder needs.
type BuilderConfig struct {
	// Runtime runs the build sandboxes; it must implement
	// runtime.Committer. Its state dir must be on the same filesystem as
	// LayerDir.
	Runtime runtime.Runtime
	// LayerDir holds one directory per layer, named by its cache key.
	LayerDir string
	Logger   *slog.Logger
}

// NewBuilder returns a Builder.
func NewBuilder(cfg BuilderConfig) (*Builder, error) {
	c, ok := cfg.Runtime.(runtime.Committer)
	if !ok {
		return nil, errors.New("template builder: the runtime cannot commit sandboxes to layers")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.LayerDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating layer dir: %w", err)
	}
	// Directories a crashed build left half made.
	if ents, err := os.ReadDir(cfg.LayerDir); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				_ = os.RemoveAll(filepath.Join(cfg.LayerDir, e.Name()))
			}
		}
	}
	return &Builder{rt: cfg.Runtime, commit: c, layers: cfg.LayerDir, log: cfg.Logger}, nil
}

// BuildArgs says what to build.
type BuildArgs struct {
	ID     string    // the resulting template's id
	Parent *Template // what the steps start from
	Steps  []Step
	// StartCmd and ReadyCmd are recorded on the template and run when a
	// sandbox starts from it.
	StartCmd, ReadyCmd string
	// Force skips the cache for every step.
	Force    bool
	CPUCount int
	MemoryMB int
	// Files opens the uploaded tar archive (optionally gzipped) of a COPY
	// step by its digest (its files hash when it has none).
	Files func(hash string) (io.ReadCloser, error)
	// Log receives the build's log as it happens.
	Log func(LogEntry)
}

// BuildResult is a built template and how the build went.
type BuildResult struct {
	Template *Template
	Layers   []string // cache keys of the layers the steps made, in order
	Cached   int      // steps served from the cache
	Built    int      // steps run
}

// Build runs args.Steps over args.Parent. A step whose key (its parent's
// key and its inputs) names a layer on disk is not run again. A failing
// step is a *StepError whose message shows the command's output.
func (b *Builder) Build(ctx context.Context, args BuildArgs) (*BuildResult, error) {
	start := time.Now()
	logf := func(step, level, format string, a ...any) {
		if args.Log != nil {
			args.Log(LogEntry{Time: time.Now(), Level: level, Message: fmt.Sprintf(format, a...), Step: step})
		}
	}
	if args.Parent == nil {
		return nil, &StepError{Step: "base", Msg: "no template to build from", Err: errdefs.ErrInvalidArgument}
	}
	for i, s := range args.Steps {
		if err := s.Validate(i + 1); err != nil {
			return nil, &StepError{Step: strconv.Itoa(i + 1), Msg: err.Error(), Err: err}
		}
	}
	cur := args.Parent.clone()
	cur.ID, cur.Names = args.ID, nil
	key := "template:" + args.Parent.digest()
	salt := ""
	if args.Force {
		salt = newID()
	}
	res := &BuildResult{}
	logf("base", "info", "FROM %s", args.Parent.ID)
	n := len(args.Steps)
	for i, s := range args.Steps {
		if err := ctx.Err(); err != nil {
			return nil, &StepError{Step: strconv.Itoa(i + 1), Msg: "build cancelled", Err: err}
		}
		label := strconv.Itoa(i + 1)
		stepSalt := salt
		if s.Force && stepSalt == "" {
			stepSalt = newID() // this step and every one after it
			salt = stepSalt
		}
		key = chainKey(key, s, stepSalt)
		head := fmt.Sprintf("[%d/%d] %s", i+1, n, s)
		switch s.Type {
		case StepEnv:
			if cur.Env == nil {
				cur.Env = map[string]string{}
			}
			for j := 0; j+1 < len(s.Args); j += 2 {
				cur.Env[s.Args[j]] = expandEnv(s.Args[j+1], cur.Env)
			}
			logf(label, "info", "%s", head)
			continue
		case StepUser:
			if s.Args[0] == "root" {
				// Every image has root; only its home matters.
				cur.setUser("root", "/root")
				logf(label, "info", "%s", head)
				continue
			}
		}
		dir := filepath.Join(b.layers, key)
		if _, err := os.Stat(dir); err == nil {
			cur.addLayer(dir)
			if err := cur.afterLayer(s, dir); err != nil {
				return nil, &StepError{Step: label, Msg: fmt.Sprintf("step %s %s: %v", label, head, err), Err: err}
			}
			res.Layers = append(res.Layers, key)
			res.Cached++
			logf(label, "info", "CACHED %s", head)
			continue
		}
		logf(label, "info", "%s", head)
		stepStart := time.Now()
		if err := b.runStep(ctx, cur, s, label, head, dir, args); err != nil {
			return nil, err
		}
		cur.addLayer(dir)
		if err := cur.afterLayer(s, dir); err != nil {
			return nil, &StepError{Step: label, Msg: fmt.Sprintf("step %s %s: %v", label, head, err), Err: err}
		}
		res.Layers = append(res.Layers, key)
		res.Built++
		logf(label, "info", "done %s in %s", head, time.Since(stepStart).Round(time.Millisecond))
	}
	cur.StartCmd, cur.ReadyCmd = args.StartCmd, args.ReadyCmd
	if args.CPUCount > 0 {
		cur.CPUCount = args.CPUCount
	}
	if args.MemoryMB > 0 {
		cur.MemoryMB = args.MemoryMB
	}
	res.Template = cur
	took := time.Since(start)
	// A cached build takes microseconds; say how many rather than "0s".
	if took >= time.Second {
		took = took.Round(time.Millisecond)
	} else {
		took = took.Round(time.Microsecond)
	}
	switch {
	case res.Built == 0 && n > 0:
		logf("finalize", "info", "all %d steps served from cache in %s", n, took)
	default:
		logf("finalize", "info", "built %d steps (%d from cache) in %s", res.Built, res.Cached, took)
	}
	return res, nil
}

// runStep runs one layer-making step in a fresh build sandbox over cur and
// commits what it wrote to dir.
func (b *Builder) runStep(ctx context.Context, cur *Template, s Step, label, head, dir string, args BuildArgs) error {
	fail := func(msg string, err error) error {
		return &StepError{Step: label, Msg: fmt.Sprintf("step %s %s: %s", label, head, msg), Err: err}
	}
	id := "build-" + newID()
	sb, err := b.rt.Create(ctx, runtime.Spec{
		ID:             id,
		Hostname:       "sandbox",
		Mounts:         cur.Mounts,
		Env:            cur.Env,
		DefaultUser:    "root",
		DefaultWorkdir: "/",
		Resources:      runtime.Resources{CPUCount: args.CPUCount, MemoryMB: args.MemoryMB},
		AllowInternet:  true,
	})
	if err != nil {
		return fail("starting the build sandbox: "+err.Error(), err)
	}
	committed := false
	defer func() {
		if !committed {
			if err := b.rt.Kill(context.WithoutCancel(ctx), id); err != nil {
				b.log.Warn("removing build sandbox", "sandbox_id", id, "err", err)
			}
		}
	}()
	client := agentexec.New(sb.EnvdSocket, "")
	defer client.Close()

	out := &stepLog{label: label, log: args.Log}
	var cmd agentexec.Command
	switch s.Type {
	case StepRun:
		user := cur.User
		if len(s.Args) > 1 && s.Args[1] != "" {
			user = s.Args[1]
		}
		cmd = agentexec.Command{Script: s.Args[0], User: user, Cwd: cur.Workdir}
	case StepUser:
		// As on E2B, a user the template lacks is created, with a home.
		cmd = agentexec.Command{User: "root", Script: ensureUserScript(s.Args[0])}
	case StepWorkdir:
		wd := workdirOf(expandEnv(s.Args[0], cur.Env), cur.Workdir)
		// As Docker does, a new workdir belongs to root unless it exists.
		cmd = agentexec.Command{Script: "mkdir -p " + agentexec.Quote(wd)}
	case StepCopy:
		if args.Files == nil {
			return fail("no uploaded files", errdefs.ErrInvalidArgument)
		}
		rc, err := args.Files(s.files())
		if err != nil {
			return fail("the files were not uploaded: "+err.Error(), err)
		}
		const staged = "/.sandpit-copy.tar"
		err = client.Upload(ctx, staged, "root", rc)
		rc.Close()
		if err != nil {
			return fail("staging the files: "+err.Error(), err)
		}
		cmd = agentexec.Command{Script: copyScript(s, staged, cur)}
	}
	cmd.Output = out
	cmd.Env = cur.Env
	if err := client.Run(ctx, cmd); err != nil {
		out.flush()
		msg := err.Error()
		if tail := out.tail(); tail != "" {
			msg += "; output:\n" + tail
		}
		var exit *agentexec.ExitError
		if errors.As(err, &exit) {
			return fail(msg, errdefs.ErrInvalidArgument)
		}
		return fail(msg, err)
	}
	out.flush()
	var home bytes.Buffer
	if s.Type == StepUser {
		script := "awk -F: -v u=" + agentexec.Quote(s.Args[0]) + " '$1 == u { print $6 }' /etc/passwd"
		if err := client.Run(ctx, agentexec.Command{User: "root", Script: script, Output: &home}); err != nil {
			return fail("reading the user's home: "+err.Error(), err)
		}
	}

	tmp, err := os.MkdirTemp(b.layers, ".tmp-")
	if err != nil {
		return fail("making the layer: "+err.Error(), err)
	}
	defer os.RemoveAll(tmp)
	committed = true
	if err := b.commit.Commit(ctx, id, filepath.Join(tmp, "l")); err != nil {
		return fail("saving the layer: "+err.Error(), err)
	}
	layer := filepath.Join(tmp, "l")
	if len(cur.Mounts) > 0 && cur.Mounts[0].Target == "/" {
		if err := dropInitFiles(filepath.Join(layer, "0")); err != nil {
			return fail("making the layer: "+err.Error(), err)
		}
	}
	// Mounts the step left untouched add no layer.
	ents, _ := os.ReadDir(layer)
	for _, e := range ents {
		p := filepath.Join(layer, e.Name())
		if sub, _ := os.ReadDir(p); len(sub) == 0 {
			_ = os.Remove(p)
		}
	}
	if s.Type == StepUser {
		h := strings.TrimSpace(home.String())
		if h == "" {
			return fail(fmt.Sprintf("user %s has no passwd entry after creating it", s.Args[0]), errdefs.ErrInvalidArgument)
		}
		if err := os.WriteFile(filepath.Join(layer, userHomeFile), []byte(h), 0o644); err != nil {
			return fail("making the layer: "+err.Error(), err)
		}
	}
	if err := os.Chmod(layer, 0o755); err != nil {
		return fail("making the layer: "+err.Error(), err)
	}
	if err := os.Rename(layer, dir); err != nil && !errors.Is(err, os.ErrExist) && !isNotEmpty(err) {
		return fail("publishing the layer: "+err.Error(), err)
	}
	return nil
}

// initFiles are what the sandbox's init writes at every start: no part of
// a step's layer. Directories go only when the step left them empty.
var initFiles = []struct {
	path string
	dir  bool
}{
	{"/etc/hosts", false}, {"/etc/hostname", false}, {"/etc/resolv.conf", false},
	{"/.sandpit/envd", false}, {"/.sandpit", true}, {"/etc", true},
}

// dropInitFiles removes initFiles from the committed root layer dir. The
// layer holds whatever the step made, symlinks to anywhere included
// (/etc -> /etc, -> /, ../../..), so every lookup resolves inside the
// layer, as the sandbox saw it: a host path is never touched.
func dropInitFiles(dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil // the step wrote nothing there
	}
	root, err := safepath.Open(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, f := range initFiles {
		fi, err := root.Lstat(f.path)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			continue // not there, as the sandbox would see it
		}
		if err != nil {
			return fmt.Errorf("dropping %s from the layer: %w", f.path, err)
		}
		if fi.IsDir() != f.dir {
			continue // the step made it something else: its own
		}
		if f.dir {
			ents, err := root.ReadDir(f.path)
			if err != nil {
				return fmt.Errorf("dropping %s from the layer: %w", f.path, err)
			}
			if len(ents) > 0 {
				continue
			}
		}
		if err := root.RemoveAll(f.path); err != nil {
			return fmt.Errorf("dropping %s from the layer: %w", f.path, err)
		}
	}
	return nil
}

func isNotEmpty(err error) bool {
	var le *os.LinkError
	return errors.As(err, &le) && strings.Contains(le.Err.Error(), "not empty")
}

// copyScript extracts an uploaded archive and copies src to dest as E2B's
// COPY does: a directory's contents into dest, a file to dest (into it
// when dest ends in "/"), then owner and mode.
func copyScript(s Step, staged string, cur *Template) string {
	src, dest := s.Args[0], s.Args[1]
	if !path.IsAbs(dest) {
		dest = path.Join(workdirOf(".", cur.Workdir), dest)
		if strings.HasSuffix(s.Args[1], "/") {
			dest += "/"
		}
	}
	user, mode := "", ""
	if len(s.Args) > 2 {
		user = s.Args[2]
	}
	if len(s.Args) > 3 {
		mode = s.Args[3]
	}
	q := agentexec.Quote
	var b strings.Builder
	fmt.Fprintf(&b, "set -e\nctx=$(mktemp -d)\ntar -xf %s -C \"$ctx\" --no-same-owner\nrm -f %s\n", q(staged), q(staged))
	fmt.Fprintf(&b, "src=\"$ctx\"/%s\ndest=%s\n", q(strings.TrimPrefix(path.Clean("/"+src), "/")), q(dest))
	b.WriteString(`if [ -d "$src" ]; then
  mkdir -p "$dest"; cp -a "$src"/. "$dest"/; set -- "$dest"
  for f in "$src"/* "$src"/.[!.]*; do [ -e "$f" ] && set -- "$@" "$dest/${f##*/}"; done
elif [ -e "$src" ]; then
  case "$dest" in */) mkdir -p "$dest"; dest="$dest${src##*/}";; *) mkdir -p "$(dirname "$dest")";; esac
  cp -a "$src" "$dest"; set -- "$dest"
else
  echo "COPY: $(basename "$src") is not in the uploaded files" >&2; exit 1
fi
rm -rf "$ctx"
`)
	if user != "" {
		fmt.Fprintf(&b, "for p in \"$@\"; do chown -R %s: \"$p\"; done\n", q(user))
	}
	if mode != "" {
		fmt.Fprintf(&b, "for p in \"$@\"; do chmod -R %s \"$p\"; done\n", q(mode))
	}
	return b.String()
}

// workdirOf resolves a WORKDIR argument against the current workdir.
func workdirOf(dir, cur string) string {
	if path.IsAbs(dir) {
		return path.Clean(dir)
	}
	if cur == "" {
		cur = "/"
	}
	return path.Join(cur, dir)
}

// expandEnv expands $NAME and ${NAME} from env, as Docker's ENV does.
func expandEnv(v string, env map[string]string) string {
	if !strings.Contains(v, "$") {
		return v
	}
	return os.Expand(v, func(k string) string { return env[k] })
}

func (t *Template) clone() *Template {
	c := *t
	c.Names = slices.Clone(t.Names)
	c.Env = maps.Clone(t.Env)
	c.Mounts = make([]runtime.Mount, len(t.Mounts))
	for i, m := range t.Mounts {
		c.Mounts[i] = runtime.Mount{Target: m.Target, Layers: slices.Clone(m.Layers)}
	}
	return &c
}

// addLayer puts a step's layer (one subdirectory per mount index) on top.
// userHomeFile, beside a USER step's layer, records the user's home.
const userHomeFile = "home"

// ensureUserScript creates user unless it exists: with useradd where the
// image has it (Debian, Ubuntu, Fedora), else busybox's adduser (Alpine).
func ensureUserScript(user string) string {
	q := agentexec.Quote(user)
	return "if ! awk -F: -v u=" + q + " '$1 == u { found = 1 } END { exit !found }' /etc/passwd; then\n" +
		"  if command -v useradd >/dev/null 2>&1; then useradd -m -s /bin/bash " + q + " 2>/dev/null || useradd -m " + q + "\n" +
		"  else adduser -D " + q + "\n  fi && echo \"created user \"" + q + "\nfi"
}

// afterLayer applies what a layer step changes besides files.
func (t *Template) afterLayer(s Step, dir string) error {
	switch s.Type {
	case StepWorkdir:
		t.Workdir = workdirOf(expandEnv(s.Args[0], t.Env), t.Workdir)
	case StepUser:
		home, err := os.ReadFile(filepath.Join(dir, userHomeFile))
		if err != nil {
			return fmt.Errorf("reading the home of user %s: %w", s.Args[0], err)
		}
		t.setUser(s.Args[0], string(home))
	}
	return nil
}

// setUser makes user the template's user. A workdir that was the previous
// user's home follows the new user to theirs, as E2B's setUser does;
// one set by WORKDIR stays.
func (t *Template) setUser(user, home string) {
	prevHome := "/home/" + t.User
	if t.User == "root" {
		prevHome = "/root"
	}
	if t.Workdir == "" || t.Workdir == prevHome {
		t.Workdir = home
	}
	t.User = user
}

func (t *Template) addLayer(dir string) {
	for i := range t.Mounts {
		p := filepath.Join(dir, strconv.Itoa(i))
		if _, err := os.Stat(p); err == nil {
			t.Mounts[i].Layers = append([]string{p}, t.Mounts[i].Layers...)
		}
	}
}

// stepLog turns a step's output into log lines and keeps its tail for the
// error message.
type stepLog struct {
	label string
	log   func(LogEntry)

	mu    sync.Mutex
	buf   []byte
	lines []string
}

const tailLines = 40

func (w *stepLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 {
		w.line(string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

// Preconditions: w.mu is held.
func (w *stepLog) line(l string) {
	l = strings.TrimRight(l, "\r")
	w.lines = append(w.lines, l)
	if len(w.lines) > tailLines {
		w.lines = w.lines[len(w.lines)-tailLines:]
	}
	if w.log != nil {
		w.log(LogEntry{Time: time.Now(), Level: "info", Message: l, Step: w.label})
	}
}

func (w *stepLog) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.line(string(w.buf))
		w.buf = nil
	}
}

func (w *stepLog) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

// newID returns 20 random lowercase alphanumerics.
func newID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func cryptoRand(b []byte) (int, error) { return rand.Read(b) }
