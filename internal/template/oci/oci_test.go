package oci_test

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/template"
	"github.com/sandpit-dev/sandpit/internal/template/oci"
)

type entry struct {
	name, body, link string
	typ              byte
	mode             int64
	uid              int
}

func layer(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Size: int64(len(e.body)), Uid: e.uid, Gid: e.uid}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// pushImage serves an in-process registry holding an image made of
// layers and returns its reference.
func pushImage(t *testing.T, layers ...v1.Layer) string {
	t.Helper()
	return pushImageWith(t, nil, layers...)
}

// pushImageWith is pushImage with a wrapper around the registry's handler
// (to require credentials, say); the push itself goes around it.
func pushImageWith(t *testing.T, wrap func(http.Handler) http.Handler, layers ...v1.Layer) string {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var pulling atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if wrap == nil || !pulling.Load() {
			reg.ServeHTTP(w, r)
			return
		}
		wrap(reg).ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	defer pulling.Store(true)
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Env: []string{"PATH=/usr/bin:/bin", "FROM_IMAGE=yes"}, WorkingDir: "/app", User: "1000:1000"})
	if err != nil {
		t.Fatal(err)
	}
	ref := strings.TrimPrefix(srv.URL, "http://") + "/sandpit/test:v1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestImport(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unpacking layers keeps owners and makes whiteout devices: needs root")
	}
	ref := pushImage(t,
		layer(t,
			entry{name: "app/", typ: tar.TypeDir, mode: 0o755},
			entry{name: "app/a.txt", body: "from layer one\n", uid: 1000},
			entry{name: "etc/old.txt", body: "old\n"},
			entry{name: "opt/keep/k", body: "k\n"},
		),
		layer(t,
			entry{name: "etc/.wh.old.txt"},
			entry{name: "opt/keep/.wh..wh..opq"},
			entry{name: "opt/keep/new", body: "new\n"},
			entry{name: "app/tool", body: "#!/bin/sh\n", mode: 0o4755},
			entry{name: "app/hard", typ: tar.TypeLink, link: "app/tool"},
			entry{name: "app/link", typ: tar.TypeSymlink, link: "/etc/hostname"},
		),
	)
	dir := t.TempDir()
	im, err := oci.New(oci.Config{LayerDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var logs []string
	tpl, err := im.Import(t.Context(), ref, nil, func(e template.LogEntry) { logs = append(logs, e.Message) })
	if err != nil {
		t.Fatal(err)
	}
	if len(tpl.Mounts) != 1 || len(tpl.Mounts[0].Layers) != 2 {
		t.Fatalf("mounts %+v", tpl.Mounts)
	}
	if tpl.Env["FROM_IMAGE"] != "yes" || tpl.Workdir != "/app" || tpl.User != "1000" {
		t.Fatalf("config not applied: %+v", tpl)
	}
	top, bottom := tpl.Mounts[0].Layers[0], tpl.Mounts[0].Layers[1]
	if b, _ := os.ReadFile(filepath.Join(bottom, "app/a.txt")); string(b) != "from layer one\n" {
		t.Fatalf("layer one: %q", b)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(top, "etc/old.txt"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Fatalf("whiteout: %+v %v", st, err)
	}
	buf := make([]byte, 8)
	if n, err := unix.Getxattr(filepath.Join(top, "opt/keep"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Fatalf("opaque dir: %q %v", buf[:n], err)
	}
	if fi, err := os.Stat(filepath.Join(top, "app/tool")); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Fatalf("setuid bit lost: %v %v", fi.Mode(), err)
	}
	if err := unix.Lstat(filepath.Join(bottom, "app/a.txt"), &st); err != nil || st.Uid != 1000 {
		t.Fatalf("owner: %d %v", st.Uid, err)
	}

	// Importing again pulls no layer.
	logs = nil
	if _, err := im.Import(t.Context(), ref, nil, func(e template.LogEntry) { logs = append(logs, e.Message) }); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(strings.Join(logs, "\n"), "CACHED"); n != 2 {
		t.Fatalf("second import: %d cached layers, want 2:\n%s", n, strings.Join(logs, "\n"))
	}
}

// A private registry: the import fails without credentials, saying why,
// and succeeds with them.
func TestImportWithCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unpacking layers keeps owners: needs root")
	}
	requireAuth := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "robot" || p != "s3cret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="sandpit-test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	ref := pushImageWith(t, requireAuth, layer(t, entry{name: "secret.txt", body: "private\n"}))
	im, err := oci.New(oci.Config{LayerDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = im.Import(t.Context(), ref, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") || !strings.Contains(err.Error(), ref) {
		t.Fatalf("import without credentials: %v, want an UNAUTHORIZED error naming %s", err, ref)
	}
	if _, err := im.Import(t.Context(), ref, &template.RegistryAuth{Username: "robot", Password: "wrong"}, nil); err == nil {
		t.Fatal("import with a wrong password succeeded")
	}
	tpl, err := im.Import(t.Context(), ref, &template.RegistryAuth{Username: "robot", Password: "s3cret"}, nil)
	if err != nil {
		t.Fatalf("import with credentials: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(tpl.Mounts[0].Layers[0], "secret.txt")); err != nil || string(b) != "private\n" {
		t.Fatalf("private layer: %q %v", b, err)
	}
}

func TestUnpackRefusesEscapes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unpacking keeps owners: needs root")
	}
	for _, tc := range [][]entry{
		{{name: "evil", typ: tar.TypeSymlink, link: "/"}, {name: "evil/etc/passwd", body: "x"}},
		{{name: "up", typ: tar.TypeSymlink, link: "../../.."}, {name: "up/x", body: "x"}},
		{{name: "h", typ: tar.TypeLink, link: "../../etc/passwd"}},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range tc {
			typ := e.typ
			if typ == 0 {
				typ = tar.TypeReg
			}
			tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: typ, Linkname: e.link, Size: int64(len(e.body)), Mode: 0o644})
			io.WriteString(tw, e.body)
		}
		tw.Close()
		dir := t.TempDir()
		err := oci.Unpack(&buf, filepath.Join(dir))
		if _, serr := os.Stat("/etc/passwd"); serr != nil {
			t.Fatal("the host's /etc/passwd is gone")
		}
		if b, _ := os.ReadFile("/etc/passwd"); string(b) == "x" {
			t.Fatal("unpack wrote through a symlink")
		}
		if err == nil && tc[0].typ == tar.TypeSymlink {
			t.Errorf("%v: unpack followed a symlink out of the layer", tc)
		}
	}
}
