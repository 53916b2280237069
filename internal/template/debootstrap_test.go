package template_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/egress"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
	"github.com/sandpit-dev/sandpit/internal/template"
	"github.com/sandpit-dev/sandpit/internal/template/debootstrap"
)

// TestBuildFromDebootstrap makes a minimal Debian with a package, builds a
// step on it and runs it in a sandbox. It downloads about 40 MB from the
// Debian mirror once per data dir (a minute or two). Only the first stage
// (download and unpack) runs on the host: the second stage, the packages'
// scripts and apt run as build steps, in build sandboxes.
func TestBuildFromDebootstrap(t *testing.T) {
	if testing.Short() {
		t.Skip("debootstrap downloads a Debian base system: skipped with -short")
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		t.Skip("debootstrap is not installed (apt-get install debootstrap)")
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Head(debootstrap.DefaultMirror + "/dists/bookworm/Release")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Skipf("the Debian mirror %s is not reachable: %v", debootstrap.DefaultMirror, err)
	}
	resp.Body.Close()
	eg, err := egress.New(egress.Config{})
	if err != nil {
		t.Skipf("apt in the build sandbox needs egress, which needs nftables NAT in the kernel: %v", err)
	}
	e := newBuildEnv(t, func(c *linux.Config) { c.Egress = eg })
	db, err := debootstrap.New(debootstrap.Config{LayerDir: e.dir + "/templates/layers", Builder: e.builder})
	if err != nil {
		t.Fatal(err)
	}
	st := newRegistryStore(t, e)
	reg, err := template.NewRegistry(t.Context(), template.RegistryConfig{
		Dir: e.dir + "/templates", Store: st, Builder: e.builder, Builtin: []*template.Template{e.base}, Debootstrap: db,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	// Bounded, however slow the mirror: one download of the base system.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	var log strings.Builder
	tpl, err := reg.Build(ctx, template.RequestArgs{Name: "deb"}, template.BuildSpec{
		FromImage: "debootstrap:bookworm/jq",
		Steps:     []template.Step{{Type: "RUN", Args: []string{"echo '{\"a\": 41}' | jq '.a + 1' > ~/answer"}}},
	}, func(e template.LogEntry) { log.WriteString(e.Message + "\n") })
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Logf("debootstrap bookworm + jq and one step: %s", time.Since(start))
	// The host unpacked the packages and installed none of them: the
	// first stage's dpkg status is empty and it still holds the second
	// stage. The second stage, apt and the account are layers of build
	// steps above it.
	firsts, _ := filepath.Glob(e.dir + "/templates/layers/debootstrap-bookworm-*")
	if len(firsts) != 1 {
		t.Fatalf("first stages on disk: %v", firsts)
	}
	if st, err := os.Stat(filepath.Join(firsts[0], "var/lib/dpkg/status")); err != nil || st.Size() != 0 {
		t.Fatalf("the first stage's dpkg status: %v, %v: packages were installed on the host", st, err)
	}
	if _, err := os.Stat(filepath.Join(firsts[0], "debootstrap/debootstrap")); err != nil {
		t.Fatalf("the first stage has no second stage to run: %v", err)
	}
	for _, f := range []string{"etc/resolv.conf", "etc/hostname"} {
		if _, err := os.Lstat(filepath.Join(firsts[0], f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the first stage keeps the host's %s (%v)", f, err)
		}
	}
	layers := tpl.Mounts[0].Layers
	if len(layers) != 5 || layers[len(layers)-1] != firsts[0] {
		t.Fatalf("template layers %v: want the build steps (second stage, apt, account, RUN) over the first stage", layers)
	}
	for _, want := range []string{"--foreign", "RUN (as root) if [ -x /debootstrap/debootstrap ]", "apt-get install -y -q --no-install-recommends jq"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log does not show %q:\n%s", want, log.String())
		}
	}
	got := e.run(t, tpl, "cat ~/answer; id -un; . /etc/os-release; echo $VERSION_CODENAME; sudo -n true && echo sudo-ok")
	if got != "42\nuser\nbookworm\nsudo-ok\n" {
		t.Fatalf("sandbox from debootstrap says %q", got)
	}
	start = time.Now()
	if _, err := reg.Build(ctx, template.RequestArgs{Name: "deb2"}, template.BuildSpec{FromImage: "debootstrap:bookworm/jq"}, nil); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("second debootstrap of the same root took %s: not cached", took)
	}
}
