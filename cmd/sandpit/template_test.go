package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/agent/envd"
	"github.com/sandpit-dev/sandpit/internal/config"
	"github.com/sandpit-dev/sandpit/internal/daemon"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux/sandboxinit"
)

// The test binary is also the sandbox init and agent, as the real binary
// is: the daemon under test re-executes it.
func TestMain(m *testing.M) {
	sandboxinit.RunIfAsked(os.Args[1:])
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "envd":
			if err := envd.Main(); err != nil {
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

// TestTemplateCLI builds a Dockerfile with a COPY through a real daemon,
// then lists, reads the logs of and removes the template.
func TestTemplateCLI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the daemon runs real sandboxes: needs root")
	}
	dir := t.TempDir()
	for p := dir; p != "/" && p != "/tmp"; p = filepath.Dir(p) {
		os.Chmod(p, 0o711)
	}
	cfg := config.Defaults()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.APIKey = "e2b_" + strings.Repeat("ab", 20)
	cfg.NoCgroups = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.New(ctx, cfg, slog.New(slog.DiscardHandler), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("daemon did not stop")
		}
	})
	t.Setenv("SANDPIT_URL", "http://"+cfg.Listen)
	t.Setenv("SANDPIT_API_KEY", cfg.APIKey)

	ctxDir := filepath.Join(dir, "app")
	os.MkdirAll(filepath.Join(ctxDir, "src"), 0o755)
	os.WriteFile(filepath.Join(ctxDir, "src", "main.sh"), []byte("echo from-main\n"), 0o644)
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(`FROM base
ENV MODE=cli
COPY src /opt/app/
RUN sh /opt/app/main.sh > /opt/app/out.txt
EXPOSE 80
CMD ["sleep", "infinity"]
`), 0o644)
	var out bytes.Buffer
	if err := templateCmd([]string{"build", "-f", filepath.Join(ctxDir, "Dockerfile"), "--name", "cli-app", "--cpu", "1"}, &out, &out); err != nil {
		t.Fatalf("build: %v\n%s", err, out.String())
	}
	for _, want := range []string{"warning: line 5: EXPOSE is ignored", "[4/7] COPY src /opt/app/", "cli-app is ready"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("build output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := templateCmd([]string{"build", "-f", filepath.Join(ctxDir, "Dockerfile"), "--name", "cli-app"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "served from cache") {
		t.Fatalf("second build was not cached:\n%s", out.String())
	}
	out.Reset()
	if err := templateCmd([]string{"list"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "cli-app") || !strings.Contains(out.String(), "base") {
		t.Fatalf("list:\n%s", out.String())
	}
	out.Reset()
	if err := templateCmd([]string{"logs", "cli-app"}, &out, &out); err != nil || !strings.Contains(out.String(), "COPY src") {
		t.Fatalf("logs: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := templateCmd([]string{"rm", "cli-app"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if err := templateCmd([]string{"rm", "cli-app"}, &out, &out); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("removing twice: %v", err)
	}
	if err := templateCmd([]string{"build", "no-such-template"}, &out, &out); err == nil || !strings.Contains(err.Error(), "ready-made") {
		t.Fatalf("unknown ready-made template: %v", err)
	}
}
