package template

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sandpit-dev/sandpit/internal/runtime"
)

// BaseID is the id of the template made from the host's own userland.
const BaseID = "base"

// baseRecipe versions the way the base layer is made; bump it when
// BuildBase changes what it writes, so old layers are not reused.
const baseRecipe = "base-host-v3"

// etcSkip are host /etc entries a sandbox must not see: secrets, host
// identity, and files sandpit writes itself.
var etcSkip = map[string]bool{
	"shadow": true, "shadow-": true, "gshadow": true, "gshadow-": true,
	"passwd": true, "passwd-": true, "group": true, "group-": true,
	"subuid": true, "subgid": true, "subuid-": true, "subgid-": true,
	"machine-id": true, "hostname": true, "hosts": true, "fstab": true,
	"sudoers.d": true, "ssh": true, "ssl/private": true, "security/opasswd": true,
	"docker": true, "containerd": true, "kubernetes": true,
}

// The sandbox's default user, as in E2B.
const (
	defaultUser = "user"
	userUID     = 1000
)

// BuildBase makes (once) the base template's root layer under dir from the
// host's userland: top-level directories, a sanitized copy of /etc with
// root and user accounts, and user's home. The host's /usr (and any
// top-level system directory that is not a symlink into it) is layered in
// read-only at start, never copied. Building again with a layer present is
// a no-op.
func BuildBase(ctx context.Context, dir string) (*Template, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating template dir: %w", err)
	}
	layer := filepath.Join(dir, baseRecipe)
	if _, err := os.Stat(layer); errors.Is(err, os.ErrNotExist) {
		tmp, err := os.MkdirTemp(dir, ".build-")
		if err != nil {
			return nil, fmt.Errorf("building base layer: %w", err)
		}
		defer os.RemoveAll(tmp)
		if err := writeBaseLayer(ctx, tmp); err != nil {
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

func writeBaseLayer(ctx context.Context, root string) error {
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
	if err := copyTree(ctx, "/etc", filepath.Join(root, "etc"), etcSkipped); err != nil {
		return err
	}
	// The package manager's state describes the host's /usr, which the
	// sandbox sees: with it, apt-get works in a base sandbox.
	for _, d := range []string{"var/lib/dpkg", "var/lib/apt"} {
		if err := copyTree(ctx, "/"+d, filepath.Join(root, d), aptSkipped); err != nil {
			return err
		}
	}
	if err := writeAccounts(filepath.Join(root, "etc")); err != nil {
		return err
	}
	if err := speedUpProfile(filepath.Join(root, "etc", "profile")); err != nil {
		return err
	}
	return makeHome(filepath.Join(root, "home", defaultUser), filepath.Join(root, "etc", "skel"))
}

func etcSkipped(rel string) bool {
	return etcSkip[rel] || strings.HasPrefix(filepath.Base(rel), "ssh_host_")
}

// aptSkipped leaves out locks and half-done downloads.
func aptSkipped(rel string) bool {
	switch filepath.Base(rel) {
	case "lock", "lock-frontend", "partial":
		return true
	}
	return false
}

// copyTree copies a host directory tree, keeping modes, owners and
// symlinks, without the entries skip names (by path relative to src). A
// missing src copies nothing.
func copyTree(ctx context.Context, src, dst string, skip func(rel string) bool) error {
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
		if skip(rel) {
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

// writeAccounts writes passwd, group and shadow with the host's system
// accounts (uids below 1000, and nobody), root and user, and gives user
// passwordless sudo as E2B does. sudo only ever reaches the sandbox's own
// root, which its user namespace confines.
func writeAccounts(etc string) error {
	passwd := []string{}
	for _, l := range readLines("/etc/passwd") {
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
	for _, l := range readLines("/etc/group") {
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
		{"pip.conf", pipConf(filepath.Join(etc, "pip.conf")), 0o644},
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

// pipConf is the host's pip.conf (copied already) with system-wide
// installs allowed: the sandbox's Python is the sandbox's own, so `pip
// install` works as on E2B, without --break-system-packages.
func pipConf(path string) string {
	const allow = "break-system-packages = true\n"
	b, _ := os.ReadFile(path)
	conf := string(b)
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
func speedUpProfile(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	out := strings.ReplaceAll(string(b), `"$(id -u)"`, `"${EUID:-$(id -u)}"`)
	return os.WriteFile(path, []byte(out), 0o644)
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
