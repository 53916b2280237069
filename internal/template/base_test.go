package template

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildBase(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("building the base layer keeps host owners, which needs root")
	}
	dir := t.TempDir()
	tpl, err := BuildBase(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	layer := tpl.Mounts[0].Layers[0]
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(layer, p))
		if err != nil {
			t.Fatalf("reading %s: %v", p, err)
		}
		return string(b)
	}
	if !strings.Contains(read("etc/passwd"), "user:x:1000:1000::/home/user:/bin/bash") {
		t.Error("passwd lacks user")
	}
	if strings.Contains(read("etc/shadow"), "$") {
		t.Error("shadow carries a password hash")
	}
	if !strings.Contains(read("etc/sudoers.d/sandpit"), "NOPASSWD") {
		t.Error("user has no passwordless sudo")
	}
	for _, secret := range []string{"etc/gshadow", "etc/machine-id", "etc/ssh/ssh_host_rsa_key"} {
		if _, err := os.Stat(filepath.Join(layer, secret)); err == nil {
			t.Errorf("%s was copied", secret)
		}
	}
	if p := read("etc/profile"); strings.Contains(p, `"$(id -u)"`) {
		t.Error("/etc/profile still forks id in every login shell")
	}
	// dpkg's state comes along, so apt works in a base sandbox.
	if !strings.Contains(read("var/lib/dpkg/status"), "Package: bash") {
		t.Error("dpkg status lacks the host's packages")
	}
	if _, err := os.Stat(filepath.Join(layer, "var/lib/dpkg/lock")); err == nil {
		t.Error("dpkg's lock was copied")
	}
	st, err := os.Stat(filepath.Join(layer, "home/user"))
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := sysStat(st); o.uid != 1000 {
		t.Errorf("home owned by %d", o.uid)
	}
	// A second build reuses the layer.
	again, err := BuildBase(t.Context(), dir)
	if err != nil || again.Mounts[0].Layers[0] != layer {
		t.Fatalf("rebuild: %v, %v", again, err)
	}
}

// TestBaseEtcAllowList builds the base layer from a host /etc the test
// makes: what a userland needs comes along, and nothing else does, least
// of all secrets, whatever their names.
func TestBaseEtcAllowList(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("building the base layer keeps host owners, which needs root")
	}
	host := t.TempDir()
	canary := filepath.Join(host, "canary")
	files := map[string]string{
		"etc/passwd":                      "root:x:0:0:root:/root:/bin/bash\n_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\nalice:x:1001:1001::/home/alice:/bin/bash\n",
		"etc/group":                       "root:x:0:\nsudo:x:27:alice\nalice:x:1001:\n",
		"etc/shadow":                      "root:$6$salt$hash:19000:0:99999:7:::\n",
		"etc/gshadow":                     "root:*::\n",
		"etc/sudoers":                     "alice ALL=(ALL) NOPASSWD: ALL\n",
		"etc/sudoers.d/host":              "alice ALL=(ALL) NOPASSWD: ALL\n",
		"etc/machine-id":                  "0123456789abcdef\n",
		"etc/ssh/ssh_host_ed25519_key":    "PRIVATE\n",
		"etc/ssh/sshd_config":             "PermitRootLogin yes\n",
		"etc/ssh/ssh_config":              "Host *\n",
		"etc/ssl/private/host.key":        "PRIVATE\n",
		"etc/ssl/certs/ca.pem":            "CERT\n",
		"etc/apt/sources.list":            "deb http://deb.debian.org/debian bookworm main\n",
		"etc/apt/auth.conf.d/creds":       "machine x login u password p\n",
		"etc/ld.so.conf":                  "include /etc/ld.so.conf.d/*.conf\n",
		"etc/python3.11/sitecustomize.py": "\n",
		"etc/pip.conf":                    "[global]\nindex-url = https://u:secret@pypi.example/simple\ncert = /etc/ssl/certs/ca.pem\n",
		"etc/npmrc":                       "//registry.example/:_authToken=secret\ncafile=/etc/ssl/certs/ca.pem\n",
		"etc/wireguard/wg0.conf":          "PrivateKey = secret\n",
		"etc/environment":                 "LANG=C.UTF-8\nhttps_proxy=http://u:secret@proxy.example:3128\n",
		"etc/" + randomName(t):            "secret\n",
		"canary":                          "host file\n",
	}
	for p, content := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(host, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(host, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A link in the host's /etc that the build edits: the edit never
	// goes through it.
	if err := os.Symlink(canary, filepath.Join(host, "etc/profile")); err != nil {
		t.Fatal(err)
	}

	tpl, err := buildBase(t.Context(), filepath.Join(t.TempDir(), "templates"), host)
	if err != nil {
		t.Fatal(err)
	}
	layer := tpl.Mounts[0].Layers[0]
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(layer, p))
		if err != nil {
			t.Errorf("reading %s: %v", p, err)
		}
		return string(b)
	}
	for _, p := range []string{"etc/ssh/ssh_config", "etc/ssl/certs/ca.pem", "etc/apt/sources.list", "etc/ld.so.conf", "etc/python3.11/sitecustomize.py"} {
		read(p)
	}
	for p := range files {
		switch p {
		case "etc/ssh/ssh_config", "etc/ssl/certs/ca.pem", "etc/apt/sources.list", "etc/ld.so.conf",
			"etc/python3.11/sitecustomize.py", "etc/passwd", "etc/group", "etc/shadow", "etc/sudoers",
			"etc/pip.conf", "etc/npmrc", "etc/environment":
			continue
		}
		if _, err := os.Lstat(filepath.Join(layer, p)); err == nil {
			t.Errorf("%s is in the base layer", p)
		}
	}
	if got := read("etc/passwd"); !strings.Contains(got, "_apt:x:42:") || strings.Contains(got, "alice") {
		t.Errorf("passwd is not the host's system accounts plus user:\n%s", got)
	}
	if got := read("etc/group"); strings.Contains(got, "alice") {
		t.Errorf("group names a host user:\n%s", got)
	}
	if got := read("etc/shadow"); strings.Contains(got, "$") {
		t.Errorf("shadow carries a hash:\n%s", got)
	}
	if got := read("etc/sudoers"); strings.Contains(got, "alice") || !strings.Contains(got, "@includedir /etc/sudoers.d") {
		t.Errorf("sudoers is the host's:\n%s", got)
	}
	if got := read("etc/pip.conf"); strings.Contains(got, "secret") || !strings.Contains(got, "cert = ") || !strings.Contains(got, "break-system-packages") {
		t.Errorf("pip.conf:\n%s", got)
	}
	if got := read("etc/npmrc"); strings.Contains(got, "secret") || !strings.Contains(got, "cafile=") {
		t.Errorf("npmrc:\n%s", got)
	}
	if got := read("etc/environment"); strings.Contains(got, "secret") || !strings.Contains(got, "LANG=C.UTF-8") {
		t.Errorf("environment:\n%s", got)
	}
	if b, _ := os.ReadFile(canary); string(b) != "host file\n" {
		t.Errorf("the build wrote through a link in the host's /etc: %q", b)
	}
}

func randomName(t *testing.T) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "planted-" + hex.EncodeToString(b[:])
}
