// Package oci imports OCI (and Docker) images as sandpit templates: it
// pulls an image with go-containerregistry and unpacks each of its layers
// once into a directory named by the layer's verified diff id, turning OCI
// whiteouts into overlayfs ones, so the layers stack under a sandbox's
// overlay root like any template layer and are shared by every template
// that uses them.
//
// An image is hostile input. Each layer's compressed digest (from the
// manifest) and diff id (from the config) are checked against what was
// read before its directory is published, so an image that lies about a
// layer cannot plant content under another layer's name; Unpack keeps
// every entry inside the layer (see unpack.go); and registries are dialled
// through safedial, so a client cannot make the daemon fetch from the
// host's loopback or private networks unless the operator allowed that
// registry.
package oci

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/safedial"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// layerPrefix names a layer directory: "oci-sha256-" and the diff id.
// Directories of earlier versions ("oci-" and the diff id the image
// claimed, unchecked) are never reused.
const layerPrefix = "oci-sha256-"

// Importer pulls images into layer directories. It implements
// template.ImageImporter and is safe for concurrent use.
type Importer struct {
	dir  string
	log  *slog.Logger
	dial *safedial.Dialer
	opts []remote.Option
}

var _ template.ImageImporter = (*Importer)(nil)

// Config configures an Importer.
type Config struct {
	// LayerDir holds the unpacked layers, one directory per diff id.
	LayerDir string
	Logger   *slog.Logger
	// InsecureRegistries are registries ("HOST" or "HOST:PORT") that may
	// be on loopback or private addresses, and may speak plain HTTP. Any
	// other registry (and any host it redirects to) must resolve to
	// public addresses.
	InsecureRegistries []string
	// Options are extra go-containerregistry options. A transport given
	// here replaces the one that refuses private addresses: tests only.
	Options []remote.Option
}

// New returns an Importer.
func New(cfg Config) (*Importer, error) {
	if cfg.LayerDir == "" {
		return nil, errors.New("oci.New: LayerDir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	dial, err := safedial.New(cfg.InsecureRegistries)
	if err != nil {
		return nil, fmt.Errorf("insecure registries: %w", err)
	}
	if err := os.MkdirAll(cfg.LayerDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating layer dir: %w", err)
	}
	opts := append([]remote.Option{remote.WithTransport(dial.Transport())}, cfg.Options...)
	return &Importer{dir: cfg.LayerDir, log: cfg.Logger, dial: dial, opts: opts}, nil
}

// Import pulls ref (for the host's platform) and returns a template whose
// root is the image's layers, with the image's env, user and working
// directory. Layers already unpacked are not pulled again.
func (im *Importer) Import(ctx context.Context, ref string, auth *template.RegistryAuth, log func(template.LogEntry)) (*template.Template, error) {
	logf := func(format string, a ...any) {
		if log != nil {
			log(template.LogEntry{Time: time.Now(), Level: "info", Message: fmt.Sprintf(format, a...), Step: "base"})
		}
	}
	r, err := name.ParseReference(ref)
	if err == nil && im.dial.Allowed(r.Context().RegistryStr()) {
		// An allowed registry may speak plain HTTP, as Docker's
		// --insecure-registry does.
		r, err = name.ParseReference(ref, name.Insecure)
	}
	if err != nil {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("invalid image reference %q: %v", ref, err))
	}
	opts := append([]remote.Option{
		remote.WithContext(ctx),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: goruntime.GOARCH}),
	}, im.opts...)
	if auth != nil && auth.Username != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: auth.Username, Password: auth.Password}))
	}
	logf("pulling %s", r.Name())
	img, err := remote.Image(r, opts...)
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", ref, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the config of %s: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("listing the layers of %s: %w", ref, err)
	}
	dirs := make([]string, 0, len(layers))
	for i, l := range layers {
		diff, err := l.DiffID()
		if err != nil {
			return nil, fmt.Errorf("layer %d of %s: %w", i+1, ref, err)
		}
		if err := checkSHA256(diff); err != nil {
			return nil, fmt.Errorf("layer %d of %s: diff id: %w", i+1, ref, err)
		}
		// The name is the diff id, and a directory of that name is only
		// ever made from content whose hash was checked to be it.
		dir := filepath.Join(im.dir, layerPrefix+diff.Hex)
		if _, err := os.Stat(dir); err == nil {
			logf("layer %d/%d %s: CACHED", i+1, len(layers), short(diff.Hex))
		} else {
			start := time.Now()
			if err := im.unpackLayer(l, dir); err != nil {
				return nil, fmt.Errorf("unpacking layer %d of %s: %w", i+1, ref, err)
			}
			logf("layer %d/%d %s: unpacked in %s", i+1, len(layers), short(diff.Hex), time.Since(start).Round(time.Millisecond))
		}
		dirs = append([]string{dir}, dirs...) // top-most first
	}
	t := &template.Template{
		ID:          ref,
		Mounts:      []runtime.Mount{{Target: "/", Layers: dirs}},
		Env:         map[string]string{},
		User:        cfg.Config.User,
		Workdir:     cfg.Config.WorkingDir,
		EnvdVersion: template.DefaultEnvdVersion,
	}
	for _, kv := range cfg.Config.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			t.Env[k] = v
		}
	}
	if u, _, _ := strings.Cut(t.User, ":"); u != "" {
		t.User = u
	} else {
		t.User = "root"
	}
	if t.Workdir == "" {
		t.Workdir = "/"
	}
	return t, nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// checkSHA256 refuses a digest this package cannot check (or name a
// directory after).
func checkSHA256(h v1.Hash) error {
	if h.Algorithm != "sha256" {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("digest %s: only sha256 is supported", h))
	}
	if b, err := hex.DecodeString(h.Hex); err != nil || len(b) != sha256.Size || strings.ToLower(h.Hex) != h.Hex {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("digest %s is not a sha256 digest", h))
	}
	return nil
}

// unpackLayer reads l's compressed blob once, hashing it and, after
// decompression, the tar, while unpacking into a temporary directory;
// the directory becomes dir only when both hashes are the ones the
// manifest and the config name.
func (im *Importer) unpackLayer(l v1.Layer, dir string) error {
	digest, err := l.Digest()
	if err != nil {
		return err
	}
	diffID, err := l.DiffID()
	if err != nil {
		return err
	}
	if err := checkSHA256(digest); err != nil {
		return fmt.Errorf("layer digest: %w", err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	blobHash := sha256.New()
	blob := bufio.NewReaderSize(io.TeeReader(rc, blobHash), 1<<16)
	tr, err := decompress(blob)
	if err != nil {
		return err
	}
	defer tr.Close()
	tarHash := sha256.New()
	tarStream := io.TeeReader(tr, tarHash)

	tmp, err := os.MkdirTemp(im.dir, ".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := Unpack(tarStream, tmp); err != nil {
		return err
	}
	// The diff id covers the whole stream, the tar's end blocks and any
	// padding after them included; the digest, every byte of the blob.
	if _, err := io.Copy(io.Discard, tarStream); err != nil {
		return fmt.Errorf("reading the layer: %w", err)
	}
	if _, err := io.Copy(io.Discard, blob); err != nil {
		return fmt.Errorf("reading the layer: %w", err)
	}
	if got := hex.EncodeToString(blobHash.Sum(nil)); got != digest.Hex {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("layer %s: the blob's sha256 is %s: the registry sent other content than the manifest names", digest, got))
	}
	if got := hex.EncodeToString(tarHash.Sum(nil)); got != diffID.Hex {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("layer %s: the uncompressed layer's sha256 is %s, not the diff id %s the image config names", digest, got, diffID))
	}
	if err := os.Rename(tmp, dir); err != nil && !errors.Is(err, os.ErrExist) {
		var le *os.LinkError
		if !errors.As(err, &le) || !errors.Is(le.Err, unix.ENOTEMPTY) {
			return err
		}
	}
	return nil
}

// decompress returns the tar inside a layer blob: gzip, zstd or none, told
// by its first bytes (media types are often wrong).
func decompress(r *bufio.Reader) (io.ReadCloser, error) {
	magic, err := r.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading the layer: %w", err)
	}
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("layer is not valid gzip: %v", err))
		}
		return zr, nil
	case len(magic) == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd:
		zr, err := zstd.NewReader(r)
		if err != nil {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("layer is not valid zstd: %v", err))
		}
		return zr.IOReadCloser(), nil
	default:
		return io.NopCloser(r), nil
	}
}
