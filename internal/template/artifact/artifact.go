// Package artifact carries built templates between the nodes of a cluster
// through an OCI registry, so a template is built once and started on any
// node. A template is one OCI artifact: a blob per layer directory (a tar
// of it, its directory name in an annotation), a config blob holding the
// template's metadata (template.Shared: env, user, workdir, start and
// ready commands, resources, names, tags, team) and a manifest, pushed by
// digest; no tag is moved, so nothing a later push does changes what a
// digest names.
//
// Trust runs along digests: the node that built the template records the
// manifest's digest in the cluster's API (SandboxTemplate status.image),
// a node that pulls asks for that digest and checks the manifest against
// it, and each blob against the digest the manifest names, before
// anything is unpacked into place. A registry that serves other content
// is refused with an error saying so. Layers are unpacked with
// oci.Unpack, which keeps every entry inside the layer.
package artifact

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/template"
	"github.com/sandpit-dev/sandpit/internal/template/oci"
)

// Media types and annotations of a template artifact.
const (
	ArtifactType    = "application/vnd.sandpit.template.v1"
	ConfigMediaType = "application/vnd.sandpit.template.config.v1+json"
	LayerMediaType  = types.OCIUncompressedLayer
	// LayerAnnotation on a layer's descriptor is its directory's name
	// under the layer dir (a build step's cache key).
	LayerAnnotation = "dev.sandpit.layer"
	// TemplateAnnotation on the manifest is the template's ID.
	TemplateAnnotation = "dev.sandpit.template"
)

// maxConfig bounds the config blob a pull reads.
const maxConfig = 4 << 20

// Config configures a Store.
type Config struct {
	// Repository is where templates go: "HOST[:PORT]/PATH", or
	// "http://HOST:PORT/PATH" for a registry on loopback that speaks plain
	// HTTP (tests). Credentials come from the docker config
	// ($DOCKER_CONFIG/config.json, e.g. a mounted Secret) through
	// go-containerregistry's default keychain.
	Repository string
	// LayerDir is the node's layer directory (template.Registry.LayerDir).
	LayerDir string
	// Options are extra go-containerregistry options (tests: a transport).
	Options []remote.Option
	Logger  *slog.Logger
}

// Store pushes and pulls templates. It is safe for concurrent use.
type Store struct {
	repo name.Repository
	dir  string
	opts []remote.Option
	log  *slog.Logger

	mu sync.Mutex
	// pushed remembers the descriptor of each layer directory already
	// pushed: layer directories never change, and taring one again only
	// to learn its digest is the cost of a push.
	pushed map[string]v1.Descriptor
}

// New returns a Store.
func New(cfg Config) (*Store, error) {
	if cfg.LayerDir == "" {
		return nil, errors.New("artifact.New: LayerDir is required")
	}
	repo, err := ParseRepository(cfg.Repository)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := append([]remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)}, cfg.Options...)
	return &Store{repo: repo, dir: cfg.LayerDir, opts: opts, log: log, pushed: map[string]v1.Descriptor{}}, nil
}

// ParseRepository reads a --registry value: "HOST[:PORT]/PATH" (HTTPS),
// or "http://HOST:PORT/PATH", plain HTTP, allowed for loopback hosts
// only.
func ParseRepository(s string) (name.Repository, error) {
	var opts []name.Option
	if rest, ok := strings.CutPrefix(s, "http://"); ok {
		u, err := url.Parse(s)
		if err != nil {
			return name.Repository{}, fmt.Errorf("registry %q: %w", s, err)
		}
		ip := net.ParseIP(u.Hostname())
		if u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return name.Repository{}, fmt.Errorf("registry %q: plain HTTP only to a loopback address; use HTTPS (no scheme) for others", s)
		}
		s, opts = rest, append(opts, name.Insecure)
	} else {
		s = strings.TrimPrefix(s, "https://")
	}
	repo, err := name.NewRepository(s, opts...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("registry %q: %w", s, err)
	}
	return repo, nil
}

// Ref returns the reference of a digest in the Store's repository.
func (s *Store) Ref(digest string) string { return s.repo.Digest(digest).String() }

// Push pushes template sh (its layers from the layer dir) and returns
// the manifest's digest. Layers the registry holds already are not sent.
func (s *Store) Push(ctx context.Context, sh *template.Shared, log func(template.LogEntry)) (string, error) {
	opts := append([]remote.Option{remote.WithContext(ctx)}, s.opts...)
	start := time.Now()
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactType,
		Annotations:   map[string]string{TemplateAnnotation: sh.TemplateID},
	}
	var size int64
	for _, l := range sh.Layers {
		d, err := s.pushLayer(l, opts)
		if err != nil {
			return "", fmt.Errorf("pushing layer %s of template %s: %w", l, sh.TemplateID, err)
		}
		size += d.Size
		m.Layers = append(m.Layers, d)
	}
	cfg, err := json.Marshal(sh)
	if err != nil {
		return "", fmt.Errorf("encoding template %s: %w", sh.TemplateID, err)
	}
	cd, err := s.pushBlob(bytes.NewReader(cfg), ConfigMediaType, opts)
	if err != nil {
		return "", fmt.Errorf("pushing the config of template %s: %w", sh.TemplateID, err)
	}
	m.Config = cd
	raw, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encoding the manifest of template %s: %w", sh.TemplateID, err)
	}
	sum := sha256.Sum256(raw)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	man := &rawManifest{raw: raw, mediaType: m.MediaType}
	if err := remote.Put(s.repo.Digest(digest), man, opts...); err != nil {
		return "", fmt.Errorf("pushing the manifest of template %s: %w", sh.TemplateID, err)
	}
	if log != nil {
		log(template.LogEntry{Time: time.Now(), Level: "info", Step: "finalize", Message: fmt.Sprintf(
			"pushed to %s (%d layers, %d MiB) in %s", s.Ref(digest), len(m.Layers), size>>20, time.Since(start).Round(time.Millisecond))})
	}
	s.log.Info("template pushed", "template", sh.TemplateID, "build_id", sh.BuildID, "ref", s.Ref(digest), "took", time.Since(start))
	return digest, nil
}

// pushLayer pushes the tar of layer directory l, once per process.
func (s *Store) pushLayer(l string, opts []remote.Option) (v1.Descriptor, error) {
	s.mu.Lock()
	d, ok := s.pushed[l]
	s.mu.Unlock()
	if ok {
		return d, nil
	}
	dir := filepath.Join(s.dir, l)
	tmp, err := os.CreateTemp(s.dir, ".tmp-push-")
	if err != nil {
		return v1.Descriptor{}, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	// Hashed as it is written: the file is read once more, to upload it
	// (and not at all when the registry has it).
	bw := bufio.NewWriterSize(tmp, 1<<20)
	hw := newHashingWriter(bw)
	if err := writeLayer(hw, dir); err != nil {
		return v1.Descriptor{}, err
	}
	if err := bw.Flush(); err != nil {
		return v1.Descriptor{}, err
	}
	d, err = s.writeBlob(tmp, hw, LayerMediaType, opts)
	if err != nil {
		return v1.Descriptor{}, err
	}
	d.Annotations = map[string]string{LayerAnnotation: l}
	s.mu.Lock()
	s.pushed[l] = d
	s.mu.Unlock()
	return d, nil
}

// pushBlob hashes r (small: a config) and pushes it unless the registry
// has it.
func (s *Store) pushBlob(r io.ReadSeeker, mt types.MediaType, opts []remote.Option) (v1.Descriptor, error) {
	hw := newHashingWriter(io.Discard)
	if _, err := io.Copy(hw, r); err != nil {
		return v1.Descriptor{}, err
	}
	return s.writeBlob(r, hw, mt, opts)
}

// writeBlob pushes r, whose bytes went through hw, unless the registry
// has it.
func (s *Store) writeBlob(r io.ReadSeeker, hw *hashingWriter, mt types.MediaType, opts []remote.Option) (v1.Descriptor, error) {
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return v1.Descriptor{}, err
	}
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(hw.h.Sum(nil))}
	bl := &blob{r: r, digest: h, size: hw.size, mt: mt}
	if err := remote.WriteLayer(s.repo, bl, opts...); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Digest: h, Size: hw.size}, nil
}

// PullStats says what a pull moved.
type PullStats struct {
	Layers  int   // layers the template stands on
	Fetched int   // of them, fetched (the others were here)
	Bytes   int64 // bytes fetched
}

// Pull fetches the template whose manifest has digest, puts the layers
// the node lacks in the layer dir, and returns the template for
// template.Registry.Import. Every blob is checked against its digest
// before its content is used.
func (s *Store) Pull(ctx context.Context, digest string) (*template.Shared, PullStats, error) {
	var st PullStats
	want, err := v1.NewHash(digest)
	if err != nil || want.Algorithm != "sha256" {
		return nil, st, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("template artifact digest %q: want sha256:HEX", digest))
	}
	opts := append([]remote.Option{remote.WithContext(ctx)}, s.opts...)
	ref := s.repo.Digest(digest)
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return nil, st, fmt.Errorf("fetching %s: %w", ref, err)
	}
	if sum := sha256.Sum256(desc.Manifest); hex.EncodeToString(sum[:]) != want.Hex {
		return nil, st, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("%s: the registry sent a manifest of another digest", ref))
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, st, fmt.Errorf("reading the manifest of %s: %w", ref, err)
	}
	if m.Config.MediaType != ConfigMediaType {
		return nil, st, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("%s is no sandpit template (config %s)", ref, m.Config.MediaType))
	}
	if m.Config.Size > maxConfig {
		return nil, st, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("%s: config of %d bytes", ref, m.Config.Size))
	}
	rc, err := s.openBlob(m.Config.Digest, opts)
	if err != nil {
		return nil, st, fmt.Errorf("fetching the config of %s: %w", ref, err)
	}
	cfg, err := readVerified(rc, m.Config.Digest, maxConfig)
	if err != nil {
		return nil, st, fmt.Errorf("the config of %s: %w", ref, err)
	}
	var sh template.Shared
	if err := json.Unmarshal(cfg, &sh); err != nil {
		return nil, st, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("decoding the config of %s: %v", ref, err))
	}
	// The config lists the layers the mounts use; the manifest binds each
	// to a digest. They must agree, one descriptor per layer.
	names := make([]string, 0, len(m.Layers))
	for _, l := range m.Layers {
		names = append(names, l.Annotations[LayerAnnotation])
	}
	if !slices.Equal(names, sh.Layers) {
		return nil, st, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("%s: the manifest's layers %v are not the config's %v", ref, names, sh.Layers))
	}
	st.Layers = len(m.Layers)
	for _, l := range m.Layers {
		n, fetched, err := s.pullLayer(l, opts)
		if err != nil {
			return nil, st, fmt.Errorf("layer %s of %s: %w", l.Annotations[LayerAnnotation], ref, err)
		}
		if fetched {
			st.Fetched++
			st.Bytes += n
		}
	}
	return &sh, st, nil
}

// pullLayer fetches and unpacks one layer unless its directory is here.
func (s *Store) pullLayer(d v1.Descriptor, opts []remote.Option) (int64, bool, error) {
	l := d.Annotations[LayerAnnotation]
	if !validLayerName(l) {
		return 0, false, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("bad layer name %q", l))
	}
	dir := filepath.Join(s.dir, l)
	if _, err := os.Lstat(dir); err == nil {
		return 0, false, nil
	}
	if d.Digest.Algorithm != "sha256" {
		return 0, false, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("layer digest %s: only sha256", d.Digest))
	}
	rc, err := s.openBlob(d.Digest, opts)
	if err != nil {
		return 0, false, err
	}
	defer rc.Close()
	tmp, err := os.MkdirTemp(s.dir, ".tmp-pull-")
	if err != nil {
		return 0, false, err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return 0, false, err
	}
	h := newHashingWriter(io.Discard)
	body := io.TeeReader(rc, h)
	uerr := oci.Unpack(body, tmp)
	// The digest covers every byte of the blob, past the tar's end too;
	// go-containerregistry's reader checks it at EOF as well. A blob that
	// does not unpack is checked too: altered content is the likelier
	// cause, and the one to report.
	if _, err := io.Copy(io.Discard, body); err != nil {
		return 0, false, tampered(d.Digest, err)
	}
	if got := hex.EncodeToString(h.h.Sum(nil)); got != d.Digest.Hex {
		return 0, false, tampered(d.Digest, fmt.Errorf("its sha256 is %s", got))
	}
	if uerr != nil {
		return 0, false, fmt.Errorf("unpacking: %w", uerr)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another pull of a template on the same layer made it first.
		if !errors.Is(err, os.ErrExist) && !errors.Is(err, unix.ENOTEMPTY) {
			return 0, false, err
		}
	}
	return h.size, true, nil
}

func (s *Store) openBlob(d v1.Hash, opts []remote.Option) (io.ReadCloser, error) {
	l, err := remote.Layer(s.repo.Digest(d.String()), opts...)
	if err != nil {
		return nil, err
	}
	return l.Compressed()
}

// tampered is the error of a blob whose content is not its digest's.
func tampered(d v1.Hash, err error) error {
	return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf(
		"blob %s: the registry sent other content than the digest names, refused: %v", d, err))
}

// readVerified reads a small blob whole and checks its digest.
func readVerified(rc io.ReadCloser, d v1.Hash, limit int64) ([]byte, error) {
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, tampered(d, err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != d.Hex {
		return nil, tampered(d, fmt.Errorf("its sha256 is %x", sum))
	}
	return b, nil
}

func validLayerName(l string) bool {
	if l == "" || len(l) > 128 || l[0] == '.' || l[0] == '-' {
		return false
	}
	for _, c := range l {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// blob is a layer read from a file or bytes: uncompressed, so its digest
// is its diff id.
type blob struct {
	r      io.ReadSeeker
	digest v1.Hash
	size   int64
	mt     types.MediaType
}

var _ v1.Layer = (*blob)(nil)

func (b *blob) Digest() (v1.Hash, error)             { return b.digest, nil }
func (b *blob) DiffID() (v1.Hash, error)             { return b.digest, nil }
func (b *blob) Size() (int64, error)                 { return b.size, nil }
func (b *blob) MediaType() (types.MediaType, error)  { return b.mt, nil }
func (b *blob) Compressed() (io.ReadCloser, error)   { return b.open() }
func (b *blob) Uncompressed() (io.ReadCloser, error) { return b.open() }

func (b *blob) open() (io.ReadCloser, error) {
	if _, err := b.r.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.NopCloser(b.r), nil
}

// rawManifest is a manifest to put as it is.
type rawManifest struct {
	raw       []byte
	mediaType types.MediaType
}

func (m *rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m *rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }
