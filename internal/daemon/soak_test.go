package daemon_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/store"
	sandpit "github.com/sandpit-dev/sandpit/sdk"
	"github.com/sandpit-dev/sandpit/sdk/sandpittest"
)

// soakPool is the soak's own egress pool, so its veths and nftables
// elements are told apart from those of the daemons and tests sharing the
// host. Its table stays after the daemon stops, as every egress table
// does: daemons configured alike share one, and removing it under
// another's running sandboxes would let their traffic through unfiltered.
var soakPool = netip.MustParsePrefix("10.212.0.0/20")

// TestSoak: after create, command, pause/resume, snapshot, fork, network
// policy and kill cycles at concurrency, with template builds alongside,
// and many sandboxes alive at once, the daemon's file descriptors,
// goroutines, heap and metric series come back to where they were before
// the run, and an idle sandbox costs it little heap. Once it stops
// (during a build, leaving running sandboxes running, as by default) the
// host holds nothing of it: no sandbox process, mount, loop device, veth,
// nftables element, cgroup, unused template layer or file in its data dir
// outside the stores. Each kind is reported by name with what is left.
//
// The short form (the default, in `make test`) runs 300 cycles at
// concurrency 8 and 40 sandboxes at once; the long form runs more:
//
//	SANDPIT_SOAK_CYCLES=10000 SANDPIT_SOAK_LIVE=200 go test -count=1 -timeout 2h -run TestSoak ./internal/daemon/
//
// SANDPIT_SOAK_CONCURRENCY changes the concurrency; SANDPIT_SOAK_BUDGET
// (a duration) is the time after which no new cycle starts (default: 2m
// for the short form, 90m for a long one); the cycles done are logged.
func TestSoak(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs sandpit serve, which needs root")
	}
	cycles := envInt(t, "SANDPIT_SOAK_CYCLES", 300)
	conc := envInt(t, "SANDPIT_SOAK_CONCURRENCY", 8)
	live := envInt(t, "SANDPIT_SOAK_LIVE", 40)
	budget := 2 * time.Minute
	if cycles > 1000 {
		budget = 90 * time.Minute
	}
	if v := os.Getenv("SANDPIT_SOAK_BUDGET"); v != "" {
		var err error
		if budget, err = time.ParseDuration(v); err != nil {
			t.Fatalf("SANDPIT_SOAK_BUDGET: %v", err)
		}
	}

	dataDir, err := os.MkdirTemp("", "sandpit-soak-")
	if err != nil {
		t.Fatal(err)
	}
	scope := newHostScope(dataDir, soakPool)
	t.Cleanup(func() {
		// Removing a tree that still has mounts in it would reach
		// through them (template layers are the host's own files).
		c := census{}
		scope.mounts(c)
		if m := c[kindMount]; len(m) > 0 {
			t.Logf("leaving %s in place: mounts remain in it: %v", dataDir, m)
			return
		}
		os.RemoveAll(dataDir)
	})
	before := scope.take()
	t.Logf("before the daemon: %s", before.summary())

	ctx, cancel := context.WithTimeout(t.Context(), budget+10*time.Minute)
	defer cancel()
	// GOGC=1 has the daemon collect as soon as its heap grows by 1%: the
	// heap figures below (from /metrics, whose own scrape allocates more
	// than that) are then what is live, not what the last collection left
	// of garbage, so they measure retention. The daemon has no endpoint
	// that forces a collection, and gets none for this.
	t.Setenv("GOGC", "1")
	// The daemon stops as `sandpit serve` does by default, leaving
	// running sandboxes running (sandpittest asks for --kill-on-stop,
	// the later flag wins): every sandbox the soak made it has killed,
	// so one the daemon lost track of is found, not killed at the stop.
	srv, err := sandpittest.Start(ctx, sandpittest.Options{Args: []string{
		// A fixed pool: one grown with demand holds more sandboxes (and
		// their descriptors) at the end than at the baseline, until it
		// shrinks when idle minutes later.
		"--data-dir", dataDir, "--egress-pool", soakPool.String(), "--warm-pool", "base=2", "--warm-pool-memory", "0",
		"--kill-on-stop=false",
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	scope.daemon = childWith(dataDir)
	if scope.daemon == 0 {
		t.Fatal("cannot find the daemon's pid")
	}
	// Every template and snapshot the soak makes it removes: the layers
	// left at the end are to be those the daemon starts with.
	before[kindLayer] = scope.take()[kindLayer]
	tr := &http.Transport{MaxIdleConnsPerHost: conc}
	client, err := sandpit.NewClient(sandpit.WithURL(srv.URL), sandpit.WithAPIKey(srv.APIKey),
		sandpit.WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatal(err)
	}
	s := &soak{t: t, srv: srv, pid: scope.daemon, client: client, hc: &http.Client{Transport: tr}}

	// Warm up first: the first sandbox, build, pause and snapshot fill
	// caches, database connections and pools that are meant to stay.
	warm := max(16, 2*conc)
	s.run(ctx, 0, warm, conc, time.Hour)
	s.build(ctx, 0)
	if s.failed() {
		t.Fatalf("the warm-up failed:\n%s", s.errorList())
	}
	base := s.settle(ctx, tr, daemonFigures{}, scope.daemon)
	t.Logf("baseline after %d warm-up cycles: %s\n  fds: %s", warm, base, base.fdTargets)

	// Template builds alongside the cycles put build sandboxes in the
	// builds' cgroup while the API's sandboxes come and go.
	start := time.Now()
	runCtx, stopBuilds := context.WithCancel(ctx)
	var builds sync.WaitGroup
	builds.Add(1)
	go func() {
		defer builds.Done()
		for i := 1; i <= max(2, cycles/150) && runCtx.Err() == nil; i++ {
			s.build(runCtx, i)
		}
	}()
	done := s.run(ctx, warm, cycles, conc, budget)
	builds.Wait()
	stopBuilds()
	took := time.Since(start)
	t.Logf("%d cycles (%d builds) at concurrency %d in %s: %.1f cycles/s", done, s.builds.Load(), conc, took.Round(time.Millisecond), float64(done)/took.Seconds())
	if done < cycles {
		t.Logf("the %s budget ran out after %d of %d cycles", budget, done, cycles)
	}
	if s.failed() {
		t.Errorf("cycles failed:\n%s", s.errorList())
	}

	// Many sandboxes alive at once, then all killed: what the daemon
	// keeps per live sandbox must go with it.
	s.live(ctx, live, conc)

	after := s.settle(ctx, tr, base, scope.daemon)
	t.Logf("after the run: %s\n  fds: %s", after, after.fdTargets)
	for _, p := range base.leaks(after) {
		t.Error(p)
	}
	// A fork's layer goes with its last sandbox, not at the stop.
	for _, l := range scope.take()[kindLayer] {
		if strings.HasPrefix(filepath.Base(l), "fork-") {
			t.Errorf("a fork layer outlived its sandboxes: %s", l)
		}
	}

	// The daemon stops while a template build runs: the build sandbox
	// and the builds' cgroup must go with it.
	s.buildAtStop(ctx, scope)
	// Stopped here rather than by srv.Close, which kills a daemon that
	// takes 20 s: on a loaded machine a stop may take longer, and what a
	// killed daemon leaves is not what its stop does.
	stopStart := time.Now()
	if err := syscall.Kill(scope.daemon, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for exited := false; !exited; {
		if time.Since(stopStart) > 5*time.Minute {
			t.Fatal("the daemon did not stop within 5 minutes of SIGTERM")
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", scope.daemon))
		// Exited: gone, or a zombie until sandpittest reaps it.
		exited = err != nil || bytes.Contains(stat, []byte(") Z "))
		time.Sleep(50 * time.Millisecond)
	}
	srv.Close()
	t.Logf("the daemon stopped in %s", time.Since(stopStart).Round(time.Millisecond))
	if !strings.Contains(srv.Log(), `msg="sandpit stopped"`) {
		t.Errorf("the daemon did not finish its stop:\n%s", srv.Log())
	}
	scope.daemon = 0
	for _, line := range strings.Split(srv.Log(), "\n") {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") {
			t.Logf("daemon: %s", line)
		}
	}
	left := scope.take()
	t.Logf("after the daemon stopped: %s", left.summary())
	leaks := left.leftSince(before)
	// The kernel ends some things after the process that held them: a
	// network namespace (and a veth in it) or a loop device goes a moment
	// after its last user, later on a loaded machine. What is still there
	// after a grace is left; what went meanwhile is named in the log.
	first := leaks
	for deadline := time.Now().Add(15 * time.Second); countItems(leaks) > 0 && time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		leaks = scope.take().leftSince(before)
	}
	if n := countItems(first) - countItems(leaks); n > 0 {
		t.Logf("%d thing(s) went only after the daemon's exit: %v", n, first)
	}
	for _, k := range censusKinds {
		if items := leaks[k]; len(items) > 0 {
			t.Errorf("%d %s(s) left after the daemon stopped:\n  %s", len(items), k, strings.Join(items, "\n  "))
		}
	}
}

func countItems(m map[string][]string) int {
	n := 0
	for _, items := range m {
		n += len(items)
	}
	return n
}

// soak drives one daemon.
type soak struct {
	t      *testing.T
	srv    *sandpittest.Server
	pid    int // the daemon's
	client *sandpit.Client
	hc     *http.Client
	builds atomic.Int64

	mu   sync.Mutex
	errs []string
}

func (s *soak) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
}

func (s *soak) failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.errs) > 0
}

// errorList is the first errors, one a line.
func (s *soak) errorList() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := s.errs
	more := ""
	if len(errs) > 20 {
		more = fmt.Sprintf("\n  (%d more)", len(errs)-20)
		errs = errs[:20]
	}
	return "  " + strings.Join(errs, "\n  ") + more
}

// run does cycles first..first+n-1 with conc workers, starting none after
// budget; it returns how many it did.
func (s *soak) run(ctx context.Context, first, n, conc int, budget time.Duration) int {
	stop := time.Now().Add(budget)
	next := make(chan int)
	var done atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				s.cycle(ctx, i)
				done.Add(1)
			}
		}()
	}
	for i := first; i < first+n && time.Now().Before(stop) && ctx.Err() == nil; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return int(done.Load())
}

// cycle creates a sandbox, runs a command in it and kills it. Some cycles
// (each kind among the warm-up's first 16, so that what it adds to the
// daemon's caches and metrics is there before the baseline)
// do more on the way, so each kind of per-sandbox state comes and goes:
// a network policy (nftables chain and map entry), a pause with memory
// kept (freezer) or not (stop and start again), a snapshot (layers), two
// forks (a layer the forks share, gone with the last).
func (s *soak) cycle(ctx context.Context, i int) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var sb *sandpit.Sandbox
	var err error
	if i%10 == 3 {
		sb, err = s.createWithPolicy(ctx)
	} else {
		sb, err = s.client.Create(ctx, sandpit.WithTimeout(5*time.Minute))
	}
	if err != nil {
		s.fail("cycle %d: create: %v", i, err)
		return
	}
	defer func() {
		if err := sb.Kill(context.WithoutCancel(ctx)); err != nil {
			s.fail("cycle %d: kill %s: %v", i, sb.ID, err)
		}
	}()
	step := func(what string, err error) bool {
		if err != nil {
			s.fail("cycle %d: %s %s: %v", i, what, sb.ID, err)
		}
		return err == nil
	}
	want := fmt.Sprintf("cycle %d", i)
	run := func() bool {
		res, err := sb.Commands.Run(ctx, "echo "+want)
		if !step("command", err) {
			return false
		}
		if got := strings.TrimSpace(res.Stdout); got != want {
			s.fail("cycle %d: command in %s printed %q, want %q", i, sb.ID, got, want)
			return false
		}
		return true
	}
	if !run() {
		return
	}
	switch {
	case i%25 == 7, i%25 == 9:
		_, err := s.client.Pause(ctx, sb.ID, sandpit.WithKeepMemory(i%25 == 7))
		if !step("pause", err) {
			return
		}
		if sb, err = s.client.Connect(ctx, sb.ID); !step("resume", err) {
			return
		}
		run()
	case i%50 == 13:
		snap, err := sb.CreateSnapshot(ctx)
		if !step("snapshot", err) {
			return
		}
		_, err = s.client.DeleteSnapshot(ctx, snap.ID)
		step("delete snapshot", err)
	case i%50 == 11:
		forks, err := sb.Fork(ctx, sandpit.WithCount(2))
		if !step("fork", err) {
			return
		}
		for _, f := range forks {
			if !step("fork", f.Err) {
				continue
			}
			if _, err := f.Sandbox.Commands.Run(ctx, "true"); err != nil {
				step("command in fork "+f.Sandbox.ID+" of", err)
			}
			step("kill fork "+f.Sandbox.ID+" of", f.Sandbox.Kill(context.WithoutCancel(ctx)))
		}
	}
}

// live creates n sandboxes, conc at a time, runs a command in each while
// all are alive, checks what they cost the daemon once idle, and kills
// them all.
func (s *soak) live(ctx context.Context, n, conc int) {
	base, err := s.figures(ctx, s.pid)
	if err != nil {
		s.t.Fatal(err)
	}
	start := time.Now()
	boxes := make([]*sandpit.Sandbox, n)
	each := func(fn func(i int)) {
		next := make(chan int)
		var wg sync.WaitGroup
		for range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					fn(i)
				}
			}()
		}
		for i := range n {
			next <- i
		}
		close(next)
		wg.Wait()
	}
	each(func(i int) {
		sb, err := s.client.Create(ctx, sandpit.WithTimeout(10*time.Minute))
		if err != nil {
			s.fail("live %d: create: %v", i, err)
			return
		}
		boxes[i] = sb
	})
	up := time.Since(start)
	each(func(i int) {
		if boxes[i] == nil {
			return
		}
		if _, err := boxes[i].Commands.Run(ctx, "true"); err != nil {
			s.fail("live %d: command in %s: %v", i, boxes[i].ID, err)
		}
	})
	// Idle, a live sandbox costs the daemon its bookkeeping, not the
	// buffers of connections to it nobody uses.
	deadline := time.Now().Add(30 * time.Second)
	for {
		f, err := s.figures(ctx, s.pid)
		if err != nil {
			s.t.Fatal(err)
		}
		per := (f.heapInuse - base.heapInuse) / int64(n)
		if per <= perIdleSandboxHeap || time.Now().After(deadline) {
			s.t.Logf("%d sandboxes alive (created in %s), idle: %s; %.1f KiB of heap each",
				n, up.Round(time.Millisecond), f, float64(per)/1024)
			if per > perIdleSandboxHeap {
				s.t.Errorf("each idle sandbox holds %.1f KiB of the daemon's heap, more than %d KiB",
					float64(per)/1024, perIdleSandboxHeap>>10)
			}
			break
		}
		select {
		case <-ctx.Done():
			s.t.Fatal(ctx.Err())
		case <-time.After(time.Second):
		}
	}
	each(func(i int) {
		if boxes[i] == nil {
			return
		}
		if err := boxes[i].Kill(ctx); err != nil {
			s.fail("live %d: kill %s: %v", i, boxes[i].ID, err)
		}
	})
}

// createWithPolicy creates a sandbox whose way out is narrowed (its own
// nftables chain), through the REST API: the Go SDK has no option for it.
func (s *soak) createWithPolicy(ctx context.Context) (*sandpit.Sandbox, error) {
	var out struct{ SandboxID string }
	err := s.api(ctx, "POST", "/sandboxes", map[string]any{
		"templateID": "base", "timeout": 300,
		"network": map[string]any{"denyOut": []string{"192.0.2.0/24"}},
	}, &out)
	if err != nil {
		return nil, err
	}
	return s.client.Connect(ctx, out.SandboxID)
}

// build builds a template from base with a step unique to n (no cache
// hit: a build sandbox runs) and removes it again.
func (s *soak) build(ctx context.Context, n int) {
	var req struct{ TemplateID, BuildID string }
	name := fmt.Sprintf("soak-%d", n)
	if err := s.api(ctx, "POST", "/v3/templates", map[string]any{"name": name}, &req); err != nil {
		s.fail("build %d: %v", n, err)
		return
	}
	if err := s.api(ctx, "POST", "/v2/templates/"+req.TemplateID+"/builds/"+req.BuildID, map[string]any{
		"fromTemplate": "base", "steps": []map[string]any{{"type": "RUN", "args": []string{fmt.Sprintf("echo %d > /tmp/soak", n)}}},
	}, nil); err != nil {
		s.fail("build %d: %v", n, err)
		return
	}
	for {
		var st struct{ Status string }
		if err := s.api(ctx, "GET", "/templates/"+req.TemplateID+"/builds/"+req.BuildID+"/status", nil, &st); err != nil {
			s.fail("build %d: %v", n, err)
			return
		}
		if st.Status == "ready" {
			break
		}
		if st.Status == "error" {
			s.fail("build %d failed", n)
			return
		}
		select {
		case <-ctx.Done():
			s.fail("build %d: %v", n, ctx.Err())
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	s.builds.Add(1)
	if err := s.api(ctx, "DELETE", "/templates/"+req.TemplateID, nil, nil); err != nil {
		s.fail("removing template %s: %v", name, err)
	}
}

// buildAtStop starts a build whose step runs for a minute and returns
// once its build sandbox runs in the builds' cgroup.
func (s *soak) buildAtStop(ctx context.Context, scope hostScope) {
	var req struct{ TemplateID, BuildID string }
	if err := s.api(ctx, "POST", "/v3/templates", map[string]any{"name": "soak-at-stop"}, &req); err != nil {
		s.t.Errorf("build at stop: %v", err)
		return
	}
	if err := s.api(ctx, "POST", "/v2/templates/"+req.TemplateID+"/builds/"+req.BuildID, map[string]any{
		"fromTemplate": "base", "steps": []map[string]any{{"type": "RUN", "args": []string{"sleep 60"}}},
	}, nil); err != nil {
		s.t.Errorf("build at stop: %v", err)
		return
	}
	builds := "/" + scope.cgroup + "-builds/"
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		for _, p := range scope.take()[kindProcess] {
			if strings.Contains(p, "in its cgroup") && processCgroupHas(p, builds) {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	s.t.Errorf("the build sandbox did not start within a minute")
}

// processCgroupHas reports whether the process a census item names
// ("pid N (comm), ...") is in a cgroup whose path holds dir.
func processCgroupHas(item, dir string) bool {
	pid, _, _ := strings.Cut(strings.TrimPrefix(item, "pid "), " ")
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	return err == nil && strings.Contains(string(b), dir)
}

func (s *soak) api(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.srv.URL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("X-API-KEY", s.srv.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(raw))
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// daemonFigures are the daemon's own resources at one moment.
type daemonFigures struct {
	fds        int
	dbFds      int    // of which on the database's files
	fdTargets  string // what they are, for a report
	goroutines int
	heapInuse  int64 // bytes, from /metrics
	series     int   // samples /metrics serves: one per label set
	rss        int64 // bytes, VmRSS
}

func (f daemonFigures) String() string {
	return fmt.Sprintf("%d fds, %d goroutines, heap in use %.1f MiB, RSS %.1f MiB, %d metric series",
		f.fds, f.goroutines, float64(f.heapInuse)/(1<<20), float64(f.rss)/(1<<20), f.series)
}

// Tolerances for "back where it was". The run leaves the same warm pool
// as the warm-up did, so what per-sandbox state there is is the same.
const (
	// A few descriptors and goroutines come and go with the measurement
	// itself (the /metrics request's connection).
	fdSlack, goroutineSlack = 3, 3
	// The heap: GOGC=1 keeps garbage out of the figure; the slack is for
	// caches that grow to a bounded size (the database driver's statement
	// cache, the HTTP server's buffers' pools, the logs of the last ended
	// sandboxes). A per-sandbox leak of a few KiB shows over the short
	// form's cycles.
	heapSlackRatio = 1.25
	heapSlack      = 4 << 20
	// RSS: the Go runtime returns freed pages to the kernel slowly (its
	// scavenger), so RSS lags the heap; what matters is that it does not
	// grow with the number of cycles. 32 MiB is well below what a leak
	// of 100 KiB per sandbox would add over the short form's 300 cycles.
	rssSlack = 32 << 20
	// What an idle sandbox may cost the daemon's heap: its entries in the
	// manager, runtime and proxy, its log ring, the goroutines that wait
	// on it (35-60 KiB measured, the less the more sandboxes share what is
	// fixed). A connection kept open to it holds 512 KiB of buffers.
	perIdleSandboxHeap = 128 << 10
	// The warm-up does every kind of operation, so no series is new
	// after it but by chance (an error kind); one per sandbox would be.
	seriesSlack = 5
)

// leaks compares figures after a run with those before it.
func (f daemonFigures) leaks(after daemonFigures) []string {
	var out []string
	// The database's descriptors are its connections': bounded by its
	// pool (each connection opens the database and its -wal), not back to
	// where they were, since a run may need more connections at once
	// than the warm-up did.
	if other := after.fds - after.dbFds; other > f.fds-f.dbFds+fdSlack || after.dbFds > 2*store.MaxConns+1 {
		out = append(out, fmt.Sprintf("the daemon holds %d file descriptors (%d on the database), %d (%d) before the run:\n  now: %s\n  before: %s",
			after.fds, after.dbFds, f.fds, f.dbFds, after.fdTargets, f.fdTargets))
	}
	if after.goroutines > f.goroutines+goroutineSlack {
		out = append(out, fmt.Sprintf("the daemon runs %d goroutines, %d before the run", after.goroutines, f.goroutines))
	}
	if float64(after.heapInuse) > float64(f.heapInuse)*heapSlackRatio+heapSlack {
		out = append(out, fmt.Sprintf("the daemon's heap in use is %.1f MiB, %.1f MiB before the run",
			float64(after.heapInuse)/(1<<20), float64(f.heapInuse)/(1<<20)))
	}
	// A label per sandbox (or per anything that comes and goes) would
	// grow the series without bound.
	if after.series > f.series+seriesSlack {
		out = append(out, fmt.Sprintf("/metrics serves %d series, %d before the run", after.series, f.series))
	}
	if after.rss > f.rss+rssSlack {
		out = append(out, fmt.Sprintf("the daemon's RSS is %.1f MiB, %.1f MiB before the run",
			float64(after.rss)/(1<<20), float64(f.rss)/(1<<20)))
	}
	return out
}

// settle closes the client's idle connections and waits for the daemon's
// figures to come within the tolerances of target (or, with a zero
// target, to stop falling), then returns them. Sandboxes killed a moment
// ago may still be going (their log readers and process waits end with
// them), so it polls rather than reads once.
func (s *soak) settle(ctx context.Context, tr *http.Transport, target daemonFigures, pid int) daemonFigures {
	deadline := time.Now().Add(30 * time.Second)
	var last daemonFigures
	for {
		tr.CloseIdleConnections()
		f, err := s.figures(ctx, pid)
		if err != nil {
			s.t.Fatal(err)
		}
		switch {
		case target.fds == 0 && last.fds != 0 && f.fds >= last.fds && f.goroutines >= last.goroutines:
			return f
		case target.fds != 0 && len(target.leaks(f)) == 0:
			return f
		case time.Now().After(deadline):
			return f
		}
		last = f
		select {
		case <-ctx.Done():
			s.t.Fatal(ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

func (s *soak) figures(ctx context.Context, pid int) (daemonFigures, error) {
	var f daemonFigures
	metrics, err := s.metrics(ctx)
	if err != nil {
		return f, err
	}
	f.goroutines = int(metrics["go_goroutines"])
	f.series = int(metrics[seriesKey])
	f.heapInuse = int64(metrics["go_memstats_heap_inuse_bytes"])
	// After the request, whose connection is closed by now.
	s.hc.CloseIdleConnections()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return f, fmt.Errorf("counting the daemon's fds: %w", err)
	}
	f.fds = len(fds)
	kinds := map[string]int{}
	for _, e := range fds {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		// "socket:[123]" and the like count by kind; files by path.
		if k, _, ok := strings.Cut(target, ":["); ok {
			target = k
		}
		kinds[target]++
		if strings.HasPrefix(filepath.Base(target), "sandpit.db") {
			f.dbFds++
		}
	}
	var list []string
	for k, n := range kinds {
		list = append(list, fmt.Sprintf("%s ×%d", k, n))
	}
	sort.Strings(list)
	f.fdTargets = strings.Join(list, ", ")
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return f, fmt.Errorf("reading the daemon's status: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			f.rss = kb << 10
		}
	}
	return f, nil
}

// seriesKey holds, in what metrics returns, the number of samples.
const seriesKey = "#series"

// metrics reads the daemon's unlabelled /metrics samples, and counts all.
func (s *soak) metrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", s.srv.URL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	// Its own connection, closed after: it must not count as a leak.
	req.Close = true
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading /metrics: %w", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		out[seriesKey]++
		if strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// childWith finds this process's child whose command line names arg.
func childWith(arg string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(arg)) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces.
		rest := stat[bytes.LastIndexByte(stat, ')')+1:]
		fields := strings.Fields(string(rest))
		if len(fields) > 1 && fields[1] == strconv.Itoa(os.Getpid()) {
			return pid
		}
	}
	return 0
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}
