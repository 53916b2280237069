package template_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/template"
	"github.com/sandpit-dev/sandpit/internal/template/oci"
)

// overBase imports an image and stacks its root over the base template's,
// standing in for an image that carries a whole userland (no outside
// registry is reachable here, and the host's /usr is too big to push).
type overBase struct {
	im   *oci.Importer
	base *template.Template
}

func (o overBase) Import(ctx context.Context, ref string, auth *template.RegistryAuth, log func(template.LogEntry)) (*template.Template, error) {
	t, err := o.im.Import(ctx, ref, auth, log)
	if err != nil {
		return nil, err
	}
	mounts := slices.Clone(o.base.Mounts)
	mounts[0] = runtime.Mount{Target: "/", Layers: append(slices.Clone(t.Mounts[0].Layers), o.base.Mounts[0].Layers...)}
	t.Mounts = mounts
	return t, nil
}

func TestBuildFromOCIImage(t *testing.T) {
	e := newBuildEnv(t)
	ref := pushTestImage(t)
	// The test registry is on loopback, which the importer refuses unless
	// named (serve --insecure-registry).
	im, err := oci.New(oci.Config{LayerDir: e.dir + "/templates/layers", InsecureRegistries: []string{strings.Split(ref, "/")[0]}})
	if err != nil {
		t.Fatal(err)
	}
	reg := newRegistryWith(t, e, overBase{im: im, base: e.base})
	tpl, err := reg.Build(t.Context(), template.RequestArgs{Name: "from-image"}, template.BuildSpec{
		FromImage: ref,
		Steps:     []template.Step{{Type: "RUN", Args: []string{"cat hello.txt > copy.txt", "root"}}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := e.run(t, tpl, "cat /srv/img/copy.txt; echo $IMG_VAR; pwd; test -e /etc/shells && echo shells || echo no-shells")
	if got != "hello from an OCI layer\nset\n/srv/img\nno-shells\n" {
		t.Fatalf("sandbox from an imported image says %q", got)
	}
}

// pushTestImage serves an in-process registry (on loopback) holding a
// one-layer image and returns its reference.
func pushTestImage(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct{ name, body string }{{"srv/img/hello.txt", "hello from an OCI layer\n"}, {"etc/.wh.shells", ""}} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg})
		io.WriteString(tw, f.body)
	}
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, _ := mutate.AppendLayers(empty.Image, layer)
	img, _ = mutate.Config(img, v1.Config{Env: []string{"IMG_VAR=set"}, User: "user", WorkingDir: "/srv/img"})
	ref := strings.TrimPrefix(srv.URL, "http://") + "/acme/app:1"
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// A registry on the host's loopback is refused unless the operator names
// it (serve --insecure-registry): the build fails at its base step with an
// invalid-argument error naming the registry and the rule.
func TestBuildFromOCIImageOnLoopbackRefused(t *testing.T) {
	e := newBuildEnv(t)
	ref := pushTestImage(t)
	im, err := oci.New(oci.Config{LayerDir: e.dir + "/templates/layers"})
	if err != nil {
		t.Fatal(err)
	}
	reg := newRegistryWith(t, e, overBase{im: im, base: e.base})
	_, err = reg.Build(t.Context(), template.RequestArgs{Name: "from-loopback"}, template.BuildSpec{FromImage: ref}, nil)
	host := strings.Split(ref, "/")[0]
	if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), host) || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("build from %s: %v, want an invalid-argument error naming %s and the loopback rule", ref, err, host)
	}
}
