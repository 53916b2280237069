package restapi

import (
	"maps"

	"github.com/sandpit-dev/sandpit/gen/openapi"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
)

// withTraffic reads what of E2B's network option the sandbox proxy
// enforces into req: allowPublicTraffic false (private ports, a token
// returned as trafficAccessToken), maskRequestHost, and rules (headers
// set on the sandbox's outgoing requests to named hosts).
func withTraffic(req *sandbox.CreateRequest, c *openapi.SandboxNetworkConfig) error {
	if c == nil {
		return nil
	}
	req.PrivatePorts = c.AllowPublicTraffic != nil && !*c.AllowPublicTraffic
	if c.MaskRequestHost != nil {
		req.MaskRequestHost = *c.MaskRequestHost
	}
	rules, err := toRules(c.Rules)
	if err != nil {
		return err
	}
	req.Rules = rules
	return nil
}

// toRules is E2B's network.rules in the sandbox package's terms (checked
// there).
func toRules(w *openapi.SandboxNetworkRules) (map[string][]sandbox.Rule, error) {
	if w == nil || len(*w) == 0 {
		return nil, nil
	}
	out := make(map[string][]sandbox.Rule, len(*w))
	for host, rs := range *w {
		for _, r := range rs {
			var rule sandbox.Rule
			if r.Transform != nil && r.Transform.Headers != nil {
				rule.Headers = maps.Clone(*r.Transform.Headers)
			}
			out[host] = append(out[host], rule)
		}
	}
	return sandbox.CheckRules(out)
}

// trafficToken is the trafficAccessToken of a sandbox response: null for
// public ports.
func trafficToken(i sandbox.Info) *string {
	if i.Traffic == nil {
		return nil
	}
	return optString(i.Traffic.AccessToken)
}

// withWireTraffic adds t to a sandbox detail's network; ports are public
// unless t says otherwise.
func withWireTraffic(c *openapi.SandboxNetworkConfig, t *sandbox.Traffic) *openapi.SandboxNetworkConfig {
	if t == nil {
		return c
	}
	if c == nil {
		c = &openapi.SandboxNetworkConfig{}
	}
	public := t.AccessToken == ""
	c.AllowPublicTraffic = &public
	if t.MaskRequestHost != "" {
		c.MaskRequestHost = &t.MaskRequestHost
	}
	if len(t.Rules) > 0 {
		rules := openapi.SandboxNetworkRules{}
		for host, rs := range t.Rules {
			for _, r := range rs {
				h := maps.Clone(r.Headers)
				rules[host] = append(rules[host], openapi.SandboxNetworkRule{Transform: &openapi.SandboxNetworkTransform{Headers: &h}})
			}
		}
		c.Rules = &rules
	}
	return c
}
