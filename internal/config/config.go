// Package config is the daemon's typed configuration: defaults, validation,
// and nothing else. cmd/sandpit fills it from flags and the environment.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/internal/safedial"
)

// DefaultListen is where `sandpit serve` listens unless told otherwise.
const DefaultListen = "127.0.0.1:49982"

// Daemon configures `sandpit serve`.
type Daemon struct {
	Listen  string // host:port of the one HTTP listener
	DataDir string // database, templates, sandbox state
	// Domain is reported to SDKs as the sandboxes' domain (getHost
	// returns PORT-ID.DOMAIN). Empty means SandboxDomain's default.
	Domain string
	// APIKey (SANDPIT_API_KEY) is accepted besides the stored keys.
	APIKey string
	// DefaultTimeout is the lifetime of a sandbox created without one.
	DefaultTimeout time.Duration
	// MaxTimeout caps any sandbox lifetime.
	MaxTimeout time.Duration
	// CgroupParent is the cgroup under which each sandbox gets its own.
	CgroupParent string
	// NoCgroups runs sandboxes without resource limits (a logged
	// isolation warning); for hosts where cgroups cannot be written.
	NoCgroups bool
	// ShutdownTimeout bounds a graceful stop.
	ShutdownTimeout time.Duration
	// KillOnStop kills every sandbox when the daemon stops. By default
	// they keep running (processes, network, disks) and the next daemon
	// on the same data dir takes them over.
	KillOnStop bool
	// WarmPool keeps this many sandboxes of each template started ahead
	// of demand (template id or name → count).
	WarmPool map[string]int
	// WarmPoolMemory (bytes) is what the warm pool's sandboxes may hold
	// when it grows past WarmPool's sizes with demand; zero keeps those
	// sizes fixed.
	WarmPoolMemory Bytes
	// EgressPool is the IPv4 range sandbox links are addressed from, a /30
	// each. Daemons on one host must share it.
	EgressPool netip.Prefix
	// NoInternet gives every sandbox loopback only, whatever it asks.
	NoInternet bool
	// DNS are the resolvers (IPv4, port 53) sandboxes are given in their
	// resolv.conf and the egress proxy looks allowed names up at; nil:
	// the host's non-loopback ones from /etc/resolv.conf.
	DNS []netip.Addr
	// EgressRate (bytes per second, each way) and EgressMaxConns (TCP
	// connections to the outside open at once) bound every sandbox's way
	// out; zero: no bound. A create may ask for its own
	// (sandpitNetworkLimits) up to EgressRateMax and EgressMaxConnsMax,
	// which default to EgressRate and EgressMaxConns: by default a create
	// may only lower them.
	EgressRate        Bytes
	EgressMaxConns    int
	EgressRateMax     Bytes
	EgressMaxConnsMax int
	// DefaultDiskMB is the disk of a sandbox whose template names none.
	DefaultDiskMB int
	// NoDiskQuota lets sandboxes write to the state dir's filesystem
	// without a cap (a logged isolation warning); for hosts without loop
	// devices.
	NoDiskQuota bool
	// InsecureRegistries ("HOST" or "HOST:PORT") are image registries the
	// daemon may pull from although they resolve to loopback, private or
	// link-local addresses (an in-cluster registry), over plain HTTP if
	// they speak it. Every other registry must be on public addresses.
	InsecureRegistries []string
	// InterceptUpstreamCA, when set, names a PEM file of CAs trusted
	// besides the host's roots for the upstreams of intercepted HTTPS
	// (network rules' header injection).
	InterceptUpstreamCA string
	// NoAudit turns the audit log off; AuditRetention is how long its
	// entries are kept (zero: for ever).
	NoAudit        bool
	AuditRetention time.Duration

	// UIDBase is the first host uid (and gid) of the sandboxes' ranges,
	// 65536 ids each: MaxSandboxes of them, then BuildSandboxes for
	// template builds (UIDRange). MaxSandboxes also bounds the sandboxes
	// the daemon holds, running and paused, creates in flight included.
	UIDBase      int
	MaxSandboxes int
	// IDFiles are the host's id databases the uid range must stay clear
	// of (CheckHostIDs).
	IDFiles IDFiles
	// MaxPendingCreates bounds the creates in flight at once; past it a
	// create is refused at once (503) rather than queued. Zero: no bound.
	MaxPendingCreates int
	// MinFreeMemory is the host's available memory (MemAvailable) below
	// which creates are refused (503). Zero: no floor.
	MinFreeMemory Bytes
	// FakeRuntime keeps sandboxes in memory (internal/runtime/fake): they
	// isolate and run nothing. Only for control-plane scale tests of
	// cluster nodes (serve --role node --runtime fake); never in
	// production.
	FakeRuntime bool
}

// Defaults returns the configuration of a plain `sandpit serve`.
func Defaults() Daemon {
	return Daemon{
		Listen:          DefaultListen,
		DataDir:         DefaultDataDir(),
		DefaultTimeout:  300 * time.Second,
		MaxTimeout:      24 * time.Hour,
		CgroupParent:    "sandpit",
		ShutdownTimeout: 30 * time.Second,
		WarmPool:        map[string]int{"base": 2, "code-interpreter-v1": 1},
		WarmPoolMemory:  512 << 20,
		EgressPool:      netip.MustParsePrefix("10.213.0.0/16"),
		DefaultDiskMB:   1024,
		AuditRetention:  720 * time.Hour,

		UIDBase:           1 << 20,
		MaxSandboxes:      4096,
		IDFiles:           DefaultIDFiles(),
		MaxPendingCreates: DefaultMaxPendingCreates(),
		MinFreeMemory:     256 << 20,
	}
}

// DefaultMaxPendingCreates is 16 creates in flight per CPU, at least 128:
// enough that the bursts agent platforms make (a harness starting a
// hundred sandboxes at once) wait their turn, as the JS SDK does not retry
// a 503, while a flood of thousands is refused instead of held in memory.
func DefaultMaxPendingCreates() int {
	return max(128, 16*goruntime.NumCPU())
}

// ParseWarmPool reads "template=count,template=count" ("" or "off" for
// none).
func ParseWarmPool(s string) (map[string]int, error) {
	out := map[string]int{}
	if s == "" || s == "off" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		name, n, ok := strings.Cut(strings.TrimSpace(part), "=")
		count, err := strconv.Atoi(n)
		if !ok || name == "" || err != nil || count < 0 || count > 64 {
			return nil, fmt.Errorf("warm pool %q: want template=count with count 0..64", part)
		}
		out[name] = count
	}
	return out, nil
}

// DefaultDataDir is /var/lib/sandpit for root and the XDG data dir
// otherwise.
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/sandpit"
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "sandpit")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "sandpit")
	}
	return filepath.Join(home, ".local", "share", "sandpit")
}

// SandboxDomain is the domain SDKs build sandbox hosts from: Domain, or
// "localhost:PORT" of the listener. Without one the SDKs fall back to
// E2B's cloud domain and getHost names a host that is not sandpit, while
// PORT-ID.localhost:PORT reaches the daemon from browsers and curl, which
// send every *.localhost name to loopback.
func (c Daemon) SandboxDomain() string {
	if c.Domain != "" {
		return c.Domain
	}
	_, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return ""
	}
	return net.JoinHostPort("localhost", port)
}

// Validate reports every problem with c at once.
func (c Daemon) Validate() error {
	var errs []error
	if c.AuditRetention < 0 {
		errs = append(errs, fmt.Errorf("audit retention %s must not be negative", c.AuditRetention))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen address %q: %w", c.Listen, err))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is empty"))
	}
	if c.DefaultTimeout < time.Second {
		errs = append(errs, fmt.Errorf("default timeout %v is under one second", c.DefaultTimeout))
	}
	if c.MaxTimeout < c.DefaultTimeout {
		errs = append(errs, fmt.Errorf("max timeout %v is under the default timeout %v", c.MaxTimeout, c.DefaultTimeout))
	}
	if p := c.EgressPool; !c.NoInternet && (!p.IsValid() || !p.Addr().Is4() || p.Bits() > 29) {
		errs = append(errs, fmt.Errorf("egress pool %s: want an IPv4 range of /29 or larger", p))
	}
	for _, a := range c.DNS {
		if !a.Is4() || a.IsLoopback() || a.IsUnspecified() {
			errs = append(errs, fmt.Errorf("dns server %s: want an IPv4 address a sandbox can reach (not loopback)", a))
		}
	}
	if c.EgressRate < 0 || c.EgressRateMax < 0 || c.EgressMaxConns < 0 || c.EgressMaxConnsMax < 0 {
		errs = append(errs, errors.New("egress limits must not be negative"))
	}
	if c.DefaultDiskMB < 16 || c.DefaultDiskMB > 1<<20 {
		errs = append(errs, fmt.Errorf("default disk %d MB: want 16 MB to 1 TiB", c.DefaultDiskMB))
	}
	for _, r := range c.InsecureRegistries {
		if _, err := safedial.ParseAllow(r); err != nil {
			errs = append(errs, fmt.Errorf("insecure registry: %w", err))
		}
	}
	errs = append(errs, c.validateIDs()...)
	if c.MaxPendingCreates < 0 {
		errs = append(errs, fmt.Errorf("max pending creates %d must not be negative", c.MaxPendingCreates))
	}
	if c.MinFreeMemory < 0 {
		errs = append(errs, fmt.Errorf("min free memory %s must not be negative", c.MinFreeMemory))
	}
	if c.CgroupParent == "" && !c.NoCgroups {
		errs = append(errs, errors.New("cgroup parent is empty"))
	}
	return errors.Join(errs...)
}

// ParseDNS reads --dns: "ADDR[,ADDR...]".
func ParseDNS(v string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("dns server %q: want an IPv4 address", f)
		}
		out = append(out, a)
	}
	return out, nil
}

// EgressCeiling is the most a create may ask for, per field: the max
// flags, or the defaults where they are unset.
func (c Daemon) EgressCeiling() (rate uint64, conns int) {
	rate, conns = uint64(c.EgressRateMax), c.EgressMaxConnsMax
	if rate == 0 {
		rate = uint64(c.EgressRate)
	}
	if conns == 0 {
		conns = c.EgressMaxConns
	}
	return rate, conns
}
