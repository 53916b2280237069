package template_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
)

func newRegistry(t *testing.T, e *buildEnv) *template.Registry {
	t.Helper()
	return newRegistryWith(t, e, nil)
}

func newRegistryStore(t *testing.T, e *buildEnv) *store.SQLite {
	t.Helper()
	st, err := store.OpenSQLite(t.Context(), filepath.Join(e.dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newRegistryWith(t *testing.T, e *buildEnv, images template.ImageImporter) *template.Registry {
	t.Helper()
	st := newRegistryStore(t, e)
	r, err := template.NewRegistry(t.Context(), template.RegistryConfig{
		Dir: filepath.Join(e.dir, "templates"), Store: st, Builder: e.builder, Builtin: []*template.Template{e.base}, Images: images,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// tarball returns a gzipped tar of files (name → content), as the SDK
// uploads for COPY, and its hash.
func gzTar(t *testing.T, files map[string]string) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), hex.EncodeToString(sum[:])
}

func TestRegistryBuildCopyResolve(t *testing.T) {
	e := newBuildEnv(t)
	r := newRegistry(t, e)
	ctx := t.Context()
	archive, hash := gzTar(t, map[string]string{"app/main.py": "print('hi')\n", "app/conf/x.txt": "x\n", "one.txt": "one\n"})
	if r.HasUpload(ctx, "", hash) {
		t.Fatal("upload present before upload")
	}
	if err := r.PutUpload(ctx, "", template.Upload{Hash: hash, Body: bytes.NewReader(archive)}); err != nil {
		t.Fatal(err)
	}
	if !r.HasUpload(ctx, "", hash) {
		t.Fatal("upload missing after upload")
	}
	var log strings.Builder
	tpl, err := r.Build(ctx, template.RequestArgs{Name: "my-app:v1", CPUCount: 1}, template.BuildSpec{
		FromTemplate: "base",
		Steps: []template.Step{
			{Type: "COPY", Args: []string{"app", "/srv/app", "user", "0750"}, FilesHash: hash},
			{Type: "COPY", Args: []string{"one.txt", "/etc/", "", ""}, FilesHash: hash},
			{Type: "ENV", Args: []string{"APP_HOME", "/srv/app"}},
		},
		StartCmd: "sleep infinity",
		ReadyCmd: "true",
	}, func(e template.LogEntry) { log.WriteString(e.Step + " " + e.Message + "\n") })
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	if tpl.StartCmd != "sleep infinity" || tpl.CPUCount != 1 || tpl.Env["APP_HOME"] != "/srv/app" {
		t.Fatalf("template %+v", tpl)
	}
	for _, ref := range []string{"my-app:v1", "team/my-app:v1", tpl.ID + ":v1"} {
		got, err := r.Resolve(ctx, "", ref)
		if err != nil || got.ID != tpl.ID {
			t.Fatalf("resolving %q: %v, %v", ref, got, err)
		}
	}
	// Built as my-app:v1 only: the name alone means my-app:default, and
	// latest is a tag like any other.
	for _, ref := range []string{"my-app", "my-app:latest", tpl.ID} {
		if _, err := r.Resolve(ctx, "", ref); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("resolving %q, a tag my-app does not have: %v", ref, err)
		}
	}
	out := e.run(t, tpl, `cat $APP_HOME/main.py $APP_HOME/conf/x.txt /etc/one.txt; stat -c '%U %a' $APP_HOME/main.py /etc/one.txt`)
	if out != "print('hi')\nx\none\nuser 750\nroot 644\n" {
		t.Fatalf("copied files: %q", out)
	}
	// A template built from this one.
	child, err := r.Build(ctx, template.RequestArgs{Name: "child"}, template.BuildSpec{
		FromTemplate: "my-app:v1",
		Steps:        []template.Step{{Type: "RUN", Args: []string{"echo child >> /srv/app/conf/x.txt", "root"}}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.run(t, child, "cat /srv/app/conf/x.txt; echo $APP_HOME"); got != "x\nchild\n/srv/app\n" {
		t.Fatalf("child template: %q", got)
	}
	infos, err := r.List(ctx, "")
	if err != nil || len(infos) != 3 || infos[0].Status != "ready" {
		t.Fatalf("list: %+v %v", infos, err)
	}
	if err := r.Delete(ctx, "", "my-app"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve(ctx, "", "my-app:v1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("resolving a removed template: %v", err)
	}
	// The child still starts: removing a template leaves its layers.
	if got := e.run(t, child, "cat /srv/app/main.py"); got != "print('hi')\n" {
		t.Fatalf("child after parent removal: %q", got)
	}
	// With my-app gone, GC keeps the layers child uses (its own and
	// my-app's below it) and removes nothing else here.
	if n, err := r.GC(ctx); err != nil || n != 0 {
		t.Fatalf("GC with all layers in use removed %d: %v", n, err)
	}
	if err := r.Delete(ctx, "", "child"); err != nil {
		t.Fatal(err)
	}
	if n, err := r.GC(ctx); err != nil || n != 3 {
		t.Fatalf("GC after removing every template removed %d layers, want 3: %v", n, err)
	}
	if err := r.Delete(ctx, "", "base"); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Fatalf("removing base: %v", err)
	}
}

func TestRegistryFailedBuildReason(t *testing.T) {
	e := newBuildEnv(t)
	r := newRegistry(t, e)
	ctx := t.Context()
	_, err := r.Build(ctx, template.RequestArgs{Name: "broken"}, template.BuildSpec{
		Steps: []template.Step{{Type: "RUN", Args: []string{"echo nope; exit 7"}}},
	}, nil)
	var se *template.StepError
	if !errors.As(err, &se) || se.Step != "1" || !strings.Contains(se.Msg, "nope") {
		t.Fatalf("failed build: %v", err)
	}
	if _, err := r.Resolve(ctx, "", "broken"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("resolving a template with no good build: %v", err)
	}
	_, err = r.Build(ctx, template.RequestArgs{Name: "img"}, template.BuildSpec{FromImage: "python:3"}, nil)
	if !errors.As(err, &se) || se.Step != "base" {
		t.Fatalf("build from an image without an importer: %v", err)
	}

	req, err := r.Request(ctx, template.RequestArgs{Name: "twice"})
	if err != nil {
		t.Fatal(err)
	}
	spec := template.BuildSpec{Steps: []template.Step{{Type: "RUN", Args: []string{"true"}}}}
	if err := r.Start(ctx, "", req.TemplateID, req.BuildID, spec); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, "", req.TemplateID, req.BuildID, spec); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("starting a build twice: %v", err)
	}
	for {
		st, err := r.Status(ctx, "", "twice", req.BuildID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status == template.StatusReady {
			if len(st.Logs) == 0 {
				t.Fatal("a finished build lost its log")
			}
			break
		}
		if st.Status == template.StatusError {
			t.Fatalf("build failed: %+v", st.Reason)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
