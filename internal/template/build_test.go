package template_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
	"github.com/sandpit-dev/sandpit/internal/template"
	"github.com/sandpit-dev/sandpit/internal/template/agentexec"
)

// buildEnv is a real Linux runtime running the real sandpit binary (init
// and agent), a base template and a builder over one data dir.
type buildEnv struct {
	dir     string
	rt      *linux.Runtime
	base    *template.Template
	builder *template.Builder
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// sandpitBinary builds cmd/sandpit once per test binary run; TestMain
// removes it.
func sandpitBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sandpit-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "sandpit")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/sandpit-dev/sandpit/cmd/sandpit").CombinedOutput()
		if err != nil {
			binErr = errors.New(string(out))
		}
	})
	if binErr != nil {
		t.Fatalf("building sandpit: %v", binErr)
	}
	return binPath
}

func newBuildEnv(t *testing.T, configure ...func(*linux.Config)) *buildEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("template builds run real build sandboxes: they need root (user namespaces, idmapped mounts)")
	}
	dir := t.TempDir()
	for p := dir; p != "/" && p != "/tmp"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	cfg := linux.Config{StateDir: filepath.Join(dir, "sandboxes"), Exe: sandpitBinary(t), UIDBase: 1<<20 + 3000*65536}
	for _, f := range configure {
		f(&cfg)
	}
	rt, err := linux.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	base, err := template.BuildBase(t.Context(), filepath.Join(dir, "templates"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := template.NewBuilder(template.BuilderConfig{Runtime: rt, LayerDir: filepath.Join(dir, "templates", "layers")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ids, _ := rt.List(context.Background())
		for _, id := range ids {
			_ = rt.Kill(context.Background(), id)
		}
	})
	return &buildEnv{dir: dir, rt: rt, base: base, builder: b}
}

// run starts a sandbox from tpl, runs script in it as the template's user
// and returns its output.
func (e *buildEnv) run(t *testing.T, tpl *template.Template, script string) string {
	t.Helper()
	id := "t" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "")
	sb, err := e.rt.Create(t.Context(), runtime.Spec{
		ID: id, Mounts: tpl.Mounts, Env: tpl.Env, DefaultUser: tpl.User, DefaultWorkdir: tpl.Workdir, AllowInternet: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.rt.Kill(context.Background(), id)
	c := agentexec.New(sb.EnvdSocket, "")
	defer c.Close()
	var out bytes.Buffer
	user := tpl.User
	if err := c.Run(t.Context(), agentexec.Command{Script: script, User: user, Cwd: tpl.Workdir, Env: tpl.Env, Output: &out}); err != nil {
		t.Fatalf("running %q: %v: %s", script, err, out.String())
	}
	return out.String()
}

type logs struct {
	mu      sync.Mutex
	entries []template.LogEntry
}

func (l *logs) add(e template.LogEntry) { l.mu.Lock(); l.entries = append(l.entries, e); l.mu.Unlock() }
func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, e := range l.entries {
		b.WriteString(e.Step + " " + e.Message + "\n")
	}
	return b.String()
}

func TestBuildStepsCacheAndRebuild(t *testing.T) {
	e := newBuildEnv(t)
	steps := []template.Step{
		{Type: "ENV", Args: []string{"GREETING", "hello from the template", "PATHX", "$GREETING!"}},
		{Type: "WORKDIR", Args: []string{"/app"}},
		{Type: "RUN", Args: []string{"echo built > /app/built.txt && mkdir -p /opt/tool && printf '#!/bin/sh\\necho tool-ok\\n' > /opt/tool/tool && chmod +x /opt/tool/tool && rm /etc/shells", "root"}},
		{Type: "RUN", Args: []string{"touch ~/mine && echo $GREETING > ~/greeting"}},
		{Type: "USER", Args: []string{"user"}},
	}
	var l1 logs
	start := time.Now()
	res, err := e.builder.Build(t.Context(), template.BuildArgs{ID: "t1", Parent: e.base, Steps: steps, Log: l1.add})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, l1.String())
	}
	t.Logf("first build: %s (%d steps run)", time.Since(start), res.Built)
	// ENV makes no layer; USER checks (and would create) the user.
	if res.Built != 4 || res.Cached != 0 {
		t.Fatalf("first build ran %d and cached %d layer steps, want 4 and 0\n%s", res.Built, res.Cached, l1.String())
	}
	out := e.run(t, res.Template, `cat /app/built.txt; /opt/tool/tool; echo "$GREETING|$PATHX"; pwd; stat -c %U ~/mine; cat ~/greeting; test -e /etc/shells && echo shells-present || echo shells-gone; id -un`)
	want := "built\ntool-ok\nhello from the template|hello from the template!\n/app\nuser\nhello from the template\nshells-gone\nuser\n"
	if out != want {
		t.Fatalf("sandbox from the template says\n%s\nwant\n%s", out, want)
	}

	var l2 logs
	start = time.Now()
	res2, err := e.builder.Build(t.Context(), template.BuildArgs{ID: "t1", Parent: e.base, Steps: steps, Log: l2.add})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cached rebuild: %s", took)
	if res2.Built != 0 || res2.Cached != 4 || took > 500*time.Millisecond {
		t.Fatalf("second build ran %d steps in %s, want 0 well under a second\n%s", res2.Built, took, l2.String())
	}
	if !strings.Contains(l2.String(), "served from cache") || !strings.Contains(l2.String(), "CACHED [3/5]") {
		t.Fatalf("the cached build does not say so:\n%s", l2.String())
	}

	changed := append([]template.Step(nil), steps...)
	changed[3] = template.Step{Type: "RUN", Args: []string{"echo changed > ~/greeting"}}
	var l3 logs
	res3, err := e.builder.Build(t.Context(), template.BuildArgs{ID: "t1", Parent: e.base, Steps: changed, Log: l3.add})
	if err != nil {
		t.Fatal(err)
	}
	if res3.Built != 2 || res3.Cached != 2 {
		t.Fatalf("changing step 4 ran %d steps (4 and 5) and took %d from cache, want 2 and 2\n%s", res3.Built, res3.Cached, l3.String())
	}
	if got := e.run(t, res3.Template, "cat ~/greeting; cat /app/built.txt"); got != "changed\nbuilt\n" {
		t.Fatalf("rebuilt template says %q", got)
	}
	// The first template still works: its layers are untouched.
	if got := e.run(t, res.Template, "cat ~/greeting"); got != "hello from the template\n" {
		t.Fatalf("first template now says %q", got)
	}
}

// TestBuildUserStep: as on E2B, setUser with a user the template lacks
// creates it, and the workdir (the old user's home) follows to the new
// home; a WORKDIR set later stays.
func TestBuildUserStep(t *testing.T) {
	e := newBuildEnv(t)
	var l logs
	res, err := e.builder.Build(t.Context(), template.BuildArgs{ID: "guest", Parent: e.base, Log: l.add, Steps: []template.Step{
		{Type: "USER", Args: []string{"guest"}},
		{Type: "RUN", Args: []string{"whoami > ~/who && pwd >> ~/who"}},
	}})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, l.String())
	}
	if !strings.Contains(l.String(), "created user guest") {
		t.Errorf("the log does not say the user was created:\n%s", l.String())
	}
	if res.Template.User != "guest" || res.Template.Workdir != "/home/guest" {
		t.Fatalf("template user %q workdir %q, want guest and /home/guest", res.Template.User, res.Template.Workdir)
	}
	if got := e.run(t, res.Template, "cat ~/who; whoami; pwd; stat -c %U ~"); got != "guest\n/home/guest\nguest\n/home/guest\nguest\n" {
		t.Fatalf("sandbox from the template says %q", got)
	}
	// Back to an existing user: no new account, and a WORKDIR set by the
	// template stays when the user changes.
	res2, err := e.builder.Build(t.Context(), template.BuildArgs{ID: "guest2", Parent: res.Template, Steps: []template.Step{
		{Type: "WORKDIR", Args: []string{"/srv"}},
		{Type: "USER", Args: []string{"user"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Template.User != "user" || res2.Template.Workdir != "/srv" {
		t.Fatalf("template user %q workdir %q, want user and /srv", res2.Template.User, res2.Template.Workdir)
	}
	if got := e.run(t, res2.Template, "grep -c '^user:' /etc/passwd"); got != "1\n" {
		t.Fatalf("user accounts: %q", got)
	}
}

func TestBuildFailingStepShowsOutput(t *testing.T) {
	e := newBuildEnv(t)
	var l logs
	_, err := e.builder.Build(t.Context(), template.BuildArgs{ID: "bad", Parent: e.base, Log: l.add, Steps: []template.Step{
		{Type: "ENV", Args: []string{"A", "1"}},
		{Type: "RUN", Args: []string{"echo about to fail; echo the-reason >&2; exit 3"}},
	}})
	var se *template.StepError
	if !errors.As(err, &se) {
		t.Fatalf("build error %v is not a StepError", err)
	}
	if se.Step != "2" || !strings.Contains(se.Msg, "exited with code 3") || !strings.Contains(se.Msg, "the-reason") || !strings.Contains(se.Msg, "RUN echo about") {
		t.Fatalf("step error %q (step %s) does not name the step or show the output", se.Msg, se.Step)
	}
	if !strings.Contains(l.String(), "about to fail") {
		t.Fatalf("log does not stream the output:\n%s", l.String())
	}
}
