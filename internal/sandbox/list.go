package sandbox

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// List page sizes.
const (
	DefaultListLimit = 100
	MaxListLimit     = 100
)

// Order is a list's order by start time.
type Order string

// Orders.
const (
	OrderDesc Order = "desc" // newest first, the default
	OrderAsc  Order = "asc"
)

// ListFilter selects and pages sandboxes. The zero value lists the first
// DefaultListLimit sandboxes of every state, newest first.
type ListFilter struct {
	// Team, the sandboxes' team ID, is required: a list never spans teams.
	Team string
	// Metadata pairs must all be present with equal values.
	Metadata map[string]string
	// States the sandbox must be in; any when empty.
	States []State
	// StartedAfter, when set, keeps sandboxes started at or after it.
	StartedAfter time.Time
	// Template matches the template's id or the name the sandbox was
	// created with.
	Template string
	Order    Order
	// Limit is 1..MaxListLimit; zero means DefaultListLimit.
	Limit int
	// Cursor is a previous Page's Next; empty for the first page.
	Cursor string
}

// Page is one page of a List.
type Page struct {
	Sandboxes []Info
	// Next is the cursor of the next page; empty when this is the last.
	Next string
}

// List returns the sandboxes that match f, one page at a time.
func (m *Manager) List(ctx context.Context, f ListFilter) (Page, error) {
	p, err := m.list(f)
	return p, m.count(err)
}

func (m *Manager) list(f ListFilter) (Page, error) {
	switch f.Order {
	case "":
		f.Order = OrderDesc
	case OrderAsc, OrderDesc:
	default:
		return Page{}, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("order must be asc or desc, not %q", f.Order))
	}
	switch {
	case f.Limit == 0:
		f.Limit = DefaultListLimit
	case f.Limit < 0 || f.Limit > MaxListLimit:
		return Page{}, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("limit must be between 1 and %d", MaxListLimit))
	}
	for _, s := range f.States {
		if s != StateRunning && s != StatePaused {
			return Page{}, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("state must be running or paused, not %q", s))
		}
	}
	var after *cursor
	if f.Cursor != "" {
		c, err := parseCursor(f.Cursor)
		if err != nil {
			return Page{}, err
		}
		after = &c
	}

	m.mu.Lock()
	all := make([]Info, 0, len(m.sandboxes))
	for _, e := range m.sandboxes {
		if f.matches(e.info) {
			all = append(all, e.info.clone())
		}
	}
	m.mu.Unlock()

	slices.SortFunc(all, func(a, b Info) int {
		c := a.StartedAt.Compare(b.StartedAt)
		if c == 0 {
			c = strings.Compare(a.ID, b.ID)
		}
		if f.Order == OrderDesc {
			c = -c
		}
		return c
	})
	if after != nil {
		i, _ := slices.BinarySearchFunc(all, *after, func(x Info, c cursor) int {
			r := x.StartedAt.Compare(c.started)
			if r == 0 {
				r = strings.Compare(x.ID, c.id)
			}
			if f.Order == OrderDesc {
				r = -r
			}
			// Position just past the cursor: everything at or before it
			// compares "less".
			if r <= 0 {
				return -1
			}
			return 1
		})
		all = all[i:]
	}
	var p Page
	if len(all) > f.Limit {
		all = all[:f.Limit]
		last := all[len(all)-1]
		p.Next = cursor{started: last.StartedAt, id: last.ID}.String()
	}
	p.Sandboxes = all
	return p, nil
}

func (f ListFilter) matches(i Info) bool {
	if i.TeamID != f.Team {
		return false
	}
	if len(f.States) > 0 && !slices.Contains(f.States, i.State) {
		return false
	}
	if !f.StartedAfter.IsZero() && i.StartedAt.Before(f.StartedAfter) {
		return false
	}
	if f.Template != "" && f.Template != i.TemplateID && f.Template != i.Alias {
		return false
	}
	for k, v := range f.Metadata {
		if got, ok := i.Metadata[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// cursor marks the last sandbox of a page: its start and id.
type cursor struct {
	started time.Time
	id      string
}

func (c cursor) String() string {
	raw := strconv.FormatInt(c.started.UnixNano(), 10) + "." + c.id
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func parseCursor(s string) (cursor, error) {
	bad := errdefs.New(errdefs.ErrInvalidArgument, "nextToken is not a token this server issued")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, bad
	}
	ns, id, ok := strings.Cut(string(raw), ".")
	if !ok || id == "" {
		return cursor{}, bad
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		return cursor{}, bad
	}
	return cursor{started: time.Unix(0, n), id: id}, nil
}
