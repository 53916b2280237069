package template_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
	"github.com/sandpit-dev/sandpit/internal/template"
	"github.com/sandpit-dev/sandpit/internal/template/artifact"
)

// sharing is a template.Remote over an artifact.Store, as a cluster's
// node has one, with the cluster's record of digests in a map.
type sharing struct {
	store   *artifact.Store
	reg     *template.Registry
	digests *sync.Map // template name or ID -> manifest digest
	builds  *sync.Map // template name or ID -> its last build's ID
	pulls   []artifact.PullStats
}

func (s *sharing) Publish(ctx context.Context, sh *template.Shared, log func(template.LogEntry)) error {
	d, err := s.store.Push(ctx, sh, log)
	if err != nil {
		return err
	}
	for _, n := range append([]string{sh.TemplateID}, sh.Names...) {
		s.digests.Store(n, d)
		s.builds.Store(n, sh.BuildID)
	}
	return nil
}

func (s *sharing) Fetch(ctx context.Context, team, ref string) error {
	name, _, _ := strings.Cut(ref, ":")
	d, ok := s.digests.Load(name)
	if !ok {
		return errdefs.ErrNotFound
	}
	sh, st, err := s.store.Pull(ctx, d.(string))
	if err != nil {
		return err
	}
	s.pulls = append(s.pulls, st)
	return s.reg.Import(ctx, sh, team)
}

func (s *sharing) Latest(ref string) (string, bool) {
	name, _, _ := strings.Cut(ref, ":")
	b, ok := s.builds.Load(name)
	if !ok {
		return "", false
	}
	return b.(string), true
}

// testRegistry serves go-containerregistry's registry on loopback; tamper,
// when set, rewrites the blobs it serves.
func testRegistry(t *testing.T, tamper *func(path string, body []byte) []byte) string {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tamper == nil || *tamper == nil || r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
			reg.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write((*tamper)(r.URL.Path, rec.Body.Bytes()))
	}))
	t.Cleanup(srv.Close)
	return "http://" + strings.TrimPrefix(srv.URL, "http://") + "/sandpit/templates"
}

func newSharing(t *testing.T, repo string, r *template.Registry, digests, builds *sync.Map) *sharing {
	t.Helper()
	st, err := artifact.New(artifact.Config{Repository: repo, LayerDir: r.LayerDir()})
	if err != nil {
		t.Fatal(err)
	}
	s := &sharing{store: st, reg: r, digests: digests, builds: builds}
	r.SetRemote(s)
	return s
}

// A template built on one node starts on another: pulled by digest, its
// layers verified and unpacked (whiteouts and all) into the second node's
// layer dir, its metadata imported; a template on top of it fetches only
// its own layer; a blob the registry alters is refused.
func TestShareTemplateBetweenNodes(t *testing.T) {
	var tamper func(string, []byte) []byte
	repo := testRegistry(t, &tamper)
	digests, builds := &sync.Map{}, &sync.Map{}

	a := newBuildEnv(t)
	ra := newRegistry(t, a)
	newSharing(t, repo, ra, digests, builds)
	b := newBuildEnv(t, func(c *linux.Config) { c.UIDBase = 1<<20 + 3200*65536 })
	rb := newRegistry(t, b)
	sb := newSharing(t, repo, rb, digests, builds)
	ctx := t.Context()

	var log logs
	built, err := ra.Build(ctx, template.RequestArgs{Team: "t1", Name: "shared:v1"}, template.BuildSpec{
		Steps: []template.Step{
			{Type: "RUN", Args: []string{"echo from-run > /etc/from-run && mkdir -p /opt/d && echo x > /opt/d/x && ln /opt/d/x /opt/d/hard && rm -f /etc/debian_version && rm -rf /etc/apt && mkdir /etc/apt && echo new > /etc/apt/only", "root"}},
			{Type: "ENV", Args: []string{"SHARED", "yes"}},
			{Type: "WORKDIR", Args: []string{"/opt/d"}},
		},
		StartCmd: "sleep infinity",
	}, log.add)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "pushed to ") {
		t.Fatalf("the build log says nothing of the push:\n%s", log.String())
	}

	// Node b has never seen it: Resolve fetches it, for the team asking
	// (team IDs are each node's own); another team then cannot see it.
	got, err := rb.Resolve(ctx, "t1", "shared:v1")
	if err != nil {
		t.Fatalf("resolving on the second node: %v", err)
	}
	if _, err := rb.Resolve(ctx, "t2", "shared:v1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("another team resolved the imported template: %v", err)
	}
	if got.ID != built.ID || got.Env["SHARED"] != "yes" || got.Workdir != "/opt/d" || got.StartCmd != "sleep infinity" || got.User != built.User {
		t.Fatalf("imported %+v, built %+v", got, built)
	}
	for _, m := range got.Mounts {
		for _, l := range m.Layers {
			if strings.HasPrefix(l, a.dir) {
				t.Fatalf("imported template stands on the first node's %s", l)
			}
		}
	}
	if len(sb.pulls) != 2 || sb.pulls[0].Fetched != 1 || sb.pulls[0].Layers != 1 || sb.pulls[1].Fetched != 0 {
		t.Fatalf("pulls %+v, want one of one layer (and one fetching nothing for the other team)", sb.pulls)
	}
	// A whiteout hides the base's file, an opaque directory the base's
	// directory contents, and a hard link stays one.
	out := b.run(t, got, "cat /etc/from-run; pwd; cat hard; test -e /etc/debian_version && echo whiteout-lost; ls /etc/apt; stat -c %i x hard | uniq | wc -l")
	if want := "from-run\n/opt/d\nx\nonly\n1\n"; out != want {
		t.Fatalf("sandbox on the second node: %q, want %q", out, want)
	}
	// Resolving again uses what is here.
	if _, err := rb.Resolve(ctx, "t1", "shared:v1"); err != nil || len(sb.pulls) != 2 {
		t.Fatalf("second resolve: %v, pulls %d", err, len(sb.pulls))
	}

	// A template built from it shares the first layer: only its own moves.
	log = logs{}
	top, err := ra.Build(ctx, template.RequestArgs{Team: "t1", Name: "shared-top"}, template.BuildSpec{
		FromTemplate: "shared:v1",
		Steps:        []template.Step{{Type: "RUN", Args: []string{"echo top > /etc/top", "root"}}},
	}, log.add)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	// Eight creates that miss it at once fetch it once: each waits for
	// the fetch in progress, then finds what it imported.
	pullsBefore := len(sb.pulls)
	tops, errs := make([]*template.Template, 8), make([]error, 8)
	var wg sync.WaitGroup
	for i := range tops {
		wg.Go(func() { tops[i], errs[i] = rb.Resolve(ctx, "t1", "shared-top") })
	}
	wg.Wait()
	for i := range tops {
		if errs[i] != nil || tops[i].ID != top.ID {
			t.Fatalf("resolving shared-top on the second node (%d of 8 at once): %v", i, errs[i])
		}
	}
	if n := len(sb.pulls) - pullsBefore; n != 1 {
		t.Fatalf("%d pulls for 8 resolves at once, want 1", n)
	}
	got = tops[0]
	if st := sb.pulls[len(sb.pulls)-1]; st.Layers != 2 || st.Fetched != 1 {
		t.Fatalf("pull of shared-top %+v: want 1 of 2 layers fetched", st)
	}
	if out := b.run(t, got, "cat /etc/top /etc/from-run"); out != "top\nfrom-run\n" {
		t.Fatalf("shared-top on the second node: %q", out)
	}

	// Rebuilt on the first node: the second, holding the old build,
	// starts the new one.
	log = logs{}
	if _, err := ra.Build(ctx, template.RequestArgs{Team: "t1", Name: "shared:v1"}, template.BuildSpec{
		Steps: []template.Step{{Type: "RUN", Args: []string{"echo rebuilt > /etc/from-run", "root"}}},
	}, log.add); err != nil {
		t.Fatalf("rebuild: %v\n%s", err, log.String())
	}
	got, err = rb.Resolve(ctx, "t1", "shared:v1")
	if err != nil {
		t.Fatalf("resolving the rebuilt template on the second node: %v", err)
	}
	if out := b.run(t, got, "cat /etc/from-run"); out != "rebuilt\n" {
		t.Fatalf("the second node starts %q after a rebuild, want the new build's", out)
	}

	// A third node, whose registry alters a layer blob on the way: the
	// pull is refused, and nothing of the layer is left in its layer dir.
	log = logs{}
	if _, err := ra.Build(ctx, template.RequestArgs{Team: "t1", Name: "tampered"}, template.BuildSpec{
		Steps: []template.Step{{Type: "RUN", Args: []string{"echo honest-content > /etc/h1", "root"}}},
	}, log.add); err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	c := t.TempDir()
	st, err := artifact.New(artifact.Config{Repository: repo, LayerDir: c})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := digests.Load("tampered")
	// A file's content altered, and a header (the file's name): the
	// first unpacks, the second does not; both are refused by digest.
	for _, swap := range [][2]string{{"honest-content", "wicked-content"}, {"etc/h1", "etc/h2"}} {
		tamper = func(_ string, body []byte) []byte {
			return bytes.ReplaceAll(body, []byte(swap[0]), []byte(swap[1]))
		}
		_, _, err = st.Pull(ctx, d.(string))
		if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "other content than the digest names") {
			t.Fatalf("pull of a tampered blob (%s): %v", swap[1], err)
		}
		if ents, _ := os.ReadDir(c); len(ents) != 0 {
			t.Fatalf("a refused pull left %v in the layer dir", ents)
		}
	}
	tamper = nil
	if _, _, err := st.Pull(ctx, d.(string)); err != nil {
		t.Fatalf("pull once the registry is honest again: %v", err)
	}
	ents, _ := os.ReadDir(c)
	if len(ents) != 1 {
		t.Fatalf("layer dir after the pull: %v", ents)
	}
	if b, err := os.ReadFile(filepath.Join(c, ents[0].Name(), "0", "etc", "h1")); err != nil || string(b) != "honest-content\n" {
		t.Fatalf("pulled layer: %q, %v", b, err)
	}
	if _, _, err := st.Pull(ctx, "sha256:"+strings.Repeat("0", 64)); err == nil {
		t.Fatal("pulled a digest the registry does not hold")
	}
}

func TestParseRepository(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:5000/sandpit/templates", "http://localhost:5000/t", "registry.example.com/sandpit/templates", "https://ghcr.io/acme/tpl"} {
		if _, err := artifact.ParseRepository(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://10.0.0.1:5000/t", "http://registry.example.com/t", "http://127.0.0.1:5000/UPPER"} {
		if _, err := artifact.ParseRepository(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// What travels is the registry's content: an import may name only the
// layers it brings and the builtin templates' host directories.
func TestImportRefusesHostilePaths(t *testing.T) {
	e := newBuildEnv(t)
	r := newRegistry(t, e)
	ctx := t.Context()
	if err := os.MkdirAll(filepath.Join(r.LayerDir(), "mine", "0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(r.LayerDir(), "someone-elses", "0"), 0o755); err != nil {
		t.Fatal(err)
	}
	shared := func(layers []string, mounts ...string) *template.Shared {
		return &template.Shared{
			TemplateID: "tplhostile", BuildID: "b1", Names: []string{"hostile"}, Layers: layers,
			Template: template.Template{Mounts: []runtime.Mount{{Target: "/", Layers: mounts}}},
		}
	}
	for name, s := range map[string]*template.Shared{
		"a host directory":           shared([]string{"mine"}, "layer:mine/0", "builtin:/etc"),
		"a path out of the tpl dir":  shared([]string{"mine"}, "layer:mine/0", "builtin:../../etc"),
		"a layer name climbing out":  shared([]string{"mine"}, "layer:../mine/0"),
		"a sub-directory climbing":   shared([]string{"mine"}, "layer:mine/../../x"),
		"a layer it does not bring":  shared([]string{"mine"}, "layer:someone-elses/0"),
		"a bad name in its layers":   shared([]string{"../mine"}, "layer:mine/0"),
		"an unknown kind of layer":   shared([]string{"mine"}, "/usr"),
		"a relative mount target":    {TemplateID: "tplhostile", BuildID: "b1", Layers: []string{"mine"}, Template: template.Template{Mounts: []runtime.Mount{{Target: "etc", Layers: []string{"layer:mine/0"}}}}},
		"a template id with a slash": {TemplateID: "../x", BuildID: "b1"},
	} {
		if err := r.Import(ctx, s, ""); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("import of %s: %v, want invalid argument", name, err)
		}
	}
	if _, err := r.Resolve(ctx, "", "hostile"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("a refused import left a template: %v", err)
	}
	// The honest one imports, over the node's own base.
	var usr string
	for _, m := range e.base.Mounts {
		if m.Target == "/usr" {
			usr = m.Layers[0]
		}
	}
	s := shared([]string{"mine"}, "layer:mine/0", "builtin:"+filepath.Base(e.base.Mounts[0].Layers[0]))
	s.Template.Mounts = append(s.Template.Mounts, runtime.Mount{Target: "/usr", Layers: []string{"builtin:" + usr}})
	if err := r.Import(ctx, s, ""); err != nil {
		t.Fatalf("import: %v", err)
	}
	got, err := r.Resolve(ctx, "", "hostile")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(r.LayerDir(), "mine", "0"), e.base.Mounts[0].Layers[0]}
	if !slices.Equal(got.Mounts[0].Layers, want) || got.Mounts[1].Layers[0] != usr {
		t.Fatalf("imported mounts %+v, want %v and %s", got.Mounts, want, usr)
	}
}
