package template_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// newTeamsRegistry is a Registry that runs no builds, with the builtins
// base and ci (named code-interpreter-v1), over a store holding team
// "ta"'s template "app" (id tpl): build b1, ready, tagged default and v1
// and counted as 3 MB of layers; build bw, waiting.
func newTeamsRegistry(t *testing.T) (*template.Registry, *store.SQLite) {
	t.Helper()
	dir := t.TempDir()
	ctx := t.Context()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rt := fake.New(fake.Options{})
	t.Cleanup(func() { rt.Close() })
	b, err := template.NewBuilder(template.BuilderConfig{Runtime: committingFake{rt}, LayerDir: filepath.Join(dir, "layers")})
	if err != nil {
		t.Fatal(err)
	}
	r, err := template.NewRegistry(ctx, template.RegistryConfig{
		Dir: filepath.Join(dir, "templates"), Store: st, Builder: b,
		Builtin: []*template.Template{{ID: "base"}, {ID: "ci", Names: []string{"code-interpreter-v1"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	now := time.Now()
	seedTemplate(t, st, "ta", "tpl", "app", "b1", 3<<20)
	if err := st.PutBuild(ctx, store.BuildRecord{ID: "bw", TemplateID: "tpl", Status: template.StatusWaiting, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	return r, st
}

// seedTemplate stores team's template id called name with one ready
// build, tagged default and v1, whose layers are layerBytes.
func seedTemplate(t *testing.T, st *store.SQLite, team, id, name, build string, layerBytes int64) {
	t.Helper()
	ctx := t.Context()
	now := time.Now()
	spec, _ := json.Marshal(template.Template{CPUCount: 1, Env: map[string]string{"FROM": id}})
	req, _ := json.Marshal(map[string]any{"layerBytes": map[string]int64{id + "-layer": layerBytes}})
	if err := st.PutTemplate(ctx, store.TemplateRecord{ID: id, Names: []string{name}, TeamID: team, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutBuild(ctx, store.BuildRecord{ID: build, TemplateID: id, Status: template.StatusReady, Request: req, Spec: spec, CreatedAt: now, FinishedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetTags(ctx, id, build, []string{"default", "v1"}, now); err != nil {
		t.Fatal(err)
	}
}

// teamCall is one Registry method called as a team about a ref.
type teamCall struct {
	name string
	call func(ctx context.Context, team, ref string) error
}

// teamCalls returns a call of every method that takes a template ref: the
// reads a team may make of a public template of another team, and the
// changes it may not.
func teamCalls(r *template.Registry) (reads, changes []teamCall) {
	reads = []teamCall{
		{"Resolve", func(ctx context.Context, team, ref string) error { _, err := r.Resolve(ctx, team, ref); return err }},
		{"Resolve name:v1", func(ctx context.Context, team, ref string) error {
			_, err := r.Resolve(ctx, team, ref+":v1")
			return err
		}},
		{"Exists", func(ctx context.Context, team, ref string) error { _, err := r.Exists(ctx, team, ref); return err }},
		{"Exists name:v1", func(ctx context.Context, team, ref string) error {
			_, err := r.Exists(ctx, team, ref+":v1")
			return err
		}},
		{"Tags", func(ctx context.Context, team, ref string) error { _, err := r.Tags(ctx, team, ref); return err }},
	}
	changes = []teamCall{
		{"Builds", func(ctx context.Context, team, ref string) error { _, err := r.Builds(ctx, team, ref); return err }},
		{"Delete", func(ctx context.Context, team, ref string) error { return r.Delete(ctx, team, ref) }},
		{"AssignTags", func(ctx context.Context, team, ref string) error {
			_, err := r.AssignTags(ctx, team, ref+":v1", []string{"x"})
			return err
		}},
		{"RemoveTags", func(ctx context.Context, team, ref string) error { return r.RemoveTags(ctx, team, ref, []string{"v1"}) }},
		{"SetPublic", func(ctx context.Context, team, ref string) error {
			_, err := r.SetPublic(ctx, team, ref, true)
			return err
		}},
	}
	return reads, changes
}

// unknownOf is ref with its template's name or id replaced by "nope".
func unknownOf(ref string) string {
	return strings.NewReplacer("app", "nope", "tpl", "nope").Replace(ref)
}

// nameIn is the template name or id in ref that unknownOf replaces.
func nameIn(ref string) string {
	if strings.Contains(ref, "tpl") {
		return "tpl"
	}
	return "app"
}

// wantUnknown checks that err, of a call about a ref naming ref, is the
// error of the same call about a ref that names "nope" instead.
func wantUnknown(t *testing.T, what string, err error, ref string, unknown func() error) {
	t.Helper()
	uerr := unknown()
	if !errors.Is(uerr, errdefs.ErrNotFound) {
		t.Fatalf("%s of an unknown template: %v, want not found", what, uerr)
	}
	want := strings.ReplaceAll(uerr.Error(), "nope", ref)
	if !errors.Is(err, errdefs.ErrNotFound) || err.Error() != want {
		t.Errorf("%s of %s as another team: %v; want it as for an unknown template: %s", what, ref, err, want)
	}
}

// TestRegistryTeams: a team sees its own templates, public ones and
// builtins; another team's private template is unknown to it, by name
// and by id, on every method; a public one it may start but not change.
func TestRegistryTeams(t *testing.T) {
	r, _ := newTeamsRegistry(t)
	ctx := t.Context()
	reads, changes := teamCalls(r)
	check := func(public bool) {
		t.Helper()
		for _, ref := range []string{"app", "tpl", "someteam/app"} {
			for _, c := range reads {
				if err := c.call(ctx, "ta", ref); err != nil {
					t.Errorf("%s of %s as its team: %v", c.name, ref, err)
				}
				err := c.call(ctx, "tb", ref)
				if public {
					if err != nil {
						t.Errorf("%s of public %s as another team: %v", c.name, ref, err)
					}
					continue
				}
				wantUnknown(t, c.name, err, nameIn(ref), func() error { return c.call(ctx, "tb", unknownOf(ref)) })
			}
			for _, c := range changes {
				err := c.call(ctx, "tb", ref)
				wantUnknown(t, c.name, err, nameIn(ref), func() error { return c.call(ctx, "tb", unknownOf(ref)) })
			}
		}
		// Builds are their team's.
		for _, bid := range []string{"b1", "bw"} {
			for _, tid := range []string{"tpl", ""} {
				_, err := r.Status(ctx, "tb", tid, bid, 0)
				wantUnknown(t, "Status", err, bid, func() error { _, err := r.Status(ctx, "tb", tid, "nope", 0); return err })
				err = r.Start(ctx, "tb", tid, bid, template.BuildSpec{})
				wantUnknown(t, "Start", err, bid, func() error { return r.Start(ctx, "tb", tid, "nope", template.BuildSpec{}) })
			}
			if _, err := r.Status(ctx, "ta", "tpl", bid, 0); err != nil {
				t.Errorf("status of %s as its team: %v", bid, err)
			}
		}
		// Names are global.
		if _, err := r.Request(ctx, template.RequestArgs{Team: "tb", Name: "app:v2"}); !errors.Is(err, errdefs.ErrConflict) ||
			!strings.Contains(err.Error(), `template name "app" is taken`) {
			t.Errorf("another team requesting a build of app: %v, want the name taken", err)
		}
		for team, want := range map[string]bool{"ta": true, "tb": public, template.AllTeams: true} {
			infos, err := r.List(ctx, team)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, in := range infos {
				if in.ID == "tpl" {
					found = true
					if in.Public != public || in.TeamID != "ta" {
						t.Errorf("app listed for %s: public %v, team %q", team, in.Public, in.TeamID)
					}
				}
				if in.Builtin && !in.Public {
					t.Errorf("builtin %s is not public", in.ID)
				}
			}
			if found != want || len(infos) != 2+map[bool]int{true: 1}[want] {
				t.Errorf("list for %s: %d templates, app %v; want app %v and the builtins", team, len(infos), found, want)
			}
		}
	}
	check(false)
	if _, err := r.SetPublic(ctx, "ta", "app", true); err != nil {
		t.Fatal(err)
	}
	check(true)
	tpl, err := r.Resolve(ctx, "tb", "app:v1")
	if err != nil || tpl.ID != "tpl" {
		t.Fatalf("resolving the public app as another team: %v %v", tpl, err)
	}
	if names, err := r.SetPublic(ctx, "ta", "tpl", false); err != nil || len(names) != 1 || names[0] != "app" {
		t.Fatalf("making app private: %v %v", names, err)
	}
	check(false)

	// Builtins: every team's to start, no team's to change.
	for _, team := range []string{"ta", "tb"} {
		for _, ref := range []string{"base", "code-interpreter-v1"} {
			if _, err := r.Resolve(ctx, team, ref); err != nil {
				t.Errorf("resolving %s as %s: %v", ref, team, err)
			}
		}
		if _, err := r.SetPublic(ctx, team, "base", false); !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Errorf("making base private: %v, want permission denied", err)
		}
		if err := r.Delete(ctx, team, "base"); !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Errorf("removing base: %v, want permission denied", err)
		}
	}

	// The daemon's own callers act for every team; no build is
	// requested for all of them.
	for _, c := range append(reads, changes[0]) {
		if err := c.call(ctx, template.AllTeams, "app"); err != nil {
			t.Errorf("%s of app for all teams: %v", c.name, err)
		}
	}
	if _, err := r.Request(ctx, template.RequestArgs{Team: template.AllTeams, Name: "x"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("requesting a build for all teams: %v, want invalid", err)
	}
	// The team that knows no teams ("") is a team like any other.
	if _, err := r.Resolve(ctx, "", "app"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("resolving app as the team \"\": %v, want not found", err)
	}
}

// TestRegistryTeamsShadowBuiltin: a team's private template that took a
// builtin's name answers that name for the team only; other teams still
// get the builtin.
func TestRegistryTeamsShadowBuiltin(t *testing.T) {
	r, st := newTeamsRegistry(t)
	ctx := t.Context()
	seedTemplate(t, st, "ta", "myci", "code-interpreter-v1", "bc", 1)
	for team, want := range map[string]string{"ta": "myci", "tb": "ci"} {
		tpl, err := r.Resolve(ctx, team, "code-interpreter-v1")
		if err != nil || tpl.ID != want {
			t.Errorf("code-interpreter-v1 as %s: %v %v, want %s", team, tpl, err, want)
		}
		if id, err := r.Exists(ctx, team, "code-interpreter-v1"); err != nil || id != want {
			t.Errorf("code-interpreter-v1 exists as %s: %q %v, want %s", team, id, err, want)
		}
	}
	// Only admins build a builtin's name; another team's admin finds it
	// taken.
	if _, err := r.Request(ctx, template.RequestArgs{Team: "tb", Name: "code-interpreter-v1"}); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("another team's non-admin building code-interpreter-v1: %v, want permission denied", err)
	}
	if _, err := r.Request(ctx, template.RequestArgs{Team: "tb", Admin: true, Name: "code-interpreter-v1"}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("another team's admin building code-interpreter-v1: %v, want the name taken", err)
	}
}

// TestRegistryTeamUploads: uploads are per team, and count in its
// storage with the layers of its builds in use; a team's directory name
// is checked.
func TestRegistryTeamUploads(t *testing.T) {
	r, st := newTeamsRegistry(t)
	ctx := t.Context()
	body := "the files"
	hash := sha(body)
	if err := r.PutUpload(ctx, "ta", template.Upload{Hash: hash, Body: strings.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	for team, want := range map[string]bool{"ta": true, "tb": false, "": false} {
		if got := r.HasUpload(ctx, team, hash); got != want {
			t.Errorf("team %q has the upload: %v, want %v", team, got, want)
		}
	}
	for _, bad := range []string{"../ta", "a/b", ".", "local", template.AllTeams} {
		err := r.PutUpload(ctx, bad, template.Upload{Hash: hash, Body: strings.NewReader(body)})
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("an upload for team %q: %v, want invalid", bad, err)
		}
	}
	// A build of tb copying ta's upload does not find it.
	seedTemplate(t, st, "tb", "tplb", "bapp", "bb", 1<<20)
	now := time.Now()
	if err := st.PutBuild(ctx, store.BuildRecord{ID: "bbw", TemplateID: "tplb", Status: template.StatusWaiting, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	err := r.Start(ctx, "tb", "tplb", "bbw", template.BuildSpec{Steps: []template.Step{{Type: "COPY", Args: []string{"f", "/f"}, FilesHash: hash}}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "never uploaded") {
		t.Errorf("another team's build copying the upload: %v", err)
	}

	for team, want := range map[string]int64{"ta": 3<<20 + int64(len(body)), "tb": 1 << 20, "tc": 0} {
		if got, err := r.StorageUsage(ctx, team); err != nil || got != want {
			t.Errorf("storage of %s: %d %v, want %d", team, got, err, want)
		}
	}
	// Within the storage limit an upload takes only what is left.
	err = r.PutUpload(ctx, "tb", template.Upload{Hash: sha("x"), Body: bytes.NewReader(make([]byte, 1<<20)), StorageLimitMB: 2})
	if err != nil {
		t.Fatalf("an upload that fills tb's storage: %v", err)
	}
	err = r.PutUpload(ctx, "tb", template.Upload{Hash: sha("y"), Body: strings.NewReader("y"), StorageLimitMB: 2})
	if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "2.0 MB used of MaxTemplateStorageMB 2 MB") {
		t.Errorf("an upload over tb's storage limit: %v", err)
	}
	// The same upload again takes no room.
	err = r.PutUpload(ctx, "tb", template.Upload{Hash: sha("x"), Body: bytes.NewReader(make([]byte, 1<<20)), StorageLimitMB: 2})
	if err != nil {
		t.Errorf("the same upload again at the limit: %v", err)
	}
	// Removing its template frees what its builds took.
	if err := r.Delete(ctx, "tb", "bapp"); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.StorageUsage(ctx, "tb"); got != 1<<20 {
		t.Errorf("tb's storage after removing its template: %d, want its upload's", got)
	}
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestRegistryBuildCountsLayers: a build records the size of the layers
// it made, which its team's storage counts; another team can neither
// start the template nor build from it.
func TestRegistryBuildCountsLayers(t *testing.T) {
	e := newBuildEnv(t)
	r := newRegistry(t, e)
	ctx := t.Context()
	const size = 300000
	_, err := r.Build(ctx, template.RequestArgs{Team: "ta", Name: "sized"}, template.BuildSpec{
		FromTemplate: "base",
		Steps:        []template.Step{{Type: "RUN", Args: []string{"head -c 300000 /dev/urandom > /big", "root"}}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	used, err := r.StorageUsage(ctx, "ta")
	if err != nil || used < size || used > size+1<<20 {
		t.Fatalf("team storage after building a %d-byte layer: %d %v", size, used, err)
	}
	if used, err := r.StorageUsage(ctx, "tb"); err != nil || used != 0 {
		t.Fatalf("another team's storage: %d %v", used, err)
	}
	if _, err := r.Resolve(ctx, "tb", "sized"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("another team resolving the template: %v", err)
	}
	_, err = r.Build(ctx, template.RequestArgs{Team: "tb", Name: "child"}, template.BuildSpec{FromTemplate: "sized"}, nil)
	if err == nil || !strings.Contains(err.Error(), `template "sized" not found`) {
		t.Fatalf("another team building from the template: %v, want it not found", err)
	}
}
