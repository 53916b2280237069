package template

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// DefaultTag is the tag a ref without one means, and the tag a build
// requested without tags gets (E2B's "default").
//
// Removing it is allowed, as in E2B: the template's builds stay and its
// other tags keep working, but the bare name no longer resolves until a
// build without tags, or AssignTags, points default at a build again.
const DefaultTag = "default"

// tagRe is Docker's tag grammar, so image-style tags (v1.2.0, 3.12-slim,
// latest) work as they do there.
var tagRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// checkTags validates tags and drops repeats, keeping the first of each.
func checkTags(tags []string) ([]string, error) {
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		if !tagRe.MatchString(t) {
			return nil, errdefs.New(errdefs.ErrInvalidArgument,
				fmt.Sprintf("invalid tag %q: use up to 128 letters, digits, '.', '_' and '-', not starting with '.' or '-'", t))
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// Tag is a name for one build of a template.
type Tag struct {
	Tag     string
	BuildID string
	// CreatedAt is when the tag was pointed at BuildID.
	CreatedAt time.Time
}

// Tags returns the tags of the template ref names for team (by id or
// name; a tag in ref is ignored), sorted by tag. A builtin has one,
// default, on its BuiltinBuildID.
func (r *Registry) Tags(ctx context.Context, team, ref string) ([]Tag, error) {
	name, _ := splitRef(ref)
	rec, err := r.visible(ctx, team, ref)
	if errors.Is(err, errdefs.ErrNotFound) {
		if b := r.builtinNamed(ref, name); b != nil {
			return []Tag{{Tag: DefaultTag, BuildID: BuiltinBuildID(b.ID)}}, nil
		}
	}
	if err != nil {
		return nil, err
	}
	recs, err := r.cfg.Store.ListTags(ctx, rec.ID)
	if err != nil {
		return nil, err
	}
	out := make([]Tag, 0, len(recs))
	for _, t := range recs {
		out = append(out, Tag{Tag: t.Tag, BuildID: t.BuildID, CreatedAt: t.CreatedAt})
	}
	return out, nil
}

// Assigned is what AssignTags did: Tags now point at build BuildID.
type Assigned struct {
	BuildID string
	Tags    []string
}

// AssignTags points tags at the build target ("name:tag"; a bare name
// means its default tag), a template of team, points at, moving them from
// the builds they named before.
func (r *Registry) AssignTags(ctx context.Context, team, target string, tags []string) (Assigned, error) {
	tags, err := checkTags(tags)
	if err != nil {
		return Assigned{}, err
	}
	if len(tags) == 0 {
		return Assigned{}, errdefs.New(errdefs.ErrInvalidArgument, "give at least one tag to assign")
	}
	rec, name, tag, err := r.taggable(ctx, team, target)
	if err != nil {
		return Assigned{}, err
	}
	if tag == "" {
		tag = DefaultTag
	}
	tg, err := r.cfg.Store.GetTag(ctx, rec.ID, tag)
	if errors.Is(err, errdefs.ErrNotFound) {
		return Assigned{}, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("template %q has no tag %q", name, tag))
	}
	if err != nil {
		return Assigned{}, err
	}
	if err := r.cfg.Store.SetTags(ctx, rec.ID, tg.BuildID, tags, time.Now()); err != nil {
		return Assigned{}, fmt.Errorf("assigning tags to %s: %w", target, err)
	}
	r.log.Info("template tags assigned", "template", rec.ID, "build_id", tg.BuildID, "tags", tags)
	return Assigned{BuildID: tg.BuildID, Tags: tags}, nil
}

// RemoveTags removes tags from the template of team called name, all or
// none: a tag it does not have is errdefs.ErrNotFound naming the tag. The
// builds stay; their layers go at the next GC once no tag names them. See
// DefaultTag for removing default.
func (r *Registry) RemoveTags(ctx context.Context, team, name string, tags []string) error {
	tags, err := checkTags(tags)
	if err != nil {
		return err
	}
	if len(tags) == 0 {
		return errdefs.New(errdefs.ErrInvalidArgument, "give at least one tag to remove")
	}
	rec, short, tag, err := r.taggable(ctx, team, name)
	if err != nil {
		return err
	}
	if tag != "" {
		return errdefs.New(errdefs.ErrInvalidArgument,
			fmt.Sprintf("%q: give the template's name without a tag, and the tags to remove in tags", name))
	}
	have, err := r.cfg.Store.ListTags(ctx, rec.ID)
	if err != nil {
		return err
	}
	for _, t := range tags {
		if !slices.ContainsFunc(have, func(h store.TagRecord) bool { return h.Tag == t }) {
			return errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("template %q has no tag %q", short, t))
		}
	}
	if err := r.cfg.Store.DeleteTags(ctx, rec.ID, tags); err != nil {
		return fmt.Errorf("removing tags of %s: %w", name, err)
	}
	r.log.Info("template tags removed", "template", rec.ID, "tags", tags)
	return nil
}

// taggable finds the stored template of team ref names, for changing its
// tags; builtins have no builds to tag.
func (r *Registry) taggable(ctx context.Context, team, ref string) (rec store.TemplateRecord, name, tag string, err error) {
	name, tag = splitRef(ref)
	rec, err = r.owned(ctx, team, ref)
	if errors.Is(err, errdefs.ErrNotFound) {
		if r.builtinNamed(ref, name) != nil {
			return rec, name, tag, errdefs.New(errdefs.ErrPermissionDenied,
				fmt.Sprintf("template %q is built into sandpit; its tags cannot be changed", name))
		}
		return rec, name, tag, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("template %q not found", name))
	}
	return rec, name, tag, err
}

// Exists reports whether ref names a template team can start sandboxes
// from under some tag (Template.exists): a builtin, or a stored template
// it can see with at least one tag. Unlike Resolve, the bare name of a
// template built only as name:v1 exists. It returns the template's id.
func (r *Registry) Exists(ctx context.Context, team, ref string) (string, error) {
	name, tag := splitRef(ref)
	if tag != "" {
		t, err := r.Resolve(ctx, team, ref)
		if err != nil {
			return "", err
		}
		return t.ID, nil
	}
	rec, err := r.visible(ctx, team, ref)
	if err == nil {
		tags, err := r.cfg.Store.ListTags(ctx, rec.ID)
		if err != nil {
			return "", err
		}
		if len(tags) > 0 {
			return rec.ID, nil
		}
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return "", err
	}
	if b := r.builtinNamed(ref, name); b != nil {
		return b.ID, nil
	}
	return "", errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("template %q not found", ref))
}
