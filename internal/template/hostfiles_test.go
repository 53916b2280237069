package template_test

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/template"
)

// TestBuildNeverTouchesHostFiles: a step that points /etc (or /.sandpit)
// at a directory on the host, directly, through a symlink to "/" or by a
// chain of "..", must not make the daemon, as host root, remove or change
// anything there when it commits and tidies the step's layer. The target is
// a canary directory the test makes, never a real host file.
func TestBuildNeverTouchesHostFiles(t *testing.T) {
	e := newBuildEnv(t)
	canary := filepath.Join(e.dir, "canary")
	// plant makes the canary afresh, so each case is judged alone.
	plant := func(t *testing.T) string {
		t.Helper()
		if err := os.RemoveAll(canary); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"hosts", "hostname", "resolv.conf", "envd", "etc/hosts", "etc/hostname", "etc/resolv.conf", ".sandpit/envd"} {
			p := filepath.Join(canary, f)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("canary "+f+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Mkdir(filepath.Join(canary, "empty"), 0o755); err != nil {
			t.Fatal(err)
		}
		return snapshot(t, canary)
	}
	rel := strings.TrimPrefix(canary, "/")
	dots := strings.Repeat("../", 40)
	for _, tc := range []struct{ name, script string }{
		{"etc is the canary", "rm -rf /etc && ln -s " + canary + " /etc"},
		{"etc is the canary's etc", "rm -rf /etc && ln -s " + canary + "/etc /etc"},
		{"etc through a link to /", "mkdir -p /x && ln -s / /x/r && rm -rf /etc && ln -s x/r/" + rel + " /etc"},
		{"etc by a dot-dot chain", "rm -rf /etc && ln -s " + dots + rel + " /etc"},
		{"etc/hosts and friends are links", "for f in hosts hostname resolv.conf; do rm -f /etc/$f; ln -s " + canary + "/$f /etc/$f; done"},
		{"an empty etc in the canary", "rm -rf /etc && ln -s " + canary + "/empty /etc"},
		{"sandpit dir is the canary", "rm -rf /.sandpit 2>/dev/null; ln -sfn " + canary + " /.sandpit || true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := plant(t)
			var l logs
			_, err := e.builder.Build(t.Context(), template.BuildArgs{ID: "hostile", Parent: e.base, Log: l.add, Steps: []template.Step{
				{Type: "RUN", Args: []string{tc.script, "root"}},
				// A sandbox started over that layer, as the next step does.
				{Type: "RUN", Args: []string{"echo next step", "root"}},
			}})
			t.Logf("build: %v", err) // succeeded or failed, the host is untouched
			if after := snapshot(t, canary); after != before {
				t.Fatalf("the build changed the host's canary directory\nbefore:\n%s\nafter:\n%s\nlog:\n%s", before, after, l.String())
			}
		})
	}
}

// snapshot describes every entry under dir: path, type, mode, owner,
// and the contents or link target.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %v %d:%d", strings.TrimPrefix(p, dir), fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %x", sha256.Sum256(data))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			b.WriteString(" -> " + target)
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatalf("reading the canary: %v", err)
	}
	return b.String()
}

// TestBuildLayerLeavesInitFiles: what the sandbox's init writes at every
// start (hosts, hostname, resolv.conf, the agent's mount point) is no
// part of a step's layer; what the step wrote beside it is.
func TestBuildLayerLeavesInitFiles(t *testing.T) {
	e := newBuildEnv(t)
	res, err := e.builder.Build(t.Context(), template.BuildArgs{ID: "plain", Parent: e.base, Steps: []template.Step{
		{Type: "RUN", Args: []string{"echo mine > /etc/marker", "root"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	root := res.Template.Mounts[0].Layers[0]
	if _, err := os.Stat(filepath.Join(root, "etc/marker")); err != nil {
		t.Fatalf("the step's own file is not in its layer: %v", err)
	}
	for _, p := range []string{"etc/hosts", "etc/hostname", "etc/resolv.conf", ".sandpit"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("the layer keeps init's %s", p)
		}
	}
}
