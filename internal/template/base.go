package template

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sandpit-dev/sandpit/internal/runtime"
)

// BaseID is the id of the template made from the host's own userland.
const BaseID = "base"

// baseRecipe versions the way the base layer is made; bump it when
// BuildBase changes what it writes, so old layers are not reused.
const baseRecipe = "base-host-v4"

// etcAllow names what of the host's /etc a base sandbox gets: what a
// Debian userland needs to run programs, install packages and log in, and
// nothing else. Anything not named here (credentials someone put in the
// host's /etc, VPN keys, daemons' config) stays on the host. A name is a
// path relative to /etc or a pattern (path.Match) for a top-level entry; a
// directory named comes with what is under it, less etcDeny.
var etcAllow = []string{
	// Dynamic linker, name service, networking databases.
	"ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "host.conf", "gai.conf",
	"networks", "protocols", "services", "rpc", "ethertypes", "bindresvport.blacklist", "mtab",
	// TLS: the CA bundle and OpenSSL's config, never ssl/private.
	"ca-certificates", "ca-certificates.conf", "ssl/certs", "ssl/openssl.cnf",
	// Packages: apt's sources, keys and config, dpkg's config, the
	// alternatives /usr/bin links through, debconf, ucf, and the init
	// scripts' dirs package scripts update.
	"apt", "dpkg", "alternatives", "debconf.conf", "ucf.conf", "init.d", "rc?.d",
	// Identity of the distribution.
	"debian_version", "os-release", "lsb-release", "issue", "issue.net",
	// Accounts' tools and login: PAM (sudo needs it) and limits.
	"adduser.conf", "deluser.conf", "login.defs", "shells", "default/useradd", "default/locale",
	"default/nss", "pam.conf", "pam.d", "security", "sudo.conf", "skel",
	// Shells and terminals.
	"profile", "profile.d", "bash.bashrc", "bash_completion.d", "environment", "inputrc",
	"terminfo", "vim", "nanorc",
	// Locale and time.
	"locale.alias", "locale.gen", "locale.conf", "localtime", "timezone",
	// Runtimes' own config that their files in /usr link to or read.
	"python3", "python3.*", "java-*", "R", "perl", "matplotlibrc", "fonts", "xml", "sgml",
	"manpath.config", "mime.types", "mailcap", "magic", "magic.mime", "wgetrc", "iproute2",
	// ssh's client config, never its host keys.
	"ssh/ssh_config", "ssh/ssh_config.d",
	// Package managers' config: copied without credential lines (as is
	// environment), see etcScrubbed.
	"pip.conf", "npmrc",
}

// etcDeny are paths under allowed directories that never leave the host.
var etcDeny = []string{"apt/auth.conf.d", "apt/auth.conf", "security/opasswd"}

// etcScrubbed are config files copied without the lines that may carry
// credentials (an index URL with a password, an npm auth token, a proxy
// URL with a user in /etc/environment).
var etcScrubbed = map[string]bool{"pip.conf": true, "npmrc": true, "environment": true}

// The sandbox's default user, as in E2B.
const (
	defaultUser = "user"
	userUID     = 1000
)

// BuildBase makes (once) the base template's root layer under dir from the
// host's userland: top-level directories, the allowed part of /etc (see
// etcAllow) with root and user accounts, and user's home. The host's /usr
// (and any top-level system directory that is not a symlink into it) is
// layered in read-only at start, never copied. Building again with a layer
// present is a no-op.
func BuildBase(ctx context.Context, dir string) (*Template, error) {
	return buildBase(ctx, dir, "/")
}

// buildBase is BuildBase with the host's root directory (where etc and
// var/lib/{dpkg,apt} are read) given, so tests can plant files in it.
func buildBase(ctx context.Context, dir, host string) (*Template, error) {
	// Template layers hold set-uid binaries: no host user may reach them.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating template dir: %w", err)
	}
	layer := filepath.Join(dir, baseRecipe)
	if _, err := os.Stat(layer); errors.Is(err, os.ErrNotExist) {
		tmp, err := os.MkdirTemp(dir, ".build-")
		if err != nil {
			return nil, fmt.Errorf("building base layer: %w", err)
		}
		defer os.RemoveAll(tmp)
		if err := writeBaseLayer(ctx, tmp, host); err != nil {
			return nil, fmt.Errorf("building base layer: %w", err)
		}
		if err := os.Chmod(tmp, 0o755); err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, layer); err != nil {
			return nil, fmt.Errorf("publishing base layer: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("checking base layer: %w", err)
	}

	mounts := []runtime.Mount{{Target: "/", Layers: []string{layer}}, {Target: "/usr", Layers: []string{"/usr"}}}
	for _, d := range hostSystemDirs() {
		mounts = append(mounts, runtime.Mount{Target: "/" + d, Layers: []string{"/" + d}})
	}
	return &Template{
		ID:          BaseID,
		Mounts:      mounts,
		User:        defaultUser,
		Workdir:     "/home/user",
		CPUCount:    2,
		MemoryMB:    512,
		EnvdVersion: DefaultEnvdVersion,
	}, nil
}

// systemDirs may hold programs and libraries. On merged-/usr hosts they are
// symlinks into /usr and the layer mirrors the links; where one is a real
// directory it is layered in like /usr.
var systemDirs = []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"}

func hostSystemDirs() []string {
	var out []string
	for _, d := range systemDirs {
		fi, err := os.Lstat("/" + d)
		if err == nil && fi.IsDir() {
			out = append(out, d)
		}
	}
	return out
}

func writeBaseLayer(ctx context.Context, root, host string) error {
	dirs := []struct {
		path string
		mode fs.FileMode
	}{
		{"usr", 0o755}, {"etc", 0o755}, {"home", 0o755}, {"root", 0o700}, {"tmp", 0o1777},
		{"proc", 0o555}, {"sys", 0o555}, {"dev", 0o755}, {"run", 0o755}, {"opt", 0o755},
		{"mnt", 0o755}, {"srv", 0o755}, {"media", 0o755}, {"var", 0o755}, {"var/tmp", 0o1777},
		{"var/log", 0o755}, {"var/cache", 0o755}, {"var/lib", 0o755}, {"var/spool", 0o755},
		{"var/local", 0o755}, {"var/mail", 0o2775}, {".sandpit", 0o755},
	}
	for _, d := range dirs {
		p := filepath.Join(root, d.path)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(p, d.mode); err != nil {
			return err
		}
	}
	if err := os.Symlink("../run", filepath.Join(root, "var/run")); err != nil {
		return err
	}
	for _, d := range systemDirs {
		target, err := os.Readlink("/" + d)
		if err != nil {
			if fi, err := os.Lstat("/" + d); err == nil && fi.IsDir() {
				if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
					return err
				}
			}
			continue
		}
		if err := os.Symlink(target, filepath.Join(root, d)); err != nil {
			return err
		}
	}
	hostEtc := filepath.Join(host, "etc")
	if err := copyTree(ctx, hostEtc, filepath.Join(root, "etc"), etcSkipped); err != nil {
		return err
	}
	// The package manager's state describes the host's /usr, which the
	// sandbox sees: with it, apt-get works in a base sandbox.
	for _, d := range []string{"var/lib/dpkg", "var/lib/apt"} {
		if err := copyTree(ctx, filepath.Join(host, d), filepath.Join(root, d), aptSkipped); err != nil {
			return err
		}
	}
	etc := filepath.Join(root, "etc")
	if err := writeAccounts(hostEtc, etc); err != nil {
		return err
	}
	for name := range etcScrubbed {
		if err := rewriteFile(filepath.Join(etc, name), false, scrubCredentials); err != nil {
			return err
		}
	}
	if err := rewriteFile(filepath.Join(etc, "pip.conf"), true, allowSystemPip); err != nil {
		return err
	}
	if err := rewriteFile(filepath.Join(etc, "profile"), false, speedUpProfile); err != nil {
		return err
	}
	return makeHome(filepath.Join(root, "home", defaultUser), filepath.Join(root, "etc", "skel"))
}

// etcSkipped says whether an entry of the host's /etc stays out of the
// layer: everything not in etcAllow (directories on the way to an allowed
// path are made, holding only that path), everything in etcDeny, and ssh
// host keys wherever they are.
func etcSkipped(rel string, dir bool) bool {
	rel = filepath.ToSlash(rel)
	if strings.HasPrefix(path.Base(rel), "ssh_host_") {
		return true
	}
	for _, d := range etcDeny {
		if rel == d || strings.HasPrefix(rel, d+"/") {
			return true
		}
	}
	parts := strings.Split(rel, "/")
	for _, a := range etcAllow {
		want := strings.Split(a, "/")
		n := min(len(want), len(parts))
		if !componentsMatch(want[:n], parts[:n]) {
			continue
		}
		if len(parts) >= len(want) || dir {
			return false
		}
	}
	return true
}

func componentsMatch(patterns, names []string) bool {
	for i, p := range patterns {
		if ok, _ := path.Match(p, names[i]); !ok {
			return false
		}
	}
	return true
}

// aptSkipped leaves out locks and half-done downloads.
func aptSkipped(rel string, _ bool) bool {
	switch filepath.Base(rel) {
	case "lock", "lock-frontend", "partial":
		return true
	}
	return false
}

// copyTree copies a host directory tree, keeping modes, owners and
// symlinks, without the entries skip names (by path relative to src). A
// missing src copies nothing.
func copyTree(ctx context.Context, src, dst string, skip func(rel string, dir bool) bool) error {
	if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." {
			return os.MkdirAll(dst, 0o755)
		}
		if skip(rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		out := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return nil
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(out, info.Mode().Perm()); err != nil {
				return err
			}
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, out)
		case info.Mode().IsRegular():
			if err := copyFile(p, out, info.Mode()); err != nil {
				return err
			}
		default:
			return nil // sockets, fifos, devices
		}
		if st, ok := sysStat(info); ok {
			if err := os.Lchown(out, st.uid, st.gid); err != nil {
				return err
			}
		}
		return os.Chmod(out, info.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return nil // unreadable host files are left out
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// writeAccounts writes passwd, group and shadow with the system accounts
// of the host's /etc (hostEtc; uids below 1000, and nobody), root and
// user, and a sudoers of its own (never the host's) that gives user
// passwordless sudo as E2B does. sudo only ever reaches the sandbox's own
// root, which its user namespace confines.
func writeAccounts(hostEtc, etc string) error {
	passwd := []string{}
	for _, l := range readLines(filepath.Join(hostEtc, "passwd")) {
		f := strings.Split(l, ":")
		if len(f) < 7 {
			continue
		}
		uid, err := strconv.Atoi(f[2])
		if err != nil || (uid >= 1000 && uid != 65534) {
			continue
		}
		passwd = append(passwd, l)
	}
	passwd = append(passwd, fmt.Sprintf("%s:x:%d:%d::/home/%s:/bin/bash", defaultUser, userUID, userUID, defaultUser))

	group := []string{}
	for _, l := range readLines(filepath.Join(hostEtc, "group")) {
		f := strings.Split(l, ":")
		if len(f) < 4 {
			continue
		}
		gid, err := strconv.Atoi(f[2])
		if err != nil || (gid >= 1000 && gid != 65534) {
			continue
		}
		if f[0] == "sudo" {
			f[3] = defaultUser
			l = strings.Join(f, ":")
		}
		group = append(group, l)
	}
	group = append(group, fmt.Sprintf("%s:x:%d:", defaultUser, userUID))

	shadow := []string{}
	for _, l := range passwd {
		name := strings.SplitN(l, ":", 2)[0]
		shadow = append(shadow, name+":*:19000:0:99999:7:::")
	}
	files := []struct {
		name    string
		content string
		mode    fs.FileMode
	}{
		{"passwd", strings.Join(passwd, "\n") + "\n", 0o644},
		{"group", strings.Join(group, "\n") + "\n", 0o644},
		{"shadow", strings.Join(shadow, "\n") + "\n", 0o640},
		{"hostname", "sandbox\n", 0o644},
		{"hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", 0o644},
		{"sudoers", sudoers, 0o440},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(etc, f.name), []byte(f.content), f.mode); err != nil {
			return err
		}
	}
	sudoers := filepath.Join(etc, "sudoers.d")
	if err := os.MkdirAll(sudoers, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(sudoers, "sandpit"),
		[]byte(defaultUser+" ALL=(ALL:ALL) NOPASSWD: ALL\nDefaults !requiretty\n"), 0o440)
}

// sudoers is Debian's default, written here rather than copied: the
// host's may name host users, hosts and commands.
const sudoers = `Defaults	env_reset
Defaults	mail_badpass
Defaults	secure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
Defaults	use_pty
root	ALL=(ALL:ALL) ALL
%sudo	ALL=(ALL:ALL) ALL
@includedir /etc/sudoers.d
`

// rewriteFile replaces the layer's file at path with edit of its content;
// a missing file is made (from "") only when create is set. The new file
// is a regular file of the same mode, never a write through a link the
// host's /etc had there.
func rewriteFile(path string, create bool, edit func(string) string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) && !create {
		return nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	mode := fs.FileMode(0o644)
	var old []byte
	switch {
	case fi != nil && fi.Mode().IsRegular():
		mode = fi.Mode().Perm()
		if old, err = os.ReadFile(path); err != nil {
			return err
		}
	case fi != nil && fi.Mode()&fs.ModeSymlink != 0:
		// The host's own link, read as the host sees it (a relative
		// one resolves in the layer, where /usr is empty: then "").
		old, _ = os.ReadFile(path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(edit(string(old))); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// scrubCredentials drops the lines of a package manager's config that may
// carry a secret: passwords or tokens, or URLs with a user in them.
func scrubCredentials(conf string) string {
	var out []string
	for _, l := range strings.SplitAfter(conf, "\n") {
		low := strings.ToLower(l)
		if strings.Contains(low, "auth") || strings.Contains(low, "password") ||
			strings.Contains(low, "token") || strings.Contains(low, "://") && strings.Contains(low, "@") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "")
}

// allowSystemPip allows system-wide installs in pip.conf: the sandbox's
// Python is the sandbox's own, so `pip install` works as on E2B, without
// --break-system-packages.
func allowSystemPip(conf string) string {
	const allow = "break-system-packages = true\n"
	if i := strings.Index(conf, "[global]\n"); i >= 0 {
		at := i + len("[global]\n")
		return conf[:at] + allow + conf[at:]
	}
	if conf != "" && !strings.HasSuffix(conf, "\n") {
		conf += "\n"
	}
	return conf + "[global]\n" + allow
}

// speedUpProfile lets login shells skip a fork: Debian's /etc/profile tests
// "$(id -u)", and the SDKs run every command in a login shell (bash -l -c),
// so that fork and exec are a large share of a command's round trip. bash
// knows its EUID; other shells still run id.
func speedUpProfile(profile string) string {
	return strings.ReplaceAll(profile, `"$(id -u)"`, `"${EUID:-$(id -u)}"`)
}

func readLines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// makeHome creates user's home from the skeleton, owned by user.
func makeHome(home, skel string) error {
	if err := os.MkdirAll(home, 0o750); err != nil {
		return err
	}
	if err := os.Chmod(home, 0o750); err != nil {
		return err
	}
	ents, _ := os.ReadDir(skel)
	for _, e := range ents {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		if err := copyFile(filepath.Join(skel, e.Name()), filepath.Join(home, e.Name()), info.Mode()); err != nil {
			return err
		}
		if err := os.Chown(filepath.Join(home, e.Name()), userUID, userUID); err != nil {
			return err
		}
	}
	return os.Chown(home, userUID, userUID)
}
