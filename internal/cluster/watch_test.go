package cluster

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingTransport counts the requests a client makes, by verb: reads
// (GET: get, list) apart from watches and writes, and the reads of
// Leases and SandboxNodes (what the watch replaces).
type countingTransport struct {
	next http.RoundTripper
	n    *requestCount
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	switch {
	case r.Method == http.MethodGet && r.URL.Query().Get("watch") == "true":
		c.n.watches.Add(1)
	case r.Method == http.MethodGet:
		c.n.reads.Add(1)
		if strings.HasSuffix(r.URL.Path, "/leases") || strings.HasSuffix(r.URL.Path, "/sandboxnodes") {
			c.n.nodeReads.Add(1)
		}
	default:
		c.n.writes.Add(1)
	}
	return c.next.RoundTrip(r)
}

type requestCount struct{ reads, nodeReads, watches, writes atomic.Int64 }

func countingClient(t *testing.T) (*Client, *requestCount) {
	t.Helper()
	cfg, err := Config(controlPlane(t).Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	n := &requestCount{}
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return countingTransport{next: rt, n: n}
	}
	c, err := NewClient(cfg, "sandpit")
	if err != nil {
		t.Fatal(err)
	}
	return c, n
}

// The Router reads the live nodes from a watch: the same traffic and
// creates cost far fewer reads of the API server than with its polling
// (figures in the log),
// and a node's death and return are still seen within its Lease.
func TestRouterWatchesNodes(t *testing.T) {
	c := client(t)
	ctx := t.Context()
	const lease = 3 * time.Second
	run := func(f *fakeNode) context.CancelFunc {
		n := registerNode(t, c, f.name, f.addr(), lease)
		nctx, cancel := context.WithCancel(ctx)
		go n.Run(nctx)
		return cancel
	}
	a, b := newFakeNode(t, "watch-a"), newFakeNode(t, "watch-b")
	run(a)
	stopB := run(b)

	var ids []string
	t.Cleanup(func() {
		for _, id := range ids {
			_ = c.DeleteSandbox(context.Background(), id)
		}
	})
	traffic := func(url, id string) (int, string) {
		req, _ := http.NewRequest("GET", url+"/health", nil)
		req.Header.Set("E2b-Sandbox-Id", id)
		req.Header.Set("E2b-Sandbox-Port", "49983")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err) // called from the load's goroutines too
			return 0, ""
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res.StatusCode, string(body)
	}
	var mu sync.Mutex
	createOne := func(url string) string {
		res, err := http.Post(url+"/sandboxes", "application/json", strings.NewReader(`{"templateID":"base","timeout":60}`))
		if err != nil {
			t.Error(err)
			return ""
		}
		var created map[string]string
		_ = json.NewDecoder(res.Body).Decode(&created)
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			t.Errorf("create: %d", res.StatusCode)
		}
		mu.Lock()
		ids = append(ids, created["sandboxID"])
		mu.Unlock()
		return created["sandboxID"]
	}
	// load is 4 s of sandbox traffic (20/s) and a create every 250 ms.
	load := func(url string) {
		first := createOne(url)
		var wg sync.WaitGroup
		wg.Go(func() {
			for range 15 {
				time.Sleep(250 * time.Millisecond)
				createOne(url)
			}
		})
		wg.Go(func() {
			for range 80 {
				traffic(url, first)
				time.Sleep(50 * time.Millisecond)
			}
		})
		wg.Wait()
	}

	polled, pn := countingClient(t)
	pollAPI := httptest.NewServer(NewRouter(RouterConfig{Client: polled, Placer: placerOn(polled, 2, "watch-a", "watch-b")}))
	t.Cleanup(pollAPI.Close)
	load(pollAPI.URL)

	watched, wn := countingClient(t)
	wrt := NewRouter(RouterConfig{Client: watched, Placer: placerOn(watched, 2, "watch-a", "watch-b")})
	go wrt.Run(ctx)
	waitFor(t, 10*time.Second, "the Router's watch", func() bool { _, _, ok := wrt.cfg.Placer.watchedLiveNodes(); return ok })
	wn.reads.Store(0)
	wn.nodeReads.Store(0)
	wn.writes.Store(0)
	wn.watches.Store(0)
	watchAPI := httptest.NewServer(wrt)
	t.Cleanup(watchAPI.Close)
	load(watchAPI.URL)
	t.Logf("16 creates and 80 sandbox requests in 4 s: polling %d reads (%d of Leases and SandboxNodes), %d writes; watching %d reads (%d), %d writes, %d watches (re)started",
		pn.reads.Load(), pn.nodeReads.Load(), pn.writes.Load(), wn.reads.Load(), wn.nodeReads.Load(), wn.writes.Load(), wn.watches.Load())
	// What reads remain are placements again after a conflict with a
	// node's report, which read the API server (how many depends on the
	// machine's load).
	if r := wn.nodeReads.Load(); r*2 > pn.nodeReads.Load() || pn.nodeReads.Load() == 0 {
		t.Errorf("watching made %d reads of Leases and SandboxNodes, polling %d: want under half", r, pn.nodeReads.Load())
	}

	// watch-b stops renewing: its sandboxes are gone within its Lease
	// (and the load's slack), then back when it renews again.
	var onB string
	for _, id := range ids {
		if strings.HasPrefix(id, "watch-b-") {
			onB = id
		}
	}
	if onB == "" {
		t.Fatal("no sandbox placed on watch-b")
	}
	if code, body := traffic(watchAPI.URL, onB); !strings.HasPrefix(body, "watch-b ") {
		t.Fatalf("traffic for %s: %d %q, want watch-b", onB, code, body)
	}
	stopB()
	stopped := time.Now()
	waitFor(t, lease+10*time.Second, "watch-b's sandbox gone", func() bool { code, _ := traffic(watchAPI.URL, onB); return code == http.StatusBadGateway })
	t.Logf("watch-b's sandbox gone %s after its last renewal could have been", time.Since(stopped).Round(100*time.Millisecond))
	run(b)
	waitFor(t, 10*time.Second, "watch-b's sandbox back", func() bool { _, body := traffic(watchAPI.URL, onB); return strings.HasPrefix(body, "watch-b ") })
}
