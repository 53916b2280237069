package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	fspb "github.com/sandpit-dev/sandpit/gen/proto/filesystem"
	"github.com/sandpit-dev/sandpit/gen/proto/filesystem/filesystemconnect"
	pb "github.com/sandpit-dev/sandpit/gen/proto/process"
	"github.com/sandpit-dev/sandpit/gen/proto/process/processconnect"
	envd "github.com/sandpit-dev/sandpit/internal/agent"
	"github.com/sandpit-dev/sandpit/internal/agent/files"
	"github.com/sandpit-dev/sandpit/internal/agent/filesystem"
	"github.com/sandpit-dev/sandpit/internal/proxy"
	"github.com/sandpit-dev/sandpit/internal/safepath"
)

const auditToken = "audit-token"

// auditHarness is a real agent (processes, filesystem, /files; the
// interpreter a recorder) behind a proxy whose audit hook keeps events.
type auditHarness struct {
	url  string
	root string // the sandbox's root on the host

	served atomic.Int64 // requests the proxy has finished

	mu     sync.Mutex
	events []proxy.Event
	reqs   []*http.Request
	interp []string // "METHOD PATH BODY" as the interpreter got them
}

func newAuditHarness(t *testing.T) *auditHarness {
	t.Helper()
	h := &auditHarness{}
	dir := t.TempDir()
	h.root = filepath.Join(dir, "root")
	for _, d := range []string{"etc", "home/user", "tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(h.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\nuser:x:0:0::/home/user:/bin/sh\n" +
		me.Username + ":x:" + me.Uid + ":" + me.Gid + "::/home/user:/bin/sh\n"
	if err := os.WriteFile(filepath.Join(h.root, "etc/passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := safepath.Open(h.root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	interp := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.interp = append(h.interp, r.Method+" "+r.URL.Path+" "+string(body))
		h.mu.Unlock()
		_, _ = io.WriteString(w, "{}")
	})
	a := envd.New(envd.Config{
		AccessToken: auditToken,
		DefaultUser: me.Username,
		Interpreter: interp,
		Mounts: []envd.Mount{func(d envd.Deps) []envd.Route {
			fs, err := filesystem.New(filesystem.Config{Root: root, Settings: d.Settings})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { fs.Close() })
			fh, err := files.New(files.Config{Root: root, Settings: d.Settings})
			if err != nil {
				t.Fatal(err)
			}
			path, fsh := fs.Handler()
			return []envd.Route{{Pattern: path, Handler: fsh}, {Pattern: files.Pattern, Handler: fh, OwnAuth: true}}
		}},
	})
	sock := filepath.Join(dir, "envd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-served })

	p := proxy.New(proxy.Config{
		Lookup: func(id string) (string, bool) { return sock, id == "sb1" },
		Signed: func(r *http.Request) (string, string, bool) {
			return "sb1", sock, r.URL.Query().Get("signature") != ""
		},
		Next: http.NotFoundHandler(),
		Audit: func(r *http.Request, ev proxy.Event) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.events = append(h.events, ev)
			h.reqs = append(h.reqs, r)
		},
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer h.served.Add(1)
		p.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

// settle waits until the proxy has finished n requests in all, so every
// audit event of theirs is in.
func (h *auditHarness) settle(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for h.served.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the proxy finished %d requests, want %d", h.served.Load(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// take returns the events so far and forgets them.
func (h *auditHarness) take() ([]proxy.Event, []*http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ev, reqs := h.events, h.reqs
	h.events, h.reqs = nil, nil
	return ev, reqs
}

// one checks that the requests so far made exactly one event, for
// action, and returns it.
func (h *auditHarness) one(t *testing.T, n int64, action string) proxy.Event {
	t.Helper()
	h.settle(t, n)
	evs, reqs := h.take()
	if len(evs) != 1 || evs[0].Action != action {
		t.Fatalf("events %+v, want one %s", evs, action)
	}
	if evs[0].SandboxID != "sb1" || evs[0].Duration <= 0 {
		t.Errorf("event %+v: want sandbox sb1 and a duration", evs[0])
	}
	if reqs[0].RemoteAddr == "" {
		t.Errorf("the hook got a request without the client's address")
	}
	return evs[0]
}

// do sends one request to the sandbox (by headers) and returns the
// answer.
func (h *auditHarness) do(t *testing.T, method, path, port, ctype string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, h.url+path, bytes.NewReader(body))
	req.Header.Set("E2b-Sandbox-Id", "sb1")
	req.Header.Set("E2b-Sandbox-Port", port)
	req.Header.Set("X-Access-Token", auditToken)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// sandboxHeaders puts the proxy's routing headers and the token on every
// Connect call.
func sandboxHeaders() connect.Option {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			setSandboxHeaders(req.Header())
			return next(ctx, req)
		}
	}), streamHeaders{})
}

func setSandboxHeaders(h http.Header) {
	h.Set("E2b-Sandbox-Id", "sb1")
	h.Set("E2b-Sandbox-Port", "49983")
	h.Set("X-Access-Token", auditToken)
}

type streamHeaders struct{}

func (streamHeaders) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc { return next }
func (streamHeaders) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, s connect.Spec) connect.StreamingClientConn {
		c := next(ctx, s)
		setSandboxHeaders(c.RequestHeader())
		return c
	}
}
func (streamHeaders) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// run starts a process through the proxy and returns its stdout.
func run(t *testing.T, c processconnect.ProcessClient, cfg *pb.ProcessConfig) string {
	t.Helper()
	s, err := c.Start(t.Context(), connect.NewRequest(&pb.StartRequest{Process: cfg, Stdin: new(bool)}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out strings.Builder
	for s.Receive() {
		out.Write(s.Msg().GetEvent().GetData().GetStdout())
	}
	if err := s.Err(); err != nil {
		t.Fatalf("process stream: %v", err)
	}
	return out.String()
}

// TestAuditProcessStart starts processes through the proxy in both
// streaming encodings: each start is one process.start event with its
// command line, and the agent gets the request intact (the process runs
// as asked), also past what the proxy peeks at.
func TestAuditProcessStart(t *testing.T) {
	h := newAuditHarness(t)
	var n int64
	for _, codec := range []struct {
		name string
		opts []connect.ClientOption
	}{
		{"connect+proto", nil},
		{"connect+json", []connect.ClientOption{connect.WithProtoJSON()}},
	} {
		t.Run(codec.name, func(t *testing.T) {
			c := processconnect.NewProcessClient(http.DefaultClient, h.url, append(codec.opts, sandboxHeaders())...)

			out := run(t, c, &pb.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", "echo 'hi there'; echo $0", "it's"}})
			n++
			if out != "hi there\nit's\n" {
				t.Errorf("stdout %q", out)
			}
			ev := h.one(t, n, "process.start")
			if want := `/bin/sh -c 'echo '\''hi there'\''; echo $0' 'it'\''s'`; ev.Detail != want || ev.Status != 200 {
				t.Errorf("event %+v, want detail %s and status 200", ev, want)
			}

			// A long command line is cut at 512 bytes, marked.
			long := strings.Repeat("é", 400) // 800 bytes
			out = run(t, c, &pb.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", `printf %s "$0" | wc -c`, long}})
			n++
			if strings.TrimSpace(out) != "800" {
				t.Errorf("the long argument reached the process as %q bytes", out)
			}
			ev = h.one(t, n, "process.start")
			if !strings.HasSuffix(ev.Detail, "…") || len(ev.Detail) > 512+len("…") || len(ev.Detail) < 510 ||
				!strings.HasPrefix(ev.Detail, `/bin/sh -c 'printf %s "$0" | wc -c' 'éé`) || !utf8Valid(ev.Detail) {
				t.Errorf("truncated detail (%d bytes) %q", len(ev.Detail), ev.Detail)
			}

			// A message larger than the peek: its command line (the
			// SDKs send it before the environment), marked as cut; and
			// the agent gets all of it.
			big := strings.Repeat("x", 100<<10)
			out = run(t, c, &pb.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", `printf %s "$BIG" | wc -c`}, Envs: map[string]string{"BIG": big}})
			n++
			if strings.TrimSpace(out) != strconv.Itoa(len(big)) {
				t.Errorf("a 100 KiB environment reached the process as %q bytes", out)
			}
			if ev := h.one(t, n, "process.start"); ev.Detail != `/bin/sh -c 'printf %s "$BIG" | wc -c'…` {
				t.Errorf("detail of a start past the peek: %q", ev.Detail)
			}
		})
	}

	// A body that is no StartRequest: unparsed, with the agent's answer.
	status, _ := h.do(t, "POST", "/process.Process/Start", "49983", "application/connect+json", []byte("\x00\x00\x00\x00\x03{x}"))
	n++
	if ev := h.one(t, n, "process.start"); ev.Detail != "(unparsed)" || ev.Status != status {
		t.Errorf("event %+v for a bad body answered %d", ev, status)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// TestAuditSignal: SendSignal is audited with its pid and signal; the
// process's input and listing are not.
func TestAuditSignal(t *testing.T) {
	h := newAuditHarness(t)
	c := processconnect.NewProcessClient(http.DefaultClient, h.url, sandboxHeaders())
	s, err := c.Start(t.Context(), connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "sleep", Args: []string{"30"}}}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Receive() {
		t.Fatalf("no start event: %v", s.Err())
	}
	pid := s.Msg().GetEvent().GetStart().GetPid()
	if _, err := c.List(t.Context(), connect.NewRequest(&pb.ListRequest{})); err != nil {
		t.Fatal(err)
	}
	sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}
	if _, err := c.SendInput(t.Context(), connect.NewRequest(&pb.SendInputRequest{Process: sel, Input: &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte("x")}}})); err != nil {
		t.Fatal(err)
	}
	h.settle(t, 2)
	if evs, _ := h.take(); len(evs) != 0 {
		t.Fatalf("List and SendInput made events %+v", evs)
	}
	if _, err := c.SendSignal(t.Context(), connect.NewRequest(&pb.SendSignalRequest{Process: sel, Signal: pb.Signal_SIGNAL_SIGKILL})); err != nil {
		t.Fatal(err)
	}
	for s.Receive() {
	}
	s.Close()
	// The start is recorded when its stream ends, which the signal did.
	h.settle(t, 4)
	evs, _ := h.take()
	want := []string{"process.signal pid " + strconv.Itoa(int(pid)) + " SIGKILL 200", "process.start sleep 30 200"}
	var got []string
	for _, ev := range evs {
		got = append(got, ev.Action+" "+ev.Detail+" "+strconv.Itoa(ev.Status))
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// TestAuditFilesystem: MakeDir, Move and Remove are audited with their
// paths, in either unary encoding; ListDir and Stat are not.
func TestAuditFilesystem(t *testing.T) {
	h := newAuditHarness(t)
	var n int64
	for _, codec := range []struct {
		name string
		opts []connect.ClientOption
	}{
		{"proto", nil},
		{"json", []connect.ClientOption{connect.WithProtoJSON()}},
	} {
		t.Run(codec.name, func(t *testing.T) {
			c := filesystemconnect.NewFilesystemClient(http.DefaultClient, h.url, append(codec.opts, sandboxHeaders())...)
			dir, moved := "/tmp/made-"+codec.name, "/tmp/moved-"+codec.name
			if _, err := c.MakeDir(t.Context(), connect.NewRequest(&fspb.MakeDirRequest{Path: dir})); err != nil {
				t.Fatal(err)
			}
			n++
			if ev := h.one(t, n, "filesystem.mkdir"); ev.Detail != dir || ev.Status != 200 {
				t.Errorf("event %+v", ev)
			}
			if _, err := os.Stat(filepath.Join(h.root, dir)); err != nil {
				t.Errorf("the agent did not make the directory: %v", err)
			}
			if _, err := c.ListDir(t.Context(), connect.NewRequest(&fspb.ListDirRequest{Path: "/tmp"})); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Stat(t.Context(), connect.NewRequest(&fspb.StatRequest{Path: dir})); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Move(t.Context(), connect.NewRequest(&fspb.MoveRequest{Source: dir, Destination: moved})); err != nil {
				t.Fatal(err)
			}
			n += 3
			if ev := h.one(t, n, "filesystem.move"); ev.Detail != dir+" -> "+moved || ev.Status != 200 {
				t.Errorf("event %+v", ev)
			}
			if _, err := c.Remove(t.Context(), connect.NewRequest(&fspb.RemoveRequest{Path: moved})); err != nil {
				t.Fatal(err)
			}
			n++
			if ev := h.one(t, n, "filesystem.remove"); ev.Detail != moved || ev.Status != 200 {
				t.Errorf("event %+v", ev)
			}
			// A failed call is audited with the agent's status.
			_, err := c.Move(t.Context(), connect.NewRequest(&fspb.MoveRequest{Source: dir, Destination: moved}))
			n++
			if ev := h.one(t, n, "filesystem.move"); connect.CodeOf(err) != connect.CodeNotFound || ev.Status != 404 {
				t.Errorf("moving a missing path: %v, event %+v", err, ev)
			}
		})
	}
}

// TestAuditFiles: uploads through /files are audited with their path and
// user, signed ones too (with the sandbox the signature named);
// downloads are not.
func TestAuditFiles(t *testing.T) {
	h := newAuditHarness(t)
	status, body := h.do(t, "POST", "/files?path=/tmp/up.txt&username=user", "49983", "application/octet-stream", []byte("hello"))
	if status != 200 {
		t.Fatalf("upload: %d %s", status, body)
	}
	if ev := h.one(t, 1, "files.write"); ev.Detail != "/tmp/up.txt (user user)" || ev.Status != 200 {
		t.Errorf("event %+v", ev)
	}
	if b, _ := os.ReadFile(filepath.Join(h.root, "tmp/up.txt")); string(b) != "hello" {
		t.Errorf("the agent wrote %q", b)
	}
	if status, body := h.do(t, "GET", "/files?path=/tmp/up.txt", "49983", "", nil); status != 200 || body != "hello" {
		t.Fatalf("download: %d %q", status, body)
	}
	h.settle(t, 2)
	if evs, _ := h.take(); len(evs) != 0 {
		t.Fatalf("a download made events %+v", evs)
	}

	// A signed URL names no sandbox; the proxy's Signed lookup does. This
	// signature is wrong, so the agent refuses it: audited all the same.
	resp, err := http.Post(h.url+"/files?path=/tmp/signed.txt&signature=v1_bad", "application/octet-stream", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ev := h.one(t, 3, "files.write"); ev.Detail != "/tmp/signed.txt" || ev.Status != resp.StatusCode || ev.Status != 401 {
		t.Errorf("event %+v for a signed upload answered %d", ev, resp.StatusCode)
	}
}

// TestAuditInterpreter: code runs and context changes are audited, the
// code's start as detail, and the interpreter gets the body as sent; a
// listing is not audited.
func TestAuditInterpreter(t *testing.T) {
	h := newAuditHarness(t)
	var n int64
	check := func(method, path, body, action, detail string) {
		t.Helper()
		if status, _ := h.do(t, method, path, "49999", "application/json", []byte(body)); status != 200 {
			t.Fatalf("%s %s: %d", method, path, status)
		}
		n++
		if ev := h.one(t, n, action); ev.Detail != detail || ev.Status != 200 {
			t.Errorf("%s %s: event %+v, want detail %q", method, path, ev, detail)
		}
		h.mu.Lock()
		got := h.interp[len(h.interp)-1]
		h.mu.Unlock()
		if got != method+" "+path+" "+body {
			t.Errorf("the interpreter got %.200q", got)
		}
	}
	check("POST", "/execute", `{"code":"print(1)\nprint(\"é\")","context_id":"c1"}`, "code.execute", "print(1)\nprint(\"é\")")
	check("POST", "/execute", `{"language":"python", "code" : "x = 1"}`, "code.execute", "x = 1")

	// Code longer than the peek: its first 512 bytes, marked as cut.
	long := strings.Repeat(`print(\"\u00e9\")\n`, 20<<10)
	var want string
	if err := json.Unmarshal([]byte(`"`+long+`"`), &want); err != nil {
		t.Fatal(err)
	}
	want = strings.ToValidUTF8(want[:512], "") + "…" // not cutting an é in two
	check("POST", "/execute", `{"code":"`+long+`"}`, "code.execute", want)
	check("POST", "/execute", `{"cod`, "code.execute", "(unparsed)")

	check("POST", "/contexts", `{"language":"python"}`, "code.context.create", "")
	check("POST", "/contexts/c1/restart", ``, "code.context.restart", "c1")
	check("DELETE", "/contexts/c1", ``, "code.context.delete", "c1")

	if status, _ := h.do(t, "GET", "/contexts", "49999", "", nil); status != 200 {
		t.Fatal(status)
	}
	h.settle(t, n+1)
	if evs, _ := h.take(); len(evs) != 0 {
		t.Fatalf("a context listing made events %+v", evs)
	}
}

// TestAuditPortTraffic: requests to the sandbox's own ports are not
// audited, whatever they do.
func TestAuditPortTraffic(t *testing.T) {
	h := newAuditHarness(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "app") }))
	defer app.Close()
	u, _ := url.Parse(app.URL)
	req, _ := http.NewRequest("POST", h.url+"/execute", strings.NewReader(`{"code":"x"}`))
	req.Host = u.Port() + "-sb1.sandpit.test"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "app" {
		t.Fatalf("port traffic: %d %q", resp.StatusCode, b)
	}
	h.settle(t, 1)
	if evs, _ := h.take(); len(evs) != 0 {
		t.Fatalf("port traffic made events %+v", evs)
	}
}
