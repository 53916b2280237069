package sandpit

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/sandpit-dev/sandpit/gen/openapi"
)

// Network is a sandbox's network settings, E2B's network option: the
// names and addresses it may reach, and who may reach its ports.
type Network struct {
	// AllowOut are the only destinations the sandbox may reach: IPs,
	// CIDRs, DNS names and one-level wildcards ("*.example.com"). Empty:
	// everything not in DenyOut.
	AllowOut []string `json:"allowOut,omitempty"`
	// DenyOut are destinations it may not reach (AllowOut wins over it).
	DenyOut []string `json:"denyOut,omitempty"`
	// AllowPublicTraffic false makes the sandbox's ports private: a
	// request to one must carry the sandbox's TrafficAccessToken. Nil: the
	// server's default, public.
	AllowPublicTraffic *bool `json:"allowPublicTraffic,omitempty"`
	// MaskRequestHost is the Host requests to its ports arrive with;
	// "${PORT}" in it is replaced by the port.
	MaskRequestHost string `json:"maskRequestHost,omitempty"`
	// Rules transform the sandbox's outgoing requests per host (a DNS
	// name or one leading wildcard); header values may name secrets as
	// "${e2b.secrets.NAME}", filled in on the server's side.
	Rules map[string][]NetworkRule `json:"rules,omitempty"`
}

// NetworkRule is one rule for the sandbox's requests to a host.
type NetworkRule struct {
	Transform *NetworkTransform `json:"transform,omitempty"`
}

// NetworkTransform is what a rule changes in a matching request.
type NetworkTransform struct {
	// Headers are set on the request, replacing any the sandbox sent.
	Headers map[string]string `json:"headers,omitempty"`
}

// NetworkLimits bound a sandbox's traffic to the outside (a sandpit
// extension). A zero field takes the server's default; asking for more
// than the server's (or team's) maximum fails Create.
type NetworkLimits struct {
	// EgressBytesPerSecond bounds bytes per second each way.
	EgressBytesPerSecond int64
	// MaxConnections bounds TCP connections to the outside open at once.
	MaxConnections int
}

// NetworkUpdate replaces a running sandbox's outbound rules
// (Sandbox.UpdateNetwork). Every field replaces the sandbox's current
// one: omitted lists and rules are cleared.
type NetworkUpdate struct {
	AllowOut, DenyOut []string
	Rules             map[string][]NetworkRule
	// AllowInternetAccess false cuts the sandbox off from everything
	// AllowOut does not name; nil leaves internet access allowed.
	AllowInternetAccess *bool
}

// WithNetwork sets the new sandbox's network settings.
func WithNetwork(n Network) CreateOption { return networkOption(n) }

type networkOption Network

func (o networkOption) applyCreate(c *createConfig) { n := Network(o); c.network = &n }

// WithNetworkLimits bounds the new sandbox's traffic to the outside.
func WithNetworkLimits(l NetworkLimits) CreateOption { return networkLimitsOption(l) }

type networkLimitsOption NetworkLimits

func (o networkLimitsOption) applyCreate(c *createConfig) { l := NetworkLimits(o); c.limits = &l }

// wireNetwork is n as the API takes it.
func wireNetwork(n *Network) *openapi.SandboxNetworkConfig {
	if n == nil {
		return nil
	}
	w := &openapi.SandboxNetworkConfig{AllowPublicTraffic: n.AllowPublicTraffic, Rules: wireRules(n.Rules)}
	if n.AllowOut != nil {
		w.AllowOut = &n.AllowOut
	}
	if n.DenyOut != nil {
		w.DenyOut = &n.DenyOut
	}
	if n.MaskRequestHost != "" {
		w.MaskRequestHost = &n.MaskRequestHost
	}
	return w
}

func wireRules(rules map[string][]NetworkRule) *openapi.SandboxNetworkRules {
	if len(rules) == 0 {
		return nil
	}
	w := make(openapi.SandboxNetworkRules, len(rules))
	for host, rs := range rules {
		for _, r := range rs {
			var wr openapi.SandboxNetworkRule
			if r.Transform != nil {
				wr.Transform = &openapi.SandboxNetworkTransform{}
				if r.Transform.Headers != nil {
					h := r.Transform.Headers
					wr.Transform.Headers = &h
				}
			}
			w[host] = append(w[host], wr)
		}
	}
	return &w
}

func wireLimits(l *NetworkLimits) *openapi.SandpitNetworkLimits {
	if l == nil {
		return nil
	}
	w := &openapi.SandpitNetworkLimits{}
	if l.EgressBytesPerSecond != 0 {
		w.EgressBytesPerSecond = &l.EgressBytesPerSecond
	}
	if l.MaxConnections != 0 {
		c := int32(l.MaxConnections)
		w.MaxConnections = &c
	}
	return w
}

// UpdateNetwork replaces the outbound rules of sandbox id.
func (c *Client) UpdateNetwork(ctx context.Context, id string, u NetworkUpdate) error {
	body := openapi.SandboxNetworkUpdate{AllowInternetAccess: u.AllowInternetAccess, Rules: wireRules(u.Rules)}
	if u.AllowOut != nil {
		body.AllowOut = &u.AllowOut
	}
	if u.DenyOut != nil {
		body.DenyOut = &u.DenyOut
	}
	_, err := c.api(ctx, "update network of sandbox "+id, http.MethodPut, "/sandboxes/"+url.PathEscape(id)+"/network", body, nil)
	return err
}

// UpdateNetwork replaces the sandbox's outbound rules.
func (sb *Sandbox) UpdateNetwork(ctx context.Context, u NetworkUpdate) error {
	return sb.client.UpdateNetwork(ctx, sb.ID, u)
}

// TrafficAccessToken is the token requests to the sandbox's ports must
// carry in the E2B-Traffic-Access-Token header when it was created with
// AllowPublicTraffic false; "" when its ports are public. PortRequest adds
// it.
func (sb *Sandbox) TrafficAccessToken() string { return sb.trafficToken }

// PortRequest makes a request to path (e.g. "/index.html") on a server
// listening on port inside the sandbox, addressed as the client reaches
// the sandbox and carrying the traffic access token when there is one.
// Send it with any http.Client. It does not carry the sandbox's envd
// access token: that is for the agent only, not for the sandbox's own
// servers.
func (sb *Sandbox) PortRequest(ctx context.Context, method string, port int, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, sb.baseURL(port)+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("E2b-Sandbox-Id", sb.ID)
	req.Header.Set("E2b-Sandbox-Port", strconv.Itoa(port))
	req.Header.Set("User-Agent", userAgent)
	if sb.trafficToken != "" {
		req.Header.Set(trafficTokenHeader, sb.trafficToken)
	}
	return req, nil
}

// trafficTokenHeader carries a sandbox's traffic access token.
const trafficTokenHeader = "E2B-Traffic-Access-Token"
