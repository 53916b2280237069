package daemon

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"

	"github.com/sandpit-dev/sandpit/internal/intercept"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
	"github.com/sandpit-dev/sandpit/internal/secrets"
)

// transforms is what the interceptor knows of sandboxes' network rules:
// the Manager's rules, their secrets resolved from the sandbox's team. It
// reads the daemon's manager and secrets when asked, as the interceptor
// (whose CA the manager needs) is made before them.
type transforms struct{ d *Daemon }

var _ intercept.Transforms = transforms{}

// rule returns the rules of sandbox id that apply to host.
func (t transforms) rule(id, host string) ([]sandbox.Rule, bool) {
	tr, ok := t.d.manager.Traffic(id)
	if !ok || len(tr.Rules) == 0 {
		return nil, false
	}
	p, ok := intercept.MatchRule(slices.Collect(maps.Keys(tr.Rules)), host)
	if !ok {
		return nil, false
	}
	return tr.Rules[p], true
}

// Intercepts implements intercept.Transforms.
func (t transforms) Intercepts(id, host string) bool {
	_, ok := t.rule(id, host)
	return ok
}

// Headers implements intercept.Transforms: the rules' headers in order, a
// later one replacing an earlier one of the same name.
func (t transforms) Headers(ctx context.Context, id, host string) (http.Header, error) {
	rules, ok := t.rule(id, host)
	if !ok {
		return nil, nil
	}
	team, _ := t.d.manager.Owner(id)
	h := http.Header{}
	for _, r := range rules {
		for k, v := range r.Headers {
			val, err := t.d.secrets.Expand(ctx, team, v)
			if err != nil {
				return nil, fmt.Errorf("header %s of the rule for %s: %w", k, host, err)
			}
			h.Set(k, val)
		}
	}
	return h, nil
}

// newIntercept makes the secrets service and the interceptor, before the
// manager (which needs the interceptor's CA).
func (d *Daemon) newIntercept() error {
	sec, err := secrets.New(d.store, d.cfg.DataDir)
	if err != nil {
		return err
	}
	d.secrets = sec
	d.intercept, err = intercept.New(intercept.Config{
		DataDir:        d.cfg.DataDir,
		Transforms:     transforms{d},
		UpstreamCAFile: d.cfg.InterceptUpstreamCA,
		Logger:         d.log,
	})
	return err
}

// Interceptor is the daemon's TLS interception for network rules, to be
// given to the egress proxy as its Intercept hook.
func (d *Daemon) Interceptor() *intercept.Interceptor { return d.intercept }

// interceptHook is the egress proxy's Intercept: the interceptor once it
// is made, nothing before.
func (d *Daemon) interceptHook(ctx context.Context, sandboxID, name string, port int, client net.Conn, dial func(context.Context) (net.Conn, error)) (bool, error) {
	if d.intercept == nil || d.manager == nil {
		return false, nil
	}
	return d.intercept.Intercept(ctx, sandboxID, name, port, client, dial)
}

// hasRules is the egress proxy's Intercepts: whether sandbox id has any
// network rules, so the proxy peeks its connections only then.
func (d *Daemon) hasRules(id string) bool {
	if d.manager == nil {
		return false
	}
	t, ok := d.manager.Traffic(id)
	return ok && len(t.Rules) > 0
}
