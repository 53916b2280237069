package restapi

import (
	"net/http"

	"github.com/sandpit-dev/sandpit/gen/openapi"
	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
)

// toNetwork reads E2B's network option. What sandpit cannot do is refused
// by name rather than ignored: a client that asked for a proxy or for
// private ports must not believe it got them.
func toNetwork(c *openapi.SandboxNetworkConfig) (*sandbox.Network, error) {
	if c == nil {
		return nil, nil
	}
	// allowPublicTraffic, maskRequestHost and rules: see traffic.go.
	if err := unsupportedEgress(c.EgressProxy); err != nil {
		return nil, err
	}
	return &sandbox.Network{AllowOut: derefSlice(c.AllowOut), DenyOut: derefSlice(c.DenyOut)}, nil
}

// withLimits adds the sandpit extension sandpitNetworkLimits to n.
func withLimits(n *sandbox.Network, l *openapi.SandpitNetworkLimits) (*sandbox.Network, error) {
	if l == nil {
		return n, nil
	}
	var lim runtime.EgressLimits
	if l.EgressBytesPerSecond != nil {
		if *l.EgressBytesPerSecond < 0 {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "sandpitNetworkLimits.egressBytesPerSecond must not be negative")
		}
		lim.Rate = uint64(*l.EgressBytesPerSecond)
	}
	if l.MaxConnections != nil {
		if *l.MaxConnections < 0 {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "sandpitNetworkLimits.maxConnections must not be negative")
		}
		lim.Conns = int(*l.MaxConnections)
	}
	if n == nil {
		n = &sandbox.Network{}
	}
	n.Limits = lim
	return n, nil
}

func unsupportedEgress(proxy *map[string]any) error {
	if proxy != nil && *proxy != nil {
		return errdefs.New(errdefs.ErrInvalidArgument, "network.egressProxy is not supported")
	}
	return nil
}

func derefSlice(s *[]string) []string {
	if s == nil {
		return nil
	}
	return *s
}

func toWireNetwork(n *sandbox.Network) *openapi.SandboxNetworkConfig {
	if n == nil {
		return nil
	}
	c := &openapi.SandboxNetworkConfig{}
	if n.AllowOut != nil {
		c.AllowOut = &n.AllowOut
	}
	if n.DenyOut != nil {
		c.DenyOut = &n.DenyOut
	}
	return c
}

// UpdateSandboxNetwork implements openapi.ServerInterface: PUT
// /sandboxes/{sandboxID}/network replaces the rules.
func (s *server) UpdateSandboxNetwork(w http.ResponseWriter, r *http.Request, id openapi.SandboxID) {
	if !s.owned(w, r, id) {
		return
	}
	var body openapi.SandboxNetworkUpdate
	if err := decodeBody(w, r, &body, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := unsupportedEgress(body.EgressProxy); err != nil {
		s.writeError(w, r, err)
		return
	}
	rules, err := toRules(body.Rules)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// Refuse what SetRules would refuse before UpdateNetwork changes
	// anything: a refused update changes nothing.
	if err := s.cfg.Manager.CheckSetRules(id, rules); err != nil {
		s.writeError(w, r, err)
		return
	}
	n := &sandbox.Network{AllowOut: derefSlice(body.AllowOut), DenyOut: derefSlice(body.DenyOut)}
	if err := s.cfg.Manager.UpdateNetwork(r.Context(), id, n, allowInternet(body.AllowInternetAccess)); err != nil {
		s.writeError(w, r, err)
		return
	}
	// The update replaces every rule; omitted, rules are cleared.
	if err := s.cfg.Manager.SetRules(r.Context(), id, rules); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
