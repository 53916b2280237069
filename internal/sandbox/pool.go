package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"reflect"
	"time"

	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/template"
)

// A warm pool keeps sandboxes of some templates started ahead of demand, so
// a create hands one over in the time it takes to record it. Pooled
// sandboxes are started exactly as a create would start them (start
// command and ready check included, kernels warm for code-interpreter
// templates); a claim only sets the request's environment through the
// agent's /init. They are invisible to the API until claimed, and have no
// deadline until then.

type pooled struct {
	tpl    *template.Template // the build it was started from
	id     string
	token  string
	socket string
	pid    int
	stages []runtime.Stage
}

// StartPool keeps sizes[template ref] sandboxes of each template warm. Call
// it once, after Recover. The filler stops with Close, which kills every
// unclaimed sandbox.
func (m *Manager) StartPool(ctx context.Context, sizes map[string]int) error {
	want := map[string]int{}
	tpls := map[string]*template.Template{}
	for ref, n := range sizes {
		if n <= 0 {
			continue
		}
		// The operator names the pool's templates: any team's.
		tpl, err := m.templates.Resolve(ctx, template.AllTeams, ref)
		if err != nil {
			return fmt.Errorf("warm pool: %w", err)
		}
		want[tpl.ID] = n
		tpls[tpl.ID] = tpl
	}
	if len(want) == 0 {
		return nil
	}
	m.mu.Lock()
	if m.closed || m.poolWake != nil {
		m.mu.Unlock()
		return nil
	}
	m.poolWake = make(chan struct{}, 1)
	m.poolDone = make(chan struct{})
	m.work.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.work.Done()
		defer close(m.poolDone)
		m.fillPool(want, tpls)
	}()
	return nil
}

// fillPool tops the pool up whenever a sandbox is claimed, until Close.
func (m *Manager) fillPool(want map[string]int, tpls map[string]*template.Template) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-m.stop
		cancel()
	}()
	failures := 0
	for {
		for id, n := range want {
			for ctx.Err() == nil && m.pooledCount(id) < n {
				if err := m.addPooled(ctx, tpls[id]); err != nil {
					if ctx.Err() != nil {
						break
					}
					failures++
					m.log.Warn("warm pool: starting a sandbox", "template", id, "err", err)
					// Back off so a broken template does not spin.
					select {
					case <-ctx.Done():
					case <-time.After(time.Duration(min(failures, 30)) * time.Second):
					}
					break
				}
				failures = 0
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-m.poolWake:
		case <-time.After(10 * time.Second):
		}
	}
}

func (m *Manager) pooledCount(tplID string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pool[tplID])
}

func (m *Manager) addPooled(ctx context.Context, tpl *template.Template) error {
	p := pooled{tpl: tpl, id: newSandboxID(), token: newToken()}
	sb, err := m.rt.Create(ctx, m.spec(p.id, tpl, p.token, withE2BEnv(tpl.Env, p.id, tpl), true))
	if err != nil {
		return err
	}
	if err := startTemplate(ctx, m.bg, tpl, sb.EnvdSocket, p.token, m.sandboxLog(p.id)); err != nil {
		m.discard(context.WithoutCancel(ctx), p.id)
		return err
	}
	p.socket, p.pid, p.stages = sb.EnvdSocket, sb.Pid, sb.Stages
	m.mu.Lock()
	if m.closed {
		// Close has drained the pool already and waits for this
		// goroutine: kill the latecomer before returning.
		m.mu.Unlock()
		m.discard(context.WithoutCancel(ctx), p.id)
		return nil
	}
	if m.pool == nil {
		m.pool = map[string][]pooled{}
	}
	m.pool[tpl.ID] = append(m.pool[tpl.ID], p)
	m.mu.Unlock()
	return nil
}

// claimIf hands over a warm sandbox of tpl, with env set in its agent, when
// want is true. ok is false when the pool has none.
func (m *Manager) claimIf(ctx context.Context, want bool, tpl *template.Template, env map[string]string) (pooled, bool) {
	if !want {
		return pooled{}, false
	}
	m.mu.Lock()
	ps := m.pool[tpl.ID]
	if len(ps) == 0 {
		m.mu.Unlock()
		return pooled{}, false
	}
	p := ps[len(ps)-1]
	if !sameBuild(p.tpl, tpl) {
		// The template was rebuilt, or another of its tags was asked
		// for, since the pool started: its sandboxes are not this one.
		m.mu.Unlock()
		return pooled{}, false
	}
	m.pool[tpl.ID] = ps[:len(ps)-1]
	m.mu.Unlock()
	select {
	case m.poolWake <- struct{}{}:
	default:
	}
	if !maps.Equal(env, tpl.Env) {
		if err := initEnv(ctx, p.socket, p.token, withE2BEnv(env, p.id, tpl)); err != nil {
			m.log.Warn("warm pool: setting env of a claimed sandbox", "sandbox_id", p.id, "err", err)
			m.discard(ctx, p.id)
			return pooled{}, false
		}
	}
	return p, true
}

// sameBuild reports whether a sandbox started from a would be the one a
// create from b starts.
func sameBuild(a, b *template.Template) bool {
	return reflect.DeepEqual(a.Mounts, b.Mounts) && maps.Equal(a.Env, b.Env) && a.User == b.User &&
		a.Workdir == b.Workdir && a.StartCmd == b.StartCmd && a.ReadyCmd == b.ReadyCmd &&
		a.Interpreter == b.Interpreter && a.CPUCount == b.CPUCount && a.MemoryMB == b.MemoryMB
}

// dropPooled forgets a pooled sandbox that exited; it reports whether id
// was one.
func (m *Manager) dropPooled(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for t, ps := range m.pool {
		for i, p := range ps {
			if p.id == id {
				m.pool[t] = append(ps[:i], ps[i+1:]...)
				return true
			}
		}
	}
	return false
}

// drainPool empties the pool and returns what it held, for Close.
// Preconditions: m.mu is held.
func (m *Manager) drainPoolLocked() []pooled {
	var out []pooled
	for _, ps := range m.pool {
		out = append(out, ps...)
	}
	m.pool = nil
	return out
}

// initEnv sets a sandbox's global environment through its agent.
func initEnv(ctx context.Context, socket, token string, env map[string]string) error {
	body, err := json.Marshal(map[string]any{"envVars": env})
	if err != nil {
		return err
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://envd/init", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Access-Token", token)
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("posting /init: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("posting /init: %s", resp.Status)
	}
	return nil
}
