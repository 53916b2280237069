// Command loadgo is bench/load.mjs's cycles phase driven through sandpit's
// Go SDK instead of the official JavaScript one: C workers share N cycles of
// create → commands.run("true") → kill against a `sandpit serve` started
// the way sandpittest starts it (default flags, fresh data dir). A node
// process running the official SDK costs ~5 ms of CPU per cycle on the
// 2-core machine, a fifth of the host's; this client costs a fraction of
// that, so its figures say what the daemon can do and load.mjs's what an
// E2B SDK user sees. Both go into BENCHMARKS.md.
//
//	go run ./bench/loadgo [-c 8] [-n 400] [-rate 0] [-warmup 3] [-serve-arg=--warm-pool=off]
//
// With -rate R the cycles are offered at R per second (at most C at once)
// instead of back to back: a closed loop at saturation measures N/X, the
// queue any saturated system has; a rate below capacity measures the
// latency at that throughput.
//
// Markdown on stdout. Env: SANDPIT_BIN (default: a build of this checkout).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
	"github.com/sandpit-dev/sandpit/sdk/sandpittest"
)

type serveArgs []string

func (a *serveArgs) String() string     { return strings.Join(*a, " ") }
func (a *serveArgs) Set(v string) error { *a = append(*a, v); return nil }

func main() {
	conc := flag.Int("c", 8, "concurrency: workers running cycles at once")
	cycles := flag.Int("n", 400, "cycles in all")
	warmup := flag.Int("warmup", 3, "cycles per worker before the measured ones")
	timeout := flag.Duration("timeout", 10*time.Minute, "bound on the whole run")
	busy := flag.Int("busy", 0, "sandboxes kept burning CPU (two busy loops each) through the run: creates beside tenants that use the host")
	rate := flag.Float64("rate", 0, "cycles started per second, at most -c at once (0: closed loop, each worker starts its next cycle when its last ends)")
	serverLog := flag.String("server-log", "", "write the daemon's log here at the end (its \"sandbox created\" lines carry each create's stages)")
	var extra serveArgs
	flag.Var(&extra, "serve-arg", "an extra flag for sandpit serve (repeatable)")
	flag.Parse()
	if err := run(*conc, *cycles, *warmup, *busy, *rate, *timeout, *serverLog, extra); err != nil {
		fmt.Fprintln(os.Stderr, "loadgo:", err)
		os.Exit(1)
	}
}

// step is one measured step of the cycle.
type step int

const (
	stepCreate step = iota
	stepCommand
	stepKill
	stepCycle
	nSteps
)

var stepNames = [nSteps]string{"Sandbox.create", `commands.run("true")`, "kill", "whole cycle"}

func run(conc, cycles, warmup, busy int, rate float64, timeout time.Duration, serverLog string, extra []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Options.Bin unset: SANDPIT_BIN, else a build of this checkout.
	srv, err := sandpittest.Start(ctx, sandpittest.Options{Args: extra})
	if err != nil {
		return fmt.Errorf("starting sandpit: %w", err)
	}
	defer srv.Close()
	if serverLog != "" {
		defer func() {
			if err := os.WriteFile(serverLog, []byte(srv.Log()), 0o644); err != nil {
				fmt.Fprintln(os.Stderr, "loadgo:", err)
			}
		}()
	}
	client, err := sandpit.NewClient(sandpit.WithURL(srv.URL), sandpit.WithAPIKey(srv.APIKey),
		sandpit.WithHTTPClient(&http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4 * conc}}))
	if err != nil {
		return err
	}

	// The daemon fills its warm pool after it answers /health, and a
	// code-interpreter spare goes on warming its kernels in the pool:
	// a second or more of one CPU. Cycles measured during that would pay
	// for the daemon's start, not for their own, so wait for both.
	settled := time.Now()
	if err := waitPoolFull(ctx, srv); err != nil {
		fmt.Fprintf(os.Stderr, "loadgo: the warm pool did not fill (%v); measuring anyway\n", err)
	}
	if err := waitQuiet(ctx, 0.15); err != nil {
		fmt.Fprintf(os.Stderr, "loadgo: the host did not fall quiet (%v); measuring anyway\n", err)
	}
	fmt.Fprintf(os.Stderr, "loadgo: the daemon settled %.1f s after it answered\n", time.Since(settled).Seconds())
	speedBefore := cpuProbe()

	// The busy sandboxes: each runs two loops in the background, as
	// much CPU as its default limit allows, until the daemon stops or
	// the sandbox's default timeout (5 minutes) ends it.
	for i := range busy {
		sb, err := client.Create(ctx)
		if err != nil {
			return fmt.Errorf("busy sandbox %d: %w", i, err)
		}
		loop := "nohup sh -c 'while :; do :; done' >/dev/null 2>&1 &"
		if _, err := sb.Commands.Run(ctx, loop+" "+loop); err != nil {
			return fmt.Errorf("busy loops in %s: %w", sb.ID, err)
		}
	}

	// cycle runs one cycle; with a rate, t0 is when it was due, so the
	// wait for a free worker counts in its create (no coordinated
	// omission).
	cycle := func(t0 time.Time, lat *[nSteps]time.Duration) error {
		if t0.IsZero() {
			t0 = time.Now()
		}
		sb, err := client.Create(ctx)
		if err != nil {
			return fmt.Errorf("create: %w", err)
		}
		t1 := time.Now()
		_, cmdErr := sb.Commands.Run(ctx, "true")
		t2 := time.Now()
		if err := sb.Kill(ctx); err != nil {
			return errors.Join(cmdErr, fmt.Errorf("kill %s: %w", sb.ID, err))
		}
		t3 := time.Now()
		if cmdErr != nil {
			return fmt.Errorf("command in %s: %w", sb.ID, cmdErr)
		}
		*lat = [nSteps]time.Duration{t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t3.Sub(t0)}
		return nil
	}

	// drive runs n cycles on conc workers. Closed loop (rate 0): every
	// worker starts its next cycle as soon as its last ends. With a rate:
	// cycle i is due at start + i/rate and taken by the first free worker.
	errs := make(chan error, 64)
	drive := func(n int, rate float64) (lats [][nSteps]time.Duration, failed int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		next := make(chan time.Time)
		start := time.Now()
		go func() {
			defer close(next)
			for i := range n {
				var due time.Time
				if rate > 0 {
					due = start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
					time.Sleep(time.Until(due))
				}
				select {
				case next <- due:
				case <-ctx.Done():
					return
				}
			}
		}()
		for range conc {
			wg.Go(func() {
				for due := range next {
					var lat [nSteps]time.Duration
					err := cycle(due, &lat)
					mu.Lock()
					if err != nil {
						failed++
						select {
						case errs <- err:
						default: // the first ones say enough
						}
					} else {
						lats = append(lats, lat)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return lats, failed
	}

	// Warm-up, not counted: the first cycles start the daemon's lazy
	// paths (first template open, first disk); with a rate, 2 s of it
	// at that rate, so the warm pool has learnt the rate as it does in
	// the first seconds of any sustained load.
	warm := warmup * conc
	if rate > 0 {
		warm = max(warm, int(2*rate))
	}
	_, warmFailed := drive(warm, rate)

	pid := srv.Pid()
	before, err := takeUsage(pid)
	if err != nil {
		return err
	}
	start := time.Now()
	lats, failed := drive(cycles, rate)
	elapsed := time.Since(start)
	after, err := takeUsage(pid)
	if err != nil {
		return err
	}
	close(errs)

	done := len(lats)
	perCycle := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(max(done, 1)) }
	daemon := after.proc.self - before.proc.self
	children := after.proc.children - before.proc.children
	self := after.self - before.self
	hostBusy := after.host.busy - before.host.busy
	total := after.host.total - before.host.total

	fmt.Printf("sandpit under load through the Go SDK, %s, %d CPUs, %s\n\n", srv.Bin, ncpu(), time.Now().UTC().Format("2006-01-02T15:04Z"))
	mode := "closed loop"
	if rate > 0 {
		mode = fmt.Sprintf("offered %g cycles/s after %d warm-up cycles at that rate, create timed from when each was due", rate, warm)
	}
	fmt.Printf("    go run ./bench/loadgo -c %d -n %d -rate %g -busy %d %s\n\n", conc, cycles, rate, busy, strings.Join(extra, " "))
	fmt.Printf("**Cycles**: %d/%d create → commands.run(\"true\") → kill at concurrency %d (%s) in %.1f s: **%.1f cycles/s**; ",
		done, cycles, conc, mode, elapsed.Seconds(), float64(done)/elapsed.Seconds())
	fmt.Printf("CPU per cycle: daemon %.1f ms + its reaped children (sandbox processes) %.1f ms; this client %.1f ms; ",
		perCycle(daemon), perCycle(children), perCycle(self))
	if total > 0 {
		fmt.Printf("the whole host busy %.0f%%, %.1f ms of CPU per cycle.\n\n",
			100*float64(hostBusy)/float64(total), perCycle(hostBusy))
	}
	// After the last kills' teardowns, like the first probe after the
	// daemon's start.
	_ = waitQuiet(ctx, 0.15)
	fmt.Printf("Host speed: a fixed loop took %s ms before the cycles and %s after (less is faster).\n\n", ms(speedBefore), ms(cpuProbe()))
	fmt.Println("| measure | n | p50 ms | p95 ms | p99 ms | max ms |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for s := range nSteps {
		vals := make([]time.Duration, len(lats))
		for i, l := range lats {
			vals[i] = l[s]
		}
		slices.Sort(vals)
		fmt.Printf("| %s | %d | %s | %s | %s | %s |\n", stepNames[s], len(vals),
			ms(rank(vals, 0.50)), ms(rank(vals, 0.95)), ms(rank(vals, 0.99)), ms(rank(vals, 1)))
	}
	if stages, err := createStages(ctx, srv); err != nil {
		fmt.Printf("\n(reading /metrics: %v)\n", err)
	} else {
		fmt.Printf("\n%s\n", stages)
	}
	for err := range errs {
		fmt.Fprintln(os.Stderr, "error:", err)
	}
	if failed+warmFailed > 0 {
		return fmt.Errorf("%d cycles failed, %d in the warm-up", failed, warmFailed)
	}
	return nil
}

// usage is the CPU time spent so far by the daemon (and its sandbox
// processes), by the whole host, and by this client.
type usage struct {
	proc proc
	host host
	self time.Duration
}

func takeUsage(pid int) (usage, error) {
	p, err := procCPU(pid)
	if err != nil {
		return usage{}, err
	}
	h, err := hostCPU()
	if err != nil {
		return usage{}, err
	}
	var r syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &r); err != nil {
		return usage{}, err
	}
	return usage{proc: p, host: h, self: time.Duration(r.Utime.Nano() + r.Stime.Nano())}, nil
}

// rank is the nearest-rank q-quantile of sorted vals.
func rank(vals []time.Duration, q float64) time.Duration {
	if len(vals) == 0 {
		return 0
	}
	i := int(q*float64(len(vals))+0.999999) - 1
	return vals[min(max(i, 0), len(vals)-1)]
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) }

type proc struct{ self, children time.Duration }

// procCPU reads utime+stime of pid from /proc/PID/stat, and as children's
// the cutime+cstime of those it has waited for plus the CPU of its living
// children and theirs: the sandbox inits are children of the daemon's
// spawner, which lives as long as the daemon.
func procCPU(pid int) (proc, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return proc{}, fmt.Errorf("reading the CPU of process %d: %w", pid, err)
	}
	// The fields after the command name, which may hold spaces, start at
	// field 3 of proc(5).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	field := func(n int) time.Duration {
		v, _ := strconv.ParseInt(f[n-3], 10, 64)
		return time.Duration(v) * time.Second / 100 // USER_HZ is 100 on Linux
	}
	p := proc{self: field(14) + field(15), children: field(16) + field(17)}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		for _, k := range strings.Fields(string(kids)) {
			child, _ := strconv.Atoi(k)
			if c, err := procCPU(child); err == nil { // a child gone meanwhile counts nothing
				p.children += c.self + c.children
			}
		}
	}
	return p, nil
}

type host struct{ busy, total time.Duration }

// hostCPU reads the host's busy and total CPU time from /proc/stat.
func hostCPU() (host, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return host{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	// user nice system idle iowait irq softirq steal; guest time is in
	// user already.
	f := strings.Fields(line)[1:9]
	var h host
	for i, v := range f {
		n, _ := strconv.ParseInt(v, 10, 64)
		d := time.Duration(n) * time.Second / 100
		h.total += d
		if i != 3 && i != 4 { // idle and iowait
			h.busy += d
		}
	}
	return h, nil
}

func ncpu() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\nprocessor") + 1
}

var stageLine = regexp.MustCompile(`(?m)^sandpit_sandbox_create_seconds_(sum|count)\{stage="([^"]+)"\} (\S+)$`)

var poolLine = regexp.MustCompile(`(?m)^sandpit_warm_pool_(sandboxes|target)\{template="([^"]+)"\} (\S+)$`)

// waitQuiet waits until the host's CPUs are busy less than share of a
// quarter second, for at most 30 s.
func waitQuiet(ctx context.Context, share float64) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	prev, err := hostCPU()
	if err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		cur, err := hostCPU()
		if err != nil {
			return err
		}
		if total := cur.total - prev.total; total > 0 && float64(cur.busy-prev.busy) < share*float64(total) {
			return nil
		}
		prev = cur
	}
}

// waitPoolFull waits until every template's warm pool holds its target
// (none reported: no pool), for at most a minute.
func waitPoolFull(ctx context.Context, srv *sandpittest.Server) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		body, err := metrics(ctx, srv)
		if err != nil {
			return err
		}
		have, want := split(body, poolLine, "sandboxes")
		full := true
		for tpl, n := range want {
			full = full && have[tpl] >= n
		}
		if full {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pools %v of targets %v: %w", have, want, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// split reads the lines of /metrics that re matches (groups: a name, a
// label's value, the value) into the values of the lines named first and
// those of the other name, by label.
func split(body string, re *regexp.Regexp, first string) (a, b map[string]float64) {
	a, b = map[string]float64{}, map[string]float64{}
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		v, _ := strconv.ParseFloat(m[3], 64)
		if m[1] == first {
			a[m[2]] = v
		} else {
			b[m[2]] = v
		}
	}
	return a, b
}

// metrics reads the daemon's /metrics.
func metrics(ctx context.Context, srv *sandpittest.Server) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/metrics", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-API-KEY", srv.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("/metrics: %s", resp.Status)
	}
	return string(body), nil
}

// createStages summarises sandpit_sandbox_create_seconds from /metrics:
// the mean of each stage over the run, warm-up included.
func createStages(ctx context.Context, srv *sandpittest.Server) (string, error) {
	body, err := metrics(ctx, srv)
	if err != nil {
		return "", err
	}
	sums, counts := split(body, stageLine, "sum")
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		if counts[n] > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f ms (n=%.0f)", n, 1000*sums[n]/counts[n], counts[n]))
		}
	}
	return "create stages, mean over the run: " + strings.Join(parts, ", "), nil
}

// cpuProbe times a fixed loop on one CPU. On a shared VM the same work
// takes up to twice as long from one minute to the next, and a run's
// figures mean little without the host's speed beside them.
func cpuProbe() time.Duration {
	start := time.Now()
	x := uint64(1)
	for i := range uint64(100_000_000) {
		x += i ^ x>>3
	}
	runtime.KeepAlive(x)
	return time.Since(start)
}
