package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/template"
	"github.com/sandpit-dev/sandpit/internal/template/artifact"
)

// TemplateShareConfig configures a node's TemplateShare.
type TemplateShareConfig struct {
	Client *Client
	// Node is this node's name, recorded as the builder of what it pushes.
	Node string
	// Artifacts pushes and pulls templates through the cluster's
	// registry (serve --registry).
	Artifacts *artifact.Store
	// Templates is the node's registry, which pulled templates go into.
	Templates *template.Registry
	Logger    *slog.Logger
}

// TemplateShare is a node's template.Remote: it pushes each template the
// node builds to the registry and records the artifact's digest in the
// template's SandboxTemplate; asked for a template the node lacks, it
// finds the SandboxTemplate and pulls that digest. Pulls of one artifact
// at once on a node happen once.
type TemplateShare struct {
	cfg TemplateShareConfig
	log *slog.Logger

	// watched is the SandboxTemplates' watched copy: what the cluster
	// shares, read on every create (Latest) without a request.
	watched func() ([]SandboxTemplate, bool)

	mu sync.Mutex
	// The SandboxTemplates as last listed, reused for templatesTTL: a
	// template the watched copy lacks (just recorded, or unknown) is
	// listed for at most that often.
	templates []SandboxTemplate
	readAt    time.Time
	// pulls are the pulls in progress, by digest.
	pulls map[string]*pull
}

type pull struct {
	done chan struct{}
	err  error
}

var _ template.Remote = (*TemplateShare)(nil)

const templatesTTL = time.Second

// NewTemplateShare returns a node's TemplateShare, which watches the
// SandboxTemplates until ctx is done.
func NewTemplateShare(ctx context.Context, cfg TemplateShareConfig) (*TemplateShare, error) {
	if cfg.Client == nil || cfg.Node == "" || cfg.Artifacts == nil || cfg.Templates == nil {
		return nil, errors.New("cluster.NewTemplateShare: Client, Node, Artifacts and Templates are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &TemplateShare{cfg: cfg, log: log, pulls: map[string]*pull{}, watched: cfg.Client.WatchTemplates(ctx)}, nil
}

// Latest implements template.Remote from the watched copy.
func (s *TemplateShare) Latest(ref string) (string, bool) {
	ts, ok := s.watched()
	if !ok {
		return "", false
	}
	t := findTemplate(ts, ref)
	if t == nil || t.Status.Image == "" || t.Status.Phase != TemplateReady {
		return "", false
	}
	return t.Status.BuildID, true
}

// Publish implements template.Remote: push, then record the digest.
func (s *TemplateShare) Publish(ctx context.Context, sh *template.Shared, log func(template.LogEntry)) error {
	digest, err := s.cfg.Artifacts.Push(ctx, sh, log)
	if err != nil {
		return err
	}
	ref := s.cfg.Artifacts.Ref(digest)
	err = s.cfg.Client.RecordTemplateImage(ctx, sh.TemplateID, s.cfg.Node, sh.BuildID, ref)
	if apierrors.IsNotFound(err) {
		// Built by a request to the node itself, not through the API: no
		// replica recorded it, and other nodes will not look for it.
		s.log.Warn("template pushed but not recorded: no SandboxTemplate (built through a node, not the API)", "template", sh.TemplateID, "ref", ref)
		return nil
	}
	return err
}

// Fetch implements template.Remote. The template is imported for team,
// the node's team the request acts for: the nodes of a cluster see only
// their shared key, and the API replicas scope teams.
func (s *TemplateShare) Fetch(ctx context.Context, team, ref string) error {
	t, err := s.find(ctx, ref)
	if err != nil {
		return err
	}
	_, digest, ok := strings.Cut(t.Status.Image, "@")
	if !ok {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("SandboxTemplate %s: image %q has no digest", t.Name, t.Status.Image))
	}
	return s.pullOnce(ctx, team, t.Name, digest)
}

// find returns the SandboxTemplate ref names whose build is in the
// registry, reading them again when the last read is stale.
func (s *TemplateShare) find(ctx context.Context, ref string) (*SandboxTemplate, error) {
	ts, _ := s.watched()
	t := findTemplate(ts, ref)
	if t != nil && t.Status.Image != "" {
		return t, nil
	}
	s.mu.Lock()
	ts, fresh := s.templates, time.Since(s.readAt) < templatesTTL
	s.mu.Unlock()
	t = findTemplate(ts, ref)
	if (t == nil || t.Status.Image == "") && !fresh {
		var err error
		if ts, err = s.cfg.Client.ListTemplates(ctx); err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.templates, s.readAt = ts, time.Now()
		s.mu.Unlock()
		t = findTemplate(ts, ref)
	}
	if t == nil || t.Status.Image == "" {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("template %q is in no registry", ref))
	}
	return t, nil
}

// pullOnce pulls and imports digest for team, joining a pull of it in
// progress.
// The pull runs on its own (a caller that gives up does not end it for
// the others), bounded by pullTimeout.
func (s *TemplateShare) pullOnce(ctx context.Context, team, id, digest string) error {
	s.mu.Lock()
	key := team + "\x00" + digest
	p, running := s.pulls[key]
	if !running {
		p = &pull{done: make(chan struct{})}
		s.pulls[key] = p
		go func() {
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pullTimeout)
			defer cancel()
			p.err = s.pull(pctx, team, id, digest)
			s.mu.Lock()
			delete(s.pulls, key)
			s.mu.Unlock()
			close(p.done)
		}()
	}
	s.mu.Unlock()
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pullTimeout bounds one pull: a registry that stalls fails the creates
// waiting on it rather than holding them for ever.
const pullTimeout = 10 * time.Minute

func (s *TemplateShare) pull(ctx context.Context, team, id, digest string) error {
	start := time.Now()
	sh, st, err := s.cfg.Artifacts.Pull(ctx, digest)
	if err != nil {
		return fmt.Errorf("pulling template %s: %w", id, err)
	}
	if sh.TemplateID != id {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("the artifact SandboxTemplate %s names is template %s", id, sh.TemplateID))
	}
	if err := s.cfg.Templates.Import(ctx, sh, team); err != nil {
		return err
	}
	s.log.Info("template pulled", "template", id, "digest", digest, "layers", st.Layers, "fetched", st.Fetched,
		"bytes", st.Bytes, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
