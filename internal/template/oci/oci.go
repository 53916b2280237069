// Package oci imports OCI (and Docker) images as sandpit templates: it
// pulls an image with go-containerregistry and unpacks each of its layers
// once into a directory named by the layer's diff id, turning OCI
// whiteouts into overlayfs ones, so the layers stack under a sandbox's
// overlay root like any template layer and are shared by every template
// that uses them.
package oci

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// Importer pulls images into layer directories. It implements
// template.ImageImporter and is safe for concurrent use.
type Importer struct {
	dir  string
	log  *slog.Logger
	opts []remote.Option
}

var _ template.ImageImporter = (*Importer)(nil)

// Config configures an Importer.
type Config struct {
	// LayerDir holds the unpacked layers, one directory per diff id.
	LayerDir string
	Logger   *slog.Logger
	// Options are extra go-containerregistry options (a transport, say).
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
	if err := os.MkdirAll(cfg.LayerDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating layer dir: %w", err)
	}
	return &Importer{dir: cfg.LayerDir, log: cfg.Logger, opts: cfg.Options}, nil
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
		dir := filepath.Join(im.dir, "oci-"+diff.Hex)
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

func (im *Importer) unpackLayer(l v1.Layer, dir string) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	tmp, err := os.MkdirTemp(im.dir, ".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := Unpack(rc, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil && !errors.Is(err, os.ErrExist) {
		var le *os.LinkError
		if !errors.As(err, &le) || !errors.Is(le.Err, unix.ENOTEMPTY) {
			return err
		}
	}
	return nil
}

// Unpack extracts a layer tar into dir, an empty directory, as an
// overlayfs layer: ".wh.NAME" becomes a whiteout (a 0/0 character
// device), ".wh..wh..opq" marks its directory opaque. Owners, modes,
// times and xattrs are kept. Entries may not leave dir: ".." and
// symlinked parents are refused.
func Unpack(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	type dirTime struct {
		path string
		t    time.Time
	}
	var dirTimes []dirTime
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading layer: %w", err)
		}
		rel := path.Clean("/" + h.Name)
		if rel == "/" {
			continue
		}
		parent, base := path.Split(rel)
		pdir, err := safeDir(dir, parent)
		if err != nil {
			return fmt.Errorf("layer entry %q: %w", h.Name, err)
		}
		target := filepath.Join(pdir, base)
		if base == ".wh..wh..opq" {
			if err := unix.Setxattr(pdir, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
				return fmt.Errorf("marking %s opaque: %w", parent, err)
			}
			continue
		}
		if strings.HasPrefix(base, ".wh.") {
			wh := filepath.Join(pdir, strings.TrimPrefix(base, ".wh."))
			_ = os.RemoveAll(wh)
			if err := unix.Mknod(wh, unix.S_IFCHR, 0); err != nil {
				return fmt.Errorf("whiting out %s: %w", h.Name, err)
			}
			continue
		}
		if fi, err := os.Lstat(target); err == nil && !(fi.IsDir() && h.Typeflag == tar.TypeDir) {
			if err := os.RemoveAll(target); err != nil {
				return err
			}
		}
		mode := uint32(h.Mode) & 0o7777
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
			dirTimes = append(dirTimes, dirTime{target, h.ModTime})
		case tar.TypeReg:
			f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("writing %s: %w", h.Name, err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		case tar.TypeLink:
			lp, lb := path.Split(path.Clean("/" + h.Linkname))
			ldir, err := safeDir(dir, lp)
			if err != nil {
				return fmt.Errorf("hard link %q: %w", h.Name, err)
			}
			if err := os.Link(filepath.Join(ldir, lb), target); err != nil {
				return err
			}
			continue // the link shares its target's owner and mode
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[h.Typeflag]
			if err := unix.Mknod(target, kind|mode, int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor)))); err != nil {
				return err
			}
		default:
			continue // other types carry nothing a sandbox needs
		}
		if err := os.Lchown(target, h.Uid, h.Gid); err != nil {
			return err
		}
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				_ = unix.Lsetxattr(target, x, []byte(v), 0)
			}
		}
		if h.Typeflag != tar.TypeSymlink {
			if err := os.Chmod(target, os.FileMode(mode&0o777)|setBits(mode)); err != nil {
				return err
			}
			if h.Typeflag != tar.TypeDir {
				_ = os.Chtimes(target, h.ModTime, h.ModTime)
			}
		}
	}
	for i := len(dirTimes) - 1; i >= 0; i-- {
		_ = os.Chtimes(dirTimes[i].path, dirTimes[i].t, dirTimes[i].t)
	}
	return nil
}

func setBits(mode uint32) os.FileMode {
	var m os.FileMode
	if mode&unix.S_ISUID != 0 {
		m |= os.ModeSetuid
	}
	if mode&unix.S_ISGID != 0 {
		m |= os.ModeSetgid
	}
	if mode&unix.S_ISVTX != 0 {
		m |= os.ModeSticky
	}
	return m
}

// safeDir returns the host path of rel (a cleaned, absolute path inside
// the layer) under root, creating missing directories and refusing any
// component that is not a directory (a symlink could lead out of root).
func safeDir(root, rel string) (string, error) {
	cur := root
	for _, part := range strings.Split(strings.Trim(rel, "/"), "/") {
		if part == "" {
			continue
		}
		if part == ".." {
			return "", errors.New("path leaves the layer")
		}
		next := filepath.Join(cur, part)
		fi, err := os.Lstat(next)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := os.Mkdir(next, 0o755); err != nil {
				return "", err
			}
		case err != nil:
			return "", err
		case !fi.IsDir():
			return "", fmt.Errorf("%s is not a directory in the layer", part)
		}
		cur = next
	}
	return cur, nil
}
