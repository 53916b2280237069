package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// needed are the files a node runs or hands its sandboxes that the check
// looks for: the binaries, and what the daemon execs (mkfs.ext4 for
// per-sandbox disks, debootstrap for Debian templates) or starts in
// sandboxes (python3 for the code interpreter, sudo).
var needed = []string{
	"usr/local/bin/sandpit", "usr/local/bin/sandpit-agent", "usr/local/bin/sandpit-init",
	"usr/sbin/mkfs.ext4", "usr/sbin/debootstrap", "usr/bin/python3", "usr/bin/sudo",
}

// Check reads a docker-archive tarball back with go-containerregistry's
// reader and checks it is sandpit's image: tagged, entrypoint sandpit
// serve, the needed files present, the three binaries executable with
// equal times (the daemon starts sandboxes from the agent and init beside
// it only then).
// It returns a one-line report.
func Check(path string) (string, error) {
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return openFile(path) })
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	if len(m) != 1 || len(m[0].RepoTags) == 0 {
		return "", fmt.Errorf("%s: want one tagged image, have %d manifests", path, len(m))
	}
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/usr/local/bin/sandpit"}) || !slices.Equal(cfg.Config.Cmd, []string{"serve"}) {
		return "", fmt.Errorf("%s: entrypoint %q, cmd %q; want sandpit serve", path, cfg.Config.Entrypoint, cfg.Config.Cmd)
	}
	layers, err := img.Layers()
	if err != nil {
		return "", err
	}
	found := map[string]*tar.Header{}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("reading %s's files: %w", path, err)
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		if slices.Contains(needed, name) {
			found[name] = hdr
		}
	}
	for _, n := range needed {
		if found[n] == nil {
			return "", fmt.Errorf("%s: no /%s", path, n)
		}
	}
	sp, ag, in := found["usr/local/bin/sandpit"], found["usr/local/bin/sandpit-agent"], found["usr/local/bin/sandpit-init"]
	for _, h := range []*tar.Header{sp, ag, in} {
		if h.Typeflag != tar.TypeReg || h.Mode&0o111 == 0 || h.Size == 0 {
			return "", fmt.Errorf("%s: /%s is not an executable file (type %c, mode %o, %d bytes)", path, h.Name, h.Typeflag, h.Mode, h.Size)
		}
	}
	for _, h := range []*tar.Header{ag, in} {
		if !sp.ModTime.Equal(h.ModTime) {
			return "", fmt.Errorf("%s: sandpit's time %v differs from /%s's %v", path, sp.ModTime, h.Name, h.ModTime)
		}
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: %s, %d layers, entrypoint %q cmd %q, %s present; %s",
		path, strings.Join(m[0].RepoTags, ", "), len(layers), cfg.Config.Entrypoint, cfg.Config.Cmd, strings.Join(needed, " "), d), nil
}

func openFile(path string) (io.ReadCloser, error) { return os.Open(path) }
