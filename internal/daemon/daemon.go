// Package daemon is the one wiring point of `sandpit serve`: it builds the
// store, templates, runtime, sandbox manager, control-plane API and proxy,
// starts them in order and stops them in reverse.
package daemon

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sandpit-dev/sandpit/internal/agent/files"
	"github.com/sandpit-dev/sandpit/internal/audit"
	"github.com/sandpit-dev/sandpit/internal/cgroup"
	"github.com/sandpit-dev/sandpit/internal/config"
	"github.com/sandpit-dev/sandpit/internal/console"
	"github.com/sandpit-dev/sandpit/internal/egress"
	"github.com/sandpit-dev/sandpit/internal/intercept"
	"github.com/sandpit-dev/sandpit/internal/netproxy"
	"github.com/sandpit-dev/sandpit/internal/proxy"
	"github.com/sandpit-dev/sandpit/internal/restapi"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/linux"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
	"github.com/sandpit-dev/sandpit/internal/secrets"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
	"github.com/sandpit-dev/sandpit/internal/template/debootstrap"
	"github.com/sandpit-dev/sandpit/internal/template/oci"
	"github.com/sandpit-dev/sandpit/templates"
)

// Daemon is a configured, not yet serving, sandpit server.
type Daemon struct {
	cfg   config.Daemon
	log   *slog.Logger
	store *store.SQLite
	// runtime is a *linux.Runtime, or an in-memory one with --runtime
	// fake (fake.go).
	runtime runtime.Runtime
	// builds runs template build sandboxes, apart from the API's own.
	builds    runtime.Runtime
	egress    *egress.Egress  // nil: sandboxes get loopback only
	netproxy  *netproxy.Proxy // serves sandboxes with domain rules
	templates *template.Registry
	manager   *sandbox.Manager
	audit     *audit.Log // nil with --no-audit
	secrets   *secrets.Service
	// intercept injects network rules' headers (see intercept.go).
	intercept *intercept.Interceptor
	handler   http.Handler
	// selfURL is where the daemon reaches its own listener (for /mcp's
	// SDK client); nil until Serve.
	selfURL atomic.Pointer[string]
}

// New builds every part of the daemon and takes over the sandboxes an
// earlier run left running (reaping what a host reboot ended).
// out receives the first-start message with the generated API key.
func New(ctx context.Context, cfg config.Daemon, log *slog.Logger, out io.Writer) (_ *Daemon, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	if err := cfg.CheckHostIDs(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	if err := secureDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			d.close(context.WithoutCancel(ctx))
		}
	}()

	d.store, err = store.OpenSQLite(ctx, filepath.Join(cfg.DataDir, "sandpit.db"))
	if err != nil {
		return nil, err
	}
	if err := d.firstKey(ctx, out); err != nil {
		return nil, err
	}

	started := time.Now()
	base, err := template.BuildBase(ctx, filepath.Join(cfg.DataDir, "templates"))
	if err != nil {
		return nil, fmt.Errorf("preparing the base template: %w", err)
	}
	// The host's userland carries the interpreter's kernels (ipykernel,
	// node), so code-interpreter-v1 starts from the same layers, with its
	// kernels warm.
	ci := *base
	ci.ID, ci.Names, ci.Interpreter = "code-interpreter-v1", []string{"code-interpreter"}, true
	log.Info("base template ready", "template", base.ID, "took", time.Since(started).Round(time.Millisecond))

	builtin := []*template.Template{base, &ci}
	if cfg.FakeRuntime {
		err = d.newFakeRuntime(ctx, builtin)
	} else {
		err = d.newLinuxRuntime(ctx, builtin)
	}
	if err != nil {
		return nil, err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if d.netproxy != nil {
		reg.MustRegister(d.netproxy)
	}
	if !cfg.NoAudit {
		d.audit = audit.New(d.store, d.store, audit.Config{Retention: cfg.AuditRetention, Logger: log, Metrics: reg})
	}
	// Team secrets and the interception of network rules' hosts.
	if err := d.newIntercept(); err != nil {
		return nil, err
	}
	d.manager, err = sandbox.NewManager(sandbox.Config{
		InterceptCA:    d.intercept.CACertPEM(),
		Reaped:         d.auditReaped,
		Runtime:        d.runtime,
		Store:          d.store,
		Templates:      d.templates,
		Snapshots:      d.templates,
		Logger:         log,
		Metrics:        reg,
		DefaultTimeout: cfg.DefaultTimeout,
		MaxTimeout:     cfg.MaxTimeout,
		DefaultDiskMB:  cfg.DefaultDiskMB,
		KeepOnClose:    !cfg.KillOnStop,
		Host: sandbox.HostLimits{
			MaxSandboxes:      cfg.MaxSandboxes,
			MaxPendingCreates: cfg.MaxPendingCreates,
			MinFreeMemory:     int64(cfg.MinFreeMemory),
		},
		WarmPoolMemory: int64(cfg.WarmPoolMemory),
		EgressCeiling:  egressCeiling(cfg),
		EgressDefault:  runtime.EgressLimits{Rate: uint64(cfg.EgressRate), Conns: cfg.EgressMaxConns},
	})
	if err != nil {
		return nil, err
	}
	if err := d.manager.Recover(ctx); err != nil {
		return nil, fmt.Errorf("recovering from the last run: %w", err)
	}
	// The layers the sandboxes taken over stand on stay, though their
	// templates may have been rebuilt or removed since.
	if running, ok := d.manager.TemplatesInUse(); !ok {
		log.Info("template layer GC skipped: a sandbox taken over from the last run has no record of its layers")
	} else if _, err := d.templates.GC(ctx, running...); err != nil {
		log.Warn("template layer GC", "err", err)
	}
	if err := d.manager.StartPool(ctx, cfg.WarmPool); err != nil {
		return nil, err
	}

	extra := http.NewServeMux()
	extra.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mcpHandler, err := d.mcpHandler()
	if err != nil {
		return nil, err
	}
	extra.Handle("/mcp", mcpHandler)
	apiCfg := restapi.Config{
		Manager:   d.manager,
		Keys:      d.store,
		Logger:    log,
		ExtraKey:  cfg.APIKey,
		Domain:    cfg.SandboxDomain(),
		Templates: d.templates,
		AuditLog:  d.store,
		Fallback:  extra,
	}
	apiCfg.Secrets = d.secrets
	// The console's Keys and Team pages.
	apiCfg.KeyAdmin = d.store
	pcfg := proxy.Config{Lookup: d.manager.Lookup, Wake: d.manager.Wake, Signed: d.signedFiles, Authorize: d.authorize, Logger: log}
	pcfg.Traffic = d.sandboxTraffic
	if d.audit != nil {
		apiCfg.Audit = d.audit
		pcfg.Audit = d.auditSandboxRequest
	}
	// The console answers browsers at / and its /assets/; every other
	// control-plane request goes on to the API.
	ui, err := console.New(restapi.New(apiCfg))
	if err != nil {
		return nil, err
	}
	pcfg.Next = ui
	d.handler = proxy.New(pcfg)
	return d, nil
}

// newLinuxRuntime builds the runtime of real sandboxes (namespaces,
// cgroups, egress) and the template registry, whose builds run in a
// runtime of their own.
func (d *Daemon) newLinuxRuntime(ctx context.Context, builtin []*template.Template) error {
	cfg, log := d.cfg, d.log
	var cg cgroup.Manager = cgroup.Noop{}
	if !cfg.NoCgroups {
		var err error
		cg, err = cgroup.New(cgroupParent(cfg))
		if err != nil {
			return fmt.Errorf("cgroups (run with --no-cgroups to go without limits): %w", err)
		}
	}
	d.egress = d.newEgress()
	// A local first: a nil *linux.Runtime in the interface field would
	// not be nil to close.
	rt, err := linux.New(linux.Config{
		StateDir:     filepath.Join(cfg.DataDir, "sandboxes"),
		Cgroups:      cg,
		Logger:       log,
		Egress:       d.egress,
		DiskQuota:    !cfg.NoDiskQuota,
		UIDBase:      cfg.UIDBase,
		MaxSandboxes: cfg.MaxSandboxes,
	})
	if err != nil {
		return rangeHint(err)
	}
	d.runtime = rt
	for _, w := range rt.Warnings() {
		log.Warn("isolation", "warning", w)
	}
	for _, r := range cfg.InsecureRegistries {
		log.Warn("isolation", "warning", "image pulls from "+r+" may reach the host's loopback or private networks (--insecure-registry)")
	}
	return d.newTemplates(ctx, cg, builtin)
}

// killBuilds ends the build sandboxes an earlier run left in rt.
func (d *Daemon) killBuilds(ctx context.Context, rt runtime.Runtime) {
	left, err := rt.List(ctx)
	if err != nil {
		d.log.Warn("listing build sandboxes left by an earlier run", "err", err)
		return
	}
	for _, id := range left {
		if err := rt.Kill(ctx, id); err != nil {
			d.log.Warn("removing a build sandbox left by an earlier run", "sandbox_id", id, "err", err)
		}
	}
}

// rangeHint adds to a runtime's refusal of sandboxes left with other uid
// ranges what the operator can do about it.
func rangeHint(err error) error {
	var re *linux.RangeError
	if !errors.As(err, &re) {
		return err
	}
	return fmt.Errorf("%w: start with the --uid-base (%d) and --max-sandboxes of the run that left them, "+
		"or end them first (serve with those flags and --kill-on-stop, then stop)", err, re.RecordedBase)
}

// authorize tells the proxy whether the API key a sandbox request carries
// is of the sandbox's team.
func (d *Daemon) authorize(r *http.Request, id string) bool {
	auth := restapi.Authenticator{Keys: d.store, ExtraKey: d.cfg.APIKey}
	p, ok, err := auth.Principal(r.Context(), r.Header.Get("X-Api-Key"))
	if err != nil || !ok {
		return false
	}
	team, ok := d.manager.Owner(id)
	return ok && team == p.Team.ID
}

// sandboxTraffic tells the proxy a sandbox's private-port token and Host
// mask.
func (d *Daemon) sandboxTraffic(id string) (proxy.Traffic, bool) {
	t, ok := d.manager.Traffic(id)
	return proxy.Traffic{AccessToken: t.AccessToken, MaskRequestHost: t.MaskRequestHost}, ok
}

// auditSandboxRequest records a state-changing request the proxy served,
// for the team of its sandbox. The sandbox's access token authorized it,
// so no key is named.
func (d *Daemon) auditSandboxRequest(r *http.Request, ev proxy.Event) {
	team, _ := d.manager.Owner(ev.SandboxID)
	d.audit.Record(store.AuditEntry{
		TeamID:   team,
		Action:   ev.Action,
		Target:   ev.SandboxID,
		Result:   strconv.Itoa(ev.Status),
		Client:   r.RemoteAddr,
		Duration: ev.Duration,
		Detail:   ev.Detail,
	})
}

// egressCeiling is the most a create may ask for in sandpitNetworkLimits.
func egressCeiling(cfg config.Daemon) runtime.EgressLimits {
	rate, conns := cfg.EgressCeiling()
	return runtime.EgressLimits{Rate: rate, Conns: conns}
}

// auditEgressRefusal records in the audit log a connection the egress
// proxy refused a sandbox.
func (d *Daemon) auditEgressRefusal(r netproxy.Refusal) {
	if d.audit == nil || d.manager == nil {
		return
	}
	team, _ := d.manager.Owner(r.Sandbox)
	detail := r.Destination.String()
	if r.Name != "" {
		detail += " name " + r.Name
	}
	d.audit.Record(store.AuditEntry{
		TeamID:  team,
		KeyName: "daemon",
		Action:  "network.refused",
		Target:  r.Sandbox,
		Result:  r.Reason,
		Client:  "sandbox",
		Detail:  detail + ": " + r.Rule,
	})
}

// auditReaped records in the audit log a sandbox the last run left that
// is gone (a host reboot ended it): its record is deleted, and this says
// what became of it.
func (d *Daemon) auditReaped(_ context.Context, rec store.SandboxRecord, why error) {
	d.audit.Record(store.AuditEntry{
		TeamID:  rec.TeamID,
		KeyName: "daemon",
		Action:  "sandbox.reaped",
		Target:  rec.ID,
		Result:  "gone",
		Client:  "local",
		Detail:  why.Error(),
	})
}

// newEgress prepares sandbox internet access. A host that cannot give it
// (no nftables NAT in the kernel) still runs sandboxes, offline, and says
// so.
func (d *Daemon) newEgress() *egress.Egress {
	if d.cfg.NoInternet {
		d.log.Info("sandboxes have no internet access (--no-internet)")
		return nil
	}
	// Sandboxes and the proxy's lookups of the names they are allowed
	// use the same resolvers.
	ns := d.cfg.DNS
	if ns == nil {
		ns = egress.HostNameservers()
	}
	d.netproxy = netproxy.New(netproxy.Config{
		Nameservers: ns,
		Refuse:      []netip.Prefix{d.cfg.EgressPool},
		Refused:     d.auditEgressRefusal,
		Intercept:   d.interceptHook,
		Intercepts:  d.hasRules,
		Logger:      d.log,
	})
	eg, err := egress.New(egress.Config{Pool: d.cfg.EgressPool, Nameservers: ns, Proxy: d.netproxy,
		Limits: egress.Limits{Rate: uint64(d.cfg.EgressRate), Conns: d.cfg.EgressMaxConns}})
	if err != nil {
		if kerr := egress.KernelSupport(); kerr != nil {
			d.log.Warn("sandboxes will have no internet access: the kernel lacks nf_tables", "err", kerr)
		} else {
			d.log.Error("sandboxes will have no internet access", "err", err)
		}
		return nil
	}
	if len(eg.Nameservers()) == 0 {
		d.log.Warn("the host names no resolver a sandbox can reach (only loopback ones in /etc/resolv.conf): sandboxes get no DNS")
	}
	return eg
}

// cgroupParent gives each data dir its own cgroup subtree, so daemons
// sharing a host (tests do) never take each other's sandboxes for leftovers
// of their own, while a restarted daemon still finds its own.
func cgroupParent(cfg config.Daemon) string {
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		abs = cfg.DataDir
	}
	sum := sha256.Sum256([]byte(abs))
	return cfg.CgroupParent + "/" + hex.EncodeToString(sum[:4])
}

// signedFiles finds the sandbox whose token signed a /files URL.
func (d *Daemon) signedFiles(r *http.Request) (id, socket string, ok bool) {
	q := r.URL.Query()
	sig := q.Get("signature")
	op := "write"
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		op = "read"
	}
	path, user, exp := q.Get("path"), q.Get("username"), q.Get("signature_expiration")
	return d.manager.FindByToken(func(token string) bool {
		return subtle.ConstantTimeCompare([]byte(files.Sign(path, op, user, token, exp)), []byte(sig)) == 1
	})
}

// Handler is the daemon's whole HTTP surface.
func (d *Daemon) Handler() http.Handler { return d.handler }

// firstKey makes an API key on the first start of a daemon that has none
// and was given none, stores it for the operator (0600) and prints how to
// use it.
func (d *Daemon) firstKey(ctx context.Context, out io.Writer) error {
	if d.cfg.APIKey != "" {
		return nil
	}
	keys, err := d.store.ListKeys(ctx, "")
	if err != nil {
		return err
	}
	for _, k := range keys {
		if !k.Revoked() {
			return nil
		}
	}
	key, _, err := d.store.CreateKey(ctx, store.NewKey{Name: "first", Admin: true})
	if err != nil {
		return err
	}
	path := filepath.Join(d.cfg.DataDir, apiKeyFile)
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return fmt.Errorf("saving the first API key: %w", err)
	}
	url := "http://" + d.cfg.Listen
	fmt.Fprintf(out, "sandpit: created an API key (also saved in %s). Point the E2B SDKs here with:\n\n"+
		"  export E2B_API_URL=%s\n  export E2B_SANDBOX_URL=%s\n  export E2B_API_KEY=%s\n\n", path, url, url, key)
	return nil
}

// MaxHeaderBytes caps a request's line and headers (counted as
// "Name: value" lines): a larger request gets 431 Request Header Fields Too
// Large.
const MaxHeaderBytes = 64 << 10

// newServer returns the daemon's HTTP server for h. net/http bounds what
// it reads of a request head by MaxHeaderBytes plus its buffers' slack and
// answers 431 beyond that, so a wrapper checks the parsed head against the
// exact limit.
func newServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           capHeaders(h),
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// capHeaders answers 431 to a request whose line and headers exceed
// MaxHeaderBytes.
func capHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2 + len("Host: ") + len(r.Host) + 2 + 2
		for k, vs := range r.Header {
			for _, v := range vs {
				n += len(k) + 2 + len(v) + 2
			}
		}
		if n > MaxHeaderBytes {
			w.Header().Set("Connection", "close")
			http.Error(w, fmt.Sprintf("request header fields too large: the request line and headers may take %d KiB", MaxHeaderBytes>>10), http.StatusRequestHeaderFieldsTooLarge)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// streamGrace is how long requests in flight may go on at a stop that
// leaves the sandboxes running, before what is still open (command output
// and watch streams, which only end with their sandbox) is cut: their
// clients reconnect to the next daemon.
const streamGrace = 2 * time.Second

// Run serves until ctx is done, then stops gracefully: the listener closes,
// requests in flight get ShutdownTimeout to finish (streamGrace, when the
// sandboxes outlive the daemon), the sandboxes are left running for the
// next start (killed with KillOnStop) and the store is closed.
func (d *Daemon) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", d.cfg.Listen)
	if err != nil {
		d.close(context.WithoutCancel(ctx))
		return fmt.Errorf("listening on %s: %w", d.cfg.Listen, err)
	}
	return d.Serve(ctx, ln)
}

// Serve is Run on a listener the caller made.
func (d *Daemon) Serve(ctx context.Context, ln net.Listener) error {
	self := loopbackURL(ln.Addr())
	d.selfURL.Store(&self)
	srv := newServer(d.handler, d.log)
	reqCtx, cutRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cutRequests()
	srv.BaseContext = func(net.Listener) context.Context { return reqCtx }
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if d.egress != nil {
		go d.egress.Keep(ctx, 2*time.Second, d.log)
	}
	d.log.Info("sandpit serving", "listen", ln.Addr().String(), "data_dir", d.cfg.DataDir)

	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	d.log.Info("sandpit stopping")
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.ShutdownTimeout)
	defer cancel()
	// Stop accepting, then stop the sandboxes while requests drain: open
	// process and watch streams only end when their sandbox does, or when
	// they are cut.
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(stopCtx) }()
	d.closeSandboxes(stopCtx)
	var err error
	if d.cfg.KillOnStop {
		err = <-shut
	} else {
		select {
		case err = <-shut:
		case <-time.After(streamGrace):
			cutRequests()
			err = <-shut
		}
	}
	if err != nil {
		err = errors.Join(err, srv.Close())
	}
	if serveErr == nil {
		if e := <-errc; !errors.Is(e, http.ErrServerClosed) {
			serveErr = e
		}
	}
	d.close(stopCtx)
	d.log.Info("sandpit stopped")
	return errors.Join(serveErr, err)
}

// newTemplates builds the template registry over the builtin templates:
// build sandboxes run in their own runtime (own state dir, uid ranges above
// the API's, own cgroup subtree), and what an earlier run left of them is
// removed.
func (d *Daemon) newTemplates(ctx context.Context, cg cgroup.Manager, builtin []*template.Template) error {
	bcg := cgroup.Manager(cgroup.Noop{})
	if cg.Kind() != "none" {
		var err error
		if bcg, err = cgroup.New(cgroupParent(d.cfg) + "-builds"); err != nil {
			return fmt.Errorf("cgroups for template builds: %w", err)
		}
	}
	newBuilds := func(base, n int) (*linux.Runtime, error) {
		return linux.New(linux.Config{
			StateDir:     filepath.Join(d.cfg.DataDir, "builds"),
			Cgroups:      bcg,
			Logger:       d.log,
			UIDBase:      base,
			MaxSandboxes: n,
			Egress:       d.egress,
		})
	}
	// Right above the API runtime's ranges (config.UIDRange).
	base := d.cfg.UIDBase + d.cfg.MaxSandboxes*config.IDsPerSandbox
	builds, err := newBuilds(base, config.BuildSandboxes)
	if re := (*linux.RangeError)(nil); errors.As(err, &re) {
		// Builds are never taken over: what a run with other uid ranges
		// left of them ends under those ranges first.
		old, oerr := newBuilds(re.RecordedBase, max(config.BuildSandboxes, re.MaxSlot+1))
		if oerr != nil {
			return oerr
		}
		d.killBuilds(ctx, old)
		if cerr := old.Close(); cerr != nil {
			d.log.Warn("closing the runtime of builds left by an earlier run", "err", cerr)
		}
		builds, err = newBuilds(base, config.BuildSandboxes)
	}
	if err != nil {
		return err
	}
	d.builds = builds
	d.killBuilds(ctx, d.builds)
	return d.newRegistry(ctx, builtin)
}

// newRegistry builds the template registry over the builtin templates,
// its builds run by d.builds.
func (d *Daemon) newRegistry(ctx context.Context, builtin []*template.Template) error {
	builder, err := template.NewBuilder(template.BuilderConfig{
		Runtime:  d.builds,
		LayerDir: filepath.Join(d.cfg.DataDir, "templates", "layers"),
		Logger:   d.log,
	})
	if err != nil {
		return err
	}
	images, err := oci.New(oci.Config{
		LayerDir:           filepath.Join(d.cfg.DataDir, "templates", "layers"),
		Logger:             d.log,
		InsecureRegistries: d.cfg.InsecureRegistries,
	})
	if err != nil {
		return err
	}
	roots, err := debootstrap.New(debootstrap.Config{LayerDir: filepath.Join(d.cfg.DataDir, "templates", "layers"), Builder: builder, Logger: d.log})
	if err != nil {
		return err
	}
	d.templates, err = template.NewRegistry(ctx, template.RegistryConfig{
		Dir:         filepath.Join(d.cfg.DataDir, "templates"),
		Store:       d.store,
		Snapshots:   d.store,
		Builder:     builder,
		Builtin:     builtin,
		Reserved:    templates.Names(),
		Images:      images,
		Debootstrap: roots,
		Logger:      d.log,
	})
	return err
}

// closeSandboxes stops the manager: it kills every sandbox with
// KillOnStop, else only the warm pool's; calling it again does nothing.
func (d *Daemon) closeSandboxes(ctx context.Context) {
	if d.manager != nil {
		if err := d.manager.Close(ctx); err != nil {
			d.log.Error("stopping sandboxes", "err", err)
		}
	}
}

// collectLayers removes the layers of the templates and snapshots removed
// during the run, which the next start would otherwise collect, so a
// stopped daemon leaves none behind. Only with no sandbox left: one left
// running for the next start may stand on such a layer, and what it was
// made from is known to the next start alone (TemplatesInUse).
// Preconditions: the builds and the manager are closed.
func (d *Daemon) collectLayers(ctx context.Context) {
	if d.templates == nil || d.runtime == nil {
		return
	}
	if left, err := d.runtime.List(ctx); err != nil || len(left) > 0 {
		return
	}
	if _, err := d.templates.GC(ctx); err != nil {
		d.log.Warn("template layer GC at stop", "err", err)
	}
}

func (d *Daemon) close(ctx context.Context) {
	if d.templates != nil {
		_ = d.templates.Close()
	}
	// Builds end with the daemon; their runtime's cgroup parent goes when
	// empty.
	if d.builds != nil {
		if err := d.builds.Close(); err != nil {
			d.log.Warn("removing the template builds' cgroup", "err", err)
		}
	}
	d.closeSandboxes(ctx)
	// After the sandboxes: their kills are audited too.
	if err := d.audit.Close(ctx); err != nil {
		d.log.Error("writing the audit log's last entries", "err", err)
	}
	d.collectLayers(ctx)
	if d.runtime != nil {
		_ = d.runtime.Close()
	}
	if d.egress != nil {
		// Sandboxes left running still need their way out past Docker.
		var left []string
		if d.runtime != nil && !d.cfg.KillOnStop {
			left, _ = d.runtime.List(ctx)
		}
		if len(left) > 0 {
			d.egress.Leave()
		} else if err := d.egress.Close(); err != nil {
			d.log.Error("removing sandpit's rules from Docker's chain", "err", err)
		}
	}
	if d.netproxy != nil {
		// Sandboxes left running reach the next daemon's proxy once it
		// adopts them; until then their proxied connections are refused.
		d.netproxy.Close()
	}
	if d.store != nil {
		if err := d.store.Close(); err != nil {
			d.log.Error("closing store", "err", err)
		}
	}
}
