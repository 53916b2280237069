package template

import (
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
