package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/client-go/rest"

	"github.com/sandpit-dev/sandpit/internal/cluster"
	"github.com/sandpit-dev/sandpit/internal/cluster/clustertest"
)

// procsConfig is the processes mode's: real `sandpit serve` processes,
// -nodes of --role node with the fake runtime and -replicas of --role
// api, driven over HTTP as the E2B SDKs drive them.
type procsConfig struct {
	bin         string
	nodes       int
	replicas    int
	sandboxes   int
	concurrency int
	lease       time.Duration
	settle      time.Duration
	// minCreated, when above zero, makes a run that created fewer than
	// this share of the sandboxes, or whose Sandbox objects are fewer
	// than its creates, an error (the smoke run of make test).
	minCreated float64
}

// runProcs starts the control plane and the processes, creates the
// sandboxes through the API replicas' E2B REST API and prints what the
// control plane carried, counted on its side (kube-apiserver's
// apiserver_request_total, etcd's database size).
func runProcs(ctx context.Context, pc procsConfig) error {
	bin, err := filepath.Abs(pc.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (make build)", pc.bin, err)
	}
	dir, err := os.MkdirTemp("", "sandpit-scalesim-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Remove(dir); err != nil { // up.sh makes it
		return err
	}
	cp, err := clustertest.Start(dir)
	if err != nil {
		return err
	}
	// down.sh stops every process whose pid file is in DIR/pids, nodes
	// and replicas first.
	defer func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "scalesim:", err)
		}
	}()
	etcdURL, err := os.ReadFile(filepath.Join(dir, "etcd-url"))
	if err != nil {
		return err
	}
	rc, err := cluster.Config(cp.Kubeconfig)
	if err != nil {
		return err
	}
	apiserver, err := newMetricsReader(rc)
	if err != nil {
		return err
	}
	key := "e2b_" + randomHex(20)

	started := time.Now()
	// What up.sh runs for a node, with the fake runtime: no uid ranges,
	// egress pools or cgroups are taken.
	nodeArgs := func(i int, addr string) []string {
		name := fmt.Sprintf("sim-%03d", i)
		return []string{"serve", "--role", "node", "--runtime", "fake",
			"--kubeconfig", cp.Kubeconfig, "--namespace", "sandpit", "--node-name", name,
			"--advertise", addr, "--listen", addr, "--data-dir", filepath.Join(dir, "node-"+name),
			"--kill-on-stop", "--max-sandboxes", "1024", "--warm-pool", "base=1", "--min-free-memory", "0",
			"--lease-duration", pc.lease.String()}
	}
	// All nodes start at once (each takes seconds to come up), then each
	// is waited for.
	nodes := make([]*proc, pc.nodes)
	for i := range pc.nodes {
		if nodes[i], err = startProc(dir, fmt.Sprintf("node-sim-%03d", i), key, bin, func(addr string) []string { return nodeArgs(i, addr) }); err != nil {
			return err
		}
	}
	for _, n := range nodes {
		if err := n.wait(ctx); err != nil {
			return err
		}
	}
	apiURLs := make([]string, pc.replicas)
	for i := range pc.replicas {
		api, err := startProc(dir, fmt.Sprintf("api-%d", i+1), key, bin, func(addr string) []string {
			return []string{"serve", "--role", "api", "--kubeconfig", cp.Kubeconfig, "--namespace", "sandpit", "--listen", addr}
		})
		if err != nil {
			return err
		}
		if err := api.wait(ctx); err != nil {
			return err
		}
		apiURLs[i] = "http://" + api.addr
	}
	c, err := cluster.NewClient(rc, "sandpit")
	if err != nil {
		return err
	}
	if err := waitLeases(ctx, c, pc.nodes); err != nil {
		return err
	}
	fmt.Printf("%d node processes (--runtime fake) and %d api processes up in %v\n", pc.nodes, pc.replicas, time.Since(started).Round(time.Millisecond))

	// The idle cluster before the creates: the nodes' heartbeats, the
	// replicas' watches.
	idle0, err := measureIdle(ctx, apiserver, pc.settle)
	if err != nil {
		return err
	}
	sizeBefore, err := etcdSize(strings.TrimSpace(string(etcdURL)))
	if err != nil {
		return err
	}
	before, err := apiserver.read()
	if err != nil {
		return err
	}
	cpuBefore := cpuByRole(dir)

	res := drive(ctx, apiURLs, key, pc.sandboxes, pc.concurrency)
	after, err := apiserver.read()
	if err != nil {
		return err
	}
	cpuDuring := cpuByRole(dir).minus(cpuBefore)
	if res.created == 0 {
		return fmt.Errorf("no create succeeded: %s", res.firstErr)
	}
	// The Sandboxes' status is recorded in the background after each
	// answer; let it land before the idle measure and etcd's size.
	time.Sleep(3 * time.Second)
	idle1, err := measureIdle(ctx, apiserver, pc.settle)
	if err != nil {
		return err
	}
	sizeAfter, err := etcdSize(strings.TrimSpace(string(etcdURL)))
	if err != nil {
		return err
	}
	held, err := c.ListSandboxes(ctx, "")
	if err != nil {
		return err
	}

	during := after.minus(before)
	perCreate := float64(during.total()) / float64(res.created)
	perK := float64(sizeAfter-sizeBefore) / 1024 / float64(res.created) * 1000 // KiB
	hb0, other0 := idle0.counts.split()
	hb1, other1 := idle1.counts.split()
	idlePerNode0 := hb0 / pc.settle.Seconds() / float64(pc.nodes)
	idlePerNode1 := hb1 / pc.settle.Seconds() / float64(pc.nodes)
	fmt.Printf("sandboxes: %d created, %d failed (%s), in %v at concurrency %d over %d api processes; %d Sandbox objects\n",
		res.created, res.failed, orNone(res.firstErr), res.took.Round(time.Millisecond), pc.concurrency, pc.replicas, len(held))
	if pc.minCreated > 0 && (float64(res.created) < pc.minCreated*float64(pc.sandboxes) || len(held) < res.created) {
		return fmt.Errorf("%d of %d sandboxes created, %d Sandbox objects: want at least %.0f%% created, each recorded",
			res.created, pc.sandboxes, len(held), pc.minCreated*100)
	}
	fmt.Printf("creates/s sustained: %.0f (create latency p50 %v, p90 %v, p99 %v)\n",
		float64(res.created)/res.took.Seconds(), res.pct(50), res.pct(90), res.pct(99))
	fmt.Printf("API-server requests per create (apiserver_request_total, everything the processes sent during the creates): %.2f\n", perCreate)
	fmt.Printf("  by verb and resource: %s\n", during.top(8, float64(res.created)))
	fmt.Printf("CPU per create (ms, /proc/PID/stat during the creates): %s\n", cpuDuring.top(4, float64(res.created)/1000))
	cpCPU := (cpuDuring["kube-apiserver"] + cpuDuring["etcd"]) / float64(res.created) // s per create
	allCPU := cpuDuring.total() / float64(res.created)
	fmt.Printf("idle heartbeat, 0 sandboxes: %.2f requests/s per node (lease %v); the api processes' lists and watches %.2f/s; all %.1f/s over %v\n",
		idlePerNode0, pc.lease, other0/pc.settle.Seconds(), idle0.perSecond, pc.settle)
	fmt.Printf("idle heartbeat, %d sandboxes: %.2f requests/s per node; the api processes' %.2f/s; all %.1f/s: %s\n",
		len(held), idlePerNode1, other1/pc.settle.Seconds(), idle1.perSecond, idle1.counts.top(6, pc.settle.Seconds()))
	fmt.Printf("etcd db in use: %d KiB before, %d KiB after: %.0f KiB per 1000 sandboxes (before compaction)\n", sizeBefore>>10, sizeAfter>>10, perK)

	// On paper: 100 nodes holding 1000 sandboxes each.
	const paperNodes, paperPerNode = 100, 1000
	total := paperNodes * paperPerNode
	fmt.Printf("paper, %d nodes x %d sandboxes (%d): heartbeats %.0f requests/s; %d creates cost %.0f API-server requests "+
		"(at the %.0f creates/s measured: %v); etcd +%.0f MiB before compaction (quota 2 GiB by default)\n",
		paperNodes, paperPerNode, total, idlePerNode1*paperNodes, total, perCreate*float64(total),
		float64(res.created)/res.took.Seconds(), (time.Duration(float64(total)/(float64(res.created)/res.took.Seconds())) * time.Second).Round(time.Second),
		perK*float64(total)/1000/1024)
	if cpCPU > 0 {
		fmt.Printf("paper, CPU: kube-apiserver and etcd take %.0f ms per create, so a core of theirs carries ~%.0f creates/s; "+
			"everything here (%.0f ms per create) would carry ~%.0f/s on this machine's 2 cores alone\n",
			cpCPU*1000, 1/cpCPU, allCPU*1000, 2/allCPU)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "no error"
	}
	return "first: " + s
}

// cpuByRole sums the CPU time (seconds) of the processes in DIR/pids by
// role: kube-apiserver, etcd, node (the node-* processes), api.
func cpuByRole(dir string) requestCounts {
	out := requestCounts{}
	files, _ := filepath.Glob(filepath.Join(dir, "pids", "*.pid"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + strings.TrimSpace(string(b)) + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command's closing parenthesis: utime and
		// stime are the 12th and 13th, in clock ticks (100 a second).
		_, rest, ok := bytes.Cut(stat, []byte(") "))
		fields := strings.Fields(string(rest))
		if !ok || len(fields) < 13 {
			continue
		}
		ut, _ := strconv.ParseFloat(fields[11], 64)
		st, _ := strconv.ParseFloat(fields[12], 64)
		role, _, _ := strings.Cut(strings.TrimSuffix(filepath.Base(f), ".pid"), "-")
		if role == "kube" {
			role = "kube-apiserver"
		}
		out[role] += (ut + st) / 100
	}
	return out
}

// proc is a sandpit process scalesim started.
type proc struct {
	dir, name, key, bin string
	args                func(addr string) []string
	addr                string
	done                chan struct{} // closed when it has exited
}

// startProc starts one sandpit process listening on a free loopback port,
// in a session of its own (so a ^C of scalesim reaches scalesim only,
// which stops them through down.sh), its output in DIR/logs/NAME.log, its
// pid in DIR/pids/NAME.pid.
func startProc(dir, name, key, bin string, args func(addr string) []string) (*proc, error) {
	p := &proc{dir: dir, name: name, key: key, bin: bin, args: args}
	return p, p.start()
}

func (p *proc) start() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	p.addr = "127.0.0.1:" + strconv.Itoa(port)
	log, err := os.OpenFile(p.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(p.bin, p.args(p.addr)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "SANDPIT_API_KEY="+p.key)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	if err := os.WriteFile(filepath.Join(p.dir, "pids", p.name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		return err
	}
	done := make(chan struct{})
	p.done = done
	// Reap it when it ends (down.sh's kill), so no zombie stays.
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	return nil
}

func (p *proc) logFile() string { return filepath.Join(p.dir, "logs", p.name+".log") }

// wait waits until the process answers /health, up to two minutes (20
// daemons starting at once on a loaded machine are slow). The port was
// free when picked, not necessarily when the process bound it (other
// engineers' tests share the machine): a process that found it taken is
// started again on another.
func (p *proc) wait(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := p.waitHealth(ctx)
		if err == nil || attempt == 3 || !errors.Is(err, errExited) {
			return err
		}
		log, _ := os.ReadFile(p.logFile())
		if !bytes.Contains(log, []byte("address already in use")) {
			return err
		}
		if err := p.start(); err != nil {
			return err
		}
	}
}

var errExited = errors.New("exited")

func (p *proc) waitHealth(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	client := &http.Client{Timeout: 5 * time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s %w; its log ends:\n%s", p.name, errExited, p.logTail())
		default:
		}
		res, err := client.Get("http://" + p.addr + "/health")
		if err == nil {
			res.Body.Close()
			if res.StatusCode/100 == 2 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer on %s in 2 minutes; its log ends:\n%s", p.name, p.addr, p.logTail())
}

func (p *proc) logTail() []byte {
	b, _ := os.ReadFile(p.logFile())
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return b
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// waitLeases waits until n nodes hold a Lease.
func waitLeases(ctx context.Context, c *cluster.Client, n int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		leases, err := c.ListLeases(ctx)
		if err == nil && len(leases) >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d node Leases after 2 minutes (%v)", len(leases), n, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// driveResult is what the creates came to.
type driveResult struct {
	created, failed int
	firstErr        string
	took            time.Duration
	latencies       []time.Duration
}

func (r driveResult) pct(p int) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[(len(r.latencies)-1)*p/100].Round(time.Millisecond)
}

// drive creates n sandboxes through the api processes, round robin, at
// the given concurrency, as the E2B SDKs do (POST /sandboxes, X-API-Key).
func drive(ctx context.Context, apiURLs []string, key string, n, concurrency int) driveResult {
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
	var next atomic.Int64
	var mu sync.Mutex
	var res driveResult
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				err := create(ctx, client, apiURLs[int(i)%len(apiURLs)], key)
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					res.failed++
					if res.firstErr == "" {
						res.firstErr = err.Error()
					}
				} else {
					res.created++
					res.latencies = append(res.latencies, d)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.took = time.Since(start)
	slices.Sort(res.latencies)
	return res
}

func create(ctx context.Context, client *http.Client, api, key string) error {
	body := `{"templateID":"base","timeout":3600,"metadata":{"purpose":"scalesim"}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api+"/sandboxes", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	if res.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST /sandboxes: %d %s", res.StatusCode, bytes.TrimSpace(b))
	}
	var sb struct {
		SandboxID string `json:"sandboxID"`
	}
	if err := json.Unmarshal(b, &sb); err != nil || sb.SandboxID == "" {
		return fmt.Errorf("POST /sandboxes answered %s", b)
	}
	return nil
}

// requestCounts are apiserver_request_total's counters by "VERB
// resource[/subresource]".
type requestCounts map[string]float64

func (a requestCounts) minus(b requestCounts) requestCounts {
	out := requestCounts{}
	for k, v := range a {
		if d := v - b[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

func (a requestCounts) total() float64 {
	var t float64
	for _, v := range a {
		t += v
	}
	return t
}

// split parts the counts into the nodes' heartbeats (their writes and
// reads of single Leases and SandboxNodes) and the rest (lists and
// watches: the api processes' views of the nodes and Sandboxes).
func (a requestCounts) split() (heartbeat, other float64) {
	for k, v := range a {
		verb, res, _ := strings.Cut(k, " ")
		node := strings.HasPrefix(res, "leases") || strings.HasPrefix(res, "sandboxnodes")
		if node && verb != "LIST" && verb != "WATCH" {
			heartbeat += v
		} else {
			other += v
		}
	}
	return heartbeat, other
}

// top lists the n largest counts divided by div (per create, per second).
func (a requestCounts) top(n int, div float64) string {
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return a[keys[i]] > a[keys[j]] })
	var parts []string
	for i, k := range keys {
		if i == n {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", k, a[k]/div))
	}
	return strings.Join(parts, ", ")
}

// metricsReader reads kube-apiserver's /metrics with the admin's
// credentials.
type metricsReader struct {
	url    string
	client *http.Client
}

func newMetricsReader(rc *rest.Config) (*metricsReader, error) {
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, err
	}
	return &metricsReader{url: strings.TrimSuffix(rc.Host, "/") + "/metrics", client: hc}, nil
}

// read sums apiserver_request_total by verb and resource, leaving out
// non-resource paths (/metrics itself, /healthz).
func (m *metricsReader) read() (requestCounts, error) {
	res, err := m.client.Get(m.url)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", m.url, res.Status)
	}
	return parseRequestTotals(res.Body)
}

// parseRequestTotals sums the apiserver_request_total lines of a
// Prometheus text exposition by "VERB resource[/subresource]".
func parseRequestTotals(r io.Reader) (requestCounts, error) {
	out := requestCounts{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "apiserver_request_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(line, "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("apiserver_request_total: %w", err)
		}
		l := parseLabels(labels)
		name := l["resource"]
		if name == "" {
			// Non-resource paths (/metrics, /healthz) are scalesim's
			// own and the API server's, not sandpit's.
			continue
		}
		if l["subresource"] != "" {
			name += "/" + l["subresource"]
		}
		out[l["verb"]+" "+name] += v
	}
	return out, sc.Err()
}

// parseLabels reads Prometheus labels: k="v",k2="v2" (values here hold
// no quotes or commas).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		if ok {
			out[k] = strings.Trim(v, `"`)
		}
	}
	return out
}

// idle is the API-server load of a cluster doing nothing.
type idle struct {
	perSecond float64
	counts    requestCounts
}

func measureIdle(ctx context.Context, m *metricsReader, d time.Duration) (idle, error) {
	a, err := m.read()
	if err != nil {
		return idle{}, err
	}
	select {
	case <-ctx.Done():
		return idle{}, ctx.Err()
	case <-time.After(d):
	}
	b, err := m.read()
	if err != nil {
		return idle{}, err
	}
	diff := b.minus(a)
	return idle{perSecond: diff.total() / d.Seconds(), counts: diff}, nil
}
