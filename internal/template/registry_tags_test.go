package template_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// wantNotFound checks that err is errdefs.ErrNotFound and that its
// message names every one of parts.
func wantNotFound(t *testing.T, what string, err error, parts ...string) {
	t.Helper()
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("%s: %v, want not found", what, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("%s: %q does not name %q", what, err, p)
		}
	}
}

func tagList(t *testing.T, r *template.Registry, ref string) []string {
	t.Helper()
	tags, err := r.Tags(t.Context(), "", ref)
	if err != nil {
		t.Fatalf("tags of %s: %v", ref, err)
	}
	var out []string
	for _, tg := range tags {
		if tg.BuildID == "" || tg.CreatedAt.IsZero() {
			t.Fatalf("tag without build or time: %+v", tg)
		}
		out = append(out, tg.Tag)
	}
	return out
}

func TestRegistryRequestTags(t *testing.T) {
	e := newBuildEnv(t)
	r := newRegistry(t, e)
	ctx := t.Context()
	req, err := r.Request(ctx, template.RequestArgs{Name: "team/req:a", Tags: []string{"b", "a", "v1.0_RC-2"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b", "v1.0_RC-2"}; !slices.Equal(req.Tags, want) {
		t.Fatalf("requested tags = %v, want %v", req.Tags, want)
	}
	if req, err := r.Request(ctx, template.RequestArgs{Name: "req"}); err != nil || !slices.Equal(req.Tags, []string{"default"}) {
		t.Fatalf("a build with no tag is tagged %v (%v), want default", req.Tags, err)
	}
	for _, args := range []template.RequestArgs{
		{Name: "req:bad tag"},
		{Name: "req", Tags: []string{""}},
		{Name: "req", Tags: []string{".hidden"}},
		{Name: "req", Tags: []string{strings.Repeat("x", 129)}},
	} {
		if _, err := r.Request(ctx, args); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("request %+v: %v, want invalid argument", args, err)
		}
	}
}

// TestRegistryTags builds one template twice under different tags and
// moves, lists and removes its tags; every tag resolves to its own build,
// and GC keeps the layers of every tagged build.
func TestRegistryTags(t *testing.T) {
	e := newBuildEnv(t)
	r := newRegistry(t, e)
	ctx := t.Context()
	build := func(args template.RequestArgs, word string) {
		t.Helper()
		_, err := r.Build(ctx, args, template.BuildSpec{
			FromTemplate: "base",
			Steps:        []template.Step{{Type: "RUN", Args: []string{"echo " + word + " > /etc/which", "root"}}},
		}, nil)
		if err != nil {
			t.Fatalf("building %s: %v", args.Name, err)
		}
	}
	which := func(ref string) string {
		t.Helper()
		tpl, err := r.Resolve(ctx, "", ref)
		if err != nil {
			t.Fatalf("resolving %s: %v", ref, err)
		}
		return strings.TrimSpace(e.run(t, tpl, "cat /etc/which"))
	}

	build(template.RequestArgs{Name: "app:v1"}, "one")
	build(template.RequestArgs{Name: "app:v2", Tags: []string{"stable"}}, "two")
	for ref, want := range map[string]string{"app:v1": "one", "app:v2": "two", "team/app:stable": "two"} {
		if got := which(ref); got != want {
			t.Fatalf("%s started from the build that wrote %q, want %q", ref, got, want)
		}
	}
	_, err := r.Resolve(ctx, "", "app")
	wantNotFound(t, "resolving app with no default tag", err, `"app"`, `"default"`)
	_, err = r.Resolve(ctx, "", "app:v9")
	wantNotFound(t, "resolving an unknown tag", err, `"app"`, `"v9"`)
	_, err = r.Resolve(ctx, "", "nope:v1")
	wantNotFound(t, "resolving an unknown template", err, `"nope:v1"`)
	if got, want := tagList(t, r, "app"), []string{"stable", "v1", "v2"}; !slices.Equal(got, want) {
		t.Fatalf("tags = %v, want %v", got, want)
	}
	if n, err := r.GC(ctx); err != nil || n != 0 {
		t.Fatalf("GC with both builds tagged removed %d layers: %v", n, err)
	}

	// Assign: the given tags point where the target points.
	as, err := r.AssignTags(ctx, "", "app:v1", []string{"default", "prod", "prod"})
	if err != nil {
		t.Fatal(err)
	}
	tags, _ := r.Tags(ctx, "", "app")
	v1 := tags[slices.IndexFunc(tags, func(tg template.Tag) bool { return tg.Tag == "v1" })]
	if as.BuildID != v1.BuildID || !slices.Equal(as.Tags, []string{"default", "prod"}) {
		t.Fatalf("assigned %+v, want build %s tagged default and prod", as, v1.BuildID)
	}
	if got := which("app"); got != "one" {
		t.Fatalf("app (now app:default) started from %q, want one", got)
	}
	_, err = r.AssignTags(ctx, "", "app:v9", []string{"x"})
	wantNotFound(t, "assigning from an unknown tag", err, `"v9"`)
	_, err = r.AssignTags(ctx, "", "nope:v1", []string{"x"})
	wantNotFound(t, "assigning from an unknown template", err, "nope")
	for _, tags := range [][]string{nil, {"bad tag"}} {
		if _, err := r.AssignTags(ctx, "", "app:v1", tags); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("assigning %q: %v, want invalid argument", tags, err)
		}
	}
	if _, err := r.AssignTags(ctx, "", "base", []string{"x"}); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Fatalf("tagging base: %v", err)
	}

	// Remove: all or nothing, naming the tag that is missing.
	err = r.RemoveTags(ctx, "", "app", []string{"v1", "v7"})
	wantNotFound(t, "removing a missing tag", err, `"v7"`)
	if got := tagList(t, r, "app"); len(got) != 5 {
		t.Fatalf("a failed removal changed the tags: %v", got)
	}
	// A sandbox of app:v1 runs on: its layers outlive the tag.
	onV1, err := r.Resolve(ctx, "", "app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveTags(ctx, "", "app", []string{"v1", "default", "prod"}); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"app", "app:v1"} {
		_, err := r.Resolve(ctx, "", ref)
		wantNotFound(t, "resolving "+ref+" after removing its tag", err, "app")
	}
	if err := r.RemoveTags(ctx, "", "app", nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("removing no tags: %v", err)
	}
	if err := r.RemoveTags(ctx, "", "base", []string{"default"}); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Fatalf("removing a tag of base: %v", err)
	}
	// No tag points at the first build any more, and it is not the
	// latest: its layer goes; the second build's stays.
	if n, err := r.GC(ctx, onV1); err != nil || n != 0 {
		t.Fatalf("GC with a sandbox on the first build removed %d layers, want 0: %v", n, err)
	}
	if n, err := r.GC(ctx); err != nil || n != 1 {
		t.Fatalf("GC after untagging the first build removed %d layers, want 1: %v", n, err)
	}
	if got := which("app:stable"); got != "two" {
		t.Fatalf("app:stable after GC started from %q", got)
	}

	// A build with no tag is tagged default.
	build(template.RequestArgs{Name: "app"}, "three")
	if got := which("app"); got != "three" {
		t.Fatalf("app after an untagged build started from %q, want three", got)
	}
	if got, want := tagList(t, r, "app"), []string{"default", "stable", "v2"}; !slices.Equal(got, want) {
		t.Fatalf("tags = %v, want %v", got, want)
	}

	// The builtin base has one tag, default.
	if got, err := r.Tags(ctx, "", "base"); err != nil || len(got) != 1 || got[0].Tag != "default" {
		t.Fatalf("tags of base: %+v %v", got, err)
	}
	if _, err := r.Resolve(ctx, "", "base:default"); err != nil {
		t.Fatalf("base:default: %v", err)
	}
	_, err = r.Resolve(ctx, "", "base:v1")
	wantNotFound(t, "resolving base:v1", err, `"v1"`)
	_, err = r.Tags(ctx, "", "nope")
	wantNotFound(t, "tags of an unknown template", err, "nope")
}
