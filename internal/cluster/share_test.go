package cluster

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
	"github.com/sandpit-dev/sandpit/internal/template/artifact"
)

// noBuilds is a runtime for a template registry that builds nothing here:
// the templates come from another node.
type noBuilds struct{ runtime.Runtime }

func (noBuilds) Commit(context.Context, string, string) error { return nil }

// shareNode is one node's template registry and TemplateShare.
type shareNode struct {
	reg   *template.Registry
	share *TemplateShare
	store *artifact.Store
}

func newShareNode(t *testing.T, c *Client, name, repo string) *shareNode {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenSQLite(t.Context(), filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b, err := template.NewBuilder(template.BuilderConfig{Runtime: noBuilds{}, LayerDir: filepath.Join(dir, "templates", "layers")})
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "templates", "base-layer")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	reg, err := template.NewRegistry(t.Context(), template.RegistryConfig{
		Dir: filepath.Join(dir, "templates"), Store: st, Builder: b,
		Builtin: []*template.Template{{ID: "base", Mounts: []runtime.Mount{{Target: "/", Layers: []string{base}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	as, err := artifact.New(artifact.Config{Repository: repo, LayerDir: reg.LayerDir()})
	if err != nil {
		t.Fatal(err)
	}
	sh, err := NewTemplateShare(t.Context(), TemplateShareConfig{Client: c, Node: name, Artifacts: as, Templates: reg})
	if err != nil {
		t.Fatal(err)
	}
	reg.SetRemote(sh)
	return &shareNode{reg: reg, share: sh, store: as}
}

// A template one node pushed (its SandboxTemplate then Ready with the
// digest) is pulled by another on first use, once however many creates
// ask for it at the same moment.
func TestTemplateShareFetchesOnce(t *testing.T) {
	c := client(t)
	ctx := t.Context()
	var layerGets atomic.Int32
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			layerGets.Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	repo := "http://" + strings.TrimPrefix(srv.URL, "http://") + "/sandpit/templates"

	a := newShareNode(t, c, "share-node-a", repo)
	b := newShareNode(t, c, "share-node-b", repo)

	// What a build on node a leaves: a layer, and the template on it.
	layer := filepath.Join(a.reg.LayerDir(), "0123abcd", "0", "etc")
	if err := os.MkdirAll(layer, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(layer, "from-a"), []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := "shareoncetpl"
	if err := c.RecordTemplate(ctx, id, "share-node-a", "b1", []string{"share-once"}); err != nil {
		t.Fatal(err)
	}
	if err := a.share.Publish(ctx, &template.Shared{
		TemplateID: id, BuildID: "b1", Names: []string{"share-once"}, Tags: []string{template.DefaultTag},
		Layers:   []string{"0123abcd"},
		Template: template.Template{User: "root", Mounts: []runtime.Mount{{Target: "/", Layers: []string{"layer:0123abcd/0", "builtin:base-layer"}}}},
	}, nil); err != nil {
		t.Fatal(err)
	}
	ts, err := c.ListTemplates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := findTemplate(ts, "share-once").Status; st.Phase != TemplateReady || !strings.Contains(st.Image, "@sha256:") {
		t.Fatalf("SandboxTemplate after the push: %+v", st)
	}

	gets := layerGets.Load()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tpl, err := b.reg.Resolve(ctx, "", "share-once")
			if err == nil && !strings.HasPrefix(tpl.Mounts[0].Layers[0], b.reg.LayerDir()) {
				err = errTest("resolved onto " + tpl.Mounts[0].Layers[0])
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("resolve %d on node b: %v", i, err)
		}
	}
	// One pull: the config blob and the layer blob, once each.
	if n := layerGets.Load() - gets; n != 2 {
		t.Fatalf("%d blob GETs for 8 concurrent creates, want 2 (one pull)", n)
	}
	if b, err := os.ReadFile(filepath.Join(b.reg.LayerDir(), "0123abcd", "0", "etc", "from-a")); err != nil || string(b) != "a\n" {
		t.Fatalf("the layer on node b: %q, %v", b, err)
	}
	// The watched copy follows: it names the build a rebuild would be
	// checked against, with no request.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if bid, ok := b.share.Latest("share-once:default"); ok {
			if bid != "b1" {
				t.Fatalf("Latest = %q, want b1", bid)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watched SandboxTemplates never showed the image")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }
