// Package debootstrap makes Debian root filesystems with debootstrap, as
// template layers: `FROM debootstrap:bookworm` (optionally with packages,
// `debootstrap:bookworm/python3,python3-pip`) builds from a minimal Debian
// with E2B's default account, made once per suite, package list and
// mirror and shared by every template that starts from it.
//
// Only debootstrap's first stage runs on the host (`--foreign`): it
// downloads the packages, checks them against the suite's signed Release
// and unpacks them into a directory only root can reach; it runs nothing
// from them. Everything that runs package content (the second stage, with
// every maintainer script, apt for extra packages, the account setup) runs
// as template build steps, in build sandboxes: in a user namespace, like
// any other step, never as host root in a chroot.
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
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/safepath"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// Prefix marks a fromImage that debootstrap makes.
const Prefix = "debootstrap:"

// DefaultMirror is Debian's redirector.
const DefaultMirror = "http://deb.debian.org/debian"

// Config configures an Importer.
type Config struct {
	// LayerDir holds the first stages (the unpacked packages).
	LayerDir string
	// Builder runs the second stage and the rest in build sandboxes;
	// their layers are its.
	Builder *template.Builder
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
	if cfg.LayerDir == "" || cfg.Builder == nil {
		return nil, errors.New("debootstrap.New: LayerDir and Builder are required")
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
	// Every line is the base step's, the build's steps included.
	relog := func(e template.LogEntry) {
		if log != nil {
			e.Step = "base"
			log(e)
		}
	}
	logf := func(format string, a ...any) {
		relog(template.LogEntry{Time: time.Now(), Level: "info", Message: fmt.Sprintf(format, a...)})
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	first, err := im.firstStage(ctx, suite, logf)
	if err != nil {
		return nil, err
	}
	parent := &template.Template{
		ID:     "debootstrap " + suite + " (first stage)",
		Mounts: []runtime.Mount{{Target: "/", Layers: []string{first}}},
		Env:    map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		User:   "root", Workdir: "/",
		EnvdVersion: template.DefaultEnvdVersion,
	}
	steps := []template.Step{{Type: template.StepRun, Args: []string{secondStage, "root"}}}
	if len(pkgs) > 0 {
		// apt in the new root resolves what debootstrap's --include
		// cannot order (npm and friends).
		steps = append(steps, template.Step{Type: template.StepRun, Args: []string{aptScript(pkgs), "root"}})
	}
	steps = append(steps, template.Step{Type: template.StepRun, Args: []string{accountScript, "root"}})
	start := time.Now()
	res, err := im.cfg.Builder.Build(ctx, template.BuildArgs{ID: ref, Parent: parent, Steps: steps, Log: relog})
	if err != nil {
		return nil, fmt.Errorf("making the %s root: %w", suite, err)
	}
	if res.Built > 0 {
		logf("debootstrap %s: done in %s", strings.TrimPrefix(ref, Prefix), time.Since(start).Round(time.Second))
	}
	t := res.Template
	t.ID, t.User, t.Workdir = ref, "user", "/home/user"
	return t, nil
}

// firstStage runs (once per suite and mirror) debootstrap --foreign: it
// downloads and unpacks the packages into a root-only directory and runs
// none of them. It returns that directory.
func (im *Importer) firstStage(ctx context.Context, suite string, logf func(string, ...any)) (string, error) {
	sum := sha256.Sum256([]byte(strings.Join([]string{recipe, baseInclude, suite, im.cfg.Mirror}, "\x00")))
	dir := filepath.Join(im.cfg.LayerDir, "debootstrap-"+suite+"-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(dir); err == nil {
		logf("debootstrap %s: first stage CACHED", suite)
		return dir, nil
	}
	bin := im.cfg.Binary
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("debootstrap"); err != nil {
			return "", errdefs.New(errdefs.ErrNotImplemented, "building from debootstrap:"+suite+" needs debootstrap on the server (apt-get install debootstrap)")
		}
	}
	if err := os.MkdirAll(im.cfg.LayerDir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(im.cfg.LayerDir, ".tmp-") // 0700: root's alone while it is made
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	// What E2B's ready checks (waitForPort/URL/Process) and users expect.
	args := []string{"--foreign", "--variant=minbase", "--include=" + baseInclude, suite, tmp, im.cfg.Mirror}
	logf("debootstrap %s (a minute or two)", strings.Join(args, " "))
	if err := runLogged(exec.CommandContext(ctx, bin, args...), logf); err != nil {
		if b, rerr := os.ReadFile(filepath.Join(tmp, "debootstrap", "debootstrap.log")); rerr == nil {
			err = fmt.Errorf("%w; debootstrap.log ends:\n%s", err, lastLines(string(b), 20))
		}
		return "", fmt.Errorf("debootstrap %s: %w", suite, err)
	}
	if err := prepareRoot(tmp); err != nil {
		return "", fmt.Errorf("debootstrap %s: %w", suite, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// recipe versions what Import does: bump it when it changes.
const recipe = "v4"

// baseInclude is in every root: ss, curl and pgrep run E2B's ready checks.
const baseInclude = "ca-certificates,sudo,iproute2,curl,procps"

// prepareRoot readies the unpacked root for a build sandbox: /proc a
// directory to mount on (debootstrap links it to the host's /proc when it
// thinks it runs in Docker), no copy of the host's resolv.conf and
// hostname, and the /etc/passwd and /etc/group
// base-passwd would make (from its masters, unpacked with it), so the
// sandbox's agent can run the second stage as root. The root is opened in
// place (safepath): a path in it never leads out.
func prepareRoot(dir string) error {
	root, err := safepath.Open(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	if fi, err := root.Lstat("/proc"); err == nil && !fi.IsDir() {
		if err := root.RemoveAll("/proc"); err != nil {
			return fmt.Errorf("replacing the /proc link: %w", err)
		}
	}
	if _, err := root.MkdirAll("/proc", safepath.Owner{}); err != nil {
		return fmt.Errorf("making /proc: %w", err)
	}
	// debootstrap copies the host's own: a sandbox's init writes its own.
	for _, p := range []string{"/etc/resolv.conf", "/etc/hostname"} {
		if err := root.RemoveAll(p); err != nil {
			return fmt.Errorf("removing the host's %s: %w", p, err)
		}
	}
	for _, f := range [][2]string{{"/usr/share/base-passwd/passwd.master", "/etc/passwd"}, {"/usr/share/base-passwd/group.master", "/etc/group"}} {
		if _, err := root.Lstat(f[1]); err == nil {
			continue
		}
		src, _, err := root.OpenRegular(f[0])
		if err != nil {
			return fmt.Errorf("seeding %s: %w", f[1], err)
		}
		dst, err := root.Create(f[1], safepath.Owner{})
		if err == nil {
			if _, err = io.Copy(dst, src); err == nil {
				err = dst.Commit()
			}
			dst.Abort()
		}
		src.Close()
		if err != nil {
			return fmt.Errorf("seeding %s: %w", f[1], err)
		}
	}
	return nil
}

// secondStage installs the unpacked packages, running their scripts.
// container=lxc tells debootstrap it runs in a container, where device
// nodes cannot be made (its sanity check makes one).
const secondStage = `if [ -x /debootstrap/debootstrap ]; then
  container=lxc /debootstrap/debootstrap --second-stage || { tail -n 30 /debootstrap/debootstrap.log >&2; exit 1; }
fi`

// aptScript installs pkgs with the root's own apt; services are kept
// from starting.
func aptScript(pkgs []string) string {
	return `set -e
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
apt-get update -q
apt-get install -y -q --no-install-recommends ` + strings.Join(pkgs, " ") + `
apt-get clean
rm -f /usr/sbin/policy-rc.d`
}

// accountScript adds E2B's default account (user, uid 1000, passwordless
// sudo) and drops the package caches.
const accountScript = `set -e
if ! grep -q '^user:' /etc/passwd; then
  echo 'user:x:1000:1000::/home/user:/bin/bash' >> /etc/passwd
  echo 'user:x:1000:' >> /etc/group
  echo 'user:*:19000:0:99999:7:::' >> /etc/shadow
fi
mkdir -p /etc/sudoers.d /home/user
echo 'user ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/user
chmod 440 /etc/sudoers.d/user
for f in .bashrc .profile .bash_logout; do [ -e /etc/skel/$f ] && cp /etc/skel/$f /home/user/; done
chown -R 1000:1000 /home/user
chmod 750 /home/user
find /var/cache/apt/archives /var/lib/apt/lists -maxdepth 1 -type f -delete`

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

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
