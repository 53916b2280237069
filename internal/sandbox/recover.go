package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// Recover makes the Manager's view the truth at daemon start. Sandboxes
// outlive the daemon, so what an earlier run left is taken over where it
// still runs: each stored sandbox the runtime can adopt is the Manager's
// again as it was (state, deadline, network rules, token); one whose
// deadline passed meanwhile meets its timeout at once (killed, or paused
// with AutoPause). A stored sandbox that is gone (a host reboot ended it)
// is reaped: what is left of it in the runtime is removed, its record
// deleted, and the log says so. A sandbox the runtime holds with no record
// (a warm pool's spare, a create that never finished) is killed. A runtime
// that cannot adopt has every leftover reaped.
func (m *Manager) Recover(ctx context.Context) error {
	start := time.Now()
	ids, err := m.rt.List(ctx)
	if err != nil {
		return fmt.Errorf("listing runtime sandboxes: %w", err)
	}
	recs, err := m.store.ListSandboxes(ctx)
	if err != nil {
		return fmt.Errorf("listing stored sandboxes: %w", err)
	}
	m.mu.Lock()
	owned := func(id string) bool { _, ok := m.sandboxes[id]; return ok }
	var strayRuntime []string
	var left []store.SandboxRecord
	recorded := map[string]bool{}
	for _, r := range recs {
		recorded[r.ID] = true
		if !owned(r.ID) {
			left = append(left, r)
		}
	}
	for _, id := range ids {
		if !owned(id) && !recorded[id] {
			strayRuntime = append(strayRuntime, id)
		}
	}
	m.mu.Unlock()

	var errs []error
	adopted, reaped := 0, 0
	for _, rec := range left {
		err := m.adopt(ctx, rec)
		if err == nil {
			adopted++
			continue
		}
		if errors.Is(err, errdefs.ErrUnavailable) {
			return err // closed meanwhile: leave the rest for the next start
		}
		if !errors.Is(err, errdefs.ErrNotFound) {
			m.log.ErrorContext(ctx, "taking over a sandbox left by an earlier run; removing it", "sandbox_id", rec.ID, "err", err)
		} else {
			m.log.InfoContext(ctx, "a sandbox left by an earlier run is gone; removing its record", "sandbox_id", rec.ID, "reason", err)
		}
		reaped++
		if m.reaped != nil {
			m.reaped(ctx, rec, err)
		}
		if err := m.release(ctx, rec.ID); err != nil {
			errs = append(errs, fmt.Errorf("reaping leftover sandbox %s: %w", rec.ID, err))
		}
	}
	for _, id := range strayRuntime {
		m.log.InfoContext(ctx, "killing an unrecorded sandbox left by an earlier run", "sandbox_id", id)
		if err := m.rt.Kill(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("killing leftover sandbox %s: %w", id, err))
		}
	}
	if len(left)+len(strayRuntime) > 0 {
		m.log.InfoContext(ctx, "recovered", "adopted", adopted, "reaped", reaped, "killed", len(strayRuntime),
			"took", time.Since(start).Round(time.Microsecond))
	}
	return errors.Join(errs...)
}

// adopt takes over the sandbox rec records: the runtime adopts it, its
// freezer is made to match the record, and it is the Manager's again with
// its deadline armed. errdefs.ErrNotFound means the sandbox is gone.
func (m *Manager) adopt(ctx context.Context, rec store.SandboxRecord) error {
	a, ok := m.rt.(runtime.Adopter)
	if !ok {
		return errdefs.New(errdefs.ErrNotFound, "this runtime cannot take over sandboxes of an earlier run")
	}
	info := infoFromRecord(rec)
	var policy runtime.EgressPolicy
	if info.AllowInternet {
		var err error
		if policy, err = info.Network.policy(info.InternetBlocked, m.intercepts(info.Traffic)); err != nil {
			return fmt.Errorf("network rules of %s: %w", rec.ID, err)
		}
	}
	var from storedOrigin
	if len(rec.Origin) > 0 {
		if err := json.Unmarshal(rec.Origin, &from); err != nil {
			return fmt.Errorf("reading what %s was made from: %w", rec.ID, err)
		}
	}
	if from.Template == nil && info.State == StatePaused && info.PausedFilesystemOnly {
		return fmt.Errorf("sandbox %s is paused without its processes and its record says nothing to boot it from", rec.ID)
	}
	sb, err := a.Adopt(ctx, runtime.Adoption{ID: rec.ID, Egress: policy,
		Stopped: info.State == StatePaused && info.PausedFilesystemOnly})
	if err != nil {
		return err
	}
	info.Pid = sb.Pid
	// The record is the truth: a daemon that died while pausing or
	// resuming left the freezer either way.
	if p, ok := m.rt.(runtime.Pauser); ok && !info.PausedFilesystemOnly {
		if info.State == StatePaused {
			err = p.Pause(ctx, rec.ID)
		} else {
			err = p.Resume(ctx, rec.ID)
		}
		if err != nil {
			m.log.WarnContext(ctx, "matching an adopted sandbox's freezer to its record", "sandbox_id", rec.ID, "state", info.State, "err", err)
		}
	}
	e := &entry{info: info, route: &route{socket: sb.EnvdSocket, token: info.AccessToken}, log: m.sandboxLog(rec.ID)}
	team := m.teamOf(ctx, info.TeamID)
	if l := team.Limits.MaxLifetime; l > 0 {
		e.maxEnd = info.StartedAt.Add(l)
	}
	if tpl := from.Template; tpl != nil {
		e.boot = bootRecipe{spec: m.spec(info.ID, tpl, info.AccessToken, rec.Env, info.AllowInternet), tpl: tpl, timeout: from.Timeout}
		// What the sandbox itself was told of itself is not what a
		// snapshot of it passes on.
		env := maps.Clone(rec.Env)
		for _, k := range []string{"E2B_SANDBOX", "E2B_SANDBOX_ID", "E2B_TEMPLATE_ID"} {
			delete(env, k)
		}
		m.snap.remember(info.ID, tpl, env)
	}
	e.route.paused.Store(info.State == StatePaused)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errdefs.New(errdefs.ErrUnavailable, "the server is shutting down")
	}
	m.sandboxes[info.ID] = e
	// A deadline that passed while no daemon ran fires at once.
	m.armLocked(e, info.EndAt)
	e.route.traffic.Store(info.Traffic.clone())
	m.routes.Store(info.ID, e.route)
	e.team = m.teamLabelLocked(team.Name)
	m.teamLocked(info.TeamID).live++
	m.countState(e.team, "", info.State)
	m.log.InfoContext(ctx, "sandbox taken over from an earlier run", "sandbox_id", info.ID, "pid", info.Pid,
		"state", info.State, "end_at", info.EndAt)
	return nil
}

// teamOf is team id as the store has it now, for the metrics label and
// the max-lifetime of a sandbox taken over; a store that knows no teams,
// or a team since removed, gives a team of that ID with no limits.
func (m *Manager) teamOf(ctx context.Context, id string) store.Team {
	if ts, ok := m.store.(interface {
		Team(ctx context.Context, nameOrID string) (store.Team, error)
	}); ok && id != "" {
		if t, err := ts.Team(ctx, id); err == nil {
			return t
		}
	}
	return store.Team{ID: id, Name: id}
}

// infoFromRecord is the Info a stored record describes.
func infoFromRecord(rec store.SandboxRecord) Info {
	info := Info{
		ID:                      rec.ID,
		TeamID:                  rec.TeamID,
		TemplateID:              rec.TemplateID,
		Alias:                   rec.Alias,
		EnvdVersion:             rec.EnvdVersion,
		AccessToken:             rec.AccessToken,
		Secure:                  rec.Secure,
		AllowInternet:           rec.AllowInternet,
		InternetBlocked:         rec.InternetBlocked,
		Metadata:                maps.Clone(rec.Metadata),
		StartedAt:               rec.StartedAt,
		EndAt:                   rec.EndAt,
		CPUCount:                rec.CPUCount,
		MemoryMB:                rec.MemoryMB,
		DiskMB:                  rec.DiskMB,
		State:                   StateRunning,
		AutoPause:               rec.AutoPause,
		AutoPauseFilesystemOnly: rec.AutoPauseFilesystemOnly,
		AutoResume:              rec.AutoResume,
		Pid:                     rec.Pid,
		Traffic:                 trafficFromRecord(rec.Traffic),
	}
	if State(rec.State) == StatePaused {
		info.State = StatePaused
		info.PausedFilesystemOnly = rec.PausedFilesystemOnly
	}
	if info.Metadata == nil {
		info.Metadata = map[string]string{}
	}
	if n := rec.Network; n != nil {
		info.Network = &Network{AllowOut: n.AllowOut, DenyOut: n.DenyOut, Limits: runtime.EgressLimits{Rate: n.EgressRate, Conns: n.EgressConns}}
	}
	return info
}

// storedNetwork is n as the store keeps it.
func storedNetwork(n *Network) *store.SandboxNetwork {
	if n == nil {
		return nil
	}
	return &store.SandboxNetwork{AllowOut: n.AllowOut, DenyOut: n.DenyOut, EgressRate: n.Limits.Rate, EgressConns: n.Limits.Conns}
}

// TemplatesInUse returns what every sandbox the Manager holds was made
// from, for the template layer GC; ok is false when it does not know that
// of some sandbox, and then no layer may be collected.
func (m *Manager) TemplatesInUse() (tpls []*template.Template, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.sandboxes {
		if e.boot.tpl == nil {
			return nil, false
		}
		tpls = append(tpls, e.boot.tpl)
	}
	return tpls, true
}
