package template_test

import (
	"context"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/sandbox"
	"github.com/sandpit-dev/sandpit/internal/sandboxlog"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
	"github.com/sandpit-dev/sandpit/internal/template/agentexec"
)

// TestCreateFromTemplateWithStartCommand creates sandboxes through the
// sandbox Manager from built templates: one whose start command is a small
// HTTP server is serving when Create returns; one whose start command dies
// fails Create with its output.
func TestCreateFromTemplateWithStartCommand(t *testing.T) {
	e := newBuildEnv(t)
	reg := newRegistry(t, e)
	ctx := t.Context()
	_, err := reg.Build(ctx, template.RequestArgs{Name: "web"}, template.BuildSpec{
		FromTemplate: "base",
		Steps: []template.Step{
			{Type: "RUN", Args: []string{"mkdir -p /srv/www && echo served > /srv/www/index.html", "root"}},
			{Type: "WORKDIR", Args: []string{"/srv/www"}},
			{Type: "ENV", Args: []string{"PORT", "8123"}},
		},
		StartCmd: "python3 -m http.server $PORT --bind 127.0.0.1",
		ReadyCmd: "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8123), 0.2)'",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Build(ctx, template.RequestArgs{Name: "dies"}, template.BuildSpec{
		StartCmd: "echo start-went-wrong; exit 2",
		ReadyCmd: "false",
	}, nil); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenSQLite(ctx, filepath.Join(e.dir, "sandboxes.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := sandbox.NewManager(sandbox.Config{Runtime: e.rt, Store: st, Templates: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())

	for i := range 3 {
		start := time.Now()
		info, err := m.Create(ctx, sandbox.CreateRequest{Template: "web", Secure: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("create from a 3-layer template with a start command and ready check: %s", time.Since(start))
		sock, ok := m.Lookup(info.ID)
		if !ok {
			t.Fatal("no route to the sandbox")
		}
		c := agentexec.New(sock, info.AccessToken)
		var out strings.Builder
		err = c.Run(ctx, agentexec.Command{Script: "python3 -c 'import urllib.request; print(urllib.request.urlopen(\"http://127.0.0.1:8123/index.html\").read().decode(), end=\"\")'", Output: &out})
		c.Close()
		if err != nil || out.String() != "served\n" {
			t.Fatalf("sandbox %d right after create: %v %q", i, err, out.String())
		}
		if i == 0 {
			// The server's request log (stderr) reaches the sandbox's log
			// as upstream envd logs process output.
			var lines []string
			deadline := time.Now().Add(10 * time.Second)
			for !slices.ContainsFunc(lines, func(l string) bool {
				return strings.HasPrefix(l, "processSvc stderr ") && strings.Contains(l, "GET /index.html")
			}) {
				if time.Now().After(deadline) {
					t.Fatalf("the start command's output never reached the sandbox's log; it has:\n%s", strings.Join(lines, "\n"))
				}
				time.Sleep(20 * time.Millisecond)
				entries, err := m.Logs(ctx, info.ID, sandboxlog.Query{})
				if err != nil {
					t.Fatal(err)
				}
				lines = lines[:0]
				for _, e := range entries {
					lines = append(lines, e.Logger+" "+e.Fields["stream"]+" "+e.Message)
				}
			}
			if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "envd  envd started") }) {
				t.Fatalf("no line of the agent's own in the sandbox's log:\n%s", strings.Join(lines, "\n"))
			}
		}
		m.Kill(ctx, info.ID)
	}

	// What followed each start command's output stopped with its sandbox.
	for deadline := time.Now().Add(10 * time.Second); ; {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:goruntime.Stack(buf, true)])
		if !strings.Contains(stacks, "sandbox.startTemplate.func") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a start command follower outlived its killed sandbox:\n%s", stacks)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Create time from a five-layer template matches base's: layers are
	// only more lowerdirs of the same overlay.
	if _, err := reg.Build(ctx, template.RequestArgs{Name: "layers"}, template.BuildSpec{Steps: []template.Step{
		{Type: "RUN", Args: []string{"echo 1 > /opt/1", "root"}}, {Type: "RUN", Args: []string{"echo 2 > /opt/2", "root"}},
		{Type: "RUN", Args: []string{"echo 3 > /opt/3", "root"}}, {Type: "RUN", Args: []string{"echo 4 > ~/4"}},
		{Type: "RUN", Args: []string{"echo 5 > ~/5"}},
	}}, nil); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"base", "layers"} {
		var times []time.Duration
		for range 7 {
			start := time.Now()
			info, err := m.Create(ctx, sandbox.CreateRequest{Template: ref})
			if err != nil {
				t.Fatal(err)
			}
			times = append(times, time.Since(start))
			m.Kill(ctx, info.ID)
		}
		slices.Sort(times)
		t.Logf("create from %s: p50 %s (min %s, max %s)", ref, times[len(times)/2], times[0], times[len(times)-1])
	}

	start := time.Now()
	_, err = m.Create(ctx, sandbox.CreateRequest{Template: "dies"})
	if err == nil || !strings.Contains(err.Error(), "start-went-wrong") {
		t.Fatalf("create with a dying start command: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a dying start command took %s to report", took)
	}
}
