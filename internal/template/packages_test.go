package template_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/egress"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// TestBuildInstallsPackages runs the steps E2B's Template builder sends for
// aptInstall, pipInstall and npmInstall, for real: apt and npm download
// from Debian's mirror and the npm registry through the build sandbox's
// own network link; pip (PyPI is unreachable here) installs a wheel the
// test makes and COPYs in.
func TestBuildInstallsPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads package indexes from Debian's mirror and a package from npm: skipped with -short")
	}
	for _, u := range []string{"http://deb.debian.org/debian/dists/bookworm/Release", "https://registry.npmjs.org/is-number"} {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Head(u)
		if err != nil {
			t.Skipf("%s is not reachable from this host: %v", u, err)
		}
		resp.Body.Close()
	}
	if err := egress.KernelSupport(); err != nil {
		t.Skipf("sandbox egress needs nf_tables, which the kernel lacks: %v", err)
	}
	eg, err := egress.New(egress.Config{})
	if err != nil {
		t.Fatalf("egress: %v", err)
	}
	e := newBuildEnv(t, func(c *linux.Config) { c.Egress = eg })
	wheel := helloWheel(t)
	files := tarOf(t, map[string][]byte{"sandpit_hello-1.0-py3-none-any.whl": wheel})
	steps := []template.Step{
		// What Template().aptInstall(['figlet']) sends.
		{Type: "RUN", Args: []string{"apt-get update && DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y figlet", "root"}},
		{Type: "COPY", Args: []string{"sandpit_hello-1.0-py3-none-any.whl", "/opt/wheels/", "", ""}, FilesHash: strings.Repeat("a", 64)},
		// pipInstall('/opt/wheels/...whl'), as root like the SDK's default.
		{Type: "RUN", Args: []string{"pip install /opt/wheels/sandpit_hello-1.0-py3-none-any.whl", "root"}},
		// npmInstall(['is-number@7.0.0']) in the user's project.
		{Type: "WORKDIR", Args: []string{"/home/user/app"}},
		{Type: "RUN", Args: []string{"sudo chown user: /home/user/app && npm install --no-audit --no-fund is-number@7.0.0", "user"}},
	}
	var l logs
	start := time.Now()
	res, err := e.builder.Build(t.Context(), template.BuildArgs{
		ID: "pkgs", Parent: e.base, Steps: steps, Log: l.add,
		Files: func(string) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(files)), nil },
	})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, l.String())
	}
	t.Logf("apt + pip + npm build: %s", time.Since(start).Round(time.Millisecond))
	got := e.run(t, res.Template, `figlet -v | head -1 | cut -d' ' -f1-2; python3 -c 'import sandpit_hello; print(sandpit_hello.hello())'; node -e 'console.log(require("is-number")(5))'; dpkg -s figlet | grep Status`)
	want := "FIGlet Copyright\nhello from a local wheel\ntrue\nStatus: install ok installed\n"
	if got != want {
		t.Fatalf("sandbox from the template says\n%q\nwant\n%q", got, want)
	}
}

// helloWheel is a minimal pure-Python wheel.
func helloWheel(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	files := []struct{ name, body string }{
		{"sandpit_hello/__init__.py", "def hello():\n    return 'hello from a local wheel'\n"},
		{"sandpit_hello-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: sandpit-hello\nVersion: 1.0\n"},
		{"sandpit_hello-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: sandpit-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
		{"sandpit_hello-1.0.dist-info/RECORD", "sandpit_hello/__init__.py,,\nsandpit_hello-1.0.dist-info/METADATA,,\nsandpit_hello-1.0.dist-info/WHEEL,,\nsandpit_hello-1.0.dist-info/RECORD,,\n"},
	}
	for _, f := range files {
		w, err := z.Create(f.name)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, f.body)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tarOf(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
