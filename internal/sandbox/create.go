package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// Limits on what a create request may carry.
const (
	MaxMetadataPairs    = 64
	MaxMetadataKeyLen   = 128
	MaxMetadataValueLen = 1024
	MaxEnvVars          = 256
	MaxEnvKeyLen        = 256
	MaxEnvValueLen      = 32 << 10
)

// CreateRequest says what sandbox to create.
type CreateRequest struct {
	// Team creates the sandbox and owns it; its limits apply, and it may
	// start its own templates, public ones and builtins.
	Team store.Team
	// Template is a template id or name, possibly "name:tag".
	Template string
	// Timeout is the sandbox's lifetime; zero means the default.
	Timeout  time.Duration
	Metadata map[string]string
	EnvVars  map[string]string
	// Secure makes envd require a fresh access token, returned in Info.
	Secure              bool
	AllowInternetAccess bool
	// Network narrows the way out (E2B's network.allowOut/denyOut). Given
	// with AllowInternetAccess false, the sandbox is online but denied
	// everything Network does not allow, as on E2B.
	Network *Network
	// AutoPause pauses the sandbox instead of killing it when its timeout
	// passes (E2B's lifecycle on_timeout "pause", autoPause on the wire).
	AutoPause bool
	// AutoPauseFilesystemOnly makes that pause keep the filesystem only
	// (E2B's autoPauseMemory false); it means nothing without AutoPause.
	AutoPauseFilesystemOnly bool
	// AutoResume resumes the sandbox, paused with its memory, on the
	// first request through the proxy (E2B's autoResume). It needs
	// AutoPause, and cannot be had with AutoPauseFilesystemOnly.
	AutoResume bool
	// PrivatePorts makes the sandbox's ports (all but envd's) answer only
	// requests carrying its traffic access token, made here and returned
	// in Info.Traffic (E2B's network.allowPublicTraffic false).
	PrivatePorts bool
	// MaskRequestHost and Rules: see Traffic.
	MaskRequestHost string
	Rules           map[string][]Rule

	// from, when set, is the template to start instead of resolving
	// Template (forks start from their parent's layers).
	from *template.Template
}

// Create starts a sandbox and arms its deadline. On error nothing of the
// sandbox remains.
func (m *Manager) Create(ctx context.Context, req CreateRequest) (Info, error) {
	info, err := m.create(ctx, req)
	return info, m.count(err)
}

func (m *Manager) create(ctx context.Context, req CreateRequest) (_ Info, err error) {
	start := time.Now()
	if req.Timeout == 0 {
		req.Timeout = m.defTO
	}
	if err := m.CheckTimeout(req.Timeout); err != nil {
		return Info{}, err
	}
	if err := checkMetadata(req.Metadata); err != nil {
		return Info{}, err
	}
	if err := checkEnv(req.EnvVars); err != nil {
		return Info{}, err
	}
	if err := checkLifecycle(&req); err != nil {
		return Info{}, err
	}
	if req.Network != nil {
		if err := checkLimits(req.Network.Limits, m.egressCeiling); err != nil {
			return Info{}, err
		}
	}
	if req.Network, err = teamEgress(req.Team, req.Network, m.egressDefault); err != nil {
		return Info{}, err
	}
	online := req.AllowInternetAccess || !req.Network.Empty()
	traffic, err := newTraffic(&req)
	if err != nil {
		return Info{}, err
	}
	egress, err := req.Network.policy(!req.AllowInternetAccess && !req.Network.Empty(), m.intercepts(traffic))
	if err != nil {
		return Info{}, err
	}
	if strings.TrimSpace(req.Template) == "" {
		return Info{}, errdefs.New(errdefs.ErrInvalidArgument, "templateID is required")
	}
	tpl := req.from
	if tpl == nil {
		if tpl, err = m.templates.Resolve(ctx, req.Team.ID, req.Template); err != nil {
			return Info{}, fmt.Errorf("resolving template %q: %w", req.Template, err)
		}
	}
	cpus, memMB, diskMB := orDefault(tpl.CPUCount, DefaultCPUCount), orDefault(tpl.MemoryMB, DefaultMemoryMB), orDefault(tpl.DiskMB, m.defDiskMB)
	if err := checkSize(req.Team, tpl, cpus, memMB, diskMB, req.Timeout); err != nil {
		return Info{}, err
	}
	if err := m.admit(req.Team); err != nil {
		return Info{}, err
	}
	defer func() {
		if err != nil {
			m.unadmit(req.Team.ID)
		}
	}()
	// The team's limits first: a full quota is the lasting answer, a
	// busy host a passing one.
	if err := m.admitHost(); err != nil {
		return Info{}, err
	}
	defer m.unadmitHost()

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return Info{}, errdefs.New(errdefs.ErrUnavailable, "the server is shutting down")
	}
	m.work.Add(1)
	m.mu.Unlock()
	defer m.work.Done()

	info := Info{
		ID:              newSandboxID(),
		TemplateID:      tpl.ID,
		TeamID:          req.Team.ID,
		EnvdVersion:     tpl.EnvdVersion,
		Secure:          req.Secure,
		AllowInternet:   online,
		Network:         req.Network.clone(),
		InternetBlocked: !req.AllowInternetAccess,
		Metadata:        maps.Clone(req.Metadata),
		CPUCount:        cpus,
		MemoryMB:        memMB,
		DiskMB:          diskMB,
		State:           StateRunning,
		AutoPause:       req.AutoPause,

		AutoPauseFilesystemOnly: req.AutoPauseFilesystemOnly,
		AutoResume:              req.AutoResume,
		Traffic:                 traffic,
	}
	if len(tpl.Metadata) > 0 { // a snapshot's: the request's own win
		info.Metadata = maps.Clone(tpl.Metadata)
		maps.Copy(info.Metadata, req.Metadata)
	}
	if info.Metadata == nil {
		info.Metadata = map[string]string{}
	}
	if info.EnvdVersion == "" {
		info.EnvdVersion = template.DefaultEnvdVersion
	}
	if req.Template != tpl.ID {
		info.Alias = req.Template
	}
	if req.Secure {
		info.AccessToken = newToken()
	}
	env := maps.Clone(tpl.Env)
	if env == nil {
		env = map[string]string{}
	}
	// E2B_TEAM_ID, as on E2B, unless the template or the request set it.
	if _, ok := env["E2B_TEAM_ID"]; !ok && req.Team.ID != "" {
		env["E2B_TEAM_ID"] = req.Team.ID
	}
	maps.Copy(env, req.EnvVars)
	trustCA := m.needsCA(traffic)
	if trustCA {
		maps.Copy(env, caEnv)
	}

	var sb *runtime.Sandbox
	var spec runtime.Spec
	// Warm sandboxes carry a token of their own and are online with no
	// rules; only secure creates (whose clients send the token) that want
	// just that can take one.
	recorded := false
	if p, ok := m.claimIf(req.from == nil && req.Secure && req.AllowInternetAccess && req.Network.Empty() && !trustCA && !req.Network.limited(), req.Team, tpl); ok {
		claiming := true
		defer func() {
			if claiming {
				m.claimDone()
			}
		}()
		claimed := time.Since(start)
		pinfo := info
		pinfo.ID, pinfo.AccessToken, pinfo.Pid = p.id, p.token, p.pid
		pinfo.StartedAt = m.clock.Now()
		pinfo.EndAt = pinfo.StartedAt.Add(req.Timeout)
		// The record must be durable before anyone learns the id, so a
		// crash never leaves an acknowledged sandbox Recover cannot find.
		setUp, err := m.handOver(ctx, p, record(pinfo, withE2BEnv(env, p.id, tpl), tpl, req.Timeout), env, tpl)
		switch {
		case err == nil:
			info, recorded = pinfo, true
			sb = &runtime.Sandbox{ID: p.id, Pid: p.pid, EnvdSocket: p.socket,
				Stages: []runtime.Stage{{Name: "pool", Duration: claimed}, {Name: "handover", Duration: time.Since(start) - claimed}}}
			spec = m.spec(info.ID, tpl, info.AccessToken, withE2BEnv(env, info.ID, tpl), true)
		case setUp:
			return Info{}, err
		default: // the spare's agent failed it: start one cold
			claiming = false
			m.claimDone()
			m.log.WarnContext(ctx, "warm pool: handing over a claimed sandbox", "err", err)
		}
	}
	if sb == nil {
		spec = m.spec(info.ID, tpl, info.AccessToken, withE2BEnv(env, info.ID, tpl), online)
		spec.Egress = egress
		// Until this create returns, the warm pool holds back a refill
		// (pool_plan.go): this is a user waiting now.
		m.cold.Add(1)
		defer m.coldDone()
		created, err := m.rt.Create(ctx, spec)
		if err != nil {
			return Info{}, fmt.Errorf("creating sandbox %s from %s: %w", info.ID, tpl.ID, err)
		}
		if trustCA {
			if err := installCA(ctx, created.EnvdSocket, info.AccessToken, m.interceptCA); err != nil {
				m.discard(ctx, info.ID)
				return Info{}, fmt.Errorf("installing the interception CA in sandbox %s: %w", info.ID, err)
			}
		}
		if err := startTemplate(ctx, m.bg, tpl, created.EnvdSocket, info.AccessToken, m.sandboxLog(info.ID)); err != nil {
			m.discard(ctx, info.ID)
			return Info{}, fmt.Errorf("starting sandbox %s: %w", info.ID, err)
		}
		sb = created
	}
	if !recorded {
		info.Pid = sb.Pid
		info.StartedAt = m.clock.Now()
		info.EndAt = info.StartedAt.Add(req.Timeout)
		// As above: durable before anyone learns the id.
		if err := m.store.PutSandbox(ctx, record(info, withE2BEnv(env, info.ID, tpl), tpl, req.Timeout)); err != nil {
			m.discard(ctx, info.ID)
			return Info{}, fmt.Errorf("recording sandbox %s: %w", info.ID, err)
		}
	}

	e := &entry{info: info, route: &route{socket: sb.EnvdSocket, token: info.AccessToken}, log: m.sandboxLog(info.ID),
		boot: bootRecipe{spec: spec, tpl: tpl, timeout: req.Timeout}}
	if l := req.Team.Limits.MaxLifetime; l > 0 {
		e.maxEnd = info.StartedAt.Add(l)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		m.discard(ctx, info.ID)
		return Info{}, errdefs.New(errdefs.ErrUnavailable, "the server is shutting down")
	}
	m.sandboxes[info.ID] = e
	m.snap.remember(info.ID, tpl, env)
	m.armLocked(e, info.EndAt)
	e.route.traffic.Store(info.Traffic.clone())
	m.routes.Store(info.ID, e.route)
	e.team = m.teamLabelLocked(req.Team.Name)
	m.countState(e.team, "", StateRunning)
	m.metrics.teamCreates.WithLabelValues(e.team).Inc()
	m.mu.Unlock()

	// The stages go into the log too: a slow create in the tail is
	// explained by its own line, not by a mean over many.
	stages := make([]any, 0, len(sb.Stages))
	for _, st := range sb.Stages {
		m.metrics.createSeconds.WithLabelValues(st.Name).Observe(st.Duration.Seconds())
		stages = append(stages, slog.Duration(st.Name, st.Duration))
	}
	total := time.Since(start)
	m.metrics.createSeconds.WithLabelValues("total").Observe(total.Seconds())
	m.log.InfoContext(ctx, "sandbox created", "sandbox_id", info.ID, "template", tpl.ID,
		"pid", info.Pid, "timeout", req.Timeout, "duration", total, slog.Group("stages", stages...))
	return info.clone(), nil
}

// withE2BEnv returns env plus the variables E2B sets in every sandbox so
// that code can tell it runs in one, and which: E2B_SANDBOX=true,
// E2B_SANDBOX_ID and E2B_TEMPLATE_ID (create adds E2B_TEAM_ID). env's own
// values win.
func withE2BEnv(env map[string]string, id string, tpl *template.Template) map[string]string {
	out := map[string]string{"E2B_SANDBOX": "true", "E2B_SANDBOX_ID": id, "E2B_TEMPLATE_ID": tpl.ID}
	maps.Copy(out, env)
	return out
}

// spec is what the runtime starts for a sandbox of tpl.
func (m *Manager) spec(id string, tpl *template.Template, token string, env map[string]string, internet bool) runtime.Spec {
	return runtime.Spec{
		ID:             id,
		Hostname:       "e2b.local",
		Mounts:         tpl.Mounts,
		Env:            env,
		AccessToken:    token,
		DefaultUser:    tpl.User,
		DefaultWorkdir: tpl.Workdir,
		Resources: runtime.Resources{
			CPUCount: orDefault(tpl.CPUCount, DefaultCPUCount),
			MemoryMB: orDefault(tpl.MemoryMB, DefaultMemoryMB),
			DiskMB:   orDefault(tpl.DiskMB, m.defDiskMB),
		},
		AllowInternet: internet,
		Interpreter:   tpl.Interpreter,
	}
}

// discard undoes a Create that cannot be completed.
func (m *Manager) discard(ctx context.Context, id string) {
	if err := m.release(context.WithoutCancel(ctx), id); err != nil {
		m.log.ErrorContext(ctx, "discarding half-created sandbox", "sandbox_id", id, "err", err)
	}
}

// storedOrigin is what a sandbox was made from, as its record keeps it for
// a restarted daemon (store.SandboxRecord.Origin).
type storedOrigin struct {
	Template *template.Template `json:"template"`
	Timeout  time.Duration      `json:"timeout,omitempty"`
}

func record(info Info, env map[string]string, tpl *template.Template, timeout time.Duration) store.SandboxRecord {
	// A Template is plain data: encoding it cannot fail.
	origin, _ := json.Marshal(storedOrigin{Template: tpl, Timeout: timeout})
	return store.SandboxRecord{
		Origin:                  origin,
		AutoPauseFilesystemOnly: info.AutoPauseFilesystemOnly,
		AutoResume:              info.AutoResume,
		PausedFilesystemOnly:    info.PausedFilesystemOnly,
		ID:                      info.ID,
		TemplateID:              info.TemplateID,
		Alias:                   info.Alias,
		Metadata:                info.Metadata,
		Env:                     env,
		CPUCount:                info.CPUCount,
		MemoryMB:                info.MemoryMB,
		DiskMB:                  info.DiskMB,
		StartedAt:               info.StartedAt,
		EndAt:                   info.EndAt,
		State:                   string(info.State),
		AccessToken:             info.AccessToken,
		Secure:                  info.Secure,
		AllowInternet:           info.AllowInternet,
		Pid:                     info.Pid,
		TeamID:                  info.TeamID,

		EnvdVersion:     info.EnvdVersion,
		AutoPause:       info.AutoPause,
		InternetBlocked: info.InternetBlocked,
		Network:         storedNetwork(info.Network),
		Traffic:         storedTraffic(info.Traffic),
	}
}

func checkMetadata(md map[string]string) error {
	if len(md) > MaxMetadataPairs {
		return errdefs.New(errdefs.ErrInvalidArgument,
			fmt.Sprintf("metadata has %d entries; at most %d are allowed", len(md), MaxMetadataPairs))
	}
	for k, v := range md {
		switch {
		case k == "":
			return errdefs.New(errdefs.ErrInvalidArgument, "metadata keys must not be empty")
		case len(k) > MaxMetadataKeyLen:
			return errdefs.New(errdefs.ErrInvalidArgument,
				fmt.Sprintf("metadata key %.32q… is longer than %d bytes", k, MaxMetadataKeyLen))
		case len(v) > MaxMetadataValueLen:
			return errdefs.New(errdefs.ErrInvalidArgument,
				fmt.Sprintf("metadata value of %q is longer than %d bytes", k, MaxMetadataValueLen))
		}
	}
	return nil
}

func checkEnv(env map[string]string) error {
	if len(env) > MaxEnvVars {
		return errdefs.New(errdefs.ErrInvalidArgument,
			fmt.Sprintf("envVars has %d entries; at most %d are allowed", len(env), MaxEnvVars))
	}
	for k, v := range env {
		switch {
		case k == "":
			return errdefs.New(errdefs.ErrInvalidArgument, "environment variable names must not be empty")
		case len(k) > MaxEnvKeyLen:
			return errdefs.New(errdefs.ErrInvalidArgument,
				fmt.Sprintf("environment variable name %.32q… is longer than %d bytes", k, MaxEnvKeyLen))
		case strings.ContainsAny(k, "=\x00"):
			return errdefs.New(errdefs.ErrInvalidArgument,
				fmt.Sprintf("environment variable name %q must not contain '=' or NUL", k))
		case strings.ContainsRune(v, 0):
			return errdefs.New(errdefs.ErrInvalidArgument,
				fmt.Sprintf("environment variable %q must not contain NUL", k))
		case len(v) > MaxEnvValueLen:
			return errdefs.New(errdefs.ErrInvalidArgument,
				fmt.Sprintf("environment variable %q is longer than %d bytes", k, MaxEnvValueLen))
		}
	}
	return nil
}

func orDefault(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// newSandboxID returns "i" and 20 random lowercase alphanumerics, the shape
// of upstream sandbox ids.
func newSandboxID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 20)
	_, _ = rand.Read(b) // never fails
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "i" + string(b)
}

// newToken returns a fresh envd access token.
func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
