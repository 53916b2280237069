package main

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// fakeBase makes a small root filesystem: directories, files, a symlink,
// a hard link, and empty stand-ins for what Check looks for.
func fakeBase(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"etc", "usr/bin", "usr/sbin", "usr/local/bin", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"etc/os-release": "ID=debian\n", "usr/bin/python3": "#!python\n", "usr/bin/sudo": "sudo",
		"usr/sbin/mkfs.ext4": "mkfs", "usr/sbin/debootstrap": "#!/bin/sh\n"}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, "usr/sbin/mkfs.ext4"), filepath.Join(root, "usr/sbin/mke2fs")); err != nil {
		t.Fatal(err)
	}
	return root
}

func fakeBinaries(t *testing.T) (sandpit, agent, init string) {
	t.Helper()
	dir := t.TempDir()
	sandpit, agent, init = filepath.Join(dir, "sandpit"), filepath.Join(dir, "sandpit-agent"), filepath.Join(dir, "sandpit-init")
	for _, p := range []string{sandpit, agent, init} {
		if err := os.WriteFile(p, []byte("\x7fELF "+filepath.Base(p)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return sandpit, agent, init
}

// TestImage: mkimage writes a docker-archive that go-containerregistry
// reads back: two layers (the root, the binaries), the config's entrypoint
// and creation time, the files with their kinds, modes and times, both
// tags; Check accepts it; a second run, with the base layer
// from its cache, gives the same digest.
func TestImage(t *testing.T) {
	base := fakeBase(t)
	sandpit, agent, init := fakeBinaries(t)
	out := filepath.Join(t.TempDir(), "image.tar")
	cache := filepath.Join(t.TempDir(), "base.tar.gz")
	args := []string{"-base", base, "-base-cache", cache, "-epoch", "1700000000", "-o", out,
		"-tag", "sandpit:v0-test", "-tag", "sandpit:latest",
		"-add", sandpit + ":/usr/local/bin/sandpit", "-add", agent + ":/usr/local/bin/sandpit-agent", "-add", init + ":/usr/local/bin/sandpit-init"}
	var stdout strings.Builder
	if err := run(args, &stdout); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag("sandpit:v0-test")
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("layers = %d, %v; want 2", len(layers), err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	epoch := time.Unix(1700000000, 0)
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/usr/local/bin/sandpit"}) || !slices.Equal(cfg.Config.Cmd, []string{"serve"}) ||
		!cfg.Created.Equal(epoch) || cfg.OS != "linux" || len(cfg.History) != 2 {
		t.Errorf("config: entrypoint %q cmd %q created %v os %s history %d", cfg.Config.Entrypoint, cfg.Config.Cmd, cfg.Created, cfg.OS, len(cfg.History))
	}

	got := map[string]*tar.Header{}
	rc := mutate.Extract(img)
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[strings.TrimSuffix(hdr.Name, "/")] = hdr
		// The files added are dated epoch; the root's keep their times.
		// (and so are their parent directories, which the top layer
		// holds too).
		want := epoch
		if n := strings.TrimSuffix(hdr.Name, "/"); !strings.HasPrefix("usr/local/bin/sandpit", n) && !strings.HasPrefix(n, "usr/local/bin/sandpit") {
			fi, err := os.Lstat(filepath.Join(base, n))
			if err != nil {
				t.Fatal(err)
			}
			want = fi.ModTime().Truncate(time.Second)
		}
		if !hdr.ModTime.Equal(want) {
			t.Errorf("%s: time %v, want %v", hdr.Name, hdr.ModTime, want)
		}
	}
	rc.Close()
	for p, want := range map[string]byte{
		"etc/os-release": tar.TypeReg, "bin": tar.TypeSymlink, "tmp": tar.TypeDir, "usr/sbin/mke2fs": tar.TypeReg,
		"usr/local/bin/sandpit": tar.TypeReg, "usr/local/bin/sandpit-agent": tar.TypeReg, "usr/local/bin/sandpit-init": tar.TypeReg, "usr/local/bin": tar.TypeDir,
	} {
		h := got[p]
		switch {
		case h == nil:
			t.Errorf("%s missing from the image", p)
		// mutate.Extract resolves nothing: the second name of a hard
		// link is a link, or a file when it came first.
		case h.Typeflag != want && !(want == tar.TypeReg && h.Typeflag == tar.TypeLink):
			t.Errorf("%s: type %c, want %c", p, h.Typeflag, want)
		}
	}
	if h := got["tmp"]; h != nil && h.Mode&0o1777 != 0o1777 {
		t.Errorf("tmp: mode %o, want 1777", h.Mode)
	}
	if h := got["usr/local/bin/sandpit"]; h != nil && (h.Mode&0o777 != 0o755 || h.Uid != 0) {
		t.Errorf("sandpit: mode %o uid %d, want 755 root", h.Mode, h.Uid)
	}
	if h := got["usr/sbin/mke2fs"]; h != nil && h.Typeflag == tar.TypeLink && h.Linkname != "usr/sbin/mkfs.ext4" {
		t.Errorf("mke2fs links to %q", h.Linkname)
	}

	rep, err := Check(out)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if !strings.Contains(rep, "sandpit:v0-test") || !strings.Contains(rep, "sandpit:latest") {
		t.Errorf("Check's report names not both tags: %s", rep)
	}

	// Reproducible: the same inputs (the base layer now from the cache)
	// give the same image.
	d1, _ := img.Digest()
	out2 := filepath.Join(t.TempDir(), "image.tar")
	args[7] = out2 // the -o value
	if err := run(args, io.Discard); err != nil {
		t.Fatal(err)
	}
	img2, err := tarball.ImageFromPath(out2, &tag)
	if err != nil {
		t.Fatal(err)
	}
	if d2, _ := img2.Digest(); d1 != d2 {
		t.Errorf("a second build: digest %s, the first %s", d2, d1)
	}
}

// TestCheckRefusesWithoutBinaries: an image lacking the sandpit binaries
// fails the check.
func TestCheckRefusesWithoutBinaries(t *testing.T) {
	out := filepath.Join(t.TempDir(), "image.tar")
	if err := run([]string{"-base", fakeBase(t), "-tag", "sandpit:bare", "-o", out}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := Check(out); err == nil || !strings.Contains(err.Error(), "no /usr/local/bin/sandpit") {
		t.Errorf("Check of an image without the binaries = %v", err)
	}
}

// TestDockerfilePackages: the Dockerfile installs the packages
// scripts/image-base.sh puts in the image `make image` writes, so the two
// images hold the same programs.
func TestDockerfilePackages(t *testing.T) {
	list := func(path string, re *regexp.Regexp) []string {
		b, err := os.ReadFile(filepath.Join("..", "..", path))
		if err != nil {
			t.Fatal(err)
		}
		m := re.FindSubmatch(b)
		if m == nil {
			t.Fatalf("%s: no package list", path)
		}
		f := strings.Fields(strings.ReplaceAll(string(m[1]), "\\", " "))
		slices.Sort(f)
		return f
	}
	script := list("scripts/image-base.sh", regexp.MustCompile(`(?s)\npackages=\(\n(.*?)\n\)`))
	docker := list("Dockerfile", regexp.MustCompile(`(?s)# packages: begin\n(.*?)# packages: end`))
	docker = slices.DeleteFunc(docker, func(s string) bool { return s == "&&" || strings.HasPrefix(s, "-") || s == "apt-get" || s == "install" })
	if !slices.Equal(script, docker) {
		t.Errorf("packages differ:\n  scripts/image-base.sh %q\n  Dockerfile            %q", script, docker)
	}
}
