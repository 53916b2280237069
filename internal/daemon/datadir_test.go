package daemon_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
	"github.com/sandpit-dev/sandpit/sdk/sandpittest"
)

// TestDataDirIsRootsAlone starts a real daemon on a data dir laid out as
// an earlier version left it (0711, world-readable database, 0755 template
// store) and checks that afterwards a host user can neither list the data
// dir, nor read the database, nor run a set-uid-root binary from a
// template layer, while sandboxes, whose layers reach them as idmapped
// mounts, still work (sudo included).
func TestDataDirIsRootsAlone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs sandpit serve and tries files as another host user: needs root")
	}
	dataDir, err := os.MkdirTemp("", "sandpit-datadir-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	for _, d := range []string{"templates", "sandboxes", "builds"} {
		if err := os.MkdirAll(filepath.Join(dataDir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dataDir, "sandpit.db"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dataDir, 0o711); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	srv, err := sandpittest.Start(ctx, sandpittest.Options{Args: []string{"--data-dir", dataDir}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	// A set-uid-root binary inside a template layer, as a build step that
	// installs one (sudo, ping, su) leaves it. (A layer of its own: the
	// base layer is under the warm pool's overlays.)
	suid := filepath.Join(dataDir, "templates", "layers", "suid-test", "usr", "bin", "suid-id")
	copyFile(t, "/usr/bin/id", suid)
	if err := os.Chmod(suid, os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{
		dataDir:                                  0o700,
		filepath.Join(dataDir, "templates"):      0o700,
		filepath.Join(dataDir, "sandboxes"):      0o700,
		filepath.Join(dataDir, "builds"):         0o700,
		filepath.Join(dataDir, "sandpit.db"):     0o600,
		filepath.Join(dataDir, "sandpit.db-wal"): 0o600,
	} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}

	if out, err := asNobody("ls", dataDir).CombinedOutput(); err == nil {
		t.Errorf("nobody listed the data dir:\n%s", out)
	}
	if out, err := asNobody("cat", filepath.Join(dataDir, "sandpit.db")).CombinedOutput(); err == nil {
		t.Errorf("nobody read the database (%d bytes)", len(out))
	}
	if fi, err := os.Stat(suid); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Fatalf("the planted binary is not set-uid: %v %v", fi.Mode(), err)
	}
	if out, err := asNobody(suid, "-u").CombinedOutput(); err == nil {
		t.Errorf("nobody ran a set-uid binary from a template layer: euid %s", out)
	}

	client, err := sandpit.NewClient(sandpit.WithURL(srv.URL), sandpit.WithAPIKey(srv.APIKey))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := client.Create(ctx)
	if err != nil {
		t.Fatalf("creating a sandbox on a private data dir: %v\n%s", err, srv.Log())
	}
	defer sb.Close()
	res, err := sb.Commands.Run(ctx, "id -un && sudo id -u")
	if err != nil {
		t.Fatalf("running a command: %v", err)
	}
	// The layers' set-uid binaries still work inside: sudo reaches the
	// sandbox's own root.
	if got := strings.Fields(res.Stdout); len(got) != 2 || got[0] != "user" || got[1] != "0" {
		t.Errorf("in the sandbox: %q, want user, 0", res.Stdout)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// asNobody runs a command as the unprivileged host user nobody.
func asNobody(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd
}

// TestBaseHidesHostEtc plants a file and a directory with random names in
// the host's real /etc before a daemon builds its base template: neither
// is in a sandbox, while what a userland needs still works there.
func TestBaseHidesHostEtc(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("writes to the host's /etc and runs sandpit serve: needs root")
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := "sandpit-planted-" + hex.EncodeToString(b[:])
	file, dir := filepath.Join("/etc", name), filepath.Join("/etc", name+".d")
	t.Cleanup(func() { os.Remove(file); os.RemoveAll(dir) })
	if err := os.WriteFile(file, []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key"), []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	srv, err := sandpittest.Start(ctx, sandpittest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	client, err := sandpit.NewClient(sandpit.WithURL(srv.URL), sandpit.WithAPIKey(srv.APIKey))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := client.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	res, err := sb.Commands.Run(ctx, "ls -a /etc")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(res.Stdout, name) {
		t.Errorf("the file planted in the host's /etc is in the sandbox:\n%s", res.Stdout)
	}
	for _, secret := range []string{"machine-id", "gshadow", "subuid"} {
		if slices.Contains(strings.Fields(res.Stdout), secret) {
			t.Errorf("/etc/%s is in the sandbox", secret)
		}
	}
	// What a userland needs is there.
	res, err = sb.Commands.Run(ctx, "python3 -c 'import ssl, json; print(json.dumps(1))' && sudo -n id -u && "+
		"apt-get -s install hello >/dev/null && echo apt && pip3 --version >/dev/null && echo pip && "+
		"test -s /etc/ssl/certs/ca-certificates.crt && echo ca")
	if err != nil {
		t.Fatalf("a userland tool fails in the sandbox: %v", err)
	}
	if got := strings.Fields(res.Stdout); !slices.Equal(got, []string{"1", "0", "apt", "pip", "ca"}) {
		t.Errorf("userland checks: %q (stderr %q)", res.Stdout, res.Stderr)
	}
}
