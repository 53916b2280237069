// Package debootstrap makes Debian root filesystems with debootstrap, as
// template layers: `FROM debootstrap:bookworm` (optionally with packages,
// `debootstrap:bookworm/python3,python3-pip`) builds from a minimal Debian
// with E2B's default account, made once per suite, package list and
// mirror and shared by every template that starts from it. debootstrap
// runs on the host (it needs the Debian mirror, which build sandboxes
// cannot reach yet).
package debootstrap

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
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// Prefix marks a fromImage that debootstrap makes.
const Prefix = "debootstrap:"

// DefaultMirror is Debian's redirector.
const DefaultMirror = "http://deb.debian.org/debian"

// Config configures an Importer.
type Config struct {
	// LayerDir holds the made root filesystems.
	LayerDir string
	// Mirror is the Debian mirror; DefaultMirror when empty.
	Mirror string
	// Binary is the debootstrap program; found in PATH when empty.
	Binary string
	Logger *slog.Logger
}

// Importer makes Debian root filesystems. It implements
// template.ImageImporter for refs that start with Prefix.
type Importer struct {
	cfg Config
	log *slog.Logger
	mu  sync.Mutex // one debootstrap at a time: they share the mirror and disk
}

var _ template.ImageImporter = (*Importer)(nil)

// New returns an Importer.
func New(cfg Config) (*Importer, error) {
	if cfg.LayerDir == "" {
		return nil, errors.New("debootstrap.New: LayerDir is required")
	}
	if cfg.Mirror == "" {
		cfg.Mirror = DefaultMirror
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Importer{cfg: cfg, log: cfg.Logger}, nil
}

var (
	suiteRe = regexp.MustCompile(`^[a-z][a-z0-9-]{1,31}$`)
	pkgRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]{0,127}$`)
)

// Parse splits "debootstrap:SUITE[/PKG,PKG...]" into its suite and
// packages.
func Parse(ref string) (suite string, pkgs []string, err error) {
	rest, ok := strings.CutPrefix(ref, Prefix)
	if !ok {
		return "", nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("%q is not a debootstrap reference", ref))
	}
	suite, list, _ := strings.Cut(rest, "/")
	if !suiteRe.MatchString(suite) {
		return "", nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("invalid Debian suite %q", suite))
	}
	for _, p := range strings.Split(list, ",") {
		if p == "" {
			continue
		}
		if !pkgRe.MatchString(p) {
			return "", nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("invalid package name %q", p))
		}
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	return suite, slices.Compact(pkgs), nil
}

// Import makes (once) the root filesystem ref names and returns a template
// of it: user "user" in /home/user, as E2B's templates start.
func (im *Importer) Import(ctx context.Context, ref string, _ *template.RegistryAuth, log func(template.LogEntry)) (*template.Template, error) {
	suite, pkgs, err := Parse(ref)
	if err != nil {
		return nil, err
	}
	logf := func(format string, a ...any) {
		if log != nil {
			log(template.LogEntry{Time: time.Now(), Level: "info", Message: fmt.Sprintf(format, a...), Step: "base"})
		}
	}
	sum := sha256.Sum256([]byte(strings.Join(append([]string{recipe, baseInclude, suite, im.cfg.Mirror}, pkgs...), "\x00")))
	dir := filepath.Join(im.cfg.LayerDir, "debootstrap-"+suite+"-"+hex.EncodeToString(sum[:8]))
	t := &template.Template{
		ID:          ref,
		Mounts:      []runtime.Mount{{Target: "/", Layers: []string{dir}}},
		Env:         map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		User:        "user",
		Workdir:     "/home/user",
		EnvdVersion: template.DefaultEnvdVersion,
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	if _, err := os.Stat(dir); err == nil {
		logf("debootstrap %s: CACHED", strings.TrimPrefix(ref, Prefix))
		return t, nil
	}
	bin := im.cfg.Binary
	if bin == "" {
		if bin, err = exec.LookPath("debootstrap"); err != nil {
			return nil, errdefs.New(errdefs.ErrNotImplemented, "building from "+ref+" needs debootstrap on the server (apt-get install debootstrap)")
		}
	}
	if err := os.MkdirAll(im.cfg.LayerDir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(im.cfg.LayerDir, ".tmp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	// What E2B's ready checks (waitForPort/URL/Process) and users expect.
	args := []string{"--variant=minbase", "--include=" + baseInclude, suite, tmp, im.cfg.Mirror}
	logf("debootstrap %s (a minute or two)", strings.Join(args, " "))
	start := time.Now()
	if err := runLogged(exec.CommandContext(ctx, bin, args...), logf); err != nil {
		if b, rerr := os.ReadFile(filepath.Join(tmp, "debootstrap", "debootstrap.log")); rerr == nil {
			err = fmt.Errorf("%w; debootstrap.log ends:\n%s", err, lastLines(string(b), 20))
		}
		return nil, fmt.Errorf("debootstrap %s: %w", suite, err)
	}
	if len(pkgs) > 0 {
		// apt in the new root resolves what debootstrap's --include
		// cannot order (npm and friends).
		logf("apt-get install %s", strings.Join(pkgs, " "))
		if err := aptInstall(ctx, tmp, pkgs, logf); err != nil {
			return nil, fmt.Errorf("installing %s into %s: %w", strings.Join(pkgs, " "), suite, err)
		}
	}
	if err := finish(tmp); err != nil {
		return nil, fmt.Errorf("preparing the %s root: %w", suite, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	logf("debootstrap %s: done in %s", suite, time.Since(start).Round(time.Second))
	return t, nil
}

// recipe versions what finish does: bump it when it changes.
const recipe = "v3"

// baseInclude is in every root: ss, curl and pgrep run E2B's ready checks.
const baseInclude = "ca-certificates,sudo,iproute2,curl,procps"

// finish adds E2B's default account (user, uid 1000, passwordless sudo)
// and drops the package caches.
func finish(root string) error {
	appendLine := func(name, line string) error {
		f, err := os.OpenFile(filepath.Join(root, "etc", name), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(f, line)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	for _, l := range [][2]string{
		{"passwd", "user:x:1000:1000::/home/user:/bin/bash"},
		{"group", "user:x:1000:"},
		{"shadow", "user:*:19000:0:99999:7:::"},
	} {
		if err := appendLine(l[0], l[1]); err != nil {
			return err
		}
	}
	sudoers := filepath.Join(root, "etc", "sudoers.d")
	if err := os.MkdirAll(sudoers, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(sudoers, "user"), []byte("user ALL=(ALL:ALL) NOPASSWD: ALL\n"), 0o440); err != nil {
		return err
	}
	home := filepath.Join(root, "home", "user")
	if err := os.MkdirAll(home, 0o750); err != nil {
		return err
	}
	for _, f := range []string{".bashrc", ".profile", ".bash_logout"} {
		if b, err := os.ReadFile(filepath.Join(root, "etc", "skel", f)); err == nil {
			_ = os.WriteFile(filepath.Join(home, f), b, 0o644)
			_ = os.Lchown(filepath.Join(home, f), 1000, 1000)
		}
	}
	if err := os.Lchown(home, 1000, 1000); err != nil {
		return err
	}
	for _, d := range []string{"var/cache/apt/archives", "var/lib/apt/lists"} {
		ents, _ := os.ReadDir(filepath.Join(root, d))
		for _, e := range ents {
			if e.Type().IsRegular() {
				_ = os.Remove(filepath.Join(root, d, e.Name()))
			}
		}
	}
	return nil
}

// runLogged runs cmd, logging its output lines (but not debootstrap's
// per-package download lines); the error carries the output's tail.
func runLogged(cmd *exec.Cmd, logf func(string, ...any)) error {
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var tail []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			l := sc.Text()
			tail = append(tail, l)
			if len(tail) > 30 {
				tail = tail[1:]
			}
			if strings.HasPrefix(l, "I: Retrieving") || strings.HasPrefix(l, "I: Validating") ||
				strings.HasPrefix(l, "Get:") || strings.HasPrefix(l, "(Reading database") {
				continue // one line per package: too chatty
			}
			logf("%s", l)
		}
	}()
	err := cmd.Run()
	pw.Close()
	<-done
	if err != nil {
		return fmt.Errorf("%w; output:\n%s", err, strings.Join(tail, "\n"))
	}
	return nil
}

// aptInstall installs pkgs into root with the root's own apt, chrooted on
// the host (the mirror is reachable from here, not from sandboxes). Only
// Debian's packages run there, as with debootstrap itself; services are
// kept from starting.
func aptInstall(ctx context.Context, root string, pkgs []string, logf func(string, ...any)) error {
	resolv := filepath.Join(root, "etc", "resolv.conf")
	if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		_ = os.Remove(resolv)
		if err := os.WriteFile(resolv, b, 0o644); err != nil {
			return err
		}
		defer os.Remove(resolv)
	}
	policy := filepath.Join(root, "usr", "sbin", "policy-rc.d")
	if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		return err
	}
	defer os.Remove(policy)
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C", "HOME=/root"}
	for _, argv := range [][]string{
		{"apt-get", "update", "-q"},
		append([]string{"apt-get", "install", "-y", "-q", "--no-install-recommends"}, pkgs...),
		{"apt-get", "clean"},
	} {
		cmd := exec.CommandContext(ctx, "/usr/bin/"+argv[0], argv[1:]...)
		cmd.Env = env
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
		if err := runLogged(cmd, logf); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(argv[:2], " "), err)
		}
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
