package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/sandpit-dev/sandpit/internal/config"
	"github.com/sandpit-dev/sandpit/internal/daemon"
)

func serve(args []string, stdout, stderr io.Writer) error {
	cfg := config.Defaults()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "host:port to serve the API and sandbox traffic on")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for the database, templates and sandboxes")
	fs.StringVar(&cfg.Domain, "domain", cfg.Domain, "domain reported to SDKs for sandbox hosts (PORT-ID.DOMAIN; default localhost:PORT of --listen)")
	fs.DurationVar(&cfg.DefaultTimeout, "default-timeout", cfg.DefaultTimeout, "lifetime of a sandbox created without a timeout")
	fs.DurationVar(&cfg.MaxTimeout, "max-timeout", cfg.MaxTimeout, "longest lifetime a sandbox may ask for")
	fs.StringVar(&cfg.CgroupParent, "cgroup-parent", cfg.CgroupParent, "cgroup under which each sandbox gets its own")
	fs.BoolVar(&cfg.NoCgroups, "no-cgroups", cfg.NoCgroups, "run sandboxes without memory, CPU and task limits")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	pprofAddr := fs.String("pprof", "", "loopback `host:port` to serve Go's profiler on (/debug/pprof/), for finding where the daemon's time goes")
	pool := fs.String("warm-pool", "base=2,code-interpreter-v1=1", `sandboxes kept started ahead of demand, at least, "template=count,..." or "off"`)
	fs.Var(&cfg.WarmPoolMemory, "warm-pool-memory", "memory the warm pool may hold when it grows with demand past --warm-pool's sizes, e.g. 1GiB (0: fixed sizes)")
	fs.TextVar(&cfg.EgressPool, "egress-pool", cfg.EgressPool, "IPv4 range sandbox network links are addressed from (a /30 each)")
	fs.BoolVar(&cfg.NoInternet, "no-internet", cfg.NoInternet, "give every sandbox loopback only, whatever it asks")
	fs.Var(&cfg.EgressRate, "egress-rate", "bandwidth each sandbox may use each way to the outside, bytes per second, e.g. 10MiB (0: no bound)")
	fs.IntVar(&cfg.EgressMaxConns, "egress-max-conns", cfg.EgressMaxConns, "TCP connections to the outside each sandbox may hold open at once (0: no bound)")
	fs.Var(&cfg.EgressRateMax, "egress-rate-max", "most a create may ask for in sandpitNetworkLimits.egressBytesPerSecond (default: --egress-rate)")
	fs.IntVar(&cfg.EgressMaxConnsMax, "egress-max-conns-max", cfg.EgressMaxConnsMax, "most a create may ask for in sandpitNetworkLimits.maxConnections (default: --egress-max-conns)")
	fs.Func("dns", "resolvers `ADDR[,ADDR]` sandboxes and the egress proxy use, port 53 (default: the host's from /etc/resolv.conf)", func(v string) (err error) {
		cfg.DNS, err = config.ParseDNS(v)
		return err
	})
	fs.IntVar(&cfg.DefaultDiskMB, "default-disk-mb", cfg.DefaultDiskMB, "disk (MB) of a sandbox whose template names none")
	fs.DurationVar(&cfg.AuditRetention, "audit-retention", cfg.AuditRetention, "how long audit log entries are kept (0: for ever)")
	fs.BoolVar(&cfg.NoAudit, "no-audit", cfg.NoAudit, "keep no audit log of who did what")
	fs.BoolVar(&cfg.KillOnStop, "kill-on-stop", cfg.KillOnStop, "kill every sandbox when the daemon stops (by default they keep running and the next start on the same data dir takes them over)")
	fs.BoolVar(&cfg.NoDiskQuota, "no-disk-quota", cfg.NoDiskQuota, "let sandboxes write without a disk cap (no loop device per sandbox)")
	fs.IntVar(&cfg.UIDBase, "uid-base", cfg.UIDBase, "first host uid/gid of the sandboxes' id ranges, 65536 each (must clear /etc/subuid, /etc/subgid and the host's users; fixed while sandboxes run)")
	fs.IntVar(&cfg.MaxSandboxes, "max-sandboxes", cfg.MaxSandboxes, "most sandboxes the daemon holds, running and paused (each takes a uid range; 64 more are kept for template builds)")
	fs.IntVar(&cfg.MaxPendingCreates, "max-pending-creates", cfg.MaxPendingCreates, "most creates in flight at once; past it creates are refused with 503 and Retry-After (0: no bound)")
	fs.Var(&cfg.MinFreeMemory, "min-free-memory", "refuse creates with 503 while the host's available memory is below this (e.g. 512MiB, 2GiB; 0: no floor)")
	fs.Func("insecure-registry", "image registry `HOST[:PORT]` that may be on loopback or private addresses, over plain HTTP (repeatable)", func(v string) error {
		cfg.InsecureRegistries = append(cfg.InsecureRegistries, v)
		return nil
	})
	fs.StringVar(&cfg.InterceptUpstreamCA, "intercept-upstream-ca", cfg.InterceptUpstreamCA, "PEM `file` of CAs trusted, besides the host's roots, for the upstreams of HTTPS requests network rules inject headers into")
	var cf clusterFlags
	cf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cf.validate(); err != nil {
		return err
	}
	cfg.FakeRuntime = cf.runtime == "fake"
	var err error
	if cfg.WarmPool, err = config.ParseWarmPool(*pool); err != nil {
		return err
	}
	cfg.APIKey = os.Getenv("SANDPIT_API_KEY")

	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))

	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr, log); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if cf.role == "api" {
		return serveAPI(ctx, cfg, cf, log)
	}
	d, err := daemon.New(ctx, cfg, log, stdout)
	if err != nil {
		return err
	}
	if cf.role == "node" {
		return serveNode(ctx, d, cfg, cf, log)
	}
	if cf.registry != "" {
		log.Info("--registry is unused without a cluster (--role node): templates stay on this machine")
	}
	return d.Run(ctx)
}
