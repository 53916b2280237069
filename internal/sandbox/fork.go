package sandbox

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// Fork limits and defaults, as E2B's.
const (
	// DefaultForkTimeout is a fork's lifetime when the request names none
	// (E2B's SandboxForkRequest default).
	DefaultForkTimeout = 15 * time.Second
	// MaxForks bounds one request's count (E2B's SDKs send at most 20).
	MaxForks = 20
)

// ForkRequest asks for Count sandboxes that start from sandbox ID's
// filesystem.
type ForkRequest struct {
	Team    store.Team
	ID      string
	Count   int
	Timeout time.Duration // zero: DefaultForkTimeout
}

// ForkResult is one fork: a sandbox, or why it did not start.
type ForkResult struct {
	Info Info
	Err  error
}

// Fork starts req.Count sandboxes from the filesystem sandbox req.ID has
// now, with its env, metadata and network rules, while it keeps running.
//
// What the parent wrote is copied once (it stands still for the copy)
// into one read-only layer all the forks share, each with a writable
// layer of its own on top: the forks share storage, and neither they nor
// the parent see each other's later writes. The parent's own overlay
// cannot be rebuilt over that layer under its running processes, so it
// keeps its writable layer. Processes and memory are not copied: each
// fork runs the template's start command, as after a reboot. Forks start
// or fail one by one; the error is for the request as a whole
// (count out of range, an unknown parent, the copy failing).
func (m *Manager) Fork(ctx context.Context, req ForkRequest) ([]ForkResult, error) {
	res, err := m.fork(ctx, req)
	return res, m.count(err)
}

func (m *Manager) fork(ctx context.Context, req ForkRequest) ([]ForkResult, error) {
	if req.Count < 1 || req.Count > MaxForks {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("count must be between 1 and %d", MaxForks))
	}
	if req.Timeout == 0 {
		req.Timeout = DefaultForkTimeout
	}
	if err := m.CheckTimeout(req.Timeout); err != nil {
		return nil, err
	}
	rt, err := m.snapshotter()
	if err != nil {
		return nil, err
	}
	parent, o, done, err := m.snapshotSource(ctx, req.Team.ID, req.ID)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	tpl, layer, st, err := m.copyLayer(ctx, rt, "fork", parent.ID, o)
	done()
	if err != nil {
		return nil, err
	}
	m.snap.madeLayer(layer)
	// The forks are of the parent's template, as on E2B.
	tpl.ID, tpl.Names = o.tpl.ID, o.tpl.Names
	ref := parent.TemplateID
	if parent.Alias != "" {
		ref = parent.Alias
	}
	out := make([]ForkResult, req.Count)
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, err := m.Create(ctx, CreateRequest{
				Team:                req.Team,
				Template:            ref,
				Timeout:             req.Timeout,
				Metadata:            parent.Metadata,
				Secure:              parent.Secure,
				AllowInternetAccess: !parent.InternetBlocked,
				Network:             parent.Network.clone(),
				AutoPause:           parent.AutoPause,
				from:                tpl,

				AutoPauseFilesystemOnly: parent.AutoPauseFilesystemOnly,
				AutoResume:              parent.AutoResume,
				// A fork's ports are as private as its parent's, with a
				// token of its own.
				PrivatePorts:    parent.Traffic != nil && parent.Traffic.AccessToken != "",
				MaskRequestHost: parentMask(parent.Traffic),
				Rules:           parentRules(parent.Traffic),
			})
			out[i] = ForkResult{Info: info, Err: err}
		}()
	}
	wg.Wait()
	m.snap.unused(layer)
	m.log.InfoContext(ctx, "sandbox forked", "sandbox_id", parent.ID, "count", req.Count,
		"bytes", st.Bytes, "files", st.Files, "frozen", st.Frozen, "copy", st.Total, "duration", time.Since(start))
	return out, nil
}
