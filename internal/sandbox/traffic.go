package sandbox

import (
	"context"
	"fmt"
	"maps"
	"net"
	"path"
	"strings"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template/agentexec"
)

// Traffic is what a sandbox's traffic carries beyond its network rules:
// E2B's network.allowPublicTraffic (AccessToken, required of requests to
// its ports), maskRequestHost and rules (headers set on its requests to
// named hosts).
type Traffic struct {
	// AccessToken, when set, must come with every request to the
	// sandbox's ports but envd's, in the e2b-traffic-access-token
	// header (E2B's trafficAccessToken).
	AccessToken string
	// MaskRequestHost replaces the Host of requests proxied to the
	// sandbox's ports; ${PORT} in it stands for the port.
	MaskRequestHost string
	// Rules maps a host pattern ("api.example.com", "*.example.com") to
	// the rules of the sandbox's requests to it.
	Rules map[string][]Rule
}

// Rule is one of E2B's network rules: headers to set on matching
// requests. Values may name team secrets as ${e2b.secrets.NAME}, resolved
// on the way out, outside the sandbox.
type Rule struct {
	Headers map[string]string
}

// Limits on network rules.
const (
	MaxRuleHosts   = 64
	MaxRuleHeaders = 32
	maxMaskLen     = 253 + len(":${PORT}")
)

func (t *Traffic) empty() bool {
	return t == nil || t.AccessToken == "" && t.MaskRequestHost == "" && len(t.Rules) == 0
}

func (t *Traffic) clone() *Traffic {
	if t == nil {
		return nil
	}
	c := *t
	c.Rules = cloneRules(t.Rules)
	return &c
}

func cloneRules(rules map[string][]Rule) map[string][]Rule {
	if rules == nil {
		return nil
	}
	out := make(map[string][]Rule, len(rules))
	for h, rs := range rules {
		cp := make([]Rule, len(rs))
		for i, r := range rs {
			cp[i] = Rule{Headers: maps.Clone(r.Headers)}
		}
		out[h] = cp
	}
	return out
}

// CheckRules validates E2B's network.rules and returns them with their
// hosts lower-cased: exact DNS names or one leading wildcard label
// ("*.example.com"); a bare "*" is refused, as on E2B.
func CheckRules(rules map[string][]Rule) (map[string][]Rule, error) {
	if len(rules) > MaxRuleHosts {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("network.rules has %d hosts; at most %d are allowed", len(rules), MaxRuleHosts))
	}
	out := make(map[string][]Rule, len(rules))
	for host, rs := range rules {
		h := strings.ToLower(strings.TrimSpace(host))
		name := strings.TrimPrefix(h, "*.")
		if name == "" || strings.Contains(name, "*") || !validName(name) {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("network.rules: %q is not a DNS name or a leading wildcard (*.example.com)", host))
		}
		for _, r := range rs {
			if len(r.Headers) > MaxRuleHeaders {
				return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("network.rules[%q]: at most %d headers per rule", host, MaxRuleHeaders))
			}
			for k, v := range r.Headers {
				if !validHeaderName(k) || strings.ContainsAny(v, "\r\n\x00") {
					return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("network.rules[%q]: header %q is not a valid HTTP header", host, k))
				}
			}
		}
		for _, r := range rs {
			out[h] = append(out[h], Rule{Headers: maps.Clone(r.Headers)})
		}
	}
	return out, nil
}

func validName(name string) bool {
	if len(name) > 253 || net.ParseIP(name) != nil {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return false
		}
	}
	return true
}

func checkMask(mask string) error {
	if len(mask) > maxMaskLen || strings.ContainsAny(mask, " \t\r\n\x00/") {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("network.maskRequestHost %.64q is not a host", mask))
	}
	return nil
}

// Traffic returns sandbox id's traffic settings, whether it runs or is
// paused; ok is false for an unknown sandbox. The proxy asks on every
// request to a sandbox's ports: it takes no lock. The Rules map is
// shared; callers must not change it.
func (m *Manager) Traffic(id string) (t Traffic, ok bool) {
	v, ok := m.routes.Load(id)
	if !ok {
		return Traffic{}, false
	}
	if p := v.(*route).traffic.Load(); p != nil {
		return *p, true
	}
	return Traffic{}, true
}

// CheckSetRules reports, without changing anything, whether SetRules(id,
// rules) would be refused for the rules or the sandbox's state, so that
// an update carrying other changes too can refuse before making any.
func (m *Manager) CheckSetRules(id string, rules map[string][]Rule) error {
	rules, err := CheckRules(rules)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.sandboxes[id]
	if !ok {
		return notFound(id)
	}
	if len(m.interceptCA) > 0 && len(rules) > 0 && !m.intercepts(e.info.Traffic) && e.info.State != StateRunning {
		return pausedForRules(id)
	}
	return nil
}

func pausedForRules(id string) error {
	return errdefs.New(errdefs.ErrConflict, fmt.Sprintf("sandbox %s is paused: resume it before adding network rules, which install the interception CA in it", id))
}

// SetRules replaces a running sandbox's network rules (E2B's
// updateNetwork with rules; nil clears them). Rules where there were none
// install the interception CA in the sandbox (its HTTPS to their hosts
// would not verify otherwise), which needs it running, and send its
// traffic through the runtime's proxy; clearing them ends that.
func (m *Manager) SetRules(ctx context.Context, id string, rules map[string][]Rule) error {
	rules, err := CheckRules(rules)
	if err != nil {
		return m.count(err)
	}
	if len(rules) == 0 {
		rules = nil
	}
	m.mu.Lock()
	e, ok := m.sandboxes[id]
	var had, want, running, online, stopped, blocked bool
	var socket, token string
	var network *Network
	if ok {
		had, want = m.intercepts(e.info.Traffic), len(m.interceptCA) > 0 && len(rules) > 0
		running = e.info.State == StateRunning
		online, blocked, network = e.info.AllowInternet, e.info.InternetBlocked, e.info.Network.clone()
		stopped = e.info.State == StatePaused && e.info.PausedFilesystemOnly
		socket, token = e.route.socket, e.route.token
	}
	m.mu.Unlock()
	if !ok {
		return m.count(notFound(id))
	}
	if want && !had {
		if !running {
			return m.count(pausedForRules(id))
		}
		if err := installCA(ctx, socket, token, m.interceptCA); err != nil {
			return m.count(fmt.Errorf("installing the interception CA in sandbox %s: %w", id, err))
		}
	}
	if want != had && online && !stopped {
		p, err := network.policy(blocked, want)
		if err != nil {
			return m.count(err)
		}
		setter, ok := m.rt.(runtime.EgressSetter)
		if !ok {
			return m.count(errdefs.New(errdefs.ErrUnavailable, "this runtime cannot change network rules of a running sandbox"))
		}
		if err := setter.SetEgress(ctx, id, p); err != nil {
			return m.count(err)
		}
	}
	m.mu.Lock()
	e, ok = m.sandboxes[id]
	var stored *Traffic
	if ok {
		t := e.info.Traffic.clone()
		if t == nil {
			t = &Traffic{}
		}
		t.Rules = rules
		if t.empty() {
			t = nil
		}
		e.info.Traffic = t
		stored = t.clone()
		e.route.traffic.Store(t.clone())
	}
	m.mu.Unlock()
	if !ok {
		return m.count(notFound(id))
	}
	if err := m.store.SetSandboxTraffic(ctx, id, storedTraffic(stored)); err != nil {
		m.log.WarnContext(ctx, "recording sandbox network rules", "sandbox_id", id, "err", err)
	}
	return nil
}

// newTraffic is the Traffic a create asks for, nil when none.
func newTraffic(req *CreateRequest) (*Traffic, error) {
	t := &Traffic{MaskRequestHost: req.MaskRequestHost}
	if req.PrivatePorts {
		t.AccessToken = newToken()
	}
	if err := checkMask(req.MaskRequestHost); err != nil {
		return nil, err
	}
	rules, err := CheckRules(req.Rules)
	if err != nil {
		return nil, err
	}
	if len(rules) > 0 {
		t.Rules = rules
	}
	if t.empty() {
		return nil, nil
	}
	return t, nil
}

// storedTraffic is t as the store keeps it.
func storedTraffic(t *Traffic) *store.SandboxTraffic {
	if t.empty() {
		return nil
	}
	st := &store.SandboxTraffic{AccessToken: t.AccessToken, MaskRequestHost: t.MaskRequestHost}
	if len(t.Rules) > 0 {
		st.Rules = make(map[string][]store.TrafficRule, len(t.Rules))
		for h, rs := range t.Rules {
			for _, r := range rs {
				st.Rules[h] = append(st.Rules[h], store.TrafficRule{Headers: maps.Clone(r.Headers)})
			}
		}
	}
	return st
}

// trafficFromRecord is the Traffic a stored record describes.
func trafficFromRecord(st *store.SandboxTraffic) *Traffic {
	if st == nil {
		return nil
	}
	t := &Traffic{AccessToken: st.AccessToken, MaskRequestHost: st.MaskRequestHost}
	if len(st.Rules) > 0 {
		t.Rules = make(map[string][]Rule, len(st.Rules))
		for h, rs := range st.Rules {
			for _, r := range rs {
				t.Rules[h] = append(t.Rules[h], Rule{Headers: maps.Clone(r.Headers)})
			}
		}
	}
	return t
}

func parentMask(t *Traffic) string {
	if t == nil {
		return ""
	}
	return t.MaskRequestHost
}

func parentRules(t *Traffic) map[string][]Rule {
	if t == nil {
		return nil
	}
	return cloneRules(t.Rules)
}

// Where a sandbox with network rules finds the interception CA: its own
// file (what update-ca-certificates reads, and Node's extra CAs), and
// appended to the system bundle every OpenSSL, curl and Python client
// reads. The variables point the clients that bring their own roots
// (Node, requests' certifi) at them.
const (
	caCertPath   = "/usr/local/share/ca-certificates/sandpit-intercept.crt"
	caBundlePath = "/etc/ssl/certs/ca-certificates.crt"
)

var caEnv = map[string]string{
	"NODE_EXTRA_CA_CERTS": caCertPath,
	"SSL_CERT_FILE":       caBundlePath,
	"REQUESTS_CA_BUNDLE":  caBundlePath,
	"CURL_CA_BUNDLE":      caBundlePath,
}

// needsCA reports whether a sandbox with t must trust the interception
// CA: only one whose rules may have its HTTPS intercepted.
func (m *Manager) needsCA(t *Traffic) bool {
	return len(m.interceptCA) > 0 && t != nil && len(t.Rules) > 0
}

// intercepts reports whether the runtime's proxy must see the traffic of
// a sandbox with t, to apply its rules: the same sandboxes as needsCA.
func (m *Manager) intercepts(t *Traffic) bool { return m.needsCA(t) }

// installCA writes the CA certificate into a sandbox's trust store, as
// root, through its agent: at create, or when rules are added later. The certificate is public: nothing secret
// enters the sandbox.
func installCA(ctx context.Context, socket, token string, certPEM []byte) error {
	pem := strings.TrimSpace(string(certPEM))
	if strings.Contains(pem, "SANDPIT_CA") || strings.Contains(pem, "'") {
		return fmt.Errorf("the CA certificate is not plain PEM")
	}
	script := "set -e\n" +
		"mkdir -p " + path.Dir(caCertPath) + " " + path.Dir(caBundlePath) + "\n" +
		"cat > " + caCertPath + " <<'SANDPIT_CA'\n" + pem + "\nSANDPIT_CA\n" +
		// Once only: rules added to a running sandbox install it again.
		"grep -qxF \"$(sed -n 2p " + caCertPath + ")\" " + caBundlePath + " 2>/dev/null || cat " + caCertPath + " >> " + caBundlePath + "\n"
	c := agentexec.New(socket, token)
	defer c.Close()
	var out strings.Builder
	if err := c.Run(ctx, agentexec.Command{Script: script, User: "root", Cwd: "/", Output: &out}); err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}
