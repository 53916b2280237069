package interp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// testEnv is a Server behind httptest, closed at the end of the test.
type testEnv struct {
	t   testing.TB
	srv *Server
	ts  *httptest.Server
}

func newTestEnv(t testing.TB, mutate func(*Config)) *testEnv {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs /usr/bin/python3 with ipykernel")
	}
	level := slog.LevelWarn
	if os.Getenv("INTERP_DEBUG") != "" {
		level = slog.LevelDebug
	}
	cfg := Config{
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
		Workdir: t.TempDir(),
		Env:     func() map[string]string { return map[string]string{"SANDPIT_GLOBAL": "yes"} },
		TempDir: t.TempDir(),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	e := &testEnv{t: t, srv: srv, ts: ts}
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// line is one NDJSON line with the time it was received.
type line struct {
	m  map[string]any
	at time.Time
}

func (l line) typ() string { return str(l.m["type"]) }

func str(v any) string {
	s, _ := v.(string)
	return s
}

// execution is a parsed /execute response.
type execution struct {
	lines   []line
	status  int
	body    string // for non-200
	started time.Time
}

func (x execution) of(typ string) []line {
	var out []line
	for _, l := range x.lines {
		if l.typ() == typ {
			out = append(out, l)
		}
	}
	return out
}

func (x execution) stdout() string {
	var b strings.Builder
	for _, l := range x.of("stdout") {
		b.WriteString(str(l.m["text"]))
	}
	return b.String()
}

func (x execution) mainText() string {
	for _, l := range x.of("result") {
		if l.m["is_main_result"] == true {
			return str(l.m["text"])
		}
	}
	return ""
}

func (x execution) errorLine() map[string]any {
	if e := x.of("error"); len(e) > 0 {
		return e[0].m
	}
	return nil
}

// post sends a JSON body (raw, as the SDKs shape it) and returns the response.
func (e *testEnv) post(ctx context.Context, path, body string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.ts.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// exec runs an /execute request body and reads the whole stream.
func (e *testEnv) exec(body string) execution {
	e.t.Helper()
	return e.execCtx(e.t.Context(), body)
}

func (e *testEnv) execCtx(ctx context.Context, body string) execution {
	e.t.Helper()
	x := execution{started: time.Now()}
	resp := e.post(ctx, "/execute", body)
	defer resp.Body.Close()
	x.status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		x.body = string(b)
		return x
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			e.t.Fatalf("bad NDJSON line %q: %v", sc.Text(), err)
		}
		x.lines = append(x.lines, line{m: m, at: time.Now()})
	}
	return x
}

// code returns an /execute body for code with extra raw JSON fields.
func code(src string, extra ...string) string {
	b, _ := json.Marshal(src)
	return `{"code":` + string(b) + strings.Join(append([]string{""}, extra...), ",") + `}`
}

// pyCode is the Python SDK's shape: explicit nulls.
func pyCode(src string) string {
	return code(src, `"context_id":null`, `"language":null`, `"env_vars":null`)
}

func (e *testEnv) do(method, path, body string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.ts.URL+path, bytes.NewBufferString(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// createContext creates a context and returns its id.
func (e *testEnv) createContext(body string) string {
	e.t.Helper()
	st, b := e.do(http.MethodPost, "/contexts", body)
	if st != http.StatusOK {
		e.t.Fatalf("POST /contexts %s: %d %s", body, st, b)
	}
	var c contextJSON
	if err := json.Unmarshal([]byte(b), &c); err != nil {
		e.t.Fatal(err)
	}
	return c.ID
}

func mustOK(t testing.TB, x execution) {
	t.Helper()
	if x.status != http.StatusOK {
		t.Fatalf("status %d: %s", x.status, x.body)
	}
	if n := len(x.lines); n == 0 || x.lines[n-1].typ() != "end_of_execution" {
		t.Fatalf("stream does not end with end_of_execution: %v", x.lines)
	}
	if e := x.errorLine(); e != nil {
		t.Fatalf("unexpected error line: %v", e)
	}
}
