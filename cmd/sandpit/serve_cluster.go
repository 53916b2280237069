package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/sandpit-dev/sandpit/internal/cluster"
	"github.com/sandpit-dev/sandpit/internal/config"
	"github.com/sandpit-dev/sandpit/internal/daemon"
	"github.com/sandpit-dev/sandpit/internal/template/artifact"
)

// clusterFlags are serve's flags for running as part of a cluster on
// Kubernetes (internal/cluster): --role api or node. The default role,
// all, is the single-machine daemon and reads none of them.
type clusterFlags struct {
	role          string
	kubeconfig    string
	namespace     string
	nodeName      string
	advertise     string
	leaseDuration time.Duration
	registry      string
	// runtime "fake" keeps a node's sandboxes in memory: for scale tests
	// of the control plane (test/cluster/scalesim), never for production.
	runtime string
}

func (f *clusterFlags) register(fs *flag.FlagSet) {
	ns := os.Getenv("SANDPIT_NAMESPACE")
	if ns == "" {
		ns = "sandpit"
	}
	fs.StringVar(&f.role, "role", "all", "all: one machine, state in SQLite; node: run sandboxes for a cluster on Kubernetes; api: serve a cluster's E2B API and route to its nodes")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig `file` of the cluster (--role node|api; default: the pod's service account)")
	fs.StringVar(&f.namespace, "namespace", ns, "Kubernetes namespace of the cluster's objects (--role node|api)")
	fs.StringVar(&f.nodeName, "node-name", "", "this node's name in the cluster (--role node; default: the host name)")
	fs.StringVar(&f.advertise, "advertise", "", "`host:port` the API replicas reach this node on (--role node; default: --listen)")
	fs.StringVar(&f.registry, "registry", "", "OCI `repository` templates built through the cluster's API are pushed to and pulled from, so any node starts them: HOST[:PORT]/PATH over HTTPS (credentials from $DOCKER_CONFIG/config.json), or http://127.0.0.1:PORT/PATH on loopback (--role node)")
	fs.DurationVar(&f.leaseDuration, "lease-duration", cluster.DefaultLeaseDuration, "how long a node that stops renewing its Lease counts as alive (--role node)")
	fs.StringVar(&f.runtime, "runtime", "linux", "TESTING ONLY, NOT FOR PRODUCTION: fake keeps a node's sandboxes in memory, isolating and running nothing, for control-plane scale tests (--role node only)")
}

func (f *clusterFlags) validate() error {
	switch f.role {
	case "all", "node", "api":
	default:
		return fmt.Errorf("--role %q: want all, node or api", f.role)
	}
	switch {
	case f.runtime == "linux":
	case f.runtime != "fake":
		return fmt.Errorf("--runtime %q: want linux", f.runtime)
	case f.role != "node":
		// A fake single-machine daemon would look like a real one to
		// its users while isolating nothing.
		return fmt.Errorf("--runtime fake is for control-plane tests of cluster nodes only: it needs --role node, not %s", f.role)
	}
	return nil
}

func (f *clusterFlags) client() (*cluster.Client, error) {
	rc, err := cluster.Config(f.kubeconfig)
	if err != nil {
		return nil, err
	}
	return cluster.NewClient(rc, f.namespace)
}

// serveAPI runs the stateless API role until ctx is done.
func serveAPI(ctx context.Context, cfg config.Daemon, f clusterFlags, log *slog.Logger) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	// Every request is authenticated here against the cluster's APIKeys
	// (and SANDPIT_API_KEY, the nodes' shared key, which stays the
	// operator's): the nodes see only the shared key.
	rt := cluster.NewRouter(cluster.RouterConfig{
		Client: c, Placer: cluster.NewPlacer(c, 0), Domain: cfg.SandboxDomain(), APIKey: cfg.APIKey,
		Keys: c.WatchKeys(ctx), Teams: c.WatchTeams(ctx), Logger: log,
		// The replica's own audit entries, JSON lines on stdout.
		Audit: slog.New(slog.NewJSONHandler(os.Stdout, nil)),
	})
	if cfg.APIKey == "" {
		log.Warn("SANDPIT_API_KEY is not set: only the cluster's API keys (sandpit keys create --kubeconfig) are accepted, and the nodes check no key")
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{Handler: rt, ReadHeaderTimeout: 30 * time.Second, MaxHeaderBytes: daemon.MaxHeaderBytes}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	go rt.Run(ctx)
	log.Info("sandpit api serving", "listen", ln.Addr().String(), "namespace", f.namespace)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(stopCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// serveNode runs the daemon as a cluster node: it registers (SandboxNode,
// Lease) once it listens, and keeps both fresh while it serves.
func serveNode(ctx context.Context, d *daemon.Daemon, cfg config.Daemon, f clusterFlags, log *slog.Logger) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	name := f.nodeName
	if name == "" {
		if name, err = os.Hostname(); err != nil {
			return fmt.Errorf("--node-name not given and no host name: %w", err)
		}
	}
	addr := f.advertise
	if addr == "" {
		addr = cfg.Listen
	}
	if f.registry != "" {
		if err := shareTemplates(ctx, d, c, name, f.registry, log); err != nil {
			return err
		}
	}
	node, err := cluster.NewNode(cluster.NodeConfig{
		Client: c, Name: name, Address: addr, MaxSandboxes: cfg.MaxSandboxes, LeaseDuration: f.leaseDuration,
		Sandboxes: d.SandboxCount, Exists: d.HasSandbox, Logger: log,
		WarmTemplates: slices.Sorted(maps.Keys(cfg.WarmPool)),
		Templates:     d.TemplateNames,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	// Registering waits for the API server, retrying, while the daemon
	// serves: a node whose API server is away keeps its sandboxes.
	go func() {
		for {
			err := node.Register(ctx)
			if err == nil {
				break
			}
			log.Warn("registering the cluster node", "node", name, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
		log.Info("cluster node registered", "node", name, "address", addr, "namespace", f.namespace)
		node.Run(ctx)
	}()
	return d.Serve(ctx, ln)
}

// shareTemplates makes the node push the templates it builds to the
// registry and pull those built elsewhere from it (--registry).
func shareTemplates(ctx context.Context, d *daemon.Daemon, c *cluster.Client, node, registry string, log *slog.Logger) error {
	store, err := artifact.New(artifact.Config{Repository: registry, LayerDir: d.Templates().LayerDir(), Logger: log})
	if err != nil {
		return fmt.Errorf("--registry: %w", err)
	}
	share, err := cluster.NewTemplateShare(ctx, cluster.TemplateShareConfig{
		Client: c, Node: node, Artifacts: store, Templates: d.Templates(), Logger: log,
	})
	if err != nil {
		return err
	}
	d.Templates().SetRemote(share)
	log.Info("templates shared through the registry", "repository", registry)
	return nil
}
