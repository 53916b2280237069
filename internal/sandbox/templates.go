package sandbox

import (
	"context"
	"fmt"
	"strings"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// Templates finds the template a sandbox starts from.
type Templates interface {
	// Resolve returns the template whose id or name is ref, as team (a
	// store.Team ID, or template.AllTeams) sees it. ref may carry a tag
	// ("name:tag") or a namespace ("team/name:tag"). An unknown template,
	// or one team may not start, is an errdefs.ErrNotFound whose message
	// names it.
	Resolve(ctx context.Context, team, ref string) (*template.Template, error)
}

// StaticTemplates resolves refs against a fixed list, for daemons with
// built-in templates only and for tests. A ref matches a template's ID or
// one of its Names exactly; failing that, the ref without its ":tag" and
// "namespace/" parts is tried.
type StaticTemplates []*template.Template

var _ Templates = StaticTemplates(nil)

// Resolve implements Templates. Every team may start every template.
func (s StaticTemplates) Resolve(_ context.Context, _, ref string) (*template.Template, error) {
	if t := s.find(ref); t != nil {
		return t, nil
	}
	bare := ref
	if i := strings.LastIndexByte(bare, '/'); i >= 0 {
		bare = bare[i+1:]
	}
	if i := strings.IndexByte(bare, ':'); i >= 0 {
		bare = bare[:i]
	}
	if t := s.find(bare); t != nil {
		return t, nil
	}
	return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("template %q not found", ref))
}

func (s StaticTemplates) find(ref string) *template.Template {
	for _, t := range s {
		if t.ID == ref {
			return t
		}
		for _, n := range t.Names {
			if n == ref {
				return t
			}
		}
	}
	return nil
}
