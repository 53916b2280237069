package template_test

import (
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/template"
	"github.com/sandpit-dev/sandpit/internal/template/debootstrap"
)

// TestBuildFromDebootstrap makes a minimal Debian with a package, builds a
// step on it and runs it in a sandbox. It downloads about 40 MB from the
// Debian mirror once per data dir (a minute or two).
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
	e := newBuildEnv(t)
	db, err := debootstrap.New(debootstrap.Config{LayerDir: e.dir + "/templates/layers"})
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
	start := time.Now()
	var log strings.Builder
	tpl, err := reg.Build(t.Context(), template.RequestArgs{Name: "deb"}, template.BuildSpec{
		FromImage: "debootstrap:bookworm/jq",
		Steps:     []template.Step{{Type: "RUN", Args: []string{"echo '{\"a\": 41}' | jq '.a + 1' > ~/answer"}}},
	}, func(e template.LogEntry) { log.WriteString(e.Message + "\n") })
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Logf("debootstrap bookworm + jq and one step: %s", time.Since(start))
	got := e.run(t, tpl, "cat ~/answer; id -un; . /etc/os-release; echo $VERSION_CODENAME; sudo -n true && echo sudo-ok")
	if got != "42\nuser\nbookworm\nsudo-ok\n" {
		t.Fatalf("sandbox from debootstrap says %q", got)
	}
	start = time.Now()
	if _, err := reg.Build(t.Context(), template.RequestArgs{Name: "deb2"}, template.BuildSpec{FromImage: "debootstrap:bookworm/jq"}, nil); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("second debootstrap of the same root took %s: not cached", took)
	}
}
