package interp

import (
	"context"
	"os"
	"os/user"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestInterruptJavaScriptAndBash(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, tc := range []struct {
		lang, setup, loop, check, want string
	}{
		{"javascript", "var q = 3", "while (true) {}", "q + 1", "4"},
		{"javascript", "var q = 3", "await new Promise(() => {})", "q + 2", "5"},
		{"bash", "q=3", "while true; do :; done", "echo $((q+1))", "4\n"},
		{"bash", "q=3", "sleep 100", "echo $((q+2))", "5\n"},
	} {
		lang := `"language":"` + tc.lang + `"`
		mustOK(t, e.exec(code(tc.setup, lang)))
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		start := time.Now()
		e.execCtx(ctx, code(tc.loop, lang))
		cancel()
		x := e.exec(code(tc.check, lang))
		got := x.mainText()
		if tc.lang == "bash" {
			got = x.stdout()
		}
		if got != tc.want {
			t.Errorf("%s after interrupting %q: %q, lines %v", tc.lang, tc.loop, got, x.lines)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: interrupt and next execution took %v", tc.lang, d)
		}
	}
}

func TestKernelDeathJavaScriptAndBash(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, tc := range []struct{ lang, die, check, want string }{
		{"javascript", "process.exit(3)", "typeof q", "undefined"},
		{"bash", "exit 3", "echo ${q:-unset}", "unset\n"},
	} {
		lang := `"language":"` + tc.lang + `"`
		mustOK(t, e.exec(code("q=1", lang)))
		x := e.exec(code(tc.die, lang))
		if er := x.errorLine(); er == nil || er["name"] != "DeadKernelError" {
			t.Errorf("%s: want DeadKernelError, got %v", tc.lang, x.lines)
		}
		x = e.exec(code(tc.check, lang))
		got := x.mainText()
		if tc.lang == "bash" {
			got = x.stdout()
		}
		if got != tc.want {
			t.Errorf("%s after death: %q %v", tc.lang, got, x.lines)
		}
	}
}

func TestExecutionsSerialized(t *testing.T) {
	e := newTestEnv(t, nil)
	mustOK(t, e.exec(pyCode("import time\nlog = []")))
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := "log.append(('start', " + strconv.Itoa(i) + "))\ntime.sleep(0.1)\nlog.append(('end', " + strconv.Itoa(i) + "))"
			mustOK(t, e.exec(pyCode(src)))
		}()
	}
	wg.Wait()
	got := e.exec(pyCode("all(log[i][0] == 'start' and log[i+1] == ('end', log[i][1]) for i in range(0, 6, 2))")).mainText()
	if got != "True" {
		t.Errorf("executions overlapped: %v", e.exec(pyCode("log")).mainText())
	}
}

func TestBadRequests(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, tc := range []struct {
		body string
		want int
	}{
		{`{"code":"1","context_id":"x","language":"python"}`, 400},
		{`{"code":"1","context_id":"nope"}`, 404},
		{`{"code":"1","language":"cobol"}`, 400},
		{`{"code":"1","language":"java"}`, 400},
		{`{"context_id":null}`, 400},
		{`not json`, 400},
	} {
		if x := e.exec(tc.body); x.status != tc.want {
			t.Errorf("%s: %d %q, want %d", tc.body, x.status, x.body, tc.want)
		}
	}
	// Python SDK's explicit nulls with a language are fine.
	if x := e.exec(code("1", `"context_id":null`, `"language":"python"`, `"env_vars":null`)); x.mainText() != "1" {
		t.Errorf("nulls: %v", x.lines)
	}
}

// TestCloseLeavesNothing checks that Close stops every kernel process and
// goroutine, including with an execution in progress.
func TestCloseLeavesNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	e := newTestEnv(t, func(c *Config) { c.Spares = map[string]int{langPython: 1, langJavaScript: 1, langBash: 1} })
	mustOK(t, e.exec(pyCode("1")))
	mustOK(t, e.exec(code("1", `"language":"javascript"`)))
	mustOK(t, e.exec(code("sleep 1000 &", `"language":"bash"`)))
	e.createContext(`{"language":"python"}`)
	running := make(chan struct{})
	go func() {
		resp := e.post(context.Background(), "/execute", pyCode("import time; time.sleep(100)"))
		close(running)
		buf := make([]byte, 4096)
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				break
			}
		}
		resp.Body.Close()
	}()
	<-running
	if len(kernelChildren(t)) == 0 {
		t.Fatal("no kernel processes seen")
	}
	e.ts.CloseClientConnections()
	e.ts.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := e.srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if kids := kernelChildren(t); len(kids) > 0 {
		t.Errorf("processes left after Close: %v", kids)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond) // polling the goroutine count, not waiting for an event
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before, %d after Close\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
	entries, _ := os.ReadDir(e.srv.cfg.TempDir)
	if len(entries) > 0 {
		t.Errorf("kernel directories left: %v", entries)
	}
}

// kernelChildren lists the live (not zombie) processes whose parent is this
// test process, or in the process group of one.
func kernelChildren(t *testing.T) []string {
	t.Helper()
	self := strconv.Itoa(os.Getpid())
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	pgids := map[string]bool{}
	var out []string
	type st struct{ pid, state, ppid, pgid, comm string }
	var all []st
	for _, ent := range ents {
		if _, err := strconv.Atoi(ent.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + ent.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+2:])
		all = append(all, st{pid: ent.Name(), state: f[0], ppid: f[1], pgid: f[2], comm: s[strings.IndexByte(s, '(')+1 : i]})
	}
	for _, p := range all {
		if p.ppid == self {
			pgids[p.pgid] = true
		}
	}
	for _, p := range all {
		if (p.ppid == self || pgids[p.pgid]) && p.state != "Z" && p.pid != self {
			out = append(out, p.pid+":"+p.comm)
		}
	}
	return out
}

func TestRunAsOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch user")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	e := newTestEnv(t, func(c *Config) {
		c.User = "nobody"
		c.Workdir = "/"
		c.TempDir = "/tmp"
		c.Spares = map[string]int{}
	})
	x := e.exec(code("id -u", `"language":"bash"`))
	if got := strings.TrimSpace(x.stdout()); got != u.Uid {
		t.Errorf("bash uid %q, want %s (%v)", got, u.Uid, x.lines)
	}
	x = e.exec(pyCode("import os; os.getuid()"))
	if got := x.mainText(); got != u.Uid {
		t.Errorf("python uid %q, want %s (%v)", got, u.Uid, x.lines)
	}
	x = e.exec(code("process.getuid()", `"language":"javascript"`))
	if got := x.mainText(); got != u.Uid {
		t.Errorf("node uid %q, want %s (%v)", got, u.Uid, x.lines)
	}
}

func TestKernelIgnoringInterruptIsReplaced(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.InterruptGrace = 500 * time.Millisecond })
	mustOK(t, e.exec(pyCode("kept = 1")))
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	// ipykernel restores its SIGINT handler before each request, so the
	// cell ignores SIGINT itself.
	e.execCtx(ctx, pyCode("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"))
	cancel()
	x := e.exec(pyCode("'kept' in dir()"))
	mustOK(t, x)
	if got := x.mainText(); got != "False" {
		t.Errorf("kernel that ignored the interrupt was not replaced: %q", got)
	}
}

func TestKernelStartFailure(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Python = "/bin/false"; c.StartTimeout = 5 * time.Second })
	x := e.exec(pyCode("1"))
	if x.status != 200 {
		t.Fatalf("status %d", x.status)
	}
	er := x.errorLine()
	if er == nil || er["name"] != "KernelStartError" || strings.Contains(str(er["value"]), "/bin/false") {
		t.Errorf("error line %v", x.lines)
	}
	if st, _ := e.do("POST", "/contexts", `{"language":"python"}`); st != 500 {
		t.Errorf("POST /contexts: %d", st)
	}
}

// TestIdleKernelKilledIsReplaced checks that a kernel killed between
// executions (kill -9 from a shell in the sandbox) is replaced without
// waiting for the next execution, for every kind of kernel.
func TestIdleKernelKilledIsReplaced(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, tc := range []struct{ lang, setPid, getPid, check, want string }{
		{"python", "import os; pid = os.getpid(); pid", "pid", "'pid' in dir()", "False"},
		{"javascript", "var pid = process.pid; pid", "pid", "typeof pid", "undefined"},
		{"bash", "echo $$", "", "", ""},
	} {
		c := e.createContext(`{"language":"` + tc.lang + `"}`)
		ctxField := `"context_id":"` + c + `"`
		x := e.exec(code(tc.setPid, ctxField))
		mustOK(t, x)
		pidText := x.mainText()
		if tc.lang == "bash" {
			pidText = strings.TrimSpace(x.stdout())
		}
		pid, err := strconv.Atoi(pidText)
		if err != nil {
			t.Fatalf("%s: pid %q: %v", tc.lang, pidText, err)
		}
		ec, _ := e.srv.lookup(c)
		ec.mu.Lock()
		killed := ec.current
		ec.mu.Unlock()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			ec.mu.Lock()
			h := ec.current
			ec.mu.Unlock()
			if h != nil && h != killed && !exitedNow(h) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no new kernel 30s after the kill", tc.lang)
			}
			time.Sleep(20 * time.Millisecond) // polling for the replacement, which has no event to wait on
		}
		if tc.check != "" {
			x = e.exec(code(tc.check, ctxField))
			mustOK(t, x)
			if got := x.mainText(); got != tc.want {
				t.Errorf("%s: state after the kill: %q, want %q", tc.lang, got, tc.want)
			}
		}
	}
}

// TestKernelExitingAtOnceIsNotRestartedForever checks that a context whose
// kernels keep dying right after they are attached stops being restarted
// in the background, and that an execution still gets a kernel.
func TestKernelExitingAtOnceIsNotRestartedForever(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Spares = map[string]int{langBash: 1} })
	c := e.createContext(`{"language":"bash"}`)
	ec, _ := e.srv.lookup(c)
	current := func() *handle {
		ec.mu.Lock()
		defer ec.mu.Unlock()
		return ec.current
	}
	kill := func(h *handle) {
		t.Helper()
		h.kernel.(*bashKernel).proc.kill()
	}
	h := current()
	for i := 0; i < maxQuickRestarts; i++ {
		kill(h)
		deadline := time.Now().Add(30 * time.Second)
		for {
			if n := current(); n != nil && n != h && !exitedNow(n) {
				h = n
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kill %d: no new kernel after 30s", i+1)
			}
			time.Sleep(20 * time.Millisecond) // polling for the replacement, which has no event to wait on
		}
	}
	kill(h)
	// Give a restart, which would take the warm spare, time to happen.
	time.Sleep(time.Second) // waiting for something that must not happen has no event
	if n := current(); n != h {
		t.Fatalf("kernel restarted after %d quick exits", maxQuickRestarts+1)
	}
	x := e.exec(code("echo back", `"context_id":"`+c+`"`))
	mustOK(t, x)
	if got := x.stdout(); got != "back\n" {
		t.Errorf("execution after the quick exits: %q", got)
	}
}
