// Command scalesim measures what sandpit's cluster state costs the
// Kubernetes control plane. It starts a real etcd and kube-apiserver
// (test/cluster/up.sh, control plane only), then, in the default mode
// (-mode processes), -nodes `sandpit serve --role node --runtime fake`
// processes (whole node daemons: REST API, proxy, Lease, SandboxNode,
// reconcile; sandboxes in memory) and -replicas `sandpit serve --role
// api` processes, and creates -sandboxes sandboxes through the replicas'
// E2B REST API (POST /sandboxes) at -concurrency. It prints creates per
// second, API-server requests per create and per idle node per second
// (counted by kube-apiserver: apiserver_request_total), etcd's size per
// 1000 sandboxes, and what 100 nodes of 1000 sandboxes would need.
//
// -mode agents is the older simulation in one process: node agents
// (internal/cluster.Node) and replicas that place and record (Placer,
// Sandbox objects) without HTTP, requests counted on the client side.
//
// Usage (from the repository root, after make build cluster-bins):
//
//	go run ./test/cluster/scalesim -nodes 20 -sandboxes 1000
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/sandpit-dev/sandpit/internal/cluster"
	"github.com/sandpit-dev/sandpit/internal/cluster/clustertest"
)

func main() {
	mode := flag.String("mode", "processes", "processes: sandpit serve processes over HTTP; agents: node agents and replicas in this process")
	bin := flag.String("bin", "bin/sandpit", "the sandpit binary (-mode processes)")
	nodes := flag.Int("nodes", 20, "nodes")
	replicas := flag.Int("replicas", 0, "API replicas placing and recording at once (default 2 processes, or 4 agents)")
	sandboxes := flag.Int("sandboxes", 1000, "sandboxes to create")
	concurrency := flag.Int("concurrency", 16, "creates in flight at once (-mode processes)")
	lease := flag.Duration("lease", cluster.DefaultLeaseDuration, "the nodes' Lease duration")
	settle := flag.Duration("settle", 30*time.Second, "how long to watch the idle cluster's heartbeat load (before and after the creates)")
	minCreated := flag.Float64("min-created", 0, "fail unless at least this share of the creates succeeded and each is recorded (-mode processes; 0: only report)")
	flag.Parse()
	// A ^C stops the run and still takes the cluster down.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *mode {
	case "processes":
		if *replicas == 0 {
			*replicas = 2
		}
		err = runProcs(ctx, procsConfig{bin: *bin, nodes: *nodes, replicas: *replicas, sandboxes: *sandboxes,
			concurrency: *concurrency, lease: *lease, settle: *settle, minCreated: *minCreated})
	case "agents":
		if *replicas == 0 {
			*replicas = 4
		}
		err = run(*nodes, *replicas, *sandboxes, *lease, *settle)
	default:
		err = fmt.Errorf("-mode %q: want processes or agents", *mode)
	}
	if err != nil {
		stop()
		log.Fatal(err)
	}
}

// counter counts the requests a client sends.
type counter struct{ n atomic.Int64 }

func (c *counter) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			c.n.Add(1)
			return rt.RoundTrip(r)
		})
	}
	return cfg
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func run(nNodes, nReplicas, nSandboxes int, lease, settle time.Duration) error {
	dir, err := os.MkdirTemp("", "sandpit-scalesim-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.Remove(dir) // up.sh makes it
	cp, err := clustertest.Start(dir)
	if err != nil {
		return err
	}
	defer cp.Stop()
	etcdURL, err := os.ReadFile(dir + "/etcd-url")
	if err != nil {
		return err
	}
	base, err := cluster.Config(cp.Kubeconfig)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The nodes: each holds the sandboxes placed on it, in memory.
	var nodeReqs counter
	nodeClient, err := cluster.NewClient(nodeReqs.wrap(base), "sandpit")
	if err != nil {
		return err
	}
	var mu sync.Mutex
	held := map[string]map[string]bool{}
	for i := range nNodes {
		name := fmt.Sprintf("sim-%03d", i)
		held[name] = map[string]bool{}
		n, err := cluster.NewNode(cluster.NodeConfig{
			Client: nodeClient, Name: name, Address: "127.0.0.1:" + strconv.Itoa(20000+i), MaxSandboxes: 4096,
			LeaseDuration: lease, WarmTemplates: []string{"base"},
			Sandboxes: func(context.Context) (int, error) {
				mu.Lock()
				defer mu.Unlock()
				return len(held[name]), nil
			},
			Exists: func(_ context.Context, id string) (bool, error) {
				mu.Lock()
				defer mu.Unlock()
				return held[name][id], nil
			},
		})
		if err != nil {
			return err
		}
		if err := n.Register(ctx); err != nil {
			return err
		}
		go n.Run(ctx)
	}
	sizeBefore, err := etcdSize(strings.TrimSpace(string(etcdURL)))
	if err != nil {
		return err
	}

	// The replicas: place, "create on the node", record, as the Router.
	var apiReqs counter
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	nodeReqs.n.Store(0)
	start := time.Now()
	for range nReplicas {
		c, err := cluster.NewClient(apiReqs.wrap(base), "sandpit")
		if err != nil {
			return err
		}
		p := cluster.NewPlacer(c, 0)
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(nSandboxes) {
					return
				}
				node, err := p.Place(ctx, "base")
				if err != nil {
					failed.Add(1)
					continue
				}
				id := fmt.Sprintf("sim%06d", i)
				mu.Lock()
				held[node.Name][id] = true
				mu.Unlock()
				end := metav1.NewTime(time.Now().Add(5 * time.Minute))
				now := metav1.Now()
				sb, err := c.CreateSandbox(ctx, &cluster.Sandbox{
					ObjectMeta: metav1.ObjectMeta{Name: id, Labels: map[string]string{cluster.NodeLabel: node.Name}},
					Spec:       cluster.SandboxSpec{TemplateID: "base", TeamID: "team-sim", EndAt: &end, Metadata: map[string]string{"purpose": "scalesim"}},
				})
				if err != nil {
					failed.Add(1)
					continue
				}
				sb.Status = cluster.SandboxStatus{Phase: cluster.PhaseRunning, NodeName: node.Name, Address: node.Spec.Address, StartedAt: &now}
				if _, err := c.UpdateSandboxStatus(ctx, sb); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	created := int64(nSandboxes) - failed.Load()
	nodeDuring := nodeReqs.n.Load()

	nodeReqs.n.Store(0)
	time.Sleep(settle)
	idle := nodeReqs.n.Load()
	sizeAfter, err := etcdSize(strings.TrimSpace(string(etcdURL)))
	if err != nil {
		return err
	}

	fmt.Printf("nodes %d, replicas %d, sandboxes %d created (%d failed) in %v\n", nNodes, nReplicas, created, failed.Load(), took.Round(time.Millisecond))
	fmt.Printf("creates/s (place + record, %d replicas): %.0f\n", nReplicas, float64(created)/took.Seconds())
	fmt.Printf("API-server requests per create (replicas): %.2f\n", float64(apiReqs.n.Load())/float64(created))
	fmt.Printf("node requests during the creates: %d (%.1f/s)\n", nodeDuring, float64(nodeDuring)/took.Seconds())
	fmt.Printf("idle heartbeat: %.2f requests/s per node (lease %v; %d sandboxes held)\n", float64(idle)/settle.Seconds()/float64(nNodes), lease, created)
	fmt.Printf("etcd db in use: %d KiB before, %d KiB after: %.0f KiB per 1000 sandboxes\n", sizeBefore>>10, sizeAfter>>10, float64(sizeAfter-sizeBefore)/1024/float64(created)*1000)
	return nil
}

// etcdSize reads etcd's logical database size in use from its metrics.
func etcdSize(url string) (int64, error) {
	res, err := http.Get(url + "/metrics")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "etcd_mvcc_db_total_size_in_use_in_bytes "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int64(f), err
		}
	}
	return 0, fmt.Errorf("no etcd_mvcc_db_total_size_in_use_in_bytes in %s/metrics", url)
}
