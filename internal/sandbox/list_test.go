package sandbox_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
)

func TestList(t *testing.T) {
	e := newEnv(t, fake.Options{})
	// Five sandboxes, one second apart: s0 oldest.
	var s []sandbox.Info
	for i, spec := range []struct {
		tpl string
		md  map[string]string
	}{
		{"base", map[string]string{"app": "prod", "user": "a"}},
		{"base-alias", map[string]string{"app": "prod", "user": "b"}},
		{"code-interpreter-v1", map[string]string{"app": "dev"}},
		{"base", nil},
		{"big", map[string]string{"app": "prod", "user": "a&b=c"}},
	} {
		if i > 0 {
			e.clock.Advance(time.Second)
		}
		s = append(s, e.create(t, sandbox.CreateRequest{Template: spec.tpl, Metadata: spec.md, Timeout: time.Hour}))
	}
	ids := func(infos []sandbox.Info) []string {
		var out []string
		for _, i := range infos {
			out = append(out, i.ID)
		}
		return out
	}
	idx := func(is ...int) []string {
		var out []string
		for _, i := range is {
			out = append(out, s[i].ID)
		}
		return out
	}

	for _, tc := range []struct {
		name string
		f    sandbox.ListFilter
		want []string
	}{
		{"all newest first", sandbox.ListFilter{}, idx(4, 3, 2, 1, 0)},
		{"asc", sandbox.ListFilter{Order: sandbox.OrderAsc}, idx(0, 1, 2, 3, 4)},
		{"metadata one pair", sandbox.ListFilter{Metadata: map[string]string{"app": "prod"}}, idx(4, 1, 0)},
		{"metadata two pairs", sandbox.ListFilter{Metadata: map[string]string{"app": "prod", "user": "a"}}, idx(0)},
		{"metadata special chars", sandbox.ListFilter{Metadata: map[string]string{"user": "a&b=c"}}, idx(4)},
		{"metadata no match", sandbox.ListFilter{Metadata: map[string]string{"app": "none"}}, nil},
		{"running", sandbox.ListFilter{States: []sandbox.State{sandbox.StateRunning, sandbox.StatePaused}}, idx(4, 3, 2, 1, 0)},
		{"paused only", sandbox.ListFilter{States: []sandbox.State{sandbox.StatePaused}}, nil},
		{"started after, inclusive", sandbox.ListFilter{StartedAfter: t0.Add(3 * time.Second)}, idx(4, 3)},
		{"template by id", sandbox.ListFilter{Template: "base"}, idx(3, 1, 0)},
		{"template by alias", sandbox.ListFilter{Template: "code-interpreter-v1"}, idx(2)},
		{"template big by id", sandbox.ListFilter{Template: "big"}, idx(4, 2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := e.m.List(t.Context(), tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(p.Sandboxes); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if p.Next != "" {
				t.Errorf("Next = %q on the only page", p.Next)
			}
		})
	}

	for _, order := range []sandbox.Order{sandbox.OrderDesc, sandbox.OrderAsc} {
		t.Run("pages "+string(order), func(t *testing.T) {
			var got []string
			f := sandbox.ListFilter{Limit: 2, Order: order}
			for pages := 0; ; pages++ {
				if pages > 5 {
					t.Fatal("too many pages")
				}
				p, err := e.m.List(t.Context(), f)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, ids(p.Sandboxes)...)
				if p.Next == "" {
					break
				}
				if len(p.Sandboxes) != 2 {
					t.Errorf("page of %d with a Next", len(p.Sandboxes))
				}
				f.Cursor = p.Next
			}
			want := idx(4, 3, 2, 1, 0)
			if order == sandbox.OrderAsc {
				want = idx(0, 1, 2, 3, 4)
			}
			if !slices.Equal(got, want) {
				t.Errorf("pages gave %v, want %v", got, want)
			}
		})
	}

	// A cursor stays valid when the sandbox it names is gone.
	p, err := e.m.List(t.Context(), sandbox.ListFilter{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.Kill(t.Context(), s[3].ID); err != nil {
		t.Fatal(err)
	}
	p, err = e.m.List(t.Context(), sandbox.ListFilter{Limit: 2, Cursor: p.Next})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(p.Sandboxes); !slices.Equal(got, idx(2, 1)) {
		t.Errorf("after a kill, next page = %v", got)
	}

	for _, tc := range []struct {
		name string
		f    sandbox.ListFilter
	}{
		{"limit too big", sandbox.ListFilter{Limit: 101}},
		{"negative limit", sandbox.ListFilter{Limit: -1}},
		{"bad order", sandbox.ListFilter{Order: "sideways"}},
		{"bad state", sandbox.ListFilter{States: []sandbox.State{"dead"}}},
		{"bad cursor", sandbox.ListFilter{Cursor: "!!!"}},
		{"forged cursor", sandbox.ListFilter{Cursor: "eHl6"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.m.List(t.Context(), tc.f); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("err = %v, want invalid argument", err)
			}
		})
	}
}
