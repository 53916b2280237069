package template

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// Templates built through a cluster's API are built once, on one node, and
// shared with the others (internal/template/artifact carries them through
// an OCI registry). A template's mounts name host directories, so what
// travels names them portably instead:
//
//	layer:KEY[/SUB]  a directory under the layer dir (a step's, an OCI
//	                 image's): shipped, and placed under the importing
//	                 node's layer dir
//	builtin:PATH     one of the builtin templates' layers (the base layer,
//	                 relative to the template dir; the host's /usr): every
//	                 node has its own, and an import may name no other
//	                 host directory

// Shared is a built template as it travels between nodes.
type Shared struct {
	TemplateID string   `json:"templateID"`
	BuildID    string   `json:"buildID"`
	Names      []string `json:"names,omitempty"`
	Tags       []string `json:"tags,omitempty"`
	// No team: team IDs are each node's own (a cluster's nodes all act
	// for their default team; the API replicas scope teams). An import
	// belongs to the team that asked for it.
	Public bool `json:"public,omitempty"`
	// Template holds the metadata (env, user, workdir, start and ready
	// commands, resources) and the mounts, their layers named portably.
	Template Template `json:"template"`
	// Layers are the directories under the layer dir the template stands
	// on, bottom-most first: what a node must hold to start it.
	Layers []string `json:"layers"`
}

// Remote shares the templates built on one node with the others.
type Remote interface {
	// Publish shares a build that succeeded. It runs before the build
	// reports ready, so a client that sees ready may start the template
	// on any node; its error fails the build. log adds to the build's
	// log.
	Publish(ctx context.Context, s *Shared, log func(LogEntry)) error
	// Fetch brings the template ref names from elsewhere and imports it
	// (Registry.Import) for team; errdefs.ErrNotFound when no other node
	// has it.
	Fetch(ctx context.Context, team, ref string) error
	// Latest returns the build of the template ref names that the
	// cluster shares now, from a local copy (it must not block); ok is
	// false for a template it does not share. A node holding an older
	// build fetches the newer one.
	Latest(ref string) (buildID string, ok bool)
}

// SetRemote makes the registry share its builds through rm and fetch the
// templates it lacks from it. Set it before the daemon serves.
func (r *Registry) SetRemote(rm Remote) {
	r.mu.Lock()
	r.remote = rm
	r.mu.Unlock()
}

func (r *Registry) getRemote() Remote {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.remote
}

// fetch asks the remote for ref after a local miss and resolves it again.
// Preconditions: miss is the errdefs.ErrNotFound Resolve would return.
func (r *Registry) fetch(ctx context.Context, team, ref string, miss error) (*Template, error) {
	rm := r.getRemote()
	if rm == nil {
		return nil, miss
	}
	missing := func() bool {
		_, err := r.resolveLocal(ctx, team, ref)
		return errors.Is(err, errdefs.ErrNotFound)
	}
	// Another team's template of that name is one this team cannot see.
	if err := r.fetchIfStill(ctx, rm, team, ref, missing); errors.Is(err, errdefs.ErrNotFound) || errors.Is(err, errdefs.ErrConflict) {
		return nil, miss
	} else if err != nil {
		return nil, fmt.Errorf("fetching template %s from the cluster: %w", ref, err)
	}
	return r.resolveLocal(ctx, team, ref)
}

// fetchIfStill fetches ref from rm for team if need still says so once
// it is this caller's turn. Creates that need ref together fetch it one at
// a time, and each asks need again when its turn comes: one that needed it
// while another's fetch was importing it finds it there, and pulls
// nothing (a pull that had ended would be started again).
func (r *Registry) fetchIfStill(ctx context.Context, rm Remote, team, ref string, need func() bool) error {
	done, err := r.takeFetchTurn(ctx, team+"\x00"+ref)
	if err != nil {
		return err
	}
	defer done()
	if !need() {
		return nil
	}
	return rm.Fetch(ctx, team, ref)
}

// fetchTurn is one key's turn to fetch: a one-slot semaphore, and how
// many hold or wait for it.
type fetchTurn struct {
	slot    chan struct{}
	waiters int
}

// takeFetchTurn waits for key's turn to fetch, or for ctx, and returns what
// ends the turn.
func (r *Registry) takeFetchTurn(ctx context.Context, key string) (func(), error) {
	r.mu.Lock()
	ft := r.fetching[key]
	if ft == nil {
		ft = &fetchTurn{slot: make(chan struct{}, 1)}
		r.fetching[key] = ft
	}
	ft.waiters++
	r.mu.Unlock()
	leave := func() {
		r.mu.Lock()
		if ft.waiters--; ft.waiters == 0 {
			delete(r.fetching, key)
		}
		r.mu.Unlock()
	}
	select {
	case ft.slot <- struct{}{}:
		return func() { <-ft.slot; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
}

// refresh fetches the cluster's newer build of a template this node
// holds an older one of (a rebuild on another node), and resolves again;
// t, the template held, serves when the fetch fails.
func (r *Registry) refresh(ctx context.Context, team, ref string, t *Template) (*Template, error) {
	rm := r.getRemote()
	if rm == nil {
		return t, nil
	}
	latest, ok := rm.Latest(ref)
	if !ok {
		return t, nil
	}
	// Stale: held, stored for this team (not a builtin or a snapshot),
	// and of another build than the cluster's.
	stale := func() bool {
		rec, err := r.visible(ctx, team, ref)
		return err == nil && rec.BuildID != latest
	}
	if !stale() {
		return t, nil
	}
	if err := r.fetchIfStill(ctx, rm, team, ref, stale); err != nil {
		r.log.Warn("fetching a newer build of a template; the one held serves", "template", t.ID, "build_id", latest, "err", err)
		return t, nil
	}
	return r.resolveLocal(ctx, team, ref)
}

// layerNameRe is a directory name under the layer dir: a cache key, an
// OCI layer's oci-sha256-HEX, a snapshot's snap-ID.
var layerNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)

// share publishes build bid of template tid, which made tpl, through the
// remote, if any.
func (r *Registry) share(ctx context.Context, tid, bid string, tags []string, tpl *Template, logf func(LogEntry)) error {
	rm := r.getRemote()
	if rm == nil {
		return nil
	}
	rec, err := r.cfg.Store.GetTemplate(ctx, tid)
	if err != nil {
		return err
	}
	if len(tags) == 0 {
		tags = []string{DefaultTag}
	}
	s, err := r.shared(rec, bid, tags, tpl)
	if err != nil {
		return err
	}
	if err := rm.Publish(ctx, s, logf); err != nil {
		return fmt.Errorf("sharing the template with the cluster's nodes: %w", err)
	}
	return nil
}

// shared returns the portable form of t, a build of rec.
func (r *Registry) shared(rec store.TemplateRecord, buildID string, tags []string, t *Template) (*Shared, error) {
	s := &Shared{
		TemplateID: rec.ID, BuildID: buildID, Names: rec.Names, Tags: tags,
		Public: rec.Public, Template: *t.clone(),
	}
	s.Template.ID, s.Template.Names = "", nil
	seen := map[string]bool{}
	for i, m := range s.Template.Mounts {
		for j, l := range m.Layers {
			p, layer, err := r.portable(l)
			if err != nil {
				return nil, err
			}
			s.Template.Mounts[i].Layers[j] = p
			if layer != "" && !seen[layer] {
				seen[layer] = true
				s.Layers = append(s.Layers, layer)
			}
		}
	}
	// Top-most first in the mounts; bottom-most first here, as an image's
	// layers are listed.
	slices.Reverse(s.Layers)
	return s, nil
}

// portable names host directory l portably, and returns the layer
// directory it is in, if any.
func (r *Registry) portable(l string) (p, layer string, err error) {
	if rel, ok := under(r.LayerDir(), l); ok {
		name, _, _ := strings.Cut(rel, "/")
		return "layer:" + rel, name, nil
	}
	if !r.builtinLayer(l) {
		return "", "", fmt.Errorf("layer %s is neither built nor a builtin template's: it cannot be shared", l)
	}
	if rel, ok := under(r.cfg.Dir, l); ok {
		return "builtin:" + rel, "", nil
	}
	return "builtin:" + l, "", nil
}

// local turns a portable layer name back into a host directory, refusing
// any that would leave the layer dir, name a layer the template does not
// bring (shipped), or a host directory no builtin template mounts: a
// registry's content must not choose host paths, nor stand on another
// template's layers.
func (r *Registry) local(p string, shipped []string) (string, error) {
	kind, rest, _ := strings.Cut(p, ":")
	switch kind {
	case "layer":
		name, sub, _ := strings.Cut(rest, "/")
		if !layerNameRe.MatchString(name) || (sub != "" && !layerNameRe.MatchString(sub)) {
			return "", errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("shared template: bad layer name %q", p))
		}
		if !slices.Contains(shipped, name) {
			return "", errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("shared template: layer %q is not among its layers", name))
		}
		return filepath.Join(r.LayerDir(), name, sub), nil
	case "builtin":
		l := rest
		if !filepath.IsAbs(l) {
			l = filepath.Join(r.cfg.Dir, rest)
		}
		if filepath.Clean(l) != l || !r.builtinLayer(l) {
			return "", errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("shared template: %q is no builtin layer of this node", p))
		}
		return l, nil
	}
	return "", errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("shared template: bad layer %q", p))
}

func (r *Registry) builtinLayer(l string) bool {
	for _, t := range r.cfg.Builtin {
		for _, m := range t.Mounts {
			if slices.Contains(m.Layers, l) {
				return true
			}
		}
	}
	return false
}

// under returns p relative to dir ("/"-separated) when p is below dir.
func under(dir, p string) (string, bool) {
	rel, err := filepath.Rel(dir, p)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	return filepath.ToSlash(rel), true
}

// Import records a template built on another node, whose layers are in
// this node's layer dir already (internal/template/artifact put them
// there), as team's: its template record (names), the build and its
// tags, as the node that built it has them. Importing a build again is a
// no-op; a template another team holds here is errdefs.ErrConflict.
func (r *Registry) Import(ctx context.Context, s *Shared, team string) error {
	if !nameRe.MatchString(s.TemplateID) || s.BuildID == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("shared template: bad id %q or build %q", s.TemplateID, s.BuildID))
	}
	for _, l := range s.Layers {
		if !layerNameRe.MatchString(l) {
			return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("shared template %s: bad layer name %q", s.TemplateID, l))
		}
		if _, err := os.Stat(filepath.Join(r.LayerDir(), l)); err != nil {
			return fmt.Errorf("importing template %s: layer %s: %w", s.TemplateID, l, err)
		}
	}
	t := s.Template.clone()
	t.ID, t.Names, t.Metadata = "", nil, nil
	for i, m := range t.Mounts {
		if !filepath.IsAbs(m.Target) {
			return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("shared template %s: mount target %q is not absolute", s.TemplateID, m.Target))
		}
		for j, p := range m.Layers {
			l, err := r.local(p, s.Layers)
			if err != nil {
				return err
			}
			t.Mounts[i].Layers[j] = l
		}
	}
	spec, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encoding template %s: %w", s.TemplateID, err)
	}
	tags := s.Tags
	if len(tags) == 0 {
		tags = []string{DefaultTag}
	}
	if tags, err = checkTags(tags); err != nil {
		return err
	}
	now := time.Now()
	rec, err := r.cfg.Store.GetTemplate(ctx, s.TemplateID)
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		rec = store.TemplateRecord{ID: s.TemplateID, CreatedAt: now}
	case err != nil:
		return err
	case !ownedBy(rec, team):
		return errdefs.New(errdefs.ErrConflict, fmt.Sprintf("template %s is another team's here", s.TemplateID))
	}
	b, err := r.cfg.Store.GetBuild(ctx, s.BuildID)
	if err == nil && b.TemplateID == s.TemplateID && b.Status == StatusReady && rec.BuildID == s.BuildID {
		return nil // imported already
	}
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	req, err := json.Marshal(buildRequest{CPUCount: t.CPUCount, MemoryMB: t.MemoryMB, Tags: tags})
	if err != nil {
		return fmt.Errorf("encoding the build request of %s: %w", s.BuildID, err)
	}
	rec.Names, rec.TeamID, rec.Public = s.Names, team, s.Public
	rec.Spec, rec.BuildID, rec.UpdatedAt = spec, s.BuildID, now
	if err := r.cfg.Store.PutTemplate(ctx, rec); err != nil {
		return fmt.Errorf("importing template %s: %w", s.TemplateID, err)
	}
	b = store.BuildRecord{
		ID: s.BuildID, TemplateID: s.TemplateID, Status: StatusReady, Request: req, Spec: spec,
		CreatedAt: now, FinishedAt: now,
	}
	if err := r.cfg.Store.PutBuild(ctx, b); err != nil {
		return fmt.Errorf("importing build %s of template %s: %w", s.BuildID, s.TemplateID, err)
	}
	if err := r.cfg.Store.SetTags(ctx, s.TemplateID, s.BuildID, tags, now); err != nil {
		return fmt.Errorf("importing the tags of template %s: %w", s.TemplateID, err)
	}
	r.log.Info("template imported", "template", s.TemplateID, "build_id", s.BuildID, "layers", len(s.Layers))
	return nil
}
