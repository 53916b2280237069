package oci

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// claimed is a layer whose manifest digest or config diff id is a lie.
type claimed struct {
	v1.Layer
	digest, diffID *v1.Hash
}

func (l claimed) Digest() (v1.Hash, error) {
	if l.digest != nil {
		return *l.digest, nil
	}
	return l.Layer.Digest()
}

func (l claimed) DiffID() (v1.Hash, error) {
	if l.diffID != nil {
		return *l.diffID, nil
	}
	return l.Layer.DiffID()
}

// unpackLayer checks both hashes itself, whatever the layer's source
// checked, and publishes nothing it refused.
func TestUnpackLayerChecksBothHashes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unpacking keeps owners: needs root")
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
	io.WriteString(tw, "f\n")
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	wrong := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	for _, tc := range []struct {
		name  string
		layer v1.Layer
		want  string
	}{
		{"digest", claimed{Layer: l, digest: &wrong}, "other content than the manifest names"},
		{"diff id", claimed{Layer: l, diffID: &wrong}, "not the diff id"},
		{"algorithm", claimed{Layer: l, digest: &v1.Hash{Algorithm: "md5", Hex: "00"}}, "only sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			im, err := New(Config{LayerDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			err = im.unpackLayer(tc.layer, filepath.Join(dir, "out"))
			if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("unpackLayer: %v, want an error saying %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Fatalf("a refused layer left %v", ents)
			}
		})
	}
	dir := t.TempDir()
	im, _ := New(Config{LayerDir: dir})
	if err := im.unpackLayer(l, filepath.Join(dir, "out")); err != nil {
		t.Fatalf("an honest layer: %v", err)
	}
}
