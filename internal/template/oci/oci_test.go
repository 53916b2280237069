package oci_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
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

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/template"
	"github.com/sandpit-dev/sandpit/internal/template/oci"
)

type entry struct {
	name, body, link string
	typ              byte
	mode             int64
	uid              int
	major, minor     int64
	xattrs           map[string]string
}

// tarOf writes entries as a tar; a zero typ is a regular file, a zero
// mode 0644.
func tarOf(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Size: int64(len(e.body)), Uid: e.uid, Gid: e.uid,
			Devmajor: e.major, Devminor: e.minor, Format: tar.FormatPAX}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
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
		if h.Size > 0 {
			io.WriteString(tw, e.body)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func layer(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	b := tarOf(t, entries...)
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

// newImporter returns an Importer whose layer dir is a temporary one and
// which may pull from the test registry of ref (on loopback, which it
// refuses unless told).
func newImporter(t *testing.T, ref string) *oci.Importer {
	t.Helper()
	return newImporterIn(t, t.TempDir(), ref)
}

func newImporterIn(t *testing.T, dir, ref string) *oci.Importer {
	t.Helper()
	host, _, _ := strings.Cut(ref, "/")
	im, err := oci.New(oci.Config{LayerDir: dir, InsecureRegistries: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	return im
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
	im := newImporter(t, ref)
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
	im := newImporter(t, ref)
	_, err := im.Import(t.Context(), ref, nil, nil)
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

// A registry on loopback is the host's own: refused unless the operator
// names it, and the refusal says which registry and which rule.
func TestImportRefusesPrivateRegistries(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unpacking layers keeps owners: needs root")
	}
	ref := pushImage(t, layer(t, entry{name: "hello.txt", body: "hello\n"}))
	host, _, _ := strings.Cut(ref, "/")
	_, port, _ := net.SplitHostPort(host)
	for _, r := range []string{ref, "localhost:" + port + "/sandpit/test:v1"} {
		im, err := oci.New(oci.Config{LayerDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		_, err = im.Import(t.Context(), r, nil, nil)
		regHost, _, _ := strings.Cut(r, "/")
		if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "loopback") ||
			!strings.Contains(err.Error(), "--insecure-registry "+regHost) {
			t.Fatalf("import of %s with no insecure registry: %v, want an invalid-argument refusal naming %s and the loopback rule", r, err, regHost)
		}
	}
	for _, allow := range []string{host, "127.0.0.1"} {
		im, err := oci.New(oci.Config{LayerDir: t.TempDir(), InsecureRegistries: []string{allow}})
		if err != nil {
			t.Fatal(err)
		}
		tpl, err := im.Import(t.Context(), ref, nil, nil)
		if err != nil {
			t.Fatalf("import with --insecure-registry %s: %v", allow, err)
		}
		if b, err := os.ReadFile(filepath.Join(tpl.Mounts[0].Layers[0], "hello.txt")); err != nil || string(b) != "hello\n" {
			t.Fatalf("layer: %q %v", b, err)
		}
	}
	// Allowing another port of the same host does not allow this one.
	im, err := oci.New(oci.Config{LayerDir: t.TempDir(), InsecureRegistries: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.Import(t.Context(), ref, nil, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("import with only 127.0.0.1:1 allowed: %v", err)
	}
}

// A registry that redirects blob downloads to the host's private network
// (here: another loopback port, not allowed) is refused at the redirect.
func TestImportRefusesRedirectToPrivateAddress(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unpacking layers keeps owners: needs root")
	}
	var hits atomic.Int32
	private := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "private", http.StatusForbidden)
	}))
	defer private.Close()
	redirect := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/blobs/") {
				http.Redirect(w, r, private.URL+"/metadata", http.StatusTemporaryRedirect)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	ref := pushImageWith(t, redirect, layer(t, entry{name: "x", body: "x"}))
	_, err := newImporter(t, ref).Import(t.Context(), ref, nil, nil)
	privHost := strings.TrimPrefix(private.URL, "http://")
	if err == nil || !strings.Contains(err.Error(), privHost) || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("import redirected to %s: %v, want a refusal naming it", privHost, err)
	}
	t.Logf("redirect: %v", err)
	if hits.Load() != 0 {
		t.Fatalf("the private server was reached %d times", hits.Load())
	}
}

// lyingLayer reports another layer's diff id, as a hostile image's config
// would.
type lyingLayer struct {
	v1.Layer
	diffID v1.Hash
}

func (l lyingLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }

// An image whose config claims a popular layer's diff id for its own
// content is refused, and does not poison the cache for the image that
// really has that layer.
func TestImportVerifiesDiffIDs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unpacking layers keeps owners: needs root")
	}
	honest := layer(t, entry{name: "bin/tool", body: "honest\n", mode: 0o755})
	honestDiff, err := honest.DiffID()
	if err != nil {
		t.Fatal(err)
	}
	evil := lyingLayer{Layer: layer(t, entry{name: "bin/tool", body: "evil\n", mode: 0o755}), diffID: honestDiff}
	evilRef := pushImage(t, evil)
	honestRef := pushImage(t, honest)

	dir := t.TempDir()
	_, err = newImporterIn(t, dir, evilRef).Import(t.Context(), evilRef, nil, nil)
	if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "diff id") {
		t.Fatalf("import of an image lying about its diff id: %v, want a refusal", err)
	}
	tpl, err := newImporterIn(t, dir, honestRef).Import(t.Context(), honestRef, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(tpl.Mounts[0].Layers[0], "bin/tool")); err != nil || string(b) != "honest\n" {
		t.Fatalf("the honest image's layer holds %q (%v): the lying image poisoned the cache", b, err)
	}
}

// A blob that is not what the manifest names is refused (go-containerregistry
// checks too; the importer does not rely on it).
func TestImportVerifiesBlobDigests(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unpacking layers keeps owners: needs root")
	}
	other := tarOf(t, entry{name: "x", body: "other\n"})
	swap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && bytes.HasPrefix(rec.Body.Bytes(), []byte{0x1f, 0x8b}) {
				w.Header().Set("Content-Length", fmt.Sprint(len(other)))
				w.Write(other)
				return
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
		})
	}
	ref := pushImageWith(t, swap, layer(t, entry{name: "x", body: "real\n"}))
	dir := t.TempDir()
	if _, err := newImporterIn(t, dir, ref).Import(t.Context(), ref, nil, nil); err == nil {
		t.Fatal("import of a swapped blob succeeded")
	} else {
		t.Logf("swapped blob: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a refused layer left %v in the layer dir", ents)
	}
}

// A symlink in a lower layer is not followed by an upper layer's entries:
// each layer is unpacked into its own directory, and the host's files the
// link names stay as they were.
func TestImportLowerLayerSymlinkStaysInside(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unpacking layers keeps owners: needs root")
	}
	canary := t.TempDir()
	if err := os.WriteFile(filepath.Join(canary, "passwd"), []byte("canary\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ref := pushImage(t,
		layer(t, entry{name: "etc", typ: tar.TypeSymlink, link: canary}),
		layer(t,
			entry{name: "etc/passwd", body: "x"},
			entry{name: "etc/.wh.passwd"},
			entry{name: "etc/.wh..wh..opq"},
		),
	)
	_, err := newImporter(t, ref).Import(t.Context(), ref, nil, nil)
	if err != nil {
		t.Fatalf("import: %v", err) // the upper layer's etc is its own directory
	}
	if b, err := os.ReadFile(filepath.Join(canary, "passwd")); err != nil || string(b) != "canary\n" {
		t.Fatalf("canary: %q %v", b, err)
	}
	if ents, _ := os.ReadDir(canary); len(ents) != 1 {
		t.Fatalf("canary dir holds %v", ents)
	}
	buf := make([]byte, 8)
	if _, err := unix.Getxattr(canary, "trusted.overlay.opaque", buf); err == nil {
		t.Fatal("the canary dir was marked opaque")
	}
}
