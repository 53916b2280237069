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
	WarmPoolMemory int64
	// EgressPool is the IPv4 range sandbox links are addressed from, a /30
	// each. Daemons on one host must share it.
	EgressPool netip.Prefix
	// NoInternet gives every sandbox loopback only, whatever it asks.
	NoInternet bool
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
	// NoAudit turns the audit log off; AuditRetention is how long its
	// entries are kept (zero: for ever).
	NoAudit        bool
	AuditRetention time.Duration
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
	}
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

// ParseBytes reads a size: a number of bytes, or one with a binary unit
// (K, M, G, T, alone or as KiB, MiB, GiB, TiB; case-insensitive), such as
// "512MiB".
func ParseBytes(s string) (int64, error) {
	num := strings.TrimSpace(s)
	unit := int64(1)
	upper := strings.ToUpper(num)
	for i, u := range []string{"K", "M", "G", "T"} {
		for _, suffix := range []string{u + "IB", u + "B", u} {
			if strings.HasSuffix(upper, suffix) {
				num, unit = strings.TrimSpace(num[:len(num)-len(suffix)]), int64(1)<<(10*(i+1))
				break
			}
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/unit {
		return 0, fmt.Errorf("size %q: want a number of bytes, or one with K, M, G or T (binary units)", s)
	}
	return n * unit, nil
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
	if c.DefaultDiskMB < 16 || c.DefaultDiskMB > 1<<20 {
		errs = append(errs, fmt.Errorf("default disk %d MB: want 16 MB to 1 TiB", c.DefaultDiskMB))
	}
	for _, r := range c.InsecureRegistries {
		if _, err := safedial.ParseAllow(r); err != nil {
			errs = append(errs, fmt.Errorf("insecure registry: %w", err))
		}
	}
	if c.CgroupParent == "" && !c.NoCgroups {
		errs = append(errs, errors.New("cgroup parent is empty"))
	}
	return errors.Join(errs...)
}
