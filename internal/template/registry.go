package template

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// Build statuses, as E2B reports them.
const (
	StatusWaiting  = "waiting"
	StatusBuilding = "building"
	StatusReady    = "ready"
	StatusError    = "error"
)

// RegistryConfig is what NewRegistry needs. Store, Builder and Dir are
// required.
type RegistryConfig struct {
	// Dir holds uploaded COPY archives (Dir/uploads).
	Dir   string
	Store store.Templates
	// Snapshots, when set, keeps snapshots (snapshots.go): Resolve and
	// Delete fall back to them, and GC keeps their layers.
	Snapshots store.Snapshots
	Builder   *Builder
	// Builtin templates (base and its names) answer refs no stored
	// template has.
	Builtin []*Template
	// Reserved names the ready-made templates (`sandpit template build
	// NAME`): like the builtins' names, only admin keys build them.
	Reserved []string
	// Images, when set, imports OCI images named by fromImage.
	Images ImageImporter
	// Debootstrap, when set, makes the Debian roots fromImage names as
	// "debootstrap:SUITE[/PKG,...]".
	Debootstrap ImageImporter
	// UploadQuota bounds the COPY uploads each owner keeps;
	// DefaultUploadQuota when zero.
	UploadQuota UploadQuota
	Logger      *slog.Logger
}

// ImageImporter turns an OCI image reference into a template (its layers
// unpacked on disk), for builds that start fromImage.
type ImageImporter interface {
	Import(ctx context.Context, ref string, auth *RegistryAuth, log func(LogEntry)) (*Template, error)
}

// RegistryAuth is the login for a private registry.
type RegistryAuth struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// Registry keeps built templates: it resolves the refs sandboxes are
// created from, runs builds in the background and serves their status and
// logs. Close stops running builds.
type Registry struct {
	cfg    RegistryConfig
	log    *slog.Logger
	ctx    context.Context // builds run under it; Close cancels it
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// builtinCreated is when the data dir first served templates (see
	// builtinCreated()).
	builtinCreated time.Time

	mu sync.Mutex
	// builds holds the running builds.
	builds map[string]*buildState
	// remote, when set, shares builds with a cluster's other nodes.
	remote Remote
	// fetching holds, by team and ref, the fetch from the remote in
	// progress (fetch).
	fetching map[string]*fetchTurn

	// upMu serializes storing and collecting uploads, so a quota is
	// checked against what is stored.
	upMu sync.Mutex
}

// buildState is a build in progress, whose log grows as it runs.
type buildState struct {
	mu     sync.Mutex
	rec    store.BuildRecord
	logs   []LogEntry
	reason *Reason
}

// Reason says why a build failed.
type Reason struct {
	Message string `json:"message"`
	Step    string `json:"step,omitempty"`
}

// NewRegistry returns a Registry. Builds an earlier run of the daemon
// left unfinished are marked failed.
func NewRegistry(ctx context.Context, cfg RegistryConfig) (*Registry, error) {
	if cfg.Store == nil || cfg.Builder == nil || cfg.Dir == "" {
		return nil, errors.New("template.NewRegistry: Store, Builder and Dir are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{"uploads", "uploads/blobs", "uploads/names"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("creating upload dir: %w", err)
		}
	}
	if cfg.UploadQuota == (UploadQuota{}) {
		cfg.UploadQuota = DefaultUploadQuota
	}
	created, err := builtinCreated(cfg.Dir, time.Now())
	if err != nil {
		return nil, err
	}
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &Registry{cfg: cfg, log: cfg.Logger, ctx: bctx, cancel: cancel, builds: map[string]*buildState{}, fetching: map[string]*fetchTurn{}, builtinCreated: created}
	tpls, err := cfg.Store.ListTemplates(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	for _, t := range tpls {
		builds, err := cfg.Store.ListBuilds(ctx, t.ID)
		if err != nil {
			cancel()
			return nil, err
		}
		for _, b := range builds {
			if b.Status == StatusWaiting || b.Status == StatusBuilding {
				b.Status, b.Reason, b.FinishedAt = StatusError, "interrupted: the daemon stopped during the build", time.Now()
				if err := cfg.Store.PutBuild(ctx, b); err != nil {
					cancel()
					return nil, err
				}
			}
		}
	}
	return r, nil
}

// Close cancels running builds and waits for them to stop.
func (r *Registry) Close() error {
	r.cancel()
	r.wg.Wait()
	return nil
}

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)

// splitRef takes "team/name:tag" apart into name and tag; tag is empty
// when ref has none.
func splitRef(ref string) (name, tag string) {
	if i := strings.LastIndexByte(ref, '/'); i >= 0 {
		ref = ref[i+1:]
	}
	name, tag, _ = strings.Cut(ref, ":")
	return name, tag
}

// Resolve returns the template a ref names for team: "name", "name:tag",
// "team/name:tag" or a template id, with or without a tag. No tag means
// the default tag. Stored templates team can see come before builtins of
// the same name; a builtin has only the default tag.
//
// A template this node lacks, or holds an older build of, is fetched from
// the cluster's other nodes when a Remote is set (SetRemote).
func (r *Registry) Resolve(ctx context.Context, team, ref string) (*Template, error) {
	t, err := r.resolveLocal(ctx, team, ref)
	if errors.Is(err, errdefs.ErrNotFound) {
		return r.fetch(ctx, team, ref, err)
	}
	if err != nil {
		return nil, err
	}
	return r.refresh(ctx, team, ref, t)
}

// resolveLocal is Resolve among the templates this node holds.
func (r *Registry) resolveLocal(ctx context.Context, team, ref string) (*Template, error) {
	name, tag := splitRef(ref)
	if tag == "" {
		tag = DefaultTag
	}
	rec, err := r.visible(ctx, team, ref)
	switch {
	case err == nil:
		tg, err := r.cfg.Store.GetTag(ctx, rec.ID, tag)
		if err == nil {
			return r.fromBuild(ctx, rec, tg.BuildID)
		}
		if !errors.Is(err, errdefs.ErrNotFound) {
			return nil, err
		}
		// A builtin name a stored template took (code-interpreter-v1)
		// still answers the default tag until a build of it does.
		if b := r.builtinNamed(ref, name); b != nil && tag == DefaultTag {
			return b, nil
		}
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("template %q has no tag %q", name, tag))
	case !errors.Is(err, errdefs.ErrNotFound):
		return nil, err
	}
	if b := r.builtinNamed(ref, name); b != nil {
		if tag != DefaultTag {
			return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("template %q is built into sandpit and has only the tag %q, not %q", name, DefaultTag, tag))
		}
		return b, nil
	}
	if t, err := r.resolveSnapshot(ctx, team, ref); !errors.Is(err, errdefs.ErrNotFound) {
		return t, err
	}
	return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("template %q not found", ref))
}

// fromBuild returns the template build buildID of rec made.
func (r *Registry) fromBuild(ctx context.Context, rec store.TemplateRecord, buildID string) (*Template, error) {
	b, err := r.cfg.Store.GetBuild(ctx, buildID)
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return nil, err
	}
	spec := b.Spec
	// Data dirs from before per-build specs kept only the last good
	// build's, on the template.
	if spec == nil && buildID == rec.BuildID {
		spec = rec.Spec
	}
	if spec == nil {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("build %s of template %s has no finished template", buildID, rec.ID))
	}
	return decodeSpec(rec, spec)
}

func decodeSpec(rec store.TemplateRecord, spec []byte) (*Template, error) {
	var t Template
	if err := json.Unmarshal(spec, &t); err != nil {
		return nil, fmt.Errorf("decoding template %s: %w", rec.ID, err)
	}
	t.ID, t.Names = rec.ID, rec.Names
	return &t, nil
}

// builtinNamed returns the builtin whose id or name is ref or name, or
// nil.
func (r *Registry) builtinNamed(ref, name string) *Template {
	for _, try := range []string{ref, name} {
		for _, t := range r.cfg.Builtin {
			if t.ID == try || slices.Contains(t.Names, try) {
				return t
			}
		}
	}
	return nil
}

func (r *Registry) builtin(name string) bool {
	for _, t := range r.cfg.Builtin {
		if t.ID == name {
			return true
		}
	}
	return false
}

// RequestArgs asks for a new build of the template called Name (POST
// /v3/templates).
type RequestArgs struct {
	// Admin is set when an admin key asks: only it may build the names
	// of builtin and ready-made templates.
	Admin bool
	// Team is the team asking; a template it makes is its own.
	Team     string
	Name     string // "name" or "name:tag"
	Tags     []string
	CPUCount int
	MemoryMB int
}

// Requested is a build waiting for its steps.
type Requested struct {
	TemplateID string
	BuildID    string
	Names      []string
	Tags       []string
	Public     bool // every team may start the template
}

type buildRequest struct {
	CPUCount int `json:"cpuCount,omitempty"`
	MemoryMB int `json:"memoryMB,omitempty"`
	// Tags are pointed at the build when it succeeds, not before: until
	// then they keep naming the builds they named.
	Tags []string   `json:"tags,omitempty"`
	Spec *BuildSpec `json:"spec,omitempty"`
	// LayerBytes is the size of each layer the build made (by cache
	// key), measured when it succeeded: what its team's template
	// storage counts.
	LayerBytes map[string]int64 `json:"layerBytes,omitempty"`
}

// Request makes (or finds) the template called args.Name and a build of
// it waiting for Start. A name another team holds is
// errdefs.ErrConflict: names are global.
func (r *Registry) Request(ctx context.Context, args RequestArgs) (Requested, error) {
	if args.Team == AllTeams {
		return Requested{}, errdefs.New(errdefs.ErrInvalidArgument, "a template build is requested by one team")
	}
	name, tag := splitRef(args.Name)
	if !nameRe.MatchString(name) {
		return Requested{}, errdefs.New(errdefs.ErrInvalidArgument,
			fmt.Sprintf("invalid template name %q: use lowercase letters, digits, '.', '_' and '-'", args.Name))
	}
	// base is the host's userland; other builtins (code-interpreter-v1)
	// may be replaced by a built template of the same name.
	if name == BaseID {
		return Requested{}, errdefs.New(errdefs.ErrConflict, fmt.Sprintf("template %q is built into sandpit and cannot be rebuilt", name))
	}
	// Every team starts the builtins and the ready-made templates by these
	// names: a team that took one would run its image in others' sandboxes.
	if !args.Admin && (r.builtinNamed(name, name) != nil || slices.Contains(r.cfg.Reserved, name)) {
		return Requested{}, errdefs.New(errdefs.ErrPermissionDenied, fmt.Sprintf(
			"template name %q is reserved for sandpit's ready-made template; only an admin key may build it (sandpit keys create --admin)", name))
	}
	if args.CPUCount < 0 || args.CPUCount > 64 || args.MemoryMB < 0 || args.MemoryMB > 1<<20 {
		return Requested{}, errdefs.New(errdefs.ErrInvalidArgument, "cpuCount must be 0..64 and memoryMB 0..1048576")
	}
	tags := args.Tags
	if strings.Contains(args.Name[strings.LastIndexByte(args.Name, '/')+1:], ":") {
		tags = append([]string{tag}, tags...) // "name:" too, to be refused
	}
	tags, err := checkTags(tags)
	if err != nil {
		return Requested{}, err
	}
	if len(tags) == 0 {
		tags = []string{DefaultTag}
	}
	now := time.Now()
	rec, err := r.cfg.Store.TemplateByName(ctx, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		rec = store.TemplateRecord{ID: newID(), Names: []string{name}, TeamID: args.Team, CreatedAt: now, UpdatedAt: now}
		if err := r.cfg.Store.PutTemplate(ctx, rec); err != nil {
			return Requested{}, err
		}
	} else if err != nil {
		return Requested{}, err
	} else if !ownedBy(rec, args.Team) {
		return Requested{}, errdefs.New(errdefs.ErrConflict, fmt.Sprintf("template name %q is taken", name))
	}
	req, err := json.Marshal(buildRequest{CPUCount: args.CPUCount, MemoryMB: args.MemoryMB, Tags: tags})
	if err != nil {
		return Requested{}, fmt.Errorf("encoding the build request of %s: %w", rec.ID, err)
	}
	b := store.BuildRecord{ID: newUUID(), TemplateID: rec.ID, Status: StatusWaiting, Request: req, CreatedAt: now}
	if err := r.cfg.Store.PutBuild(ctx, b); err != nil {
		return Requested{}, err
	}
	return Requested{TemplateID: rec.ID, BuildID: b.ID, Names: rec.Names, Tags: tags, Public: rec.Public}, nil
}

// decodeRequest reads what Request stored for a build.
func decodeRequest(rec store.BuildRecord) (buildRequest, error) {
	var req buildRequest
	if len(rec.Request) == 0 {
		return req, nil
	}
	if err := json.Unmarshal(rec.Request, &req); err != nil {
		return req, fmt.Errorf("decoding the request of build %s: %w", rec.ID, err)
	}
	return req, nil
}

// BuildSpec is what to build (E2B's TemplateBuildStartV2).
type BuildSpec struct {
	FromImage    string        `json:"fromImage,omitempty"`
	FromTemplate string        `json:"fromTemplate,omitempty"`
	Registry     *RegistryAuth `json:"-"`
	StartCmd     string        `json:"startCmd,omitempty"`
	ReadyCmd     string        `json:"readyCmd,omitempty"`
	Force        bool          `json:"force,omitempty"`
	Steps        []Step        `json:"steps,omitempty"`
	// Owner is the team the build is for: whose COPY uploads the steps
	// use (see PutUpload) and whose templates it may build from. Start
	// sets it to the template's team. (Builds from before teams name
	// the API key that asked.)
	Owner string `json:"owner,omitempty"`
}

// Start runs a requested build of a template of team in the background.
// Its progress is read with Status.
func (r *Registry) Start(ctx context.Context, team, templateID, buildID string, spec BuildSpec) error {
	bs, trec, err := r.state(ctx, team, templateID, buildID)
	if err != nil {
		return err
	}
	spec.Owner = trec.TeamID
	bs.mu.Lock()
	if bs.rec.Status != StatusWaiting {
		st := bs.rec.Status
		bs.mu.Unlock()
		return errdefs.New(errdefs.ErrConflict, fmt.Sprintf("build %s of template %s was already started (%s)", buildID, templateID, st))
	}
	if spec.FromImage != "" && spec.FromTemplate != "" {
		bs.mu.Unlock()
		return errdefs.New(errdefs.ErrInvalidArgument, "give fromImage or fromTemplate, not both")
	}
	for i, s := range spec.Steps {
		if err := s.Validate(i + 1); err != nil {
			bs.mu.Unlock()
			return err
		}
	}
	// COPY steps name their files by the client's hash; the build and
	// its cache use the digest of what was uploaded under it.
	spec.Steps = slices.Clone(spec.Steps)
	for i, s := range spec.Steps {
		if s.Type != StepCopy {
			continue
		}
		d, err := r.uploadDigest(spec.Owner, s.FilesHash)
		if errors.Is(err, errdefs.ErrNotFound) || errors.Is(err, errdefs.ErrInvalidArgument) {
			err = errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("step %d (%s): %v", i+1, s, err))
		}
		if err != nil {
			bs.mu.Unlock()
			return err
		}
		spec.Steps[i].Digest = d
	}
	req, err := decodeRequest(bs.rec)
	if err != nil {
		bs.mu.Unlock()
		return err
	}
	req.Spec = &spec
	if bs.rec.Request, err = json.Marshal(req); err != nil {
		bs.mu.Unlock()
		return fmt.Errorf("encoding the build request of %s: %w", buildID, err)
	}
	bs.rec.Status = StatusBuilding
	rec := bs.rec
	bs.mu.Unlock()
	// A running build lives in memory (its log grows there) until it
	// has been recorded; Start racing with itself loses here.
	r.mu.Lock()
	if _, running := r.builds[buildID]; running {
		r.mu.Unlock()
		return errdefs.New(errdefs.ErrConflict, fmt.Sprintf("build %s of template %s was already started", buildID, templateID))
	}
	r.builds[buildID] = bs
	r.mu.Unlock()
	if err := r.cfg.Store.PutBuild(ctx, rec); err != nil {
		r.mu.Lock()
		delete(r.builds, buildID)
		r.mu.Unlock()
		return err
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.run(r.ctx, bs, req)
	}()
	return nil
}

// Build requests and runs a build of the template called name and waits
// for it, for the CLI and tests. log receives its log as it runs.
func (r *Registry) Build(ctx context.Context, args RequestArgs, spec BuildSpec, log func(LogEntry)) (*Template, error) {
	req, err := r.Request(ctx, args)
	if err != nil {
		return nil, err
	}
	if err := r.Start(ctx, args.Team, req.TemplateID, req.BuildID, spec); err != nil {
		return nil, err
	}
	offset := 0
	for {
		st, err := r.Status(ctx, args.Team, req.TemplateID, req.BuildID, offset)
		if err != nil {
			return nil, err
		}
		offset += len(st.Logs)
		if log != nil {
			for _, e := range st.Logs {
				log(e)
			}
		}
		switch st.Status {
		case StatusReady:
			if len(st.Logs) == 0 {
				rec, err := r.cfg.Store.GetTemplate(ctx, req.TemplateID)
				if err != nil {
					return nil, err
				}
				return r.fromBuild(ctx, rec, req.BuildID)
			}
			continue
		case StatusError:
			if len(st.Logs) == 0 {
				return nil, &StepError{Step: st.Reason.Step, Msg: st.Reason.Message, Err: errdefs.ErrInvalidArgument}
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// run builds and records the outcome.
func (r *Registry) run(ctx context.Context, bs *buildState, req buildRequest) {
	logf := func(e LogEntry) {
		bs.mu.Lock()
		bs.logs = append(bs.logs, e)
		bs.mu.Unlock()
	}
	spec := req.Spec
	bs.mu.Lock()
	tid, bid := bs.rec.TemplateID, bs.rec.ID
	bs.mu.Unlock()
	log := r.log.With("template", tid, "build_id", bid)
	log.Info("template build started", "steps", len(spec.Steps))
	start := time.Now()

	tpl, layers, err := r.build(ctx, tid, spec, req, logf)
	now := time.Now()
	if err == nil {
		err = r.recordLayers(bs, req, layers)
	}
	if err == nil {
		err = r.share(ctx, tid, bid, req.Tags, tpl, logf)
	}
	if err == nil {
		err = r.publish(ctx, bs, tpl, req.Tags, now)
	}
	bs.mu.Lock()
	bs.rec.FinishedAt = now
	if err != nil {
		bs.rec.Spec = nil
		reason := &Reason{Message: err.Error(), Step: "finalize"}
		var se *StepError
		if errors.As(err, &se) {
			reason.Step = se.Step
		}
		bs.rec.Status, bs.rec.Reason, bs.rec.ReasonStep = StatusError, reason.Message, reason.Step
		bs.reason = reason
		bs.logs = append(bs.logs, LogEntry{Time: now, Level: "error", Message: reason.Message, Step: reason.Step})
	} else {
		bs.rec.Status = StatusReady
	}
	logs, merr := json.Marshal(bs.logs)
	if merr != nil {
		log.Error("encoding the build log", "err", merr) // LogEntry always encodes
	}
	bs.rec.Logs = logs
	rec := bs.rec
	bs.mu.Unlock()
	if perr := r.cfg.Store.PutBuild(context.WithoutCancel(ctx), rec); perr != nil {
		log.Error("recording template build", "err", perr)
	} else {
		// Recorded: Status reads it from the store from now on.
		r.mu.Lock()
		delete(r.builds, bid)
		r.mu.Unlock()
	}
	if err != nil {
		log.Warn("template build failed", "err", err, "took", time.Since(start))
		return
	}
	log.Info("template build ready", "took", time.Since(start))
}

// recordLayers notes the size of the layers a build made in its request,
// for its team's template storage.
func (r *Registry) recordLayers(bs *buildState, req buildRequest, layers []string) error {
	req.LayerBytes = r.layerBytes(layers)
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encoding the build request: %w", err)
	}
	bs.mu.Lock()
	bs.rec.Request = b
	bs.mu.Unlock()
	return nil
}

// publish records what a successful build made and points its tags at
// it. It runs before the build reports ready, so a client that sees ready
// can start sandboxes from any of its tags at once.
func (r *Registry) publish(ctx context.Context, bs *buildState, tpl *Template, tags []string, now time.Time) error {
	tpl.ID, tpl.Names = "", nil
	spec, err := json.Marshal(tpl)
	if err != nil {
		return fmt.Errorf("encoding the built template: %w", err)
	}
	bs.mu.Lock()
	bs.rec.Spec = spec
	b := bs.rec
	bs.mu.Unlock()
	b.Status, b.FinishedAt = StatusReady, now
	if err := r.cfg.Store.PutBuild(ctx, b); err != nil {
		return err
	}
	rec, err := r.cfg.Store.GetTemplate(ctx, b.TemplateID)
	if err != nil {
		return err
	}
	rec.Spec, rec.BuildID, rec.UpdatedAt = spec, b.ID, now
	if err := r.cfg.Store.PutTemplate(ctx, rec); err != nil {
		return err
	}
	if len(tags) == 0 {
		tags = []string{DefaultTag} // requested before builds carried tags
	}
	return r.cfg.Store.SetTags(ctx, b.TemplateID, b.ID, tags, now)
}

func (r *Registry) build(ctx context.Context, tid string, spec *BuildSpec, req buildRequest, logf func(LogEntry)) (*Template, []string, error) {
	parent, err := r.parent(ctx, spec, logf)
	if err != nil {
		return nil, nil, &StepError{Step: "base", Msg: err.Error(), Err: err}
	}
	res, err := r.cfg.Builder.Build(ctx, BuildArgs{
		ID: tid, Parent: parent, Steps: spec.Steps,
		StartCmd: spec.StartCmd, ReadyCmd: spec.ReadyCmd, Force: spec.Force,
		CPUCount: req.CPUCount, MemoryMB: req.MemoryMB,
		Files: r.openBlob, Log: logf,
	})
	if err != nil {
		return nil, nil, err
	}
	return res.Template, res.Layers, nil
}

// defaultImages are the fromImage values that mean sandpit's base: the
// SDK's default base image.
var defaultImages = map[string]bool{"": true, "e2bdev/base": true, "e2bdev/base:latest": true}

func (r *Registry) parent(ctx context.Context, spec *BuildSpec, logf func(LogEntry)) (*Template, error) {
	if spec.FromTemplate != "" {
		t, err := r.Resolve(ctx, spec.Owner, spec.FromTemplate)
		if err != nil {
			return nil, fmt.Errorf("resolving fromTemplate: %w", err)
		}
		return t, nil
	}
	if defaultImages[spec.FromImage] {
		for _, t := range r.cfg.Builtin {
			if t.ID == BaseID {
				return t, nil
			}
		}
		return nil, errors.New("no base template")
	}
	if strings.HasPrefix(spec.FromImage, "debootstrap:") {
		if r.cfg.Debootstrap == nil {
			return nil, errdefs.New(errdefs.ErrNotImplemented, "this server makes no debootstrap roots")
		}
		t, err := r.cfg.Debootstrap.Import(ctx, spec.FromImage, nil, logf)
		if err != nil {
			return nil, fmt.Errorf("making %s: %w", spec.FromImage, err)
		}
		return t, nil
	}
	// FROM in a Dockerfile may name a sandpit template.
	if t, err := r.Resolve(ctx, spec.Owner, spec.FromImage); err == nil {
		return t, nil
	}
	if r.cfg.Images == nil {
		return nil, errdefs.New(errdefs.ErrNotImplemented,
			fmt.Sprintf("image %q: this server imports no OCI images; build from a template instead (fromTemplate('base'))", spec.FromImage))
	}
	t, err := r.cfg.Images.Import(ctx, spec.FromImage, spec.Registry, logf)
	if err != nil {
		return nil, fmt.Errorf("importing image %s: %w", spec.FromImage, err)
	}
	return t, nil
}

// BuildStatus is a build's progress.
type BuildStatus struct {
	TemplateID string
	BuildID    string
	Status     string
	Logs       []LogEntry // from the requested offset on
	Reason     *Reason    // set when Status is error
}

// Status returns the status of a build of a template of team and its log
// entries from offset on. Builds are their team's: those of another
// team's public template are not found.
func (r *Registry) Status(ctx context.Context, team, templateID, buildID string, offset int) (BuildStatus, error) {
	bs, _, err := r.state(ctx, team, templateID, buildID)
	if err != nil {
		return BuildStatus{}, err
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	st := BuildStatus{TemplateID: bs.rec.TemplateID, BuildID: bs.rec.ID, Status: bs.rec.Status, Reason: bs.reason}
	if offset < 0 {
		offset = 0
	}
	if offset < len(bs.logs) {
		st.Logs = slices.Clone(bs.logs[offset:])
	}
	return st, nil
}

// state finds a build of a template team owns in memory, else in the
// store, and returns it with its template. A build of another team's
// template is not found, as one that does not exist.
func (r *Registry) state(ctx context.Context, team, templateID, buildID string) (*buildState, store.TemplateRecord, error) {
	r.mu.Lock()
	bs, ok := r.builds[buildID]
	r.mu.Unlock()
	if !ok {
		rec, err := r.cfg.Store.GetBuild(ctx, buildID)
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil, store.TemplateRecord{}, buildNotFound(buildID)
		}
		if err != nil {
			return nil, store.TemplateRecord{}, err
		}
		bs = &buildState{rec: rec}
		if len(rec.Logs) > 0 {
			if err := json.Unmarshal(rec.Logs, &bs.logs); err != nil {
				return nil, store.TemplateRecord{}, fmt.Errorf("decoding the log of build %s: %w", rec.ID, err)
			}
		}
		if rec.Status == StatusError {
			bs.reason = &Reason{Message: rec.Reason, Step: rec.ReasonStep}
		}
	}
	bs.mu.Lock()
	tid := bs.rec.TemplateID
	bs.mu.Unlock()
	trec, err := r.cfg.Store.GetTemplate(ctx, tid)
	if errors.Is(err, errdefs.ErrNotFound) || err == nil && !ownedBy(trec, team) {
		return nil, store.TemplateRecord{}, buildNotFound(buildID)
	}
	if err != nil {
		return nil, store.TemplateRecord{}, err
	}
	if templateID != "" && tid != templateID {
		if rec, err := r.owned(ctx, team, templateID); err != nil || rec.ID != tid {
			return nil, store.TemplateRecord{}, buildNotFound(buildID)
		}
	}
	return bs, trec, nil
}

// visible finds a stored template team can see by id or name
// ("team/name:tag" too, the tag ignored), built or not. One it cannot
// see is not found, with the message of one that does not exist.
func (r *Registry) visible(ctx context.Context, team, ref string) (store.TemplateRecord, error) {
	return r.find(ctx, team, ref, visibleTo)
}

// owned is visible for the templates team may change: its own.
func (r *Registry) owned(ctx context.Context, team, ref string) (store.TemplateRecord, error) {
	return r.find(ctx, team, ref, ownedBy)
}

func (r *Registry) find(ctx context.Context, team, ref string, ok func(store.TemplateRecord, string) bool) (store.TemplateRecord, error) {
	name, _ := splitRef(ref)
	lookups := []func() (store.TemplateRecord, error){
		func() (store.TemplateRecord, error) { return r.cfg.Store.GetTemplate(ctx, ref) },
		func() (store.TemplateRecord, error) { return r.cfg.Store.GetTemplate(ctx, name) },
		func() (store.TemplateRecord, error) { return r.cfg.Store.TemplateByName(ctx, name) },
	}
	if name == ref {
		lookups = slices.Delete(lookups, 1, 2)
	}
	for _, look := range lookups {
		rec, err := look()
		if err == nil && ok(rec, team) {
			return rec, nil
		}
		if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return store.TemplateRecord{}, err
		}
	}
	return store.TemplateRecord{}, notFound(ref)
}

// Info describes a template for listings.
type Info struct {
	ID          string
	Names       []string
	BuildID     string
	Status      string // of the last build
	Builtin     bool
	TeamID      string // the owner; "" for builtins
	Public      bool   // every team may start it; builtins are
	CPUCount    int
	MemoryMB    int
	DiskMB      int    // 0: the server's default
	EnvdVersion string // "": DefaultEnvdVersion
	BuildCount  int
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// List returns the stored templates team can see (oldest first), then
// the builtins.
func (r *Registry) List(ctx context.Context, team string) ([]Info, error) {
	recs, err := r.cfg.Store.ListTemplates(ctx)
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, rec := range recs {
		if !visibleTo(rec, team) {
			continue
		}
		in := Info{ID: rec.ID, Names: rec.Names, BuildID: rec.BuildID, TeamID: rec.TeamID, Public: rec.Public, CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt}
		if builds, err := r.cfg.Store.ListBuilds(ctx, rec.ID); err == nil && len(builds) > 0 {
			in.BuildCount = len(builds)
			in.Status = builds[0].Status
			if bs, ok := r.memBuild(builds[0].ID); ok {
				in.Status = bs
			}
		}
		if rec.Spec != nil {
			t, err := decodeSpec(rec, rec.Spec)
			if err != nil {
				return nil, err
			}
			in.CPUCount, in.MemoryMB, in.DiskMB, in.EnvdVersion = t.CPUCount, t.MemoryMB, t.DiskMB, t.EnvdVersion
		}
		out = append(out, in)
	}
	for _, t := range r.cfg.Builtin {
		out = append(out, Info{
			ID: t.ID, BuildID: BuiltinBuildID(t.ID), Names: t.Names, Status: StatusReady, Builtin: true, Public: true, CPUCount: t.CPUCount, MemoryMB: t.MemoryMB,
			DiskMB: t.DiskMB, EnvdVersion: t.EnvdVersion, CreatedAt: r.builtinCreated, UpdatedAt: r.builtinCreated,
		})
	}
	return out, nil
}

func (r *Registry) memBuild(id string) (string, bool) {
	r.mu.Lock()
	bs, ok := r.builds[id]
	r.mu.Unlock()
	if !ok {
		return "", false
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return bs.rec.Status, true
}

// Builds returns the builds of a template of team, newest first. Builds
// are their team's: another team's public template is not found.
func (r *Registry) Builds(ctx context.Context, team, ref string) ([]store.BuildRecord, error) {
	rec, err := r.owned(ctx, team, ref)
	if errors.Is(err, errdefs.ErrNotFound) && r.builtinNamed(ref, ref) != nil {
		return nil, nil // builtins are not built
	}
	if err != nil {
		return nil, err
	}
	return r.cfg.Store.ListBuilds(ctx, rec.ID)
}

// Delete removes a stored template of team. Sandboxes running from it
// keep running: its layers stay on disk (they are shared,
// content-addressed and reused by later builds of the same steps).
func (r *Registry) Delete(ctx context.Context, team, ref string) error {
	name, _ := splitRef(ref)
	rec, err := r.owned(ctx, team, ref)
	if errors.Is(err, errdefs.ErrNotFound) && r.builtin(name) {
		return errdefs.New(errdefs.ErrPermissionDenied, fmt.Sprintf("template %q is built into sandpit and cannot be removed", name))
	}
	if errors.Is(err, errdefs.ErrNotFound) {
		// The SDKs delete a snapshot as a template (deleteSnapshot).
		if serr := r.DeleteSnapshot(ctx, team, ref); !errors.Is(serr, errdefs.ErrNotFound) {
			return serr
		}
	}
	if err != nil {
		return err
	}
	return r.cfg.Store.DeleteTemplate(ctx, rec.ID)
}

// newUUID returns a random RFC 4122 version 4 UUID, the shape of E2B
// build ids.
func newUUID() string {
	var b [16]byte
	_, _ = cryptoRand(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
